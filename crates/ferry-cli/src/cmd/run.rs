use crate::Refusal;
use crate::npy;
use bytes::Bytes;
use ferry_ir::{DType, Dim, Graph, Tensor, TensorData, ValueType};
use ferry_onnx::proto;
use ferry_runtime::kernels::random::Rng;
use ferry_runtime::{Prepared, Value};
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
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
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

/// MXNet symbols rarely state input shapes: take them from --input-shape and from the .npy/.npz
/// inputs given, and the element types from those files too.
fn load_model(a: &Args) -> Result<ferry::Model, Refusal> {
    if ferry::Format::detect(&a.model)? != ferry::Format::MxNet {
        if a.params.is_some() {
            return Err(Refusal("--params applies to MXNet models only".into()));
        }
        return Ok(ferry::load(&a.model)?);
    }
    let mut known: Vec<(String, Tensor)> = Vec::new();
    if let Some(p) = &a.npz {
        known.extend(npy::read_npz(&read(p)?).map_err(|e| Refusal(format!("{}: {e}", p.display())))?);
    }
    for spec in &a.inputs {
        if let Some((name, file)) = spec.split_once('=') {
            if file.ends_with(".npy") {
                let t = npy::read_npy(&read(Path::new(file))?).map_err(|e| Refusal(format!("{file}: {e}")))?;
                known.push((name.to_string(), t));
            }
        }
    }
    let mut input_shapes: Vec<(String, Vec<u64>)> = known.iter().map(|(n, t)| (n.clone(), t.shape.clone())).collect();
    for spec in &a.input_shapes {
        if let Some((name, dims)) = spec.split_once('=') {
            let dims: Result<Vec<u64>, _> =
                dims.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse()).collect();
            let dims =
                dims.map_err(|_| Refusal(format!("--input-shape '{spec}': dimensions must be non-negative integers")))?;
            input_shapes.retain(|(n, _)| n != name);
            input_shapes.push((name.to_string(), dims));
        }
    }
    let input_types = known.iter().map(|(n, t)| (n.clone(), t.dtype)).collect();
    let opts = ferry::LoadOptions { params: a.params.clone(), input_shapes, input_types };
    Ok(ferry::load_with(&a.model, &opts)?)
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let model = load_model(&a)?;
    let prepared = Prepared::new(&model).map_err(|e| Refusal(e.to_string()))?;
    let g = prepared.graph();
    let free: Vec<usize> = g.inputs.iter().copied().filter(|i| g.initializer(*i).is_none()).collect();
    let all_names: Vec<&str> = g.inputs.iter().map(|i| g.values[*i].name.as_str()).collect();
    let resolve =
        |name: &str| -> Result<usize, Refusal> {
            if let Some(k) = name.strip_prefix('#') {
                let k: usize = k.parse().map_err(|_| Refusal(format!("'{name}': expected #K with K a number")))?;
                return free.get(k).copied().ok_or_else(|| {
                    Refusal(format!("'{name}': the model has {} input(s) that are not initializers", free.len()))
                });
            }
            g.inputs.iter().copied().find(|i| g.values[*i].name == name).ok_or_else(|| {
                Refusal(format!("the model has no input named '{name}' (inputs: {})", all_names.join(", ")))
            })
        };

    let mut given: Vec<(usize, Value, String)> = Vec::new();
    if let Some(p) = &a.npz {
        let bytes = read(p)?;
        let arrays = npy::read_npz(&bytes).map_err(|e| Refusal(format!("{}: {e}", p.display())))?;
        for (key, t) in arrays {
            let id = resolve(&key).map_err(|Refusal(m)| Refusal(format!("{}: {m}", p.display())))?;
            given.retain(|(i, _, _)| *i != id);
            given.push((id, Value::Tensor(t), format!("{}[{key}]", p.display())));
        }
    }
    for spec in &a.inputs {
        let (name, file) =
            spec.split_once('=').ok_or_else(|| Refusal(format!("--input '{spec}': expected NAME=FILE")))?;
        let id = resolve(name)?;
        let path = Path::new(file);
        let v = load_value(path, &g.values[id].ty)?;
        given.retain(|(i, _, _)| *i != id);
        given.push((id, v, file.to_string()));
    }
    for (id, v, from) in &given {
        check_input(g, *id, v).map_err(|m| Refusal(format!("input '{}' (from {from}): {m}", g.values[*id].name)))?;
    }

    let mut shapes: HashMap<usize, Vec<u64>> = HashMap::new();
    for spec in &a.input_shapes {
        let (name, dims) = spec
            .split_once('=')
            .ok_or_else(|| Refusal(format!("--input-shape '{spec}': expected NAME=1,3,224,224")))?;
        let id = resolve(name)?;
        let dims: Vec<u64> = dims
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().map_err(|_| Refusal(format!("--input-shape '{spec}': '{s}' is not a size"))))
            .collect::<Result<_, _>>()?;
        shapes.insert(id, dims);
    }
    // Symbolic dims bound by the given inputs and the --input-shape options.
    let mut bound: HashMap<String, u64> = HashMap::new();
    let mut bind = |ty: &ValueType, dims: &[u64]| {
        if let ValueType::Tensor { shape: Some(s), .. } = ty {
            for (d, n) in s.0.iter().zip(dims) {
                if let Dim::Param(p) = d {
                    bound.entry(p.to_string()).or_insert(*n);
                }
            }
        }
    };
    for (id, v, _) in &given {
        if let Value::Tensor(t) = v {
            bind(&g.values[*id].ty, &t.shape);
        }
    }
    for (id, dims) in &shapes {
        bind(&g.values[*id].ty, dims);
    }

    let mut feeds: Vec<(String, Value)> = Vec::new();
    for (k, id) in free.iter().enumerate() {
        let name = &g.values[*id].name;
        if let Some(pos) = given.iter().position(|(i, _, _)| i == id) {
            feeds.push((name.clone(), given.remove(pos).1));
            continue;
        }
        let ty = &g.values[*id].ty;
        if !a.random_inputs {
            return Err(Refusal(format!(
                "input '{name}' (#{k}, expected {}) is missing; give --input {name}=FILE, --inputs FILE.npz or --random-inputs",
                describe(ty)
            )));
        }
        let t = random_input(name, ty, shapes.get(id), &bound, a.seed ^ (k as u64).wrapping_mul(0x9e37_79b9))?;
        feeds.push((name.clone(), Value::Tensor(t)));
    }
    // Given values for initializer-backed inputs override the initializer.
    for (id, v, _) in given {
        feeds.push((g.values[id].name.clone(), v));
    }

    let start = Instant::now();
    let outputs = prepared.run(feeds).map_err(|e| Refusal(e.to_string()))?;
    let secs = start.elapsed().as_secs_f64();
    let names: Vec<String> = g.outputs.iter().map(|o| g.values[*o].name.clone()).collect();

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
    if a.json {
        println!("{}", json!({ "outputs": summaries, "seconds": secs, "written": written }));
    } else {
        for s in &summaries {
            println!("{}", summary_line(s));
        }
        for w in &written {
            eprintln!("wrote {w}");
        }
        eprintln!("ran in {secs:.3} s");
    }
    Ok(ExitCode::SUCCESS)
}

