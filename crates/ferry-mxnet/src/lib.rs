//! Apache MXNet for ferry, without MXNet: `.params` NDArray lists and symbol JSON are read and
//! written byte-exactly, and MXNet graphs are imported into the core IR.
//!
//! ```
//! use ferry_mxnet::{NdArray, ParamsFile, params_by_name, read_params, write_params};
//!
//! let weight = ferry_ir::Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0])?;
//! let file = ParamsFile { arrays: vec![NdArray::dense(weight.clone())?], names: Some(vec!["arg:fc_weight".into()]) };
//! let bytes = write_params(&file)?;
//! let back = read_params(bytes.clone().into())?;
//! assert_eq!(write_params(&back)?, bytes); // byte for byte
//! assert_eq!(params_by_name(&back)?["fc_weight"], weight); // the `arg:` prefix is not part of the name
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod export;
pub mod import;
pub mod params;
pub mod symbol;

pub use error::{MxnetError, Result};
pub use params::{NdArray, ParamsFile, read_params, write_params};
pub use symbol::{Symbol, read_symbol, write_symbol};

use bytes::Bytes;
use ferry_ir::{DType, Model, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| MxnetError::Io { path: path.display().to_string(), source: e })
}

/// Reads a `.params` file.
pub fn load_params(path: &Path) -> Result<ParamsFile> {
    read_params(Bytes::from(read_file(path)?)).map_err(|e| MxnetError::invalid(format!("{}: {e}", path.display())))
}

/// Reads a symbol JSON file.
pub fn load_symbol(path: &Path) -> Result<Symbol> {
    read_symbol(&read_file(path)?).map_err(|e| MxnetError::invalid(format!("{}: {e}", path.display())))
}

/// The parameters file that belongs to `prefix-symbol.json`: `prefix-0000.params`, else the
/// only `prefix-NNNN.params` beside it (the highest epoch when there are several).
pub fn find_params(symbol_path: &Path) -> Option<PathBuf> {
    let name = symbol_path.file_name()?.to_str()?;
    let prefix = name.strip_suffix("-symbol.json").or_else(|| name.strip_suffix(".json"))?;
    let dir = symbol_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let first = dir.join(format!("{prefix}-0000.params"));
    if first.is_file() {
        return Some(first);
    }
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&format!("{prefix}-"))
                    .and_then(|r| r.strip_suffix(".params"))
                    .is_some_and(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    epochs.sort();
    epochs.pop()
}

/// Parameters by variable name: `arg:`/`aux:` prefixes removed.
pub fn params_by_name(p: &ParamsFile) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, t) in p.named() {
        let key = name.strip_prefix("arg:").or_else(|| name.strip_prefix("aux:")).unwrap_or(&name).to_string();
        if let Some(t) = t {
            if out.insert(key.clone(), t.clone()).is_some() {
                return Err(MxnetError::invalid(format!("parameter '{key}' is stored twice")));
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The `.params` file; `None` looks for `prefix-0000.params` beside the symbol.
    pub params: Option<PathBuf>,
    /// Shapes for graph inputs, by name.
    pub input_shapes: Vec<(String, Vec<u64>)>,
    /// Element types for graph inputs, by name (default: the variable's `__dtype__`, else float32).
    pub input_types: Vec<(String, DType)>,
}

/// An element type by its MXNet/NumPy name ("float32", "int32", ...) or ferry's ("f32", "i32").
pub fn dtype_from_name(name: &str) -> Option<DType> {
    Some(match name {
        "float32" => DType::F32,
        "float64" => DType::F64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        "int16" => DType::I16,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "bool" => DType::Bool,
        other => return DType::from_name(other),
    })
}

/// Loads `prefix-symbol.json` (+ its `.params`) into a model.
pub fn load(symbol_path: &Path, opts: &LoadOptions) -> Result<Model> {
    let sym = load_symbol(symbol_path)?;
    let params_path = opts.params.clone().or_else(|| find_params(symbol_path));
    let params = match &params_path {
        Some(p) => params_by_name(&load_params(p)?)?,
        None => HashMap::new(),
    };
    let shapes: HashMap<String, Vec<u64>> = opts.input_shapes.iter().cloned().collect();
    let var_names: std::collections::HashSet<&str> =
        sym.nodes.iter().filter(|n| n.op == "null").map(|n| n.name.as_str()).collect();
    if let Some((name, _)) = opts.input_shapes.iter().find(|(n, _)| !var_names.contains(n.as_str())) {
        return Err(MxnetError::invalid(format!("--input-shape names '{name}', which is not an input of the graph")));
    }
    if let Some((name, _)) = opts.input_types.iter().find(|(n, _)| !var_names.contains(n.as_str())) {
        return Err(MxnetError::invalid(format!("--input-type names '{name}', which is not an input of the graph")));
    }
    let types: HashMap<String, DType> = opts.input_types.iter().cloned().collect();
    import::import_symbol_typed(&sym, &params, &shapes, &types)
        .map_err(|e| MxnetError::invalid(format!("{}: {e}", symbol_path.display())))
}
