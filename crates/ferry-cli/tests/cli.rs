//! The `ferry` binary end to end: exit codes, JSON output, atomic writes and hostile files.
//! Models are built here with the protobuf types, so each test states exactly what it feeds in.

use ferry_onnx::proto::{self, tensor_proto::DataType};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every run here is limited to 4 GiB of address space, as the hostile-file contract says: a
/// file that lies about sizes must be refused before anything that large is reserved.
const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;

fn ferry(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: ADDRESS_SPACE_LIMIT, rlim_max: ADDRESS_SPACE_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("ferry runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tensor_type(dims: &[i64]) -> proto::TypeProto {
    use proto::tensor_shape_proto::{Dimension, dimension::Value};
    proto::TypeProto {
        denotation: None,
        value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
            elem_type: Some(DataType::Float as i32),
            shape: Some(proto::TensorShapeProto {
                dim: dims.iter().map(|d| Dimension { denotation: None, value: Some(Value::DimValue(*d)) }).collect(),
            }),
        })),
    }
}

fn value(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto { name: Some(name.into()), r#type: Some(tensor_type(dims)), ..Default::default() }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs.join("_"))),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn weights(name: &str, n: usize) -> proto::TensorProto {
    let data: Vec<u8> = (0..n).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    proto::TensorProto {
        name: Some(name.into()),
        dims: vec![n as i64],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.into()),
        ..Default::default()
    }
}

