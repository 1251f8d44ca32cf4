use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    #[error("{0}")]
    Invalid(String),
}

impl IrError {
    pub fn invalid(msg: impl Into<String>) -> IrError {
        IrError::Invalid(msg.into())
    }
}
