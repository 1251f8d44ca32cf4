//! Tensors. Element bytes live in a `bytes::Bytes`, which can own them, share them between
//! tensors, or borrow them from a memory-mapped file: weights are never copied just to be looked
//! at or passed through.

use crate::dtype::DType;
use crate::error::IrError;
use bytes::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Little-endian elements, sub-byte types packed low bits first (ONNX `raw_data` layout).
    Raw(Bytes),
    Strings(Vec<Bytes>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: TensorData,
}

/// Element count of a shape, or an error when it overflows.
pub fn checked_numel(shape: &[u64]) -> Result<u64, IrError> {
    shape.iter().try_fold(1u64, |acc, d| {
        acc.checked_mul(*d)
            .ok_or_else(|| IrError::invalid(format!("shape {shape:?} has more elements than fit in 64 bits")))
    })
}

impl Tensor {
    /// Builds a tensor from raw bytes, checking that their length matches dtype and shape.
    pub fn from_raw(dtype: DType, shape: Vec<u64>, bytes: Bytes) -> Result<Tensor, IrError> {
        let numel = checked_numel(&shape)?;
        let want = dtype
            .storage_bytes(numel)
            .ok_or_else(|| IrError::invalid(format!("a {dtype} tensor cannot be stored as raw bytes")))?;
        if want != bytes.len() as u64 {
            return Err(IrError::invalid(format!(
                "tensor of {dtype}{shape:?} needs {want} bytes but {} are present",
                bytes.len()
            )));
        }
        Ok(Tensor { dtype, shape, data: TensorData::Raw(bytes) })
    }

    pub fn from_strings(shape: Vec<u64>, strings: Vec<Bytes>) -> Result<Tensor, IrError> {
        let numel = checked_numel(&shape)?;
        if numel != strings.len() as u64 {
            return Err(IrError::invalid(format!(
                "string tensor of shape {shape:?} needs {numel} strings but {} are present",
                strings.len()
            )));
        }
        Ok(Tensor { dtype: DType::String, shape, data: TensorData::Strings(strings) })
    }

    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Result<Tensor, IrError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(DType::F32, shape, Bytes::from(bytes))
    }

    pub fn from_i64(shape: Vec<u64>, values: &[i64]) -> Result<Tensor, IrError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(DType::I64, shape, Bytes::from(bytes))
    }

    /// A scalar of `dtype` holding `v` (converted as Rust's `as` does: truncation toward zero for
    /// integers, nearest for floats); `None` for types without a plain numeric form here.
    pub fn scalar_from_f64(dtype: DType, v: f64) -> Option<Tensor> {
        let bytes: Vec<u8> = match dtype {
            DType::F32 => (v as f32).to_le_bytes().to_vec(),
            DType::F64 => v.to_le_bytes().to_vec(),
            DType::F16 => half::f16::from_f64(v).to_le_bytes().to_vec(),
            DType::BF16 => half::bf16::from_f64(v).to_le_bytes().to_vec(),
            DType::I64 => (v as i64).to_le_bytes().to_vec(),
            DType::I32 => (v as i32).to_le_bytes().to_vec(),
            DType::I16 => (v as i16).to_le_bytes().to_vec(),
            DType::I8 => (v as i8).to_le_bytes().to_vec(),
            DType::U8 => (v as u8).to_le_bytes().to_vec(),
            DType::U16 => (v as u16).to_le_bytes().to_vec(),
            DType::U32 => (v as u32).to_le_bytes().to_vec(),
            DType::U64 => (v as u64).to_le_bytes().to_vec(),
            DType::Bool => vec![u8::from(v != 0.0)],
            _ => return None,
        };
        Tensor::from_raw(dtype, vec![], Bytes::from(bytes)).ok()
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::from_f32(Vec::new(), &[v]).expect("scalar is well formed")
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::from_i64(Vec::new(), &[v]).expect("scalar is well formed")
    }

    pub fn numel(&self) -> u64 {
        // Construction checked this product.
        self.shape.iter().product()
    }

    pub fn byte_len(&self) -> u64 {
        match &self.data {
            TensorData::Raw(b) => b.len() as u64,
            TensorData::Strings(s) => s.iter().map(|x| x.len() as u64).sum(),
        }
    }

    pub fn raw(&self) -> Option<&Bytes> {
        match &self.data {
            TensorData::Raw(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// Integer elements widened to i64 (for shapes, axes, pads and similar small operands).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, IrError> {
        let raw = self.raw().ok_or_else(|| IrError::invalid("expected an integer tensor, found strings"))?;
        let b = raw.as_ref();
        macro_rules! read {
            ($t:ty, $n:expr) => {
                b.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap()) as i64).collect()
            };
        }
        Ok(match self.dtype {
            DType::I64 => read!(i64, 8),
            DType::I32 => read!(i32, 4),
            DType::I16 => read!(i16, 2),
            DType::I8 => read!(i8, 1),
            DType::U8 | DType::Bool => read!(u8, 1),
            DType::U16 => read!(u16, 2),
            DType::U32 => read!(u32, 4),
            DType::U64 => b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            other => return Err(IrError::invalid(format!("expected an integer tensor, found {other}"))),
        })
    }

    /// Floating-point (or integer) elements widened to f64.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, IrError> {
        let raw = self.raw().ok_or_else(|| IrError::invalid("expected a numeric tensor, found strings"))?;
        let b = raw.as_ref();
        Ok(match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            DType::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect(),
            DType::BF16 => {
                b.chunks_exact(2).map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect()
            }
            d if d.is_int() || d == DType::Bool => self.to_i64_vec()?.into_iter().map(|v| v as f64).collect(),
            other => return Err(IrError::invalid(format!("cannot read {other} elements as numbers here"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_checked_against_bytes() {
        assert!(Tensor::from_raw(DType::F32, vec![2], Bytes::from_static(&[0; 8])).is_ok());
        assert!(Tensor::from_raw(DType::F32, vec![3], Bytes::from_static(&[0; 8])).is_err());
        assert!(Tensor::from_raw(DType::F32, vec![1 << 40, 1 << 40], Bytes::new()).is_err());
        assert!(Tensor::from_raw(DType::I4, vec![3], Bytes::from_static(&[0; 2])).is_ok());
    }

    #[test]
    fn widening() {
        let t = Tensor::from_i64(vec![2], &[-1, 7]).unwrap();
        assert_eq!(t.to_i64_vec().unwrap(), vec![-1, 7]);
        assert_eq!(Tensor::scalar_f32(1.5).to_f64_vec().unwrap(), vec![1.5]);
    }
}