fn read(p: &Path) -> Result<Vec<u8>, Refusal> {
    std::fs::read(p).map_err(|e| Refusal(format!("cannot read {}: {e}", p.display())))
}

fn describe(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { dtype, shape } => {
            let d = dtype.map_or("any type".to_string(), |d| d.to_string());
            match shape {
                Some(s) => format!("{d} tensor of shape {s}"),
                None => format!("{d} tensor"),
            }
        }
        other => other.to_string(),
    }
}

/// Checks a given value against the graph input's declared type.
fn check_input(g: &Graph, id: usize, v: &Value) -> Result<(), String> {
    let ty = &g.values[id].ty;
    match (ty, v) {
        (ValueType::Tensor { dtype, shape }, Value::Tensor(t)) => {
            let want = || format!("expected {}, got {} tensor of shape {:?}", describe(ty), t.dtype, t.shape);
            if dtype.is_some_and(|d| d != t.dtype) {
                return Err(want());
            }
            if let Some(s) = shape {
                let fits = s.0.len() == t.shape.len()
                    && s.0.iter().zip(&t.shape).all(|(d, n)| !matches!(d, Dim::Known(k) if k != n));
                if !fits {
                    return Err(want());
                }
            }
            Ok(())
        }
        (ValueType::Tensor { .. }, other) => Err(format!("expected {}, got a {}", describe(ty), other.kind())),
        (ValueType::Sequence(_), Value::Sequence(_)) | (ValueType::Optional(_), Value::Optional(_)) => Ok(()),
        (ValueType::Sequence(_) | ValueType::Optional(_), other) => {
            Err(format!("expected {}, got a {}", describe(ty), other.kind()))
        }
        _ => Ok(()),
    }
}

fn load_value(path: &Path, ty: &ValueType) -> Result<Value, Refusal> {
    let bytes = read(path)?;
    let err = |m: String| Refusal(format!("{}: {m}", path.display()));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Ok(Value::Tensor(npy::read_npy(&bytes).map_err(err)?)),
        "pb" => decode_value(&bytes, ty).map_err(err),
        _ => Err(err("expected a .npy or .pb file".into())),
    }
}

fn tensor_from(t: &proto::TensorProto) -> Result<Tensor, String> {
    let mut ext = ferry_onnx::external::ExternalData::new(None);
    ferry_onnx::tensor::tensor_from_proto(t, &mut ext).map_err(|e| e.to_string())
}

