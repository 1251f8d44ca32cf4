//! The conformance harness: every case of the onnx 1.23.2 backend test data (generated under
//! target/onnx-backend by tests/onnx_conformance/gen_cases.py) through the reference runtime,
//! compared as onnx's backend runner compares (rtol 1e-3, atol 1e-7; exact for strings, ints and
//! bools). tests/onnx_conformance/expected/runtime.txt lists the cases that must pass: any of them
//! failing fails the test; newly passing cases are reported. `FERRY_BLESS=1` rewrites the list.

use ferry_ir::{DType, ValueType};
use ferry_onnx::proto;
use ferry_runtime::array::Array;
use ferry_runtime::{Prepared, Value};
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SUITES: [&str; 4] = ["node", "simple", "pytorch-converted", "pytorch-operator"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn decode_value(bytes: &[u8], ty: &ValueType) -> Result<Value, String> {
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

fn close(got: &Value, want: &Value, path: &str) -> Result<(), String> {
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

fn run_case(dir: &Path) -> Result<(), String> {
    let model = ferry_onnx::load(&dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    let prepared = Prepared::new(&model).map_err(|e| format!("prepare: {e}"))?;
    let g = prepared.graph();
    let data = dir.join("test_data_set_0");
    let free: Vec<usize> = g.inputs.iter().copied().filter(|i| g.initializer(*i).is_none()).collect();
    let mut inputs = Vec::new();
    for (k, id) in free.iter().enumerate() {
        let p = data.join(format!("input_{k}.pb"));
        let Ok(bytes) = std::fs::read(&p) else { continue };
        inputs.push((g.values[*id].name.clone(), decode_value(&bytes, &g.values[*id].ty)?));
    }
    let outputs = prepared.run(inputs).map_err(|e| format!("run: {e}"))?;
    for (k, got) in outputs.iter().enumerate() {
        let id = g.outputs[k];
        let Ok(bytes) = std::fs::read(data.join(format!("output_{k}.pb"))) else { continue };
        let want = decode_value(&bytes, &g.values[id].ty)?;
        close(got, &want, &format!("output {k} ('{}')", g.values[id].name))?;
    }
    Ok(())
}

#[test]
fn onnx_backend_cases_run_on_the_reference_runtime() {
    let root = repo().join("target/onnx-backend");
    if !root.join(".stamp").exists() {
        eprintln!("SKIPPED: no backend test data; run tests/onnx_conformance/gen_cases.py (scripts/test.sh does)");
        return;
    }
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
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|s| {
        let chunks: Vec<Vec<String>> = (0..2).map(|t| cases.iter().skip(t).step_by(2).cloned().collect()).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let root = &root;
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|c| {
                            let dir = root.join(&c);
                            let r = std::panic::catch_unwind(|| run_case(&dir))
                                .unwrap_or_else(|_| Err("PANIC (a bug: see the message above)".into()));
                            (c, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let passed: BTreeSet<&str> = results.iter().filter(|(_, r)| r.is_ok()).map(|(c, _)| c.as_str()).collect();
    let log: String = results
        .iter()
        .map(|(c, r)| format!("{c}\t{}\n", r.as_ref().err().map_or("ok", |e| e.lines().next().unwrap_or(""))))
        .collect();
    std::fs::write(root.join("runtime-results.txt"), log).unwrap();
    let doc_path = repo().join("docs/runtime-conformance.md");
    let failing: Vec<(&String, String)> = results
        .iter()
        .filter_map(|(c, r)| r.as_ref().err().map(|e| (c, e.lines().next().unwrap_or("").replace('|', "\\|"))))
        .collect();
    if std::env::var_os("FERRY_BLESS").is_some() {
        let mut doc = String::from(
            "# Reference runtime: backend cases that do not pass\n\n\
             <!-- Written by crates/ferry-runtime/tests/onnx_backend.rs (FERRY_BLESS=1); the test fails when a\n\
             failing case is missing here. -->\n\n",
        );
        doc.push_str(&format!(
            "onnx 1.23.2 backend data: {} of {} cases pass on the reference runtime. The rest, with the\n\
             reason each gives:\n\n| case | reason |\n|---|---|\n",
            passed.len(),
            results.len()
        ));
        for (c, why) in &failing {
            doc.push_str(&format!("| {c} | {why} |\n"));
        }
        std::fs::write(&doc_path, doc).unwrap();
    }
    let documented = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let undocumented: Vec<&&String> =
        failing.iter().map(|(c, _)| c).filter(|c| !documented.contains(&format!("| {c} |"))).collect();
    let list = repo().join("tests/onnx_conformance/expected/runtime.txt");
    if std::env::var_os("FERRY_BLESS").is_some() {
        let text: String = passed.iter().map(|c| format!("{c}\n")).collect();
        std::fs::write(&list, text).unwrap();
    }
    let expected: BTreeSet<String> = std::fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let regressions: Vec<&String> = expected.iter().filter(|c| !passed.contains(c.as_str())).collect();
    let new: Vec<&&str> = passed.iter().filter(|c| !expected.contains(**c)).collect();
    let panics = results.iter().filter(|(_, r)| r.as_ref().is_err_and(|e| e.starts_with("PANIC"))).count();
    if !new.is_empty() {
        eprintln!("{} case(s) newly pass; add them with FERRY_BLESS=1", new.len());
    }
    for c in &regressions {
        let why =
            results.iter().find(|(n, _)| n == *c).and_then(|(_, r)| r.as_ref().err().cloned()).unwrap_or_default();
        eprintln!("REGRESSION {c}: {why}");
    }
    println!("reference runtime on the onnx backend data: details in target/onnx-backend/runtime-results.txt");
    println!("{} passed, {} failed", passed.len(), results.len() - passed.len());
    assert!(regressions.is_empty(), "{} expected case(s) no longer pass", regressions.len());
    assert!(
        undocumented.is_empty(),
        "failing cases missing from docs/runtime-conformance.md (regenerate with FERRY_BLESS=1): {undocumented:?}"
    );
    assert_eq!(panics, 0, "kernels panicked (see runtime-results.txt)");
}
