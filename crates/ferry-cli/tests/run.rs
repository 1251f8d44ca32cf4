//! `ferry run` end to end. The reference outputs are the onnx backend test data's own
//! `output_K.pb` (under target/onnx-backend; the tests that need it skip with a message when the
//! data has not been generated).

use ferry_ir::{DType, Tensor, TensorData};
use ferry_onnx::proto;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

fn case(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-backend/node").join(name);
    if dir.join("model.onnx").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no backend test data at {} (run tests/onnx_conformance/gen_cases.py)", dir.display());
        None
    }
}

fn read_pb(path: &Path) -> Tensor {
    let p = proto::TensorProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    ferry_onnx::tensor::tensor_from_proto(&p, &mut ferry_onnx::external::ExternalData::new(None)).unwrap()
}

/// A .npy built by hand, so the test does not trust the writer it checks.
fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out
}

fn raw(t: &Tensor) -> &[u8] {
    match &t.data {
        TensorData::Raw(b) => b,
        TensorData::Strings(_) => panic!("strings"),
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    raw(t).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn assert_close(got: &Tensor, want: &Tensor) {
    assert_eq!((got.dtype, &got.shape), (want.dtype, &want.shape));
    for (a, b) in f32s(got).iter().zip(f32s(want)) {
        assert!((a - b).abs() <= 1e-7 + 1e-3 * b.abs(), "{a} vs {b}");
    }
}

#[test]
fn runs_a_backend_case_from_npy_and_pb_inputs() {
    let Some(dir) = case("test_add") else { return };
    let data = dir.join("test_data_set_0");
    let tmp = tempfile::tempdir().unwrap();
    let x = read_pb(&data.join("input_0.pb"));
    assert_eq!(x.dtype, DType::F32);
    let x_npy = tmp.path().join("x.npy");
    std::fs::write(&x_npy, npy("<f4", "(3, 4, 5)", raw(&x))).unwrap();
    let model = dir.join("model.onnx");
    let out = tmp.path().join("out");
    let npz = tmp.path().join("all.npz");
    let o = ferry(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        &format!("#0={}", x_npy.display()),
        "--input",
        &format!("#1={}", data.join("input_1.pb").display()),
        "--output-dir",
        out.to_str().unwrap(),
        "--format",
        "pb",
        "--outputs-npz",
        npz.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("f32[3,4,5]") && summary.contains("mean"), "{summary}");
    assert_close(&read_pb(&out.join("output_0.pb")), &read_pb(&data.join("output_0.pb")));
    let listing: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("outputs.json")).unwrap()).unwrap();
    assert_eq!(listing["outputs"][0]["shape"], serde_json::json!([3, 4, 5]));
    assert_eq!(listing["outputs"][0]["dtype"], "f32");
    let z = std::fs::read(&npz).unwrap();
    assert!(z.starts_with(b"PK\x03\x04") && z.windows(9).any(|w| w == b"sum.npy\x01\x00" || w.starts_with(b"sum.npy")));

    // The same run with .npy outputs and --json.
    let o = ferry(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        &format!("x={}", x_npy.display()),
        "--input",
        &format!("y={}", data.join("input_1.pb").display()),
        "--output-dir",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["outputs"][0]["shape"], serde_json::json!([3, 4, 5]));
    let got = std::fs::read(out.join("output_0.npy")).unwrap();
    let want = read_pb(&data.join("output_0.pb"));
    let body = &got[got.len() - 240..];
    let got = Tensor::from_raw(DType::F32, vec![3, 4, 5], bytes::Bytes::copy_from_slice(body)).unwrap();
    assert_close(&got, &want);
}

