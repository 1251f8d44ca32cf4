//! Fast f32 kernels for ferry's optimized execution path.
//!
//! Everything works on raw row-major `f32` slices (images are NCHW, one image at a time); batch loops
//! are the caller's. No ferry dependencies. Every kernel is checked against a naive f64 loop in
//! `tests/`. Shapes are the caller's responsibility: a slice that is too short panics with a clear
//! message (callers validate shapes when they build a plan, so this is a programming error).

mod act;
mod conv;
mod fastmath;
mod gather;
mod gemm;
mod isa;
mod pool;
mod pool2d;
mod rows;

pub use act::{Act, act_inplace};
pub use conv::{Conv2d, Conv2dShape};
pub use gemm::{Epilogue, Lhs, PackedA, PackedB, Rhs, gemm, gemm_lhs, kernel_name};
pub use pool::Pool;
pub use pool2d::{Pool2dShape, avg_pool2d, global_avg_pool, max_pool2d};
pub use rows::{layer_norm_rows, softmax_rows};
