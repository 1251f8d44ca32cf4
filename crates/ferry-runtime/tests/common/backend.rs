//! The ONNX backend data as test cases: decoding inputs and expected outputs, and comparing as
//! onnx's backend runner compares (rtol 1e-3, atol 1e-7; exact for strings, ints and bools).
//! Shared by the conformance harnesses of the reference runtime and the optimized engine.

use ferry_ir::{DType, ValueType};
use ferry_onnx::proto;
use ferry_runtime::Value;
use ferry_runtime::array::Array;
use prost::Message;
use std::path::Path;

pub const SUITES: [&str; 4] = ["node", "simple", "pytorch-converted", "pytorch-operator"];

/// Every case under `root` (suite/name), sorted.
pub fn cases(root: &Path) -> Vec<String> {
    let mut cases = Vec::new();
    for suite in SUITES {
        let Ok(rd) = std::fs::read_dir(root.join(suite)) else { continue };
        for e in rd.flatten() {
            if e.path().join("model.onnx").exists() {
                cases.push(format!("{suite}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    cases.sort();
    cases
}

/// Runs `cases` on two threads; a panic is a failed case.
pub fn run_all(root: &Path, cases: &[String], run: RunFn) -> Vec<(String, Result<(), String>)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let chunk: Vec<String> = cases.iter().skip(t).step_by(2).cloned().collect();
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|c| {
                            let dir = root.join(&c);
                            let r = std::panic::catch_unwind(|| run_case(&dir, run))
                                .unwrap_or_else(|_| Err("PANIC (a bug: see the message above)".into()));
                            (c, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

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
                let enc = s.encode_to_vec();
                let seq = decode_value(&enc, &ValueType::Sequence(inner.clone()))?;
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
                // float8/float4/int4/int2: exact after decoding (NaN matches NaN, -0 matches 0).
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
        // Expected optionals are often stored as their content.
        (Value::Optional(Some(a)), b) => close(a, b, path),
        (a, b) => Err(format!("{path}: got a {}, expected a {}", a.kind(), b.kind())),
    }
}

/// Type of a function that runs a model on named inputs (one execution path).
pub type RunFn<'a> = &'a (
        dyn Fn(&ferry_ir::Model, Vec<(String, Value)>) -> Result<Vec<Value>, String> + Sync + std::panic::RefUnwindSafe
    );

/// Loads one case, runs it with `run`, and compares every output with the expected one.
pub fn run_case(dir: &Path, run: RunFn) -> Result<(), String> {
    let model = ferry_onnx::load(&dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    let g = &model.graph;
    let data = dir.join("test_data_set_0");
    let free: Vec<usize> = g.inputs.iter().copied().filter(|i| g.initializer(*i).is_none()).collect();
    let mut inputs = Vec::new();
    for (k, id) in free.iter().enumerate() {
        let p = data.join(format!("input_{k}.pb"));
        let Ok(bytes) = std::fs::read(&p) else { continue };
        inputs.push((g.values[*id].name.clone(), decode_value(&bytes, &g.values[*id].ty)?));
    }
    let outputs = run(&model, inputs)?;
    for (k, got) in outputs.iter().enumerate() {
        let id = g.outputs[k];
        let Ok(bytes) = std::fs::read(data.join(format!("output_{k}.pb"))) else { continue };
        let want = decode_value(&bytes, &g.values[id].ty)?;
        close(got, &want, &format!("output {k} ('{}')", g.values[id].name))?;
    }
    Ok(())
}
