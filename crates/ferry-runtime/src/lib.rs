//! The reference runtime: executes a core-IR graph on the CPU, one node at a time, with plain
//! kernels written for clarity. It is the oracle every optimized path is checked against.
//!
//! ```no_run
//! # fn demo(model: &ferry_ir::Model, x: ferry_ir::Tensor) -> Result<(), ferry_runtime::RunError> {
//! let prepared = ferry_runtime::Prepared::new(model)?;
//! let outputs = prepared.run(vec![("x".to_string(), ferry_runtime::Value::Tensor(x))])?;
//! # Ok(()) }
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
