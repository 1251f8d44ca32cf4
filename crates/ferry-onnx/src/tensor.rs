//! `TensorProto` <-> core tensors. Every size read from the file is checked against the bytes
//! actually present before anything is allocated.

use crate::error::{OnnxError, Result};
use crate::external::ExternalData;
use crate::proto;
use bytes::Bytes;
use ferry_ir::tensor::checked_numel;
use ferry_ir::{DType, Tensor};

pub fn dtype_from_code(code: i32, what: &str) -> Result<DType> {
    DType::from_onnx_code(code)
        .ok_or_else(|| OnnxError::invalid(format!("{what}: unknown or undefined element type {code}")))
}

pub fn dims_from_proto(dims: &[i64], what: &str) -> Result<Vec<u64>> {
    dims.iter()
        .map(|d| {
            u64::try_from(*d).map_err(|_| OnnxError::invalid(format!("{what}: negative dimension {d} in {dims:?}")))
        })
        .collect()
}

/// Decodes a tensor. `ext` resolves external data; pass `None` to refuse it (e.g. inside an
/// attribute of a model read from memory).
pub fn tensor_from_proto(t: &proto::TensorProto, ext: &mut ExternalData) -> Result<Tensor> {
    let name = t.name.as_deref().unwrap_or("");
    let what = format!("tensor '{name}'");
    let dtype = dtype_from_code(t.data_type.unwrap_or(0), &what)?;
    let shape = dims_from_proto(&t.dims, &what)?;
    let numel = checked_numel(&shape).map_err(|e| OnnxError::invalid(format!("{what}: {e}")))?;
    if t.data_location == Some(proto::tensor_proto::DataLocation::External as i32) {
        let mut location = None;
        let (mut offset, mut length) = (None, None);
        for kv in &t.external_data {
            let value = kv.value.as_deref().unwrap_or("");
            let parse = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| OnnxError::invalid(format!("{what}: external data field '{v}' is not a byte count")))
            };
            match kv.key.as_deref().unwrap_or("") {
                "location" => location = Some(value.to_string()),
                "offset" => offset = Some(parse(value)?),
                "length" => length = Some(parse(value)?),
                _ => {}
            }
        }
        let location =
            location.ok_or_else(|| OnnxError::invalid(format!("{what}: external data without a location")))?;
        if dtype == DType::String {
            return Err(OnnxError::invalid(format!("{what}: string tensors cannot be stored externally")));
        }
        let bytes = ext.read(&location, offset, length)?;
        return Tensor::from_raw(dtype, shape, bytes).map_err(|e| OnnxError::invalid(format!("{what}: {e}")));
    }
    if dtype == DType::String {
        return Tensor::from_strings(shape, t.string_data.clone())
            .map_err(|e| OnnxError::invalid(format!("{what}: {e}")));
    }
    if let Some(raw) = &t.raw_data {
        return Tensor::from_raw(dtype, shape, raw.clone()).map_err(|e| OnnxError::invalid(format!("{what}: {e}")));
    }
    let bytes = typed_fields_to_raw(t, dtype, numel).map_err(|e| OnnxError::invalid(format!("{what}: {e}")))?;
    Tensor::from_raw(dtype, shape, bytes).map_err(|e| OnnxError::invalid(format!("{what}: {e}")))
}

fn count_err(field: &str, have: usize, want: u64) -> String {
    format!("{field} holds {have} values but the shape needs {want}")
}

/// Converts the typed repeated fields into the packed little-endian layout of `raw_data`.
fn typed_fields_to_raw(t: &proto::TensorProto, dtype: DType, numel: u64) -> std::result::Result<Bytes, String> {
    use DType::*;
    let mut out: Vec<u8> = Vec::new();
    let check = |have: usize, want: u64, field: &str| {
        if have as u64 != want { Err(count_err(field, have, want)) } else { Ok(()) }
    };
    match dtype {
        F32 => {
            check(t.float_data.len(), numel, "float_data")?;
            out.extend(t.float_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        C64 => {
            check(t.float_data.len(), numel.saturating_mul(2), "float_data")?;
            out.extend(t.float_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        F64 => {
            check(t.double_data.len(), numel, "double_data")?;
            out.extend(t.double_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        C128 => {
            check(t.double_data.len(), numel.saturating_mul(2), "double_data")?;
            out.extend(t.double_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        I64 => {
            check(t.int64_data.len(), numel, "int64_data")?;
            out.extend(t.int64_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        U32 => {
            check(t.uint64_data.len(), numel, "uint64_data")?;
            out.extend(t.uint64_data.iter().flat_map(|v| (*v as u32).to_le_bytes()));
        }
        U64 => {
            check(t.uint64_data.len(), numel, "uint64_data")?;
            out.extend(t.uint64_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        I32 => {
            check(t.int32_data.len(), numel, "int32_data")?;
            out.extend(t.int32_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        I16 | U16 | F16 | BF16 => {
            check(t.int32_data.len(), numel, "int32_data")?;
            out.extend(t.int32_data.iter().flat_map(|v| (*v as u16).to_le_bytes()));
        }
        I8 | U8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => {
            check(t.int32_data.len(), numel, "int32_data")?;
            out.extend(t.int32_data.iter().map(|v| *v as u8));
        }
        I4 | U4 | F4E2M1 | I2 | U2 => {
            // Each int32_data entry holds one packed byte (two 4-bit or four 2-bit elements).
            let want = dtype.storage_bytes(numel).unwrap_or(0);
            check(t.int32_data.len(), want, "int32_data")?;
            out.extend(t.int32_data.iter().map(|v| *v as u8));
        }
        F6E2M3 | F6E3M2 => {
            check(t.int32_data.len(), numel, "int32_data")?;
            let mut bits: u32 = 0;
            let mut nbits = 0;
            for v in &t.int32_data {
                bits |= ((*v as u32) & 0x3f) << nbits;
                nbits += 6;
                while nbits >= 8 {
                    out.push(bits as u8);
                    bits >>= 8;
                    nbits -= 8;
                }
            }
            if nbits > 0 {
                out.push(bits as u8);
            }
        }
        String => unreachable!("strings are handled by the caller"),
    }
    Ok(Bytes::from(out))
}

/// Encodes a tensor; raw data is shared with the tensor, not copied.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> proto::TensorProto {
    let mut p = proto::TensorProto {
        name: (!name.is_empty()).then(|| name.to_string()),
        dims: t.shape.iter().map(|d| *d as i64).collect(),
        data_type: Some(t.dtype.onnx_code()),
        ..Default::default()
    };
    match &t.data {
        ferry_ir::TensorData::Raw(b) => p.raw_data = Some(b.clone()),
        ferry_ir::TensorData::Strings(s) => p.string_data = s.clone(),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_are_checked_and_packed() {
        let mut ext = ExternalData::new(None);
        let t = proto::TensorProto {
            dims: vec![3],
            data_type: Some(22),
            int32_data: vec![0x21, 0x03],
            ..Default::default()
        };
        let got = tensor_from_proto(&t, &mut ext).unwrap();
        assert_eq!(got.raw().unwrap().as_ref(), &[0x21, 0x03]);
        let lying =
            proto::TensorProto { dims: vec![1 << 40], data_type: Some(1), float_data: vec![1.0], ..Default::default() };
        assert!(tensor_from_proto(&lying, &mut ext).is_err());
        let negative = proto::TensorProto { dims: vec![-1], data_type: Some(1), ..Default::default() };
        assert!(tensor_from_proto(&negative, &mut ext).is_err());
    }
}
