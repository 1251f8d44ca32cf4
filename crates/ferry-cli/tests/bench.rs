//! `ferry bench` end to end on examples/tiny_cnn.onnx: the shape of its report, never its timings
//! (speed is measured by bench/run.py, not asserted in tests).

use std::path::PathBuf;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

fn tiny_cnn() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx");
    p.to_str().unwrap().to_string()
}

fn number(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("'{key}' is not a number in {v}"))
}

#[test]
fn json_report_is_the_last_line_with_the_promised_fields() {
    let model = tiny_cnn();
    let o = ferry(&[
        "bench",
        &model,
        "--random-inputs",
        "--input-shape",
        "image=2,3,16,16",
        "--path",
        "reference",
        "--runs",
        "5",
        "--warmup",
        "1",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    let last = stdout.lines().last().expect("some output");
    let report: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");

    assert_eq!(report["runs"], 5);
    assert_eq!(report["warmup"], 1);
    assert_eq!(report["threads"], 1);
    assert_eq!(report["path"], "reference");
    assert!(report["model"].as_str().unwrap().ends_with("tiny_cnn.onnx"));
    assert!(number(&report, "prepare_ms") >= number(&report, "load_ms"));
    assert!(number(&report, "first_run_ms") > 0.0);
    let lat = &report["latency_ms"];
    let (min, median, p90, max) = (number(lat, "min"), number(lat, "median"), number(lat, "p90"), number(lat, "max"));
    let mean = number(lat, "mean");
    assert!(0.0 < min && min <= median && median <= p90 && p90 <= max, "{lat}");
    assert!(min <= mean && mean <= max, "{lat}");
    if cfg!(target_os = "linux") {
        assert!(number(&report, "peak_rss_mb") > 0.0, "{report}");
        assert!(number(&report, "cpu_ms_per_run") >= 0.0, "{report}");
    } else {
        assert!(report["peak_rss_mb"].is_null());
    }
}

#[test]
fn text_report_names_each_figure() {
    let model = tiny_cnn();
    let o = ferry(&["bench", &model, "--random-inputs", "--input-shape", "image=1,3,16,16", "--runs", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for label in ["prepare", "first run", "latency", "median", "p90", "peak RSS"] {
        assert!(text.contains(label), "no '{label}' in:\n{text}");
    }
}

#[test]
fn bad_options_are_refused_with_a_message() {
    let model = tiny_cnn();
    let zero_runs = ferry(&["bench", &model, "--random-inputs", "--input-shape", "image=1,3,16,16", "--runs", "0"]);
    assert_eq!(zero_runs.status.code(), Some(2), "--runs 0 is a usage error");
    let no_inputs = ferry(&["bench", &model]);
    assert_eq!(no_inputs.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_inputs.stderr).contains("--random-inputs"));
}

#[test]
fn optimized_path_reports_its_path_and_threads() {
    let model = tiny_cnn();
    let o = ferry(&[
        "bench",
        &model,
        "--random-inputs",
        "--input-shape",
        "image=1,3,16,16",
        "--path",
        "optimized",
        "--threads",
        "2",
        "--runs",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["path"], "optimized");
    assert_eq!(report["threads"], 2);
    assert!(number(&report["latency_ms"], "median") > 0.0);
}

#[test]
fn a_time_budget_cuts_the_runs_short_and_reports_the_count_done() {
    let model = tiny_cnn();
    // A budget far below one run: exactly one warm-up and one timed run happen.
    let args = ["--runs", "1000", "--warmup", "1000", "--max-seconds", "0.000001", "--json"];
    let mut all = vec!["bench", &model, "--random-inputs", "--input-shape", "image=1,3,16,16"];
    all.extend(args);
    let o = ferry(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((report["runs"].as_u64(), report["warmup"].as_u64()), (Some(1), Some(1)), "{report}");
    let bad = ferry(&["bench", &model, "--random-inputs", "--max-seconds", "0"]);
    assert_eq!(bad.status.code(), Some(2));
}
