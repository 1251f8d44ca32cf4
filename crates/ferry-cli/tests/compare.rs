//! `ferry compare`, `ferry convert --verify` and `ferry ops` end to end. The MXNet model comes
//! from the shared model zoo (../shared/mxnet/models beside the workspace); the tests that need it
//! skip with a message when it is missing.

use ferry_onnx::proto::{self, tensor_proto::DataType};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn resnet20() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mxnet/models/cifar_resnet20_v1");
    if dir.join("model-symbol.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no MXNet model at {} (the shared model zoo is missing)", dir.display());
        None
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Converts the MXNet model to ONNX in `tmp`.
fn convert(dir: &Path, tmp: &Path) -> PathBuf {
    let onnx = tmp.join("resnet20.onnx");
    let o = ferry(&["convert", s(&dir.join("model-symbol.json")), "-o", s(&onnx), "--input-shape", "data=1,3,32,32"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    onnx
}

/// A copy of `onnx` with one element of its largest float initializer changed by 0.5.
fn corrupt(onnx: &Path, out: &Path) -> String {
    let mut m = proto::ModelProto::decode(std::fs::read(onnx).unwrap().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let init = g
        .initializer
        .iter_mut()
        .filter(|t| t.data_type == Some(DataType::Float as i32))
        .max_by_key(|t| t.dims.iter().product::<i64>())
        .expect("a float initializer");
    if let Some(raw) = init.raw_data.as_mut() {
        let mut bytes = raw.to_vec();
        let v = f32::from_le_bytes(bytes[..4].try_into().unwrap()) + 0.5;
        bytes[..4].copy_from_slice(&v.to_le_bytes());
        *raw = bytes.into();
    } else {
        init.float_data[0] += 0.5;
    }
    let name = init.name.clone().unwrap_or_default();
    std::fs::write(out, m.encode_to_vec()).unwrap();
    name
}

#[test]
fn compare_agrees_on_a_right_conversion_and_catches_a_corrupted_weight() {
    let Some(dir) = resnet20() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let onnx = convert(&dir, tmp.path());
    let symbol = dir.join("model-symbol.json");

    // Random inputs (the default), text report.
    let o = ferry(&["compare", s(&symbol), s(&onnx), "--input-shape", "data=1,3,32,32", "--seed", "7"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("agree"), "{}", text(&o));

    // The zoo's own input, JSON report.
    let input = format!("data={}", dir.join("input_0.npy").display());
    let o = ferry(&["compare", s(&symbol), s(&onnx), "--input", &input, "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["agree"], true);
    let outs = j["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["pass"], true);
    assert_eq!(outs[0]["shape"]["a"], serde_json::json!([1, 10]));
    assert_eq!(outs[0]["dtype"]["match"], true);
    assert!(outs[0]["max_abs_error"].as_f64().unwrap() <= 1e-4, "{j}");

    // One weight changed: the outputs differ and compare says so with exit 1.
    let bad = tmp.path().join("corrupted.onnx");
    let name = corrupt(&onnx, &bad);
    let o = ferry(&["compare", s(&symbol), s(&bad), "--input", &input, "--json"]);
    assert_eq!(code(&o), 1, "corrupting {name} went unnoticed: {}", text(&o));
    let j = json(&o);
    assert_eq!(j["agree"], false);
    let out = &j["outputs"][0];
    assert_eq!(out["pass"], false);
    assert!(out["mismatches"].as_u64().unwrap() > 0, "{j}");
    assert!(out["max_abs_error"].as_f64().unwrap() > 1e-5, "{j}");
    assert_eq!(out["worst"]["index"].as_array().unwrap().len(), 2, "{j}");

    // ONNX against ONNX, text: the verdict is printed.
    let o = ferry(&["compare", s(&onnx), s(&bad), "--random-inputs", "--seed", "3"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"), "{}", text(&o));
}

#[test]
fn convert_verify_checks_the_written_file() {
    let Some(dir) = resnet20() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("v.onnx");
    let o = ferry(&[
        "convert",
        s(&dir.join("model-symbol.json")),
        "-o",
        s(&onnx),
        "--input-shape",
        "data=1,3,32,32",
        "--verify",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json(&o)["verify"]["agree"], true);
    assert!(onnx.exists());
}

#[test]
fn compare_runs_one_model_on_both_paths() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx");
    let args = ["compare", s(&model), s(&model), "--input-shape", "image=3,3,16,16", "--path-b", "optimized"];
    let o = ferry(&[&args[..], &["--threads", "2", "--json"]].concat());
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json(&o)["agree"], true);
    let o = ferry(&["compare", "a.onnx", "b.onnx", "--path-a", "fastest"]);
    assert_eq!(code(&o), 2, "an unknown path is a usage error: {}", text(&o));
}

#[test]
fn run_takes_a_path_and_threads() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx");
    let mut outs = Vec::new();
    for path in ["reference", "optimized"] {
        let args = ["run", s(&model), "--random-inputs", "--input-shape", "image=2,3,16,16", "--json"];
        let o = ferry(&[&args[..], &["--path", path, "--threads", "1"]].concat());
        assert_eq!(code(&o), 0, "{}", text(&o));
        outs.push(json(&o)["outputs"].clone());
    }
    // Same dtype and shape; statistics equal up to float rounding (fused kernels sum in another order).
    let (a, b) = (&outs[0][0], &outs[1][0]);
    assert_eq!((&a["dtype"], &a["shape"]), (&b["dtype"], &b["shape"]));
    for stat in ["min", "max", "mean"] {
        let (x, y) = (a[stat].as_f64().unwrap(), b[stat].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-3), "{stat}: {x} vs {y}");
    }
}

#[test]
fn ops_lists_every_onnx_op_from_the_schema_table() {
    let o = ferry(&["ops", "--format", "onnx", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["format"], "onnx");
    let ops = j["ops"].as_array().unwrap();
    let mut want: Vec<(&str, &str)> = ferry_onnx::schema_table::SCHEMAS.iter().map(|s| (s.domain, s.name)).collect();
    want.sort();
    want.dedup();
    assert_eq!(ops.len(), want.len());
    let find = |name: &str| ops.iter().find(|o| o["op"] == name && o["domain"] == "ai.onnx").unwrap();
    assert_eq!(find("Conv")["status"], "core");
    assert!(find("Conv")["versions"].as_array().unwrap().contains(&serde_json::json!(11)));
    assert!(ops.iter().all(|o| o["status"] == "core" || o["status"] == "carried"));

    let o = ferry(&["ops", "--format", "mxnet", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j = json(&o);
    assert!(j["ops"].as_array().unwrap().iter().any(|o| o["op"] == "Convolution"));
}
