//! ferry's intermediate representation: the hub every format converts to and from.
//!
//! A [`Model`] holds a [`Graph`]: typed values, nodes over a flat enum of core ops ([`Op`]) kept in
//! topological order, and initializers (weights). Shapes may be symbolic; [`infer::infer_graph`]
//! fills in what the ops determine.
//!
//! ```
//! use ferry_ir::ops::BinaryOp;
//! use ferry_ir::{DType, Dim, Graph, Node, Op, Shape, Tensor, ValueType};
//!
//! // y = x + 1, for x of shape [batch, 3]
//! let mut g = Graph::default();
//! let ty = ValueType::Tensor { dtype: Some(DType::F32), shape: Some(Shape(vec![Dim::param("batch"), Dim::Known(3)])) };
//! let x = g.add_value("x", ty);
//! let one = g.add_value("one", ValueType::default());
//! let y = g.add_value("y", ValueType::default());
//! g.initializers.push((one, Tensor::scalar_f32(1.0)));
//! g.nodes.push(Node { name: "add".into(), op: Op::Binary(BinaryOp::Add), inputs: vec![Some(x), Some(one)],
//!                     outputs: vec![Some(y)], doc_string: String::new() });
//! g.inputs.push(x);
//! g.outputs.push(y);
//!
//! assert!(ferry_ir::infer::infer_graph(&mut g).is_empty());
//! assert_eq!(g.values[y].ty.to_string(), "f32[batch,3]");
//! ```

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