#[test]
fn random_inputs_are_deterministic() {
    let Some(dir) = case("test_add") else { return };
    let model = dir.join("model.onnx");
    let run = |seed: &str| {
        let o = ferry(&["run", model.to_str().unwrap(), "--random-inputs", "--seed", seed, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["outputs"].clone()
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert!(a[0]["mean"].is_number());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Each bad input is exit 1 with one message naming the problem.
#[test]
fn bad_inputs_are_one_clear_error() {
    let Some(dir) = case("test_add") else { return };
    let model = dir.join("model.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let y = dir.join("test_data_set_0/input_1.pb");
    let y_arg = format!("y={}", y.display());
    let write = |name: &str, bytes: Vec<u8>| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("x={}", p.display())
    };
    let good = vec![0u8; 240];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![y_arg.clone()], "input 'x'"),
        (vec![write("i64.npy", npy("<i8", "(3, 4, 5)", &[0; 480])), y_arg.clone()], "i64"),
        (vec![write("shape.npy", npy("<f4", "(4, 3, 5)", &good)), y_arg.clone()], "[4, 3, 5]"),
        (vec![write("short.npy", npy("<f4", "(3, 4, 5)", &good[..100])), y_arg.clone()], "truncated"),
        (vec![write("huge.npy", npy("<f4", "(1099511627776,)", &good)), y_arg.clone()], "truncated"),
        (vec![write("junk.npy", b"not numpy".to_vec()), y_arg.clone()], ".npy"),
    ];
    for (inputs, needle) in cases {
        let mut args = vec!["run".to_string(), model.display().to_string()];
        for i in &inputs {
            args.push("--input".into());
            args.push(i.clone());
        }
        let o = ferry(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{needle}: {err}");
    }
    // The expected type is named in a mistyped-input message.
    let o = ferry(&["run", model.to_str().unwrap(), "--input", &write("i64b.npy", npy("<i8", "(3, 4, 5)", &[0; 480]))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("expected f32 tensor of shape [3,4,5]"), "{err}");
}

#[test]
fn npz_inputs_are_read() {
    let Some(dir) = case("test_add") else { return };
    let data = dir.join("test_data_set_0");
    let tmp = tempfile::tempdir().unwrap();
    // First write the inputs as an .npz through ferry's own output path, then feed them back.
    let copy = tmp.path().join("in.npz");
    let o = ferry(&[
        "run",
        dir.join("model.onnx").to_str().unwrap(),
        "--input",
        &format!("x={}", data.join("input_0.pb").display()),
        "--input",
        &format!("y={}", data.join("input_1.pb").display()),
        "--outputs-npz",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // output name is 'sum': not an input, so feeding this archive back is a clear error.
    let o = ferry(&["run", dir.join("model.onnx").to_str().unwrap(), "--inputs", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no input named 'sum'"));
}

/// `--expect` against outputs recorded by real MXNet 1.9.1 (examples/mxnet, made by
/// examples/make_mxnet_example.py): the MXNet files and their ONNX conversion both agree with
/// MXNet's numbers, and a wrong reference makes the run exit 1.
#[test]
fn expect_checks_outputs_against_mxnet_recordings() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mxnet");
    let symbol = ex.join("tiny_resnet-symbol.json");
    let input = format!("data={}", ex.join("input.npy").display());
    let recorded = format!("#0={}", ex.join("mxnet_output.npy").display());
    let out = ferry(&["run", symbol.to_str().unwrap(), "--input", &input, "--expect", &recorded]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS output 0"));

    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny_resnet.onnx");
    let conv =
        ferry(&["convert", symbol.to_str().unwrap(), "-o", onnx.to_str().unwrap(), "--input-shape", "data=1,3,16,16"]);
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let out = ferry(&["run", onnx.to_str().unwrap(), "--input", &input, "--expect", &recorded, "--json"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["expect"]["agree"], true);
    assert!(j["expect"]["outputs"][0]["max_abs_error"].as_f64().unwrap() < 1e-5);

    // A recording that is not this model's output: exit 1, and the difference named.
    let wrong = dir.path().join("wrong.npy");
    let probs = [0.2f32; 5];
    std::fs::write(&wrong, npy("<f4", "(1, 5)", &probs.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()))
        .unwrap();
    let out =
        ferry(&["run", onnx.to_str().unwrap(), "--input", &input, "--expect", &format!("#0={}", wrong.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL output 0"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The whole-run ceiling: a run that would hold more intermediate bytes at once than
/// FERRY_MAX_PLAN_BYTES is refused on both paths, naming the limit; under it, the run goes on.
#[test]
fn the_run_ceiling_is_enforced_on_both_paths() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx");
    for path in ["reference", "optimized"] {
        let run = |limit: &str| {
            Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(["run", model.to_str().unwrap(), "--random-inputs", "--input-shape", "image=64,3,16,16"])
                .args(["--path", path])
                .env("FERRY_MAX_PLAN_BYTES", limit)
                .output()
                .unwrap()
        };
        let o = run("100000");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{path}: {err}");
        assert!(err.contains("FERRY_MAX_PLAN_BYTES"), "{path}: {err}");
        let o = run("100000000");
        assert!(o.status.success(), "{path}: {}", String::from_utf8_lossy(&o.stderr));
    }
}
