pub mod check;
pub mod convert;
pub mod inspect;
pub mod run;
pub mod source;
