//! `ferry optimize`: writes a loadable model that agrees with the input (checked with
//! `ferry compare` on the reference runtime), reports what it did, refuses bad bindings
//! without leaving a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx")
}

#[test]
fn optimize_writes_an_equivalent_smaller_model_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("opt.onnx");
    let (input, output) = (example().display().to_string(), out.display().to_string());
    let o = ferry(&["optimize", &input, "-o", &output, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // tiny_cnn's Gemm imports as MatMul with a transposed constant weight: the Transpose folds.
    assert_eq!(report["nodes_before"], 11);
    assert_eq!(report["nodes_after"], 10);
    assert_eq!(report["passes"]["constant_folding"], 1);
    assert_eq!(report["opset"], 17, "the input's opset is kept");
    let c = ferry(&["compare", &input, &output, "--input-shape", "image=2,3,16,16", "--seed", "3"]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stdout));
}

#[test]
fn bad_input_shapes_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("opt.onnx");
    let (input, output) = (example().display().to_string(), out.display().to_string());
    for spec in ["image=2,3", "nope=1,3,16,16", "image=1,4,16,16"] {
        let o = ferry(&["optimize", &input, "-o", &output, "--input-shape", spec]);
        assert_eq!(o.status.code(), Some(1), "{spec}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--input-shape"), "{spec}");
        assert!(!out.exists());
    }
    let o = ferry(&["optimize", &input, "-o", &input]);
    assert_eq!(o.status.code(), Some(1), "refuses to overwrite its input");
}
