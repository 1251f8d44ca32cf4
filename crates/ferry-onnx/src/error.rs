use thiserror::Error;

#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsafe(String),
    #[error("{}", format_problems(.0))]
    Export(Vec<ExportProblem>),
}

/// One node (or model feature) the target format version cannot express.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportProblem {
    pub node: String,
    pub op: String,
    pub message: String,
    /// The lowest opset that could express it, when one exists.
    pub min_opset: Option<u32>,
}

fn format_problems(problems: &[ExportProblem]) -> String {
    let mut s = format!("{} node(s) cannot be written:", problems.len());
    for p in problems {
        s.push_str(&format!("\n  - node '{}' ({}): {}", p.node, p.op, p.message));
        if let Some(v) = p.min_opset {
            s.push_str(&format!(" (needs opset >= {v})"));
        }
    }
    s
}

impl OnnxError {
    pub fn invalid(msg: impl Into<String>) -> OnnxError {
        OnnxError::Invalid(msg.into())
    }
}

impl From<ferry_ir::IrError> for OnnxError {
    fn from(e: ferry_ir::IrError) -> OnnxError {
        OnnxError::Invalid(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, OnnxError>;
