//! Options for reading models whose files need more than a path (MXNet).

use crate::Refusal;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SourceArgs {
    /// MXNet: the .params file (default: prefix-0000.params beside prefix-symbol.json).
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// MXNet: bind a graph input's shape, e.g. data=1,3,224,224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=D1,D2,...")]
    pub input_shape: Vec<String>,
    /// MXNet: a graph input's element type, e.g. data=int32 (repeatable; default: the symbol's
    /// __dtype__, else float32).
    #[arg(long = "input-type", value_name = "NAME=DTYPE")]
    pub input_type: Vec<String>,
}

impl SourceArgs {
    pub fn load(&self, path: &std::path::Path) -> Result<ferry::Model, Refusal> {
        let input_shapes = parse_input_shapes(&self.input_shape)?;
        let mut input_types = Vec::new();
        for spec in &self.input_type {
            let (name, ty) =
                spec.split_once('=').ok_or_else(|| Refusal(format!("--input-type '{spec}': expected NAME=DTYPE")))?;
            let ty = ferry::mxnet_dtype_from_name(ty.trim())
                .ok_or_else(|| Refusal(format!("--input-type '{spec}': unknown element type '{ty}'")))?;
            input_types.push((name.to_string(), ty));
        }
        let opts = ferry::LoadOptions { params: self.params.clone(), input_shapes, input_types };
        Ok(ferry::load_with(path, &opts)?)
    }
}

/// `NAME=D1,D2,...` specs (`--input-shape`), parsed.
pub fn parse_input_shapes(specs: &[String]) -> Result<Vec<(String, Vec<u64>)>, Refusal> {
    let mut input_shapes = Vec::new();
    for spec in specs {
        let (name, dims) =
            spec.split_once('=').ok_or_else(|| Refusal(format!("--input-shape '{spec}': expected NAME=D1,D2,...")))?;
        let dims = dims
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .map(|d| d.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Refusal(format!("--input-shape '{spec}': dimensions must be non-negative integers")))?;
        input_shapes.push((name.to_string(), dims));
    }
    Ok(input_shapes)
}