/// y = relu(x + w) * x, with w a 1024-element initializer.
fn small_model() -> proto::ModelProto {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("ferry-tests".into()),
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![
                node("Add", &["x", "w"], &["s"]),
                node("Relu", &["s"], &["r"]),
                node("Mul", &["r", "x"], &["y"]),
            ],
            input: vec![value("x", &[1024])],
            output: vec![value("y", &[1024])],
            initializer: vec![weights("w", 1024)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, m: &proto::ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn inspect_reports_io_ops_and_parameters_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.onnx", &small_model());
    let o = ferry(&["inspect", s(&m), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "onnx");
    assert_eq!(v["versions"]["opset:ai.onnx"], 17);
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"][0], 1024);
    assert_eq!(v["op_histogram"]["Relu"], 1);
    assert_eq!(v["parameters"]["count"], 1024);
    assert_eq!(v["parameters"]["bytes"], 4096);
}

#[test]
fn convert_round_trips_and_writes_the_requested_opset() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.onnx", &small_model());
    let out = dir.path().join("out.onnx");
    let o = ferry(&["convert", s(&m), "-o", s(&out), "--opset", "13"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let back = proto::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    assert_eq!(back.opset_import[0].version, Some(13));
    assert_eq!(back.ir_version, Some(7));
    let g = back.graph.unwrap();
    let ops: Vec<_> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
    assert_eq!(ops, ["Add", "Relu", "Mul"]);
    assert_eq!(g.initializer[0].raw_data.as_ref().unwrap().len(), 4096);
}

#[test]
fn external_data_is_written_aligned_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.onnx", &small_model());
    let out = dir.path().join("ext.onnx");
    let o = ferry(&["convert", s(&m), "-o", s(&out), "--external-data"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let back = proto::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let w = &back.graph.as_ref().unwrap().initializer[0];
    assert!(w.raw_data.is_none());
    let kv: Vec<(String, String)> =
        w.external_data.iter().map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap())).collect();
    assert_eq!(kv[0], ("location".into(), "ext.data".into()));
    assert_eq!(std::fs::metadata(dir.path().join("ext.data")).unwrap().len(), 4096);
    // Reading it back gives the same weights.
    let again = dir.path().join("again.onnx");
    let o = ferry(&["convert", s(&out), "-o", s(&again)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let back = proto::ModelProto::decode(std::fs::read(&again).unwrap().as_slice()).unwrap();
    assert_eq!(back.graph.unwrap().initializer[0].raw_data, small_model().graph.unwrap().initializer[0].raw_data);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&ferry(&["convert"])), 2);
    assert_eq!(code(&ferry(&["frobnicate"])), 2);
}

#[test]
fn a_failed_convert_leaves_no_output_and_keeps_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = small_model();
    // An op version that only exists in opsets 19..=20 (If-19), carried opaquely.
    model.opset_import[0].version = Some(19);
    let g = model.graph.as_mut().unwrap();
    g.node.push(proto::NodeProto {
        op_type: Some("Frobnicate".into()),
        domain: Some("com.example".into()),
        input: vec!["y".into()],
        output: vec!["z".into()],
        ..Default::default()
    });
    let m = write(dir.path(), "m.onnx", &model);
    let out = dir.path().join("out.onnx");
    std::fs::write(&out, b"keep me").unwrap();
    // The custom op converts (kept opaque); now ask for an opset that Relu/Add/Mul have but a
    // cycle-free model still fails on: an absurd opset.
    let o = ferry(&["convert", s(&m), "-o", s(&out), "--opset", "999"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("opset 999"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "temporary files left behind: {leftovers:?}");
}

#[test]
fn custom_ops_are_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = small_model();
    model.opset_import.push(proto::OperatorSetIdProto { domain: Some("com.example".into()), version: Some(3) });
    let g = model.graph.as_mut().unwrap();
    g.node.push(proto::NodeProto {
        op_type: Some("Frobnicate".into()),
        domain: Some("com.example".into()),
        input: vec!["y".into()],
        output: vec!["z".into()],
        ..Default::default()
    });
    g.output = vec![value("z", &[1024])];
    let m = write(dir.path(), "m.onnx", &model);
    let o = ferry(&["check", s(&m), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["findings"].to_string().contains("com.example::Frobnicate"), "{v}");
    let out = dir.path().join("out.onnx");
    assert_eq!(code(&ferry(&["convert", s(&m), "-o", s(&out)])), 0);
    let back = proto::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    assert!(back.opset_import.iter().any(|o| o.domain.as_deref() == Some("com.example") && o.version == Some(3)));
}

/// Every command must end with exit 1 and a message on a bad file: never a panic (101).
fn assert_refused(path: &Path, what: &str) {
    assert_refused_with(path, &[], what, "");
}

/// `check`, `convert` and `run` exit 1 with a message (containing `expect`, when given) and no
/// panic; `convert` leaves no output; `inspect` may succeed. `extra` goes to every command.
fn assert_refused_with(path: &Path, extra: &[&str], what: &str, expect: &str) {
    let out = path.with_extension("out.onnx");
    let commands =
        [vec!["check", s(path)], vec!["convert", s(path), "-o", s(&out)], vec!["run", s(path), "--random-inputs"]];
    for mut args in commands {
        args.extend_from_slice(extra);
        let o = ferry(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 1, "{what}: {:?} exited {:?}: {err}", args, o.status);
        assert!(!err.contains("panicked"), "{what}: {args:?} panicked: {err}");
        let said = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
        assert!(said.contains(expect), "{what}: {args:?} should say '{expect}', said: {said}");
        assert!(!out.exists(), "{what}: partial output written");
    }
    let mut args = vec!["inspect", s(path)];
    args.extend_from_slice(extra);
    let o = ferry(&args);
    assert!(matches!(code(&o), 0 | 1), "{what}: inspect exited {:?}: {}", o.status, stderr(&o));
}

#[test]
fn truncated_models_are_refused_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_model().encode_to_vec();
    let step = (bytes.len() / 40).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        let p = dir.path().join(format!("cut{cut}.onnx"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert_refused(&p, &format!("truncated at {cut}"));
    }
}

#[test]
fn hostile_graphs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, proto::ModelProto)> = Vec::new();

    let mut cycle = small_model();
    cycle.graph.as_mut().unwrap().node =
        vec![node("Relu", &["b"], &["a"]), node("Relu", &["a"], &["b"]), node("Relu", &["b"], &["y"])];
    cases.push(("cycle", cycle));

    let mut self_loop = small_model();
    self_loop.graph.as_mut().unwrap().node = vec![node("Add", &["x", "y"], &["y"])];
    cases.push(("self-loop", self_loop));

    let mut dangling = small_model();
    dangling.graph.as_mut().unwrap().node[0].input[1] = "nowhere".into();
    cases.push(("dangling input", dangling));

    let mut undeclared = small_model();
    undeclared.graph.as_mut().unwrap().output = vec![value("ghost", &[1])];
    cases.push(("undeclared output", undeclared));

    let mut lying = small_model();
    lying.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20];
    cases.push(("initializer of 2^40 elements backed by 4 KiB", lying));

    let mut negative = small_model();
    negative.graph.as_mut().unwrap().initializer[0].dims = vec![-4];
    cases.push(("negative dim", negative));

    let mut overflow = small_model();
    overflow.graph.as_mut().unwrap().initializer[0].dims = vec![i64::MAX, i64::MAX];
    cases.push(("overflowing dims", overflow));

    let mut bad_type = small_model();
    bad_type.graph.as_mut().unwrap().initializer[0].data_type = Some(999);
    cases.push(("unknown element type", bad_type));

    let mut no_graph = small_model();
    no_graph.graph = None;
    cases.push(("no graph", no_graph));

    for (what, m) in cases {
        let p = write(dir.path(), &format!("{}.onnx", what.replace(' ', "_")), &m);
        assert_refused(&p, what);
    }
}

