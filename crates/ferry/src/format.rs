//! Which format a file is in.

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Onnx,
    /// Apache MXNet: `prefix-symbol.json` + `prefix-NNNN.params`.
    MxNet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::MxNet => "mxnet",
        }
    }

    /// The format an output file name asks for.
    pub fn from_output_name(path: &Path) -> Result<Format> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".onnx") {
            return Ok(Format::Onnx);
        }
        if name.ends_with("-symbol.json") || name.ends_with(".json") {
            return Ok(Format::MxNet);
        }
        Err(Error::Usage(format!(
            "cannot tell the output format from '{}': use a name ending in .onnx or -symbol.json (MXNet)",
            path.display()
        )))
    }

    /// The format of an existing file: by name, else by sniffing its first bytes.
    pub fn detect(path: &Path) -> Result<Format> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".onnx") {
            return Ok(Format::Onnx);
        }
        let mut head = [0u8; 64];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| Error::Onnx(ferry_onnx::OnnxError::Io { path: path.display().to_string(), source: e }))?;
        let head = &head[..n];
        // An ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
        if head.first() == Some(&0x08) {
            return Ok(Format::Onnx);
        }
        if name.ends_with(".json") && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Ok(Format::MxNet);
        }
        if name.ends_with(".params") {
            return Err(Error::Usage(format!(
                "{}: an MXNet .params file holds only weights: give the prefix-symbol.json beside it (and --params FILE)",
                path.display()
            )));
        }
        Err(Error::Usage(format!("{}: not a model file ferry recognizes (expected .onnx)", path.display())))
    }
}
