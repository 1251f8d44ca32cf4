//! The conformance harness: every case of the onnx 1.23.2 backend test data (generated under
//! target/onnx-backend by tests/onnx_conformance/gen_cases.py) through the reference runtime,
//! compared as onnx's backend runner compares (rtol 1e-3, atol 1e-7; exact for strings, ints and
//! bools). tests/onnx_conformance/expected/runtime.txt lists the cases that must pass: any of them
//! failing fails the test; newly passing cases are reported. `FERRY_BLESS=1` rewrites the list.

#[path = "common/backend.rs"]
mod backend;

use ferry_runtime::{Prepared, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_reference(model: &ferry_ir::Model, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, String> {
    let prepared = Prepared::new(model).map_err(|e| format!("prepare: {e}"))?;
    prepared.run(inputs).map_err(|e| format!("run: {e}"))
}

#[test]
fn onnx_backend_cases_run_on_the_reference_runtime() {
    let root = repo().join("target/onnx-backend");
    if !root.join(".stamp").exists() {
        eprintln!("SKIPPED: no backend test data; run tests/onnx_conformance/gen_cases.py (scripts/test.sh does)");
        return;
    }
    let cases = backend::cases(&root);
    let results = backend::run_all(&root, &cases, &run_reference);
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
