//! ferry: carry neural-network models between frameworks.
//!
//! Load any supported file into a [`Model`] (the format is detected), inspect or transform it,
//! save it to any supported format and version, and [`prepare`] it once to run it many times.
//!
//! ```
//! use std::path::Path;
//!
//! // An MXNet model recorded from MXNet 1.9.1 (no MXNet needed): symbol JSON + .params.
//! let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
//! let opts = ferry::LoadOptions { input_shapes: vec![("data".into(), vec![1, 3, 16, 16])], ..Default::default() };
//! let model = ferry::load_with(&examples.join("mxnet/tiny_resnet-symbol.json"), &opts)?;
//! assert!(ferry::check(&model).is_valid());
//!
//! // Save it as ONNX at opset 13 (written to a temporary file, then renamed into place) and read it back.
//! let dir = tempfile::tempdir()?;
//! let onnx = dir.path().join("tiny_resnet.onnx");
//! ferry::save(&model, &onnx, &ferry::SaveOptions { opset: Some(13), ..Default::default() })?;
//! let converted = ferry::load(&onnx)?;
//!
//! // Prepare once (optimized path), run many times; compare with the original on the reference path.
//! let fast = ferry::prepare(&converted, &ferry::PrepareOptions { path: ferry::ExecPath::Optimized, threads: 1 })?;
//! let oracle = ferry::prepare(&model, &ferry::PrepareOptions::default())?;
//! let x = ferry::ir::Tensor::from_f32(vec![1, 3, 16, 16], &[0.25; 3 * 16 * 16])?;
//! let got = fast.run(vec![("data".into(), ferry::Value::Tensor(x.clone()))])?;
//! let want = oracle.run(vec![("data".into(), ferry::Value::Tensor(x))])?;
//! let (got, want) = (got[0].tensor().unwrap().to_f64_vec()?, want[0].tensor().unwrap().to_f64_vec()?);
//! assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
