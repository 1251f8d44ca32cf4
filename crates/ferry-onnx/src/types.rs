//! `TypeProto` <-> core value types.

use crate::error::{OnnxError, Result};
use crate::proto::{self, tensor_shape_proto::dimension, type_proto};
use crate::tensor::dtype_from_code;
use ferry_ir::{DType, Dim, Shape, ValueType};

pub fn shape_from_proto(s: &proto::TensorShapeProto) -> Shape {
    Shape(
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Known(*v as u64),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::param(p),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

/// Element type code 0 (UNDEFINED) means "not stated" and is accepted as unknown.
fn elem(code: Option<i32>, what: &str) -> Result<Option<DType>> {
    match code.unwrap_or(0) {
        0 => Ok(None),
        c => dtype_from_code(c, what).map(Some),
    }
}

pub fn type_from_proto(t: &proto::TypeProto, depth: usize) -> Result<ValueType> {
    if depth > 64 {
        return Err(OnnxError::invalid("type nesting deeper than 64 levels"));
    }
    Ok(match &t.value {
        None => ValueType::Unknown,
        Some(type_proto::Value::TensorType(tt)) => ValueType::Tensor {
            dtype: elem(tt.elem_type, "tensor type")?,
            shape: tt.shape.as_ref().map(shape_from_proto),
        },
        Some(type_proto::Value::SparseTensorType(tt)) => ValueType::SparseTensor {
            dtype: elem(tt.elem_type, "sparse tensor type")?,
            shape: tt.shape.as_ref().map(shape_from_proto),
        },
        Some(type_proto::Value::SequenceType(s)) => ValueType::Sequence(Box::new(match &s.elem_type {
            Some(e) => type_from_proto(e, depth + 1)?,
            None => ValueType::Unknown,
        })),
        Some(type_proto::Value::OptionalType(s)) => ValueType::Optional(Box::new(match &s.elem_type {
            Some(e) => type_from_proto(e, depth + 1)?,
            None => ValueType::Unknown,
        })),
        Some(type_proto::Value::MapType(m)) => ValueType::Map {
            key: dtype_from_code(m.key_type.unwrap_or(0), "map key type")?,
            value: Box::new(match &m.value_type {
                Some(e) => type_from_proto(e, depth + 1)?,
                None => ValueType::Unknown,
            }),
        },
        Some(type_proto::Value::OpaqueType(_)) => ValueType::Unknown,
    })
}

pub fn shape_to_proto(s: &Shape) -> proto::TensorShapeProto {
    proto::TensorShapeProto {
        dim: s
            .0
            .iter()
            .map(|d| proto::tensor_shape_proto::Dimension {
                denotation: None,
                value: match d {
                    Dim::Known(n) => Some(dimension::Value::DimValue(*n as i64)),
                    Dim::Param(p) => Some(dimension::Value::DimParam(p.to_string())),
                    Dim::Unknown => None,
                    // Expressions are ferry's own; ONNX only has names.
                    Dim::Expr(_) => Some(dimension::Value::DimParam(d.to_string())),
                },
            })
            .collect(),
    }
}

/// `None` when nothing is known (ONNX then gets no type for the value).
pub fn type_to_proto(t: &ValueType) -> Option<proto::TypeProto> {
    let value = match t {
        ValueType::Unknown => return None,
        ValueType::Tensor { dtype, shape } => type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(dtype.map_or(0, DType::onnx_code)),
            shape: shape.as_ref().map(shape_to_proto),
        }),
        ValueType::SparseTensor { dtype, shape } => type_proto::Value::SparseTensorType(type_proto::SparseTensor {
            elem_type: Some(dtype.map_or(0, DType::onnx_code)),
            shape: shape.as_ref().map(shape_to_proto),
        }),
        ValueType::Sequence(e) => type_proto::Value::SequenceType(Box::new(type_proto::Sequence {
            elem_type: type_to_proto(e).map(Box::new),
        })),
        ValueType::Optional(e) => type_proto::Value::OptionalType(Box::new(type_proto::Optional {
            elem_type: type_to_proto(e).map(Box::new),
        })),
        ValueType::Map { key, value } => type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: Some(key.onnx_code()),
            value_type: type_to_proto(value).map(Box::new),
        })),
    };
    Some(proto::TypeProto { denotation: None, value: Some(value) })
}
