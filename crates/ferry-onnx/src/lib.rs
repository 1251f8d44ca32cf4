//! ONNX for ferry: read `.onnx` files (external data included) into the core IR and write the
//! core IR back out at any opset.
//!
//! ```
//! use ferry_onnx::{ExportOptions, export_model, load_bytes};
//! use prost::Message;
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tiny_cnn.onnx");
//! let model = load_bytes(std::fs::read(path)?.into())?;
//! // Lower the same model to opset 13: every op is written at the version opset 13 has.
//! let proto = export_model(&model, &ExportOptions { opset: Some(13) })?;
//! assert!(proto.opset_import.iter().any(|o| o.domain.as_deref().unwrap_or("").is_empty() && o.version == Some(13)));
//! let again = load_bytes(proto.encode_to_vec().into())?;
//! assert_eq!(again.graph.nodes.len(), model.graph.nodes.len());
//!
//! // An opset ferry cannot write is refused with the reason.
//! let err = export_model(&model, &ExportOptions { opset: Some(99) }).unwrap_err();
//! assert!(err.to_string().contains("opset 99"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
