//! Every kernel against a naive f64 loop on random data.

mod act;
mod conv;
mod gemm;
mod pool2d;
mod rows;
mod threads;
mod util;
