//! ONNX for ferry: read `.onnx` files (external data included) into the core IR and write the
//! core IR back out at any opset.

pub mod error;
pub mod export;
pub mod external;
pub mod import;
mod io;
mod mapped;
pub mod proto;
pub mod schema_table;
pub mod schemas;
pub mod tensor;
pub mod types;

pub use error::{ExportProblem, OnnxError, Result};
pub use export::{ExportOptions, export_model};
pub use io::{SaveOptions, load, load_bytes, save};