#[test]
fn not_a_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.onnx");
    std::fs::write(&p, b"this is plain text, not a protobuf message at all\n").unwrap();
    assert_refused(&p, "text file");
    let p = dir.path().join("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    assert_refused(&p, "empty file");
}

fn external_ref(location: &str, offset: &str, length: &str) -> proto::TensorProto {
    let kv = |k: &str, v: &str| proto::StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
    proto::TensorProto {
        name: Some("w".into()),
        dims: vec![1024],
        data_type: Some(DataType::Float as i32),
        external_data: vec![kv("location", location), kv("offset", offset), kv("length", length)],
        data_location: Some(proto::tensor_proto::DataLocation::External as i32),
        ..Default::default()
    }
}

#[test]
fn external_data_that_leaves_the_folder_or_lies_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), vec![7u8; 4096]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), vec![0u8; 4096]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.bin"), dir.path().join("link.bin")).unwrap();
    let secret = outside.path().join("secret.bin");
    let cases = [
        ("parent dir", external_ref("../secret.bin", "0", "4096")),
        ("absolute path", external_ref(s(&secret), "0", "4096")),
        ("symlink out of the folder", external_ref("link.bin", "0", "4096")),
        ("offset past the end", external_ref("w.bin", "4096", "4096")),
        ("length past the end", external_ref("w.bin", "0", "8192")),
        ("huge offset", external_ref("w.bin", "18446744073709551615", "4096")),
        ("missing file", external_ref("missing.bin", "0", "4096")),
        ("length smaller than the shape needs", external_ref("w.bin", "0", "16")),
    ];
    for (what, t) in cases {
        let mut m = small_model();
        m.graph.as_mut().unwrap().initializer = vec![t];
        let p = write(dir.path(), &format!("{}.onnx", what.replace(' ', "_")), &m);
        assert_refused(&p, what);
    }
}

#[test]
fn deeply_nested_if_bodies_are_refused_not_overflowed() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = |out: &str| proto::GraphProto {
        name: Some("leaf".into()),
        node: vec![node("Identity", &["x"], &[out])],
        output: vec![value(out, &[1024])],
        ..Default::default()
    };
    let graph_attr = |name: &str, g: proto::GraphProto| proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(proto::attribute_proto::AttributeType::Graph as i32),
        g: Some(g),
        ..Default::default()
    };
    // Building and encoding 5000 levels recurses deeply in prost itself: give it room.
    let bytes = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let mut body = leaf("out0");
            for depth in 1..5000 {
                let out = format!("out{depth}");
                let cond = proto::NodeProto {
                    op_type: Some("If".into()),
                    input: vec!["c".into()],
                    output: vec![out.clone()],
                    attribute: vec![
                        graph_attr("then_branch", body),
                        graph_attr("else_branch", leaf(&format!("e{depth}"))),
                    ],
                    ..Default::default()
                };
                body = proto::GraphProto {
                    name: Some(format!("level{depth}")),
                    node: vec![cond],
                    output: vec![value(&out, &[1024])],
                    ..Default::default()
                };
            }
            let mut m = small_model();
            m.graph = Some(proto::GraphProto {
                input: vec![
                    value("x", &[1024]),
                    proto::ValueInfoProto { name: Some("c".into()), ..Default::default() },
                ],
                ..body
            });
            let bytes = m.encode_to_vec();
            // Dropping deep structures recurses too: do it here, on the big stack.
            drop(m);
            bytes
        })
        .unwrap()
        .join()
        .unwrap();
    let p = dir.path().join("nested.onnx");
    std::fs::write(&p, bytes).unwrap();
    assert_refused(&p, "5000 nested If bodies");
}

