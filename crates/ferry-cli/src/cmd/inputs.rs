//! Where a command's input values come from (`run`, `compare`, `convert --verify`): .npy/.pb
//! files, a .npz archive, or deterministic random values; and loading a model whose input shapes
//! and types must be bound from those inputs (MXNet symbols rarely state them).

use crate::Refusal;
use crate::npy;
use bytes::Bytes;
use ferry_ir::{DType, Dim, Graph, Tensor, ValueType};
use ferry_onnx::proto;
use ferry_runtime::Value;
use ferry_runtime::kernels::random::Rng;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The input options as given on the command line.
#[derive(Clone, Copy, Default)]
pub struct InputSpec<'a> {
    /// NAME=FILE with FILE .npy or .pb; NAME a graph input name or #K.
    pub inputs: &'a [String],
    /// A .npz archive keyed by input name.
    pub npz: Option<&'a Path>,
    /// Fill every input not given with deterministic random values.
    pub random_inputs: bool,
    pub seed: u64,
    /// NAME=D1,D2,... for random inputs and MXNet symbols.
    pub input_shapes: &'a [String],
}

/// The values to feed one model: the non-initializer inputs in graph order, then the given
/// values that override initializers.
pub struct Feeds {
    pub free: Vec<(String, Value)>,
    pub overrides: Vec<(String, Value)>,
}

impl Feeds {
    pub fn all(self) -> Vec<(String, Value)> {
        let mut v = self.free;
        v.extend(self.overrides);
        v
    }
}

/// MXNet symbols rarely state input shapes: take them from --input-shape and from the .npy/.npz
/// inputs given, and the element types from those files too.
pub fn load_model(path: &Path, params: Option<&PathBuf>, a: &InputSpec) -> Result<ferry::Model, Refusal> {
    load_model_with(path, params, a, &[])
}

/// As [`load_model`], with extra known inputs (name, shape, type) for an MXNet symbol: `compare`
/// passes the other model's inputs.
pub fn load_model_with(
    path: &Path,
    params: Option<&PathBuf>,
    a: &InputSpec,
    extra: &[(String, Vec<u64>, DType)],
) -> Result<ferry::Model, Refusal> {
    if ferry::Format::detect(path)? != ferry::Format::MxNet {
        if params.is_some() {
            return Err(Refusal("--params applies to MXNet models only".into()));
        }
        return Ok(ferry::load(path)?);
    }
    let mut known: Vec<(String, Tensor)> = Vec::new();
    if let Some(p) = a.npz {
        known.extend(npy::read_npz(&read(p)?).map_err(|e| Refusal(format!("{}: {e}", p.display())))?);
    }
    for spec in a.inputs {
        if let Some((name, file)) = spec.split_once('=') {
            if file.ends_with(".npy") {
                let t = npy::read_npy(&read(Path::new(file))?).map_err(|e| Refusal(format!("{file}: {e}")))?;
                known.push((name.to_string(), t));
            }
        }
    }
    let mut input_shapes: Vec<(String, Vec<u64>)> = extra.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
    input_shapes.extend(known.iter().map(|(n, t)| (n.clone(), t.shape.clone())));
    let mut input_types: Vec<(String, DType)> = extra.iter().map(|(n, _, t)| (n.clone(), *t)).collect();
    input_types.extend(known.iter().map(|(n, t)| (n.clone(), t.dtype)));
    for spec in a.input_shapes {
        if let Some((name, dims)) = spec.split_once('=') {
            let dims: Result<Vec<u64>, _> =
                dims.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse()).collect();
            let dims =
                dims.map_err(|_| Refusal(format!("--input-shape '{spec}': dimensions must be non-negative integers")))?;
            input_shapes.retain(|(n, _)| n != name);
            input_shapes.push((name.to_string(), dims));
        }
    }
    let opts = ferry::LoadOptions { params: params.cloned(), input_shapes, input_types };
    Ok(ferry::load_with(path, &opts)?)
}

/// Builds the feeds for a prepared model from the input options; a missing input is refused
/// with the option that would give it, unless `random_inputs` is set.
pub fn feeds(g: &ferry_ir::Graph, a: &InputSpec) -> Result<Feeds, Refusal> {
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
    if let Some(p) = a.npz {
        let bytes = read(p)?;
        let arrays = npy::read_npz(&bytes).map_err(|e| Refusal(format!("{}: {e}", p.display())))?;
        for (key, t) in arrays {
            let id = resolve(&key).map_err(|Refusal(m)| Refusal(format!("{}: {m}", p.display())))?;
            given.retain(|(i, _, _)| *i != id);
            given.push((id, Value::Tensor(t), format!("{}[{key}]", p.display())));
        }
    }
    for spec in a.inputs {
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
    for spec in a.input_shapes {
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
    let overrides = given.into_iter().map(|(id, v, _)| (g.values[id].name.clone(), v)).collect();
    Ok(Feeds { free: feeds, overrides })
}

pub fn read(p: &Path) -> Result<Vec<u8>, Refusal> {
    std::fs::read(p).map_err(|e| Refusal(format!("cannot read {}: {e}", p.display())))
}

pub fn describe(ty: &ValueType) -> String {
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
