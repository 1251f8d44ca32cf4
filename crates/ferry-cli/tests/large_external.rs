//! A model with 2.5 GiB of external-data weights: `inspect` and `convert` must not pull the
//! weights into memory. The model is generated once and cached under target/.
//! (Timings are printed for the record, never asserted.)

use ferry_onnx::proto::{self, tensor_proto::DataType};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TENSORS: usize = 10;
const ELEMENTS: u64 = 64 << 20; // 256 MiB of f32 each
const TOTAL_BYTES: u64 = TENSORS as u64 * ELEMENTS * 4;

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("large-external-model")
}

fn make_model(dir: &Path) {
    let done = dir.join("done");
    if done.exists() {
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut data = std::io::BufWriter::new(std::fs::File::create(dir.join("weights.bin")).unwrap());
    let chunk: Vec<u8> = (0..(1u32 << 20)).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let kv = |k: &str, v: String| proto::StringStringEntryProto { key: Some(k.into()), value: Some(v) };
    let mut initializer = Vec::new();
    for t in 0..TENSORS {
        let bytes = ELEMENTS * 4;
        for _ in 0..bytes / chunk.len() as u64 {
            data.write_all(&chunk).unwrap();
        }
        initializer.push(proto::TensorProto {
            name: Some(format!("w{t}")),
            dims: vec![ELEMENTS as i64],
            data_type: Some(DataType::Float as i32),
            external_data: vec![
                kv("location", "weights.bin".into()),
                kv("offset", (t as u64 * bytes).to_string()),
                kv("length", bytes.to_string()),
            ],
            data_location: Some(proto::tensor_proto::DataLocation::External as i32),
            ..Default::default()
        });
    }
    data.flush().unwrap();
    let names: Vec<String> = (0..TENSORS).map(|t| format!("w{t}")).collect();
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(proto::GraphProto {
            name: Some("big".into()),
            node: vec![proto::NodeProto {
                op_type: Some("Sum".into()),
                input: names,
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer,
            output: vec![proto::ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(dir.join("model.onnx"), model.encode_to_vec()).unwrap();
    std::fs::write(done, b"").unwrap();
}

/// Runs ferry and returns (exit code, seconds, peak resident KiB of the child).
fn run_measured(args: &[&str]) -> (i32, f64, i64) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a POD out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, start.elapsed().as_secs_f64(), usage.ru_maxrss)
}

#[test]
fn large_external_model_is_inspected_and_converted_without_loading_weights() {
    let dir = model_dir();
    make_model(&dir);
    let model = dir.join("model.onnx");
    let (code, secs, rss_kib) = run_measured(&["inspect", model.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    eprintln!("inspect of a 2.5 GiB model: {secs:.3} s, peak RSS {} MiB", rss_kib / 1024);

    let out_dir = tempfile::tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let out = out_dir.path().join("copy.onnx");
    let (code, secs, rss_kib) = run_measured(&["convert", model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0);
    let rss = rss_kib as u64 * 1024;
    eprintln!("convert of a 2.5 GiB model: {secs:.2} s, peak RSS {} MiB", rss >> 20);
    assert!(rss < TOTAL_BYTES / 4, "peak RSS {} MiB is over 25% of the weights", rss >> 20);
    // Weights over protobuf's limit go to external data automatically, aligned for mapping.
    assert!(out_dir.path().join("copy.data").metadata().unwrap().len() >= TOTAL_BYTES);
    let back = proto::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    for t in &back.graph.unwrap().initializer {
        let offset: u64 = t
            .external_data
            .iter()
            .find(|e| e.key.as_deref() == Some("offset"))
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(offset % 4096, 0);
    }
}
