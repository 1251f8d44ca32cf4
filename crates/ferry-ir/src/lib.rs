//! ferry's intermediate representation: the hub every format converts to and from.

pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod model;
pub mod ops;
pub mod shape;
pub mod tensor;
pub mod value;

pub use dtype::DType;
pub use error::IrError;
pub use graph::{Graph, Node, Value, ValueId};
pub use model::{Model, ModelMeta};
pub use ops::Op;
pub use shape::{Dim, Shape};
pub use tensor::{Tensor, TensorData};
pub use value::ValueType;
