//! The reference runtime: executes a core-IR graph on the CPU, one node at a time, with plain
//! kernels written for clarity. It is the oracle every optimized path is checked against.
//!
//! ```
//! use ferry_runtime::{Prepared, Value};
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tiny_cnn.onnx");
//! let model = ferry_onnx::load_bytes(std::fs::read(path)?.into())?;
//! let prepared = Prepared::new(&model)?; // once; then run many times, from any thread
//! let image = ferry_ir::Tensor::from_f32(vec![1, 3, 16, 16], &[0.5; 3 * 16 * 16])?;
//! let outputs = prepared.run(vec![("image".to_string(), Value::Tensor(image))])?;
//! let probabilities = outputs[0].tensor().expect("a tensor").to_f64_vec()?;
//! assert_eq!(probabilities.len(), 10);
//! assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod array;
mod exec;
pub mod kernels;
pub mod limits;
pub mod lowbits;
mod value;

pub use exec::Prepared;
pub use value::Value;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The caller's inputs are missing or do not fit the model.
    #[error("{0}")]
    Input(String),
    /// A node failed (bad data, or a case the kernel does not support).
    #[error("node '{node}' ({op}): {message}")]
    Node { node: String, op: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// What kernels return: a message; the executor adds the node.
pub type KernelResult<T> = std::result::Result<T, String>;
