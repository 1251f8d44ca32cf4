pub mod check;
pub mod compare;
pub mod convert;
pub mod inputs;
pub mod inspect;
pub mod ops;
pub mod run;
pub mod source;
