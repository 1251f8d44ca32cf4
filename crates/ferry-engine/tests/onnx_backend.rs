//! The conformance harness for the optimized path: every case of the onnx 1.23.2 backend data
//! (target/onnx-backend, made by tests/onnx_conformance/gen_cases.py) through `ferry_opt::optimize`
//! and the engine (as `ferry::prepare` runs the optimized path), compared
//! as onnx's backend runner compares. tests/onnx_conformance/expected/engine.txt lists the cases
//! that must pass here (`FERRY_BLESS=1` rewrites it); every case the reference runtime must pass
//! (expected/runtime.txt) must pass here too, so both paths give the same verdicts.

#[path = "../../ferry-runtime/tests/common/backend.rs"]
mod backend;

use ferry_engine::{Engine, EngineOptions, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `ferry::prepare` does for the optimized path: graph optimizations, then the engine.
fn run_engine(model: &ferry_ir::Model, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, String> {
    let (model, _) = ferry_opt::optimize(model, &Default::default()).map_err(|e| format!("optimize: {e}"))?;
    let engine = Engine::compile(&model, &EngineOptions { threads: 1 }).map_err(|e| format!("compile: {e}"))?;
    engine.run(inputs).map_err(|e| format!("run: {e}"))
}

fn read_list(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

#[test]
fn onnx_backend_cases_run_on_the_engine() {
    let root = repo().join("target/onnx-backend");
    if !root.join(".stamp").exists() {
        eprintln!("SKIPPED: no backend test data; run tests/onnx_conformance/gen_cases.py (scripts/test.sh does)");
        return;
    }
    let cases = backend::cases(&root);
    let results = backend::run_all(&root, &cases, &run_engine);
    let passed: BTreeSet<&str> = results.iter().filter(|(_, r)| r.is_ok()).map(|(c, _)| c.as_str()).collect();
    let log: String = results
        .iter()
        .map(|(c, r)| format!("{c}\t{}\n", r.as_ref().err().map_or("ok", |e| e.lines().next().unwrap_or(""))))
        .collect();
    std::fs::write(root.join("engine-results.txt"), log).unwrap();
    let list = repo().join("tests/onnx_conformance/expected/engine.txt");
    if std::env::var_os("FERRY_BLESS").is_some() {
        let text: String = passed.iter().map(|c| format!("{c}\n")).collect();
        std::fs::write(&list, text).unwrap();
    }
    let expected = read_list(&list);
    let reference = read_list(&repo().join("tests/onnx_conformance/expected/runtime.txt"));
    let why = |c: &str| results.iter().find(|(n, _)| n == c).and_then(|(_, r)| r.as_ref().err().cloned());
    let regressions: Vec<&String> = expected.iter().filter(|c| !passed.contains(c.as_str())).collect();
    let behind_reference: Vec<&String> = reference.iter().filter(|c| !passed.contains(c.as_str())).collect();
    let new: Vec<&&str> = passed.iter().filter(|c| !expected.contains(**c)).collect();
    let panics = results.iter().filter(|(_, r)| r.as_ref().is_err_and(|e| e.starts_with("PANIC"))).count();
    if !new.is_empty() {
        eprintln!("{} case(s) newly pass; add them with FERRY_BLESS=1", new.len());
    }
    for c in &regressions {
        eprintln!("REGRESSION {c}: {}", why(c).unwrap_or_default());
    }
    for c in &behind_reference {
        eprintln!("DIFFERS FROM REFERENCE {c}: {}", why(c).unwrap_or_default());
    }
    println!("optimized engine on the onnx backend data: details in target/onnx-backend/engine-results.txt");
    println!("{} passed, {} failed", passed.len(), results.len() - passed.len());
    assert!(regressions.is_empty(), "{} expected case(s) no longer pass", regressions.len());
    assert!(behind_reference.is_empty(), "{} case(s) pass on the reference runtime only", behind_reference.len());
    assert_eq!(panics, 0, "the engine panicked (see engine-results.txt)");
}
