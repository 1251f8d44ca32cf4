use super::compare::ExecPath;
use super::expect;
use super::inputs::{self, InputSpec};
use crate::Refusal;
use crate::npy;
use ferry_ir::{Tensor, TensorData};
use ferry_onnx::proto;
use ferry_runtime::Value;
use prost::Message;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Npy,
    Pb,
}

#[derive(clap::Args)]
pub struct Args {
    /// The model to run (.onnx, or MXNet prefix-symbol.json).
    model: PathBuf,
    /// MXNet: the .params file (default: prefix-0000.params beside prefix-symbol.json).
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// An input: NAME=FILE, FILE .npy or .pb (TensorProto, SequenceProto or OptionalProto). NAME
    /// is a graph input name or #K, the K-th input that is not an initializer (0-based).
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Inputs from a .npz archive (keys are input names).
    #[arg(long = "inputs", value_name = "FILE.npz")]
    npz: Option<PathBuf>,
    /// Fill every input not given with deterministic random values.
    #[arg(long)]
    random_inputs: bool,
    /// Seed for --random-inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shape for a random input, binding its symbolic dims: NAME=1,3,224,224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<String>,
    /// Write output_K.npy / output_K.pb and outputs.json here.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// File format for --output-dir.
    #[arg(long, value_enum, default_value = "npy")]
    format: OutFormat,
    /// Write all outputs into one .npz keyed by output name.
    #[arg(long)]
    outputs_npz: Option<PathBuf>,
    /// Check an output against a recorded one: NAME=FILE.npy (NAME an output name or #K, the
    /// K-th output); exit 1 when any differs. Repeatable.
    #[arg(long = "expect", value_name = "NAME=FILE")]
    expect: Vec<String>,
    /// Recorded outputs to check against, from a .npz archive keyed by output name.
    #[arg(long = "expect-npz", value_name = "FILE.npz")]
    expect_npz: Option<PathBuf>,
    /// Relative tolerance for --expect, scaled by |expected|.
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Absolute tolerance for --expect.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Execution path: the optimized engine, or the reference runtime (the oracle).
    #[arg(long, value_enum, default_value = "reference")]
    path: ExecPath,
    /// Threads for the optimized path's kernels (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl Args {
    fn spec(&self) -> InputSpec<'_> {
        InputSpec {
            inputs: &self.inputs,
            npz: self.npz.as_deref(),
            random_inputs: self.random_inputs,
            seed: self.seed,
            input_shapes: &self.input_shapes,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let spec = a.spec();
    let model = inputs::load_model(&a.model, a.params.as_ref(), &spec)?;
    let prepared = ferry::prepare(&model, &a.path.prepare_options(a.threads)).map_err(|e| Refusal(e.to_string()))?;
    let g = prepared.graph();
    let feeds = inputs::feeds(g, &spec)?.all();

    let start = Instant::now();
    let outputs = prepared.run(feeds).map_err(|e| Refusal(e.to_string()))?;
    let secs = start.elapsed().as_secs_f64();
    let names: Vec<String> = g.outputs.iter().map(|o| g.values[*o].name.clone()).collect();
    let expected = expect::read(&a.expect, a.expect_npz.as_deref(), &names)?;

    let mut written: Vec<String> = Vec::new();
    if let Some(dir) = &a.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| Refusal(format!("cannot create {}: {e}", dir.display())))?;
        let mut listing = Vec::new();
        for (k, v) in outputs.iter().enumerate() {
            let (file, bytes) = match a.format {
                OutFormat::Npy => {
                    let t = as_tensor(v).map_err(|m| Refusal(format!("output {k} ('{}'): {m}", names[k])))?;
                    (format!("output_{k}.npy"), npy::write_npy(t).map_err(|m| Refusal(format!("output {k}: {m}")))?)
                }
                OutFormat::Pb => (format!("output_{k}.pb"), encode_value(&names[k], v)),
            };
            let path = dir.join(&file);
            write_atomic(&path, &bytes)?;
            written.push(path.display().to_string());
            let mut entry = summary(k, &names[k], v);
            entry["file"] = json!(file);
            listing.push(entry);
        }
        let text = serde_json::to_string_pretty(&json!({ "outputs": listing })).unwrap();
        let path = dir.join("outputs.json");
        write_atomic(&path, text.as_bytes())?;
        written.push(path.display().to_string());
    }
    if let Some(path) = &a.outputs_npz {
        let mut entries = Vec::new();
        for (k, v) in outputs.iter().enumerate() {
            let t = as_tensor(v).map_err(|m| Refusal(format!("output {k} ('{}'): {m}", names[k])))?;
            entries.push((names[k].clone(), npy::write_npy(t).map_err(|m| Refusal(format!("output {k}: {m}")))?));
        }
        write_atomic(path, &npy::write_npz(&entries).map_err(Refusal)?)?;
        written.push(path.display().to_string());
    }

    let summaries: Vec<serde_json::Value> = outputs.iter().enumerate().map(|(k, v)| summary(k, &names[k], v)).collect();
    let (agree, expect_json, expect_lines) = expect::check(&expected, &outputs, a.rtol, a.atol);
    if a.json {
        let mut j = json!({ "outputs": summaries, "seconds": secs, "written": written });
        if !expected.is_empty() {
            j["expect"] = expect_json;
        }
        println!("{j}");
    } else {
        for s in &summaries {
            println!("{}", summary_line(s));
        }
        for line in &expect_lines {
            println!("{line}");
        }
        for w in &written {
            eprintln!("wrote {w}");
        }
        eprintln!("ran in {secs:.3} s");
    }
    Ok(if agree { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn encode_value(name: &str, v: &Value) -> Vec<u8> {
    fn seq(name: &str, items: &[Value]) -> proto::SequenceProto {
        proto::SequenceProto {
            name: Some(name.to_string()),
            elem_type: Some(1),
            tensor_values: items
                .iter()
                .filter_map(Value::tensor)
                .map(|t| ferry_onnx::tensor::tensor_to_proto("", t))
                .collect(),
            ..Default::default()
        }
    }
    match v {
        Value::Tensor(t) => ferry_onnx::tensor::tensor_to_proto(name, t).encode_to_vec(),
        Value::Sequence(items) => seq(name, items).encode_to_vec(),
        Value::Optional(inner) => {
            let mut o = proto::OptionalProto { name: Some(name.to_string()), elem_type: Some(0), ..Default::default() };
            match inner.as_deref() {
                Some(Value::Tensor(t)) => {
                    o.elem_type = Some(1);
                    o.tensor_value = Some(ferry_onnx::tensor::tensor_to_proto("", t));
                }
                Some(Value::Sequence(items)) => {
                    o.elem_type = Some(2);
                    o.sequence_value = Some(seq("", items));
                }
                _ => {}
            }
            o.encode_to_vec()
        }
    }
}

fn as_tensor(v: &Value) -> Result<&Tensor, String> {
    match v {
        Value::Tensor(t) => Ok(t),
        Value::Optional(Some(b)) => as_tensor(b),
        other => Err(format!("a {} has no .npy form; use --format pb", other.kind())),
    }
}

fn summary(k: usize, name: &str, v: &Value) -> serde_json::Value {
    match v {
        Value::Tensor(t) => {
            let mut s = json!({"index": k, "name": name, "dtype": t.dtype.to_string(), "shape": t.shape});
            if let Some((min, max, mean)) = stats(t) {
                s["min"] = json!(min);
                s["max"] = json!(max);
                s["mean"] = json!(mean);
            }
            s
        }
        Value::Sequence(items) => json!({"index": k, "name": name, "kind": "sequence", "length": items.len()}),
        Value::Optional(None) => json!({"index": k, "name": name, "kind": "optional", "present": false}),
        Value::Optional(Some(inner)) => {
            let mut s = summary(k, name, inner);
            s["optional"] = json!(true);
            s
        }
    }
}

/// min, max, mean over the non-NaN values (None for strings and empty tensors).
fn stats(t: &Tensor) -> Option<(f64, f64, f64)> {
    if matches!(t.data, TensorData::Strings(_)) {
        return None;
    }
    let vals = if ferry_runtime::lowbits::is_lowbits(t.dtype) {
        ferry_runtime::lowbits::to_f64(t).ok()?
    } else {
        ferry_runtime::array::Array::from_tensor(t).ok()?.to_f64().ok()?.iter().copied().collect()
    };
    let finite: Vec<f64> = vals.into_iter().filter(|v| !v.is_nan()).collect();
    if finite.is_empty() {
        return None;
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((min, max, finite.iter().sum::<f64>() / finite.len() as f64))
}

fn summary_line(s: &serde_json::Value) -> String {
    let head = format!("output {} '{}':", s["index"], s["name"].as_str().unwrap_or(""));
    if let Some(d) = s["dtype"].as_str() {
        let shape: Vec<String> =
            s["shape"].as_array().map(|a| a.iter().map(|x| x.to_string()).collect()).unwrap_or_default();
        let mut line = format!("{head} {d}[{}]", shape.join(","));
        if let (Some(lo), Some(hi), Some(m)) = (s["min"].as_f64(), s["max"].as_f64(), s["mean"].as_f64()) {
            line += &format!("  min {lo:.6}  max {hi:.6}  mean {m:.6}");
        }
        line
    } else if s["kind"] == "sequence" {
        format!("{head} sequence of {} value(s)", s["length"])
    } else {
        format!("{head} empty optional")
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Refusal> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| Refusal(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
