//! Reading the onnx backend test data and comparing values the way onnx's backend runner does
//! (rtol 1e-3, atol 1e-7; exact for strings, ints, bools and sub-byte types). Mirrors the
//! runtime's conformance harness (crates/ferry-runtime/tests/onnx_backend.rs).

use ferry_ir::{DType, ValueType};
use ferry_onnx::proto;
use ferry_runtime::Value;
use ferry_runtime::array::Array;
use prost::Message;

pub fn decode_value(bytes: &[u8], ty: &ValueType) -> Result<Value, String> {
    let mut ext = ferry_onnx::external::ExternalData::new(None);
    match ty {
        ValueType::Sequence(_) => {
            let s = proto::SequenceProto::decode(bytes).map_err(|e| e.to_string())?;
            let items =
                s.tensor_values.iter().map(|t| ferry_onnx::tensor::tensor_from_proto(t, &mut ext).map(Value::Tensor));
            Ok(Value::Sequence(items.collect::<Result<_, _>>().map_err(|e| e.to_string())?))
        }
        ValueType::Optional(inner) => {
            let o = proto::OptionalProto::decode(bytes).map_err(|e| e.to_string())?;
            if let Some(t) = &o.tensor_value {
                let t = ferry_onnx::tensor::tensor_from_proto(t, &mut ext).map_err(|e| e.to_string())?;
                return Ok(Value::Optional(Some(Box::new(Value::Tensor(t)))));
            }
            if let Some(s) = &o.sequence_value {
                let seq = decode_value(&s.encode_to_vec(), &ValueType::Sequence(inner.clone()))?;
                return Ok(Value::Optional(Some(Box::new(seq))));
            }
            Ok(Value::Optional(None))
        }
        _ => {
            let t = proto::TensorProto::decode(bytes).map_err(|e| e.to_string())?;
            Ok(Value::Tensor(ferry_onnx::tensor::tensor_from_proto(&t, &mut ext).map_err(|e| e.to_string())?))
        }
    }
}

pub fn close(got: &Value, want: &Value, path: &str) -> Result<(), String> {
    match (got, want) {
        (Value::Tensor(g), Value::Tensor(w)) => {
            if g.shape != w.shape {
                return Err(format!("{path}: shape {:?}, expected {:?}", g.shape, w.shape));
            }
            if g.dtype != w.dtype {
                return Err(format!("{path}: dtype {}, expected {}", g.dtype, w.dtype));
            }
            if ferry_runtime::lowbits::is_lowbits(w.dtype) {
                let (gv, wv) = (ferry_runtime::lowbits::to_f64(g)?, ferry_runtime::lowbits::to_f64(w)?);
                return match gv.iter().zip(&wv).position(|(a, b)| !(a == b || (a.is_nan() && b.is_nan()))) {
                    None => Ok(()),
                    Some(i) => Err(format!("{path}: element {i} is {}, expected {}", gv[i], wv[i])),
                };
            }
            let (ga, wa) = (Array::from_tensor(g)?, Array::from_tensor(w)?);
            if matches!(w.dtype, DType::String) || w.dtype.is_int() || w.dtype == DType::Bool {
                return if ga == wa { Ok(()) } else { Err(format!("{path}: values differ")) };
            }
            let rtol = if w.dtype == DType::BF16 { 1.0 / 64.0 } else { 1e-3 };
            let (gv, wv) = (ga.to_f64()?, wa.to_f64()?);
            for (i, (a, b)) in gv.iter().zip(wv.iter()).enumerate() {
                let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-7 + rtol * b.abs();
                if !ok {
                    return Err(format!("{path}: element {i} is {a}, expected {b}"));
                }
            }
            Ok(())
        }
        (Value::Sequence(g), Value::Sequence(w)) => {
            if g.len() != w.len() {
                return Err(format!("{path}: sequence of {} items, expected {}", g.len(), w.len()));
            }
            g.iter().zip(w).enumerate().try_for_each(|(i, (a, b))| close(a, b, &format!("{path}[{i}]")))
        }
        (Value::Optional(g), Value::Optional(w)) => match (g, w) {
            (None, None) => Ok(()),
            (Some(a), Some(b)) => close(a, b, path),
            _ => Err(format!("{path}: optional presence differs")),
        },
        (Value::Optional(Some(a)), b) => close(a, b, path),
        (a, b) => Err(format!("{path}: got a {}, expected a {}", a.kind(), b.kind())),
    }
}
