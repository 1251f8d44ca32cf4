use thiserror::Error;

#[derive(Debug, Error)]
pub enum MxnetError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl MxnetError {
    pub fn invalid(msg: impl Into<String>) -> MxnetError {
        MxnetError::Invalid(msg.into())
    }
}

impl From<ferry_ir::IrError> for MxnetError {
    fn from(e: ferry_ir::IrError) -> MxnetError {
        MxnetError::Invalid(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, MxnetError>;
