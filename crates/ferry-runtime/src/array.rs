//! Typed n-dimensional arrays for kernels. The IR keeps element bytes (`Tensor`); kernels work on
//! `ndarray` arrays of the element type. Types without a native Rust form (float8, int4, ...) are
//! not represented here: kernels that support them convert explicitly.

use bytes::Bytes;
use ferry_ir::{DType, Tensor, TensorData};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
    Str(ArrayD<Bytes>),
}

/// Applies `$body` to the inner array of every variant, binding it as `$a`.
#[macro_export]
macro_rules! each_array {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            $crate::array::Array::F32($a) => $body,
            $crate::array::Array::F64($a) => $body,
            $crate::array::Array::F16($a) => $body,
            $crate::array::Array::BF16($a) => $body,
            $crate::array::Array::I8($a) => $body,
            $crate::array::Array::I16($a) => $body,
            $crate::array::Array::I32($a) => $body,
            $crate::array::Array::I64($a) => $body,
            $crate::array::Array::U8($a) => $body,
            $crate::array::Array::U16($a) => $body,
            $crate::array::Array::U32($a) => $body,
            $crate::array::Array::U64($a) => $body,
            $crate::array::Array::Bool($a) => $body,
            $crate::array::Array::Str($a) => $body,
        }
    };
}

/// Like `each_array!`, but rebuilds the same variant from the body's array.
#[macro_export]
macro_rules! map_array {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            $crate::array::Array::F32($a) => $crate::array::Array::F32($body),
            $crate::array::Array::F64($a) => $crate::array::Array::F64($body),
            $crate::array::Array::F16($a) => $crate::array::Array::F16($body),
            $crate::array::Array::BF16($a) => $crate::array::Array::BF16($body),
            $crate::array::Array::I8($a) => $crate::array::Array::I8($body),
            $crate::array::Array::I16($a) => $crate::array::Array::I16($body),
            $crate::array::Array::I32($a) => $crate::array::Array::I32($body),
            $crate::array::Array::I64($a) => $crate::array::Array::I64($body),
            $crate::array::Array::U8($a) => $crate::array::Array::U8($body),
            $crate::array::Array::U16($a) => $crate::array::Array::U16($body),
            $crate::array::Array::U32($a) => $crate::array::Array::U32($body),
            $crate::array::Array::U64($a) => $crate::array::Array::U64($body),
            $crate::array::Array::Bool($a) => $crate::array::Array::Bool($body),
            $crate::array::Array::Str($a) => $crate::array::Array::Str($body),
        }
    };
}

fn shape_usize(shape: &[u64]) -> Result<Vec<usize>, String> {
    shape.iter().map(|d| usize::try_from(*d).map_err(|_| format!("dimension {d} does not fit in memory"))).collect()
}

macro_rules! decode {
    ($raw:expr, $shape:expr, $t:ty, $n:expr, $conv:expr) => {{
        let v: Vec<$t> = $raw.chunks_exact($n).map(|c| $conv(c.try_into().unwrap())).collect();
        ArrayD::from_shape_vec(IxDyn($shape), v).map_err(|e| e.to_string())?
    }};
}

impl Array {
    pub fn from_tensor(t: &Tensor) -> Result<Array, String> {
        let shape = shape_usize(&t.shape)?;
        let s = &shape[..];
        let raw = match &t.data {
            TensorData::Raw(b) => b.as_ref(),
            TensorData::Strings(v) => {
                return Ok(Array::Str(ArrayD::from_shape_vec(IxDyn(s), v.clone()).map_err(|e| e.to_string())?));
            }
        };
        Ok(match t.dtype {
            DType::F32 => Array::F32(decode!(raw, s, f32, 4, f32::from_le_bytes)),
            DType::F64 => Array::F64(decode!(raw, s, f64, 8, f64::from_le_bytes)),
            DType::F16 => Array::F16(decode!(raw, s, f16, 2, f16::from_le_bytes)),
            DType::BF16 => Array::BF16(decode!(raw, s, bf16, 2, bf16::from_le_bytes)),
            DType::I8 => Array::I8(decode!(raw, s, i8, 1, i8::from_le_bytes)),
            DType::I16 => Array::I16(decode!(raw, s, i16, 2, i16::from_le_bytes)),
            DType::I32 => Array::I32(decode!(raw, s, i32, 4, i32::from_le_bytes)),
            DType::I64 => Array::I64(decode!(raw, s, i64, 8, i64::from_le_bytes)),
            DType::U8 => Array::U8(decode!(raw, s, u8, 1, u8::from_le_bytes)),
            DType::U16 => Array::U16(decode!(raw, s, u16, 2, u16::from_le_bytes)),
            DType::U32 => Array::U32(decode!(raw, s, u32, 4, u32::from_le_bytes)),
            DType::U64 => Array::U64(decode!(raw, s, u64, 8, u64::from_le_bytes)),
            DType::Bool => Array::Bool(decode!(raw, s, bool, 1, |b: [u8; 1]| b[0] != 0)),
            other => return Err(format!("element type {other} is not supported by the reference kernels yet")),
        })
    }