fn sequence_from(s: &proto::SequenceProto) -> Result<Value, String> {
    if !s.sequence_values.is_empty() || !s.map_values.is_empty() || !s.optional_values.is_empty() {
        return Err("only sequences of tensors are supported".into());
    }
    Ok(Value::Sequence(s.tensor_values.iter().map(|t| tensor_from(t).map(Value::Tensor)).collect::<Result<_, _>>()?))
}

/// Decodes a .pb as the proto the input's type calls for (TensorProto when unknown).
fn decode_value(bytes: &[u8], ty: &ValueType) -> Result<Value, String> {
    let bad = |what: &str, e: prost::DecodeError| format!("not a valid ONNX {what}: {e}");
    match ty {
        ValueType::Sequence(_) => {
            sequence_from(&proto::SequenceProto::decode(bytes).map_err(|e| bad("SequenceProto", e))?)
        }
        ValueType::Optional(_) => {
            let o = proto::OptionalProto::decode(bytes).map_err(|e| bad("OptionalProto", e))?;
            if let Some(t) = &o.tensor_value {
                return Ok(Value::Optional(Some(Box::new(Value::Tensor(tensor_from(t)?)))));
            }
            if let Some(s) = &o.sequence_value {
                return Ok(Value::Optional(Some(Box::new(sequence_from(s)?))));
            }
            Ok(Value::Optional(None))
        }
        _ => Ok(Value::Tensor(tensor_from(&proto::TensorProto::decode(bytes).map_err(|e| bad("TensorProto", e))?)?)),
    }
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

/// A random tensor for a missing input: floats uniform in [-1, 1), integers in [0, 10), bools.
fn random_input(
    name: &str,
    ty: &ValueType,
    given_shape: Option<&Vec<u64>>,
    bound: &HashMap<String, u64>,
    seed: u64,
) -> Result<Tensor, Refusal> {
    let ValueType::Tensor { dtype: Some(dtype), shape } = ty else {
        return Err(Refusal(format!(
            "input '{name}' ({}) needs a value: random values are made only for tensors of a known type",
            describe(ty)
        )));
    };
    let dims: Vec<u64> = match (given_shape, shape) {
        (Some(d), Some(s)) => {
            let fits = s.0.len() == d.len() && s.0.iter().zip(d).all(|(x, n)| !matches!(x, Dim::Known(k) if k != n));
            if !fits {
                return Err(Refusal(format!("--input-shape for '{name}': {d:?} does not fit {}", describe(ty))));
            }
            d.clone()
        }
        (Some(d), None) => d.clone(),
        (None, Some(s)) => {
            s.0.iter()
                .map(|d| match d {
                    Dim::Known(n) => Ok(*n),
                    Dim::Param(p) => bound.get(&p.to_string()).copied().ok_or_else(|| {
                        Refusal(format!(
                            "input '{name}' ({}) has the symbolic size '{p}'; give --input-shape {name}=...",
                            describe(ty)
                        ))
                    }),
                    _ => Err(Refusal(format!(
                        "input '{name}' ({}) has a size nobody knows; give --input-shape {name}=...",
                        describe(ty)
                    ))),
                })
                .collect::<Result<_, _>>()?
        }
        (None, None) => {
            return Err(Refusal(format!("input '{name}' has an unknown rank; give --input-shape {name}=...")));
        }
    };
    // Values are drawn as f64 first: bound that too.
    ferry_runtime::limits::check_tensor(DType::F64, &dims, &format!("random input '{name}'")).map_err(Refusal)?;
    let n: u64 = dims.iter().product();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let vals = (0..n).map(|_| rng.uniform());
    let t = if *dtype == DType::Bool {
        let raw: Vec<u8> = vals.map(|u| (u < 0.5) as u8).collect();
        Tensor::from_raw(DType::Bool, dims, Bytes::from(raw))
    } else if dtype.is_int() && !ferry_runtime::lowbits::is_lowbits(*dtype) {
        let v: Vec<f64> = vals.map(|u| (u * 10.0).floor()).collect();
        return cast_f64(*dtype, dims, v);
    } else if dtype.is_float() || ferry_runtime::lowbits::is_lowbits(*dtype) {
        let v: Vec<f64> = vals.map(|u| u * 2.0 - 1.0).collect();
        return cast_f64(*dtype, dims, v);
    } else if *dtype == DType::String {
        let strs: Vec<Bytes> = vals.map(|u| Bytes::from(format!("s{}", (u * 100.0) as u32))).collect();
        Tensor::from_strings(dims, strs)
    } else {
        return Err(Refusal(format!("input '{name}': random values of type {dtype} are not supported")));
    };
    t.map_err(|e| Refusal(e.to_string()))
}

fn cast_f64(dtype: DType, dims: Vec<u64>, v: Vec<f64>) -> Result<Tensor, Refusal> {
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let t = Tensor::from_raw(DType::F64, dims, Bytes::from(raw)).map_err(|e| Refusal(e.to_string()))?;
    ferry_runtime::lowbits::cast_tensor(&t, dtype).map_err(Refusal)
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
