//! Types of the values that flow along graph edges: tensors and the non-tensor values ONNX has.

use crate::dtype::DType;
use crate::shape::Shape;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum ValueType {
    /// Nothing is known yet.
    #[default]
    Unknown,
    /// A tensor; `dtype` or `shape` may be unknown (`shape: None` means unknown rank).
    Tensor {
        dtype: Option<DType>,
        shape: Option<Shape>,
    },
    SparseTensor {
        dtype: Option<DType>,
        shape: Option<Shape>,
    },
    Sequence(Box<ValueType>),
    Optional(Box<ValueType>),
    Map {
        key: DType,
        value: Box<ValueType>,
    },
}

impl ValueType {
    pub fn tensor(dtype: DType, shape: Shape) -> ValueType {
        ValueType::Tensor { dtype: Some(dtype), shape: Some(shape) }
    }

    pub fn dtype(&self) -> Option<DType> {
        match self {
            ValueType::Tensor { dtype, .. } | ValueType::SparseTensor { dtype, .. } => *dtype,
            _ => None,
        }
    }

    pub fn shape(&self) -> Option<&Shape> {
        match self {
            ValueType::Tensor { shape, .. } | ValueType::SparseTensor { shape, .. } => shape.as_ref(),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, ValueType::Unknown)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tensor = |f: &mut fmt::Formatter<'_>, prefix: &str, d: &Option<DType>, s: &Option<Shape>| {
            let d = d.map_or("?".to_string(), |d| d.to_string());
            match s {
                Some(s) => write!(f, "{prefix}{d}{s}"),
                None => write!(f, "{prefix}{d}[..]"),
            }
        };
        match self {
            ValueType::Unknown => write!(f, "?"),
            ValueType::Tensor { dtype, shape } => tensor(f, "", dtype, shape),
            ValueType::SparseTensor { dtype, shape } => tensor(f, "sparse ", dtype, shape),
            ValueType::Sequence(t) => write!(f, "seq<{t}>"),
            ValueType::Optional(t) => write!(f, "optional<{t}>"),
            ValueType::Map { key, value } => write!(f, "map<{key},{value}>"),
        }
    }
}
