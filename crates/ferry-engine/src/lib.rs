//! The optimized execution path: runs a core-IR graph with the same inputs, outputs and errors as
//! the reference runtime ([`ferry_runtime::Prepared`]), faster.
//!
//! For each input-shape signature the engine builds a plan once: shape inference with the
//! concrete shapes, constants folded (weights, and shape arithmetic on input shapes), nodes lowered
//! to steps (fused where local patterns allow, f32 fast paths, and the reference kernel as
//! fallback for every other op and element type), and a static memory plan that packs all
//! intermediate tensors into one arena by lifetime. Arenas are pooled, so concurrent runs take
//! different arenas and steady-state runs allocate only their outputs.
//!
//! Graphs with control flow (If/Loop/Scan), sequences or optionals run as a whole on the
//! reference executor; so does a signature for which a reference kernel produced a shape that
//! shape inference did not predict.
//!
//! ```no_run
//! # fn demo(model: &ferry_ir::Model, x: ferry_ir::Tensor) -> Result<(), ferry_runtime::RunError> {
//! let engine = ferry_engine::Engine::compile(model, &ferry_engine::EngineOptions { threads: 0 })?;
//! let outputs = engine.run(vec![("x".to_string(), ferry_runtime::Value::Tensor(x))])?;
//! # Ok(()) }
//! ```

mod actmatch;
mod elementwise;
mod engine;
mod exec;
mod facts;
mod fallback;
mod fuse;
mod layout;
mod lower;
mod memplan;
mod plan;
mod steps;

pub use engine::{Engine, EngineOptions};
pub use ferry_runtime::{RunError, Value};
pub use plan::PlanStats;
