//! ferry: carry neural-network models between frameworks.
//!
//! Load any supported file into a [`Model`] (the format is detected), inspect or transform it,
//! and save it to any supported format and version.
//!
//! ```no_run
//! let model = ferry::load(std::path::Path::new("model.onnx"))?;
//! let report = ferry::check(&model);
//! assert!(report.is_valid());
//! let opts = ferry::SaveOptions { opset: Some(13), ..Default::default() };
//! ferry::save(&model, std::path::Path::new("model-opset13.onnx"), &opts)?;
//! # Ok::<(), ferry::Error>(())
//! ```

mod check;
mod format;
mod runner;

pub use check::{CheckReport, Finding, Severity, check};
pub use ferry_ir::{self as ir, Model};
pub use ferry_mxnet::dtype_from_name as mxnet_dtype_from_name;
pub use ferry_runtime::{RunError, Value};
pub use format::Format;
pub use runner::{ExecPath, PrepareOptions, Runner, prepare};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Onnx(#[from] ferry_onnx::OnnxError),
    #[error("{0}")]
    Mxnet(#[from] ferry_mxnet::MxnetError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads a model file; the format comes from the file name and, failing that, its contents.
pub fn load(path: &Path) -> Result<Model> {
    load_with(path, &LoadOptions::default())
}

/// What some formats need besides the model file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// MXNet: the `.params` file (default: `prefix-0000.params` beside `prefix-symbol.json`).
    pub params: Option<std::path::PathBuf>,
    /// Shapes for graph inputs, by name (MXNet symbol JSON usually has none).
    pub input_shapes: Vec<(String, Vec<u64>)>,
    /// Element types for graph inputs, by name (MXNet symbol JSON usually has none).
    pub input_types: Vec<(String, ferry_ir::DType)>,
}

/// [`load`] with format-specific options.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Model> {
    match Format::detect(path)? {
        Format::Onnx => {
            if opts.params.is_some() || !opts.input_shapes.is_empty() || !opts.input_types.is_empty() {
                return Err(Error::Usage("--params, --input-shape and --input-type apply to MXNet models only".into()));
            }
            Ok(ferry_onnx::load(path)?)
        }
        Format::MxNet => {
            let o = ferry_mxnet::LoadOptions {
                params: opts.params.clone(),
                input_shapes: opts.input_shapes.clone(),
                input_types: opts.input_types.clone(),
            };
            Ok(ferry_mxnet::load(path, &o)?)
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// Output format; `None` chooses it from the file name.
    pub format: Option<Format>,
    /// ONNX: target ai.onnx opset (default: the newest ferry supports).
    pub opset: Option<u32>,
    /// ONNX: store weights in a `.data` file beside the model.
    pub external_data: bool,
    /// Called with (bytes written, total) while weights are written.
    pub progress: Option<fn(u64, u64)>,
}

/// Writes a model. Nothing is left at `path` unless the whole write succeeds.
pub fn save(model: &Model, path: &Path, opts: &SaveOptions) -> Result<()> {
    let format = match opts.format {
        Some(f) => f,
        None => Format::from_output_name(path)?,
    };
    match format {
        Format::Onnx => {
            let o = ferry_onnx::SaveOptions {
                export: ferry_onnx::ExportOptions { opset: opts.opset },
                external_data: opts.external_data,
                progress: opts.progress,
            };
            Ok(ferry_onnx::save(model, path, &o)?)
        }
        Format::MxNet => {
            if opts.opset.is_some() || opts.external_data {
                return Err(Error::Usage("--opset and external data apply to ONNX output only".into()));
            }
            Ok(ferry_mxnet::export::save(model, path)?)
        }
    }
}