    pub fn into_tensor(self) -> Tensor {
        fn bytes<T: Copy>(a: ArrayD<T>, enc: impl Fn(T) -> Vec<u8>) -> Bytes {
            Bytes::from(a.iter().flat_map(|v| enc(*v)).collect::<Vec<u8>>())
        }
        let dtype = self.dtype();
        let shape: Vec<u64> = self.shape().iter().map(|d| *d as u64).collect();
        let data = match self {
            Array::F32(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::F64(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::F16(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::BF16(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::I8(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::I16(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::I32(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::I64(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::U8(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::U16(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::U32(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::U64(a) => bytes(a, |v| v.to_le_bytes().to_vec()),
            Array::Bool(a) => bytes(a, |v| vec![v as u8]),
            Array::Str(a) => {
                return Tensor { dtype, shape, data: TensorData::Strings(a.iter().cloned().collect()) };
            }
        };
        Tensor { dtype, shape, data: TensorData::Raw(data) }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Array::F32(_) => DType::F32,
            Array::F64(_) => DType::F64,
            Array::F16(_) => DType::F16,
            Array::BF16(_) => DType::BF16,
            Array::I8(_) => DType::I8,
            Array::I16(_) => DType::I16,
            Array::I32(_) => DType::I32,
            Array::I64(_) => DType::I64,
            Array::U8(_) => DType::U8,
            Array::U16(_) => DType::U16,
            Array::U32(_) => DType::U32,
            Array::U64(_) => DType::U64,
            Array::Bool(_) => DType::Bool,
            Array::Str(_) => DType::String,
        }
    }

    pub fn shape(&self) -> &[usize] {
        each_array!(self, a => a.shape())
    }

    /// Elements as f64 (numbers and bools; strings are an error).
    pub fn to_f64(&self) -> Result<ArrayD<f64>, String> {
        Ok(match self {
            Array::F32(a) => a.mapv(|v| v as f64),
            Array::F64(a) => a.clone(),
            Array::F16(a) => a.mapv(|v| v.to_f64()),
            Array::BF16(a) => a.mapv(|v| v.to_f64()),
            Array::I8(a) => a.mapv(|v| v as f64),
            Array::I16(a) => a.mapv(|v| v as f64),
            Array::I32(a) => a.mapv(|v| v as f64),
            Array::I64(a) => a.mapv(|v| v as f64),
            Array::U8(a) => a.mapv(|v| v as f64),
            Array::U16(a) => a.mapv(|v| v as f64),
            Array::U32(a) => a.mapv(|v| v as f64),
            Array::U64(a) => a.mapv(|v| v as f64),
            Array::Bool(a) => a.mapv(|v| v as u8 as f64),
            Array::Str(_) => return Err("expected numbers, found strings".into()),
        })
    }

    /// Integer elements as i64 (for indices, axes, shapes).
    pub fn to_i64(&self) -> Result<ArrayD<i64>, String> {
        Ok(match self {
            Array::I8(a) => a.mapv(|v| v as i64),
            Array::I16(a) => a.mapv(|v| v as i64),
            Array::I32(a) => a.mapv(|v| v as i64),
            Array::I64(a) => a.clone(),
            Array::U8(a) => a.mapv(|v| v as i64),
            Array::U16(a) => a.mapv(|v| v as i64),
            Array::U32(a) => a.mapv(|v| v as i64),
            Array::U64(a) => a.mapv(|v| v as i64),
            Array::Bool(a) => a.mapv(|v| v as i64),
            other => return Err(format!("expected integers, found {}", other.dtype())),
        })
    }

    /// Builds an array of `dtype` from f64 values (rounding toward zero for integers, as C casts do).
    pub fn from_f64(dtype: DType, a: ArrayD<f64>) -> Result<Array, String> {
        Ok(match dtype {
            DType::F32 => Array::F32(a.mapv(|v| v as f32)),
            DType::F64 => Array::F64(a),
            DType::F16 => Array::F16(a.mapv(f16::from_f64)),
            DType::BF16 => Array::BF16(a.mapv(bf16::from_f64)),
            DType::I8 => Array::I8(a.mapv(|v| v as i8)),
            DType::I16 => Array::I16(a.mapv(|v| v as i16)),
            DType::I32 => Array::I32(a.mapv(|v| v as i32)),
            DType::I64 => Array::I64(a.mapv(|v| v as i64)),
            DType::U8 => Array::U8(a.mapv(|v| v as u8)),
            DType::U16 => Array::U16(a.mapv(|v| v as u16)),
            DType::U32 => Array::U32(a.mapv(|v| v as u32)),
            DType::U64 => Array::U64(a.mapv(|v| v as u64)),
            DType::Bool => Array::Bool(a.mapv(|v| v != 0.0)),
            other => return Err(format!("cannot build a {other} array here")),
        })
    }

    pub fn from_i64(dtype: DType, a: ArrayD<i64>) -> Result<Array, String> {
        Ok(match dtype {
            DType::I64 => Array::I64(a),
            DType::I32 => Array::I32(a.mapv(|v| v as i32)),
            DType::I16 => Array::I16(a.mapv(|v| v as i16)),
            DType::I8 => Array::I8(a.mapv(|v| v as i8)),
            DType::U8 => Array::U8(a.mapv(|v| v as u8)),
            DType::U16 => Array::U16(a.mapv(|v| v as u16)),
            DType::U32 => Array::U32(a.mapv(|v| v as u32)),
            DType::U64 => Array::U64(a.mapv(|v| v as u64)),
            DType::Bool => Array::Bool(a.mapv(|v| v != 0)),
            other => Array::from_f64(other, a.mapv(|v| v as f64))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_through_arrays() {
        let t = Tensor::from_f32(vec![2, 2], &[1.0, -2.0, 3.5, 0.0]).unwrap();
        let a = Array::from_tensor(&t).unwrap();
        assert_eq!(a.shape(), &[2, 2]);
        assert_eq!(a.into_tensor(), t);
        let i = Tensor::from_i64(vec![3], &[1, -1, 7]).unwrap();
        assert_eq!(Array::from_tensor(&i).unwrap().to_i64().unwrap().into_raw_vec_and_offset().0, vec![1, -1, 7]);
    }
}