#[test]
fn run_refuses_absurd_tensors_before_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let shape = proto::TensorProto {
        name: Some("shape".into()),
        dims: vec![2],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1 << 40, 6],
        ..Default::default()
    };
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![node("ConstantOfShape", &["shape"], &["y"])],
            initializer: vec![shape],
            output: vec![proto::ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = write(dir.path(), "huge.onnx", &model);
    let o = ferry(&["run", s(&p), "--random-inputs"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("FERRY_MAX_TENSOR_BYTES"), "{}", stderr(&o));
}

/// The bundled MXNet example (recorded from real MXNet 1.9.1), copied into `dir` under `prefix`.
fn mxnet_example(dir: &Path, prefix: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mxnet");
    let symbol = std::fs::read(ex.join("tiny_resnet-symbol.json")).unwrap();
    let params = std::fs::read(ex.join("tiny_resnet-0000.params")).unwrap();
    let path = dir.join(format!("{prefix}-symbol.json"));
    std::fs::write(&path, &symbol).unwrap();
    std::fs::write(dir.join(format!("{prefix}-0000.params")), &params).unwrap();
    (path, symbol, params)
}

#[test]
fn hostile_mxnet_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shape = ["--input-shape", "data=1,3,16,16"];
    let (good, symbol, params) = mxnet_example(dir.path(), "good");
    let o = ferry(&["run", s(&good), "--random-inputs", "--input-shape", "data=1,3,16,16"]);
    assert_eq!(code(&o), 0, "the untouched example must run: {}", stderr(&o));

    let text = String::from_utf8(symbol.clone()).unwrap();
    let symbol_cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"nodes\": [".to_string(), "JSON"),
        ("dangling node id", text.replacen("[[0, 0, 0]", "[[999, 0, 0]", 1), "999"),
        ("a node that reads itself (cycle)", text.replacen("[[0, 0, 0]", "[[3, 0, 0]", 1), "node"),
    ];
    for (what, body, expect) in symbol_cases {
        let (p, _, _) = mxnet_example(dir.path(), "sym");
        std::fs::write(&p, body).unwrap();
        assert_refused_with(&p, &shape, what, expect);
    }

    // .params: truncated at many offsets, and a header that lies about the array count.
    let step = (params.len() / 25).max(1);
    for cut in (1..params.len()).step_by(step) {
        let (p, _, _) = mxnet_example(dir.path(), "cut");
        std::fs::write(dir.path().join("cut-0000.params"), &params[..cut]).unwrap();
        assert_refused_with(&p, &shape, &format!(".params truncated at {cut}"), "params");
    }
    let mut lying = params.clone();
    // Header: u64 magic, u64 reserved, then u64 array count.
    lying[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let (p, _, _) = mxnet_example(dir.path(), "lie");
    std::fs::write(dir.path().join("lie-0000.params"), &lying).unwrap();
    assert_refused_with(&p, &shape, ".params claiming 2^60 arrays", "params");
}

#[test]
fn an_npy_input_declaring_terabytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _, _) = mxnet_example(dir.path(), "good");
    let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000, 1000), }".to_string();
    while !(h.len() + 11).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
    npy.extend_from_slice(h.as_bytes());
    npy.extend_from_slice(&[0u8; 64]);
    let input = dir.path().join("huge.npy");
    std::fs::write(&input, npy).unwrap();
    let arg = format!("data={}", input.display());
    let o = ferry(&["run", s(&good), "--input", &arg]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("huge.npy"), "{}", stderr(&o));
}
