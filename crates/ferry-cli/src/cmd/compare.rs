//! `ferry compare`: run two models on the same inputs and say whether their outputs agree.

use super::inputs::{self, InputSpec};
use crate::Refusal;
use ferry_ir::{Tensor, TensorData};
use ferry_runtime::Value;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Default tolerances: |a - b| <= atol + rtol * |a| element-wise (a: the first model).
pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 1e-5;

/// An execution path (`run --path`, `compare --path-a/--path-b`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ExecPath {
    /// The reference runtime (crates/ferry-runtime): plain kernels, the oracle.
    Reference,
    /// The optimized engine (crates/ferry-engine): planned memory, fused kernels, threads.
    Optimized,
}

impl ExecPath {
    pub fn prepare_options(self, threads: usize) -> ferry::PrepareOptions {
        let path = match self {
            ExecPath::Reference => ferry::ExecPath::Reference,
            ExecPath::Optimized => ferry::ExecPath::Optimized,
        };
        ferry::PrepareOptions { path, threads }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The first model, the reference (.onnx, or MXNet prefix-symbol.json).
    a: PathBuf,
    /// The second model, checked against the first.
    b: PathBuf,
    /// An input: NAME=FILE (.npy or .pb); NAME a graph input name of A or #K.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Inputs from a .npz archive (keys are A's input names).
    #[arg(long = "inputs", value_name = "FILE.npz")]
    npz: Option<PathBuf>,
    /// Fill every input not given with deterministic random values (the default when no input
    /// is given).
    #[arg(long)]
    random_inputs: bool,
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shape of an input, binding symbolic dims and MXNet input shapes: NAME=1,3,224,224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<String>,
    /// MXNet: A's .params file (default: prefix-0000.params beside prefix-symbol.json).
    #[arg(long, value_name = "FILE")]
    params_a: Option<PathBuf>,
    /// MXNet: B's .params file.
    #[arg(long, value_name = "FILE")]
    params_b: Option<PathBuf>,
    /// Relative tolerance.
    #[arg(long, default_value_t = RTOL)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = ATOL)]
    atol: f64,
    /// Execution path for A.
    #[arg(long, value_enum, default_value = "reference")]
    path_a: ExecPath,
    /// Execution path for B (compare a model with itself across paths: `ferry compare m.onnx
    /// m.onnx --path-b optimized`).
    #[arg(long, value_enum, default_value = "reference")]
    path_b: ExecPath,
    /// Threads for the optimized path's kernels (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let spec = InputSpec {
        inputs: &a.inputs,
        npz: a.npz.as_deref(),
        random_inputs: a.random_inputs || (a.inputs.is_empty() && a.npz.is_none()),
        seed: a.seed,
        input_shapes: &a.input_shapes,
    };
    let model_a = inputs::load_model(&a.a, a.params_a.as_ref(), &spec)?;
    let paths = (a.path_a.prepare_options(a.threads), a.path_b.prepare_options(a.threads));
    let side = Side { path: &a.b, params: a.params_b.as_ref(), model: None };
    let report = compare_with(&model_a, side, &spec, a.rtol, a.atol, &paths)?;
    report.print(&a.a, &a.b, a.json);
    Ok(if report.agree() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The second model: loaded from `path` (with the first model's input shapes for an MXNet
/// symbol) unless given.
pub struct Side<'a> {
    pub path: &'a Path,
    pub params: Option<&'a PathBuf>,
    pub model: Option<ferry::Model>,
}

/// Runs `model_a` on the inputs `spec` describes, and B on the same values (paired by name, else
/// by position), and compares the outputs.
pub fn compare_with(
    model_a: &ferry::Model,
    b: Side,
    spec: &InputSpec,
    rtol: f64,
    atol: f64,
    paths: &(ferry::PrepareOptions, ferry::PrepareOptions),
) -> Result<Report, Refusal> {
    let prep_a = ferry::prepare(model_a, &paths.0).map_err(|e| Refusal(format!("model A: {e}")))?;
    let feeds_a = inputs::feeds(prep_a.graph(), spec)?;
    let known: Vec<(String, Vec<u64>, ferry_ir::DType)> =
        feeds_a.free.iter().filter_map(|(n, v)| v.tensor().map(|t| (n.clone(), t.shape.clone(), t.dtype))).collect();
    let model_b = match b.model {
        Some(m) => m,
        None => inputs::load_model_with(
            b.path,
            b.params,
            &InputSpec { input_shapes: spec.input_shapes, ..Default::default() },
            &known,
        )?,
    };
    let prep_b = ferry::prepare(&model_b, &paths.1).map_err(|e| Refusal(format!("model B: {e}")))?;

    // B's feeds: by name where A has an input of that name, else A's input at the same position.
    let gb = prep_b.graph();
    let free_b: Vec<&str> =
        gb.inputs.iter().filter(|i| gb.initializer(**i).is_none()).map(|i| gb.values[*i].name.as_str()).collect();
    let mut feeds_b = Vec::new();
    for (k, name) in free_b.iter().enumerate() {
        let v = feeds_a
            .free
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| feeds_a.free.get(k))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                Refusal(format!(
                    "model B has input '{name}' (#{k}) with no counterpart in model A ({} input(s))",
                    feeds_a.free.len()
                ))
            })?;
        feeds_b.push((name.to_string(), v));
    }
    let names_b: Vec<String> = gb.outputs.iter().map(|o| gb.values[*o].name.clone()).collect();
    let ga = prep_a.graph();
    let names_a: Vec<String> = ga.outputs.iter().map(|o| ga.values[*o].name.clone()).collect();

    let out_a = prep_a.run(feeds_a.all()).map_err(|e| Refusal(format!("running model A: {e}")))?;
    let out_b = prep_b.run(feeds_b).map_err(|e| Refusal(format!("running model B: {e}")))?;

    let by_name = names_a.iter().all(|n| names_b.contains(n));
    let mut rows = Vec::new();
    let mut used_b = vec![false; names_b.len()];
    for (k, na) in names_a.iter().enumerate() {
        let kb = if by_name { names_b.iter().position(|n| n == na) } else { (k < names_b.len()).then_some(k) };
        let row = match kb {
            Some(kb) => {
                used_b[kb] = true;
                compare_values(&out_a[k], &out_b[kb], rtol, atol)
            }
            None => Row::missing("B has no output to pair with this one"),
        };
        rows.push(Pair { a: Some((k, na.clone())), b: kb.map(|kb| (kb, names_b[kb].clone())), by_name, row });
    }
    for (kb, nb) in names_b.iter().enumerate().filter(|(kb, _)| !used_b[*kb]) {
        rows.push(Pair {
            a: None,
            b: Some((kb, nb.clone())),
            by_name,
            row: Row::missing("A has no output to pair with this one"),
        });
    }
    Ok(Report { pairs: rows, rtol, atol })
}

pub struct Pair {
    a: Option<(usize, String)>,
    b: Option<(usize, String)>,
    by_name: bool,
    row: Row,
}

/// The comparison of one output pair.
#[derive(Default)]
pub struct Row {
    dtype: (String, String),
    shape: (Vec<u64>, Vec<u64>),
    max_abs: f64,
    max_rel: f64,
    /// The element furthest outside the tolerance (or with the largest error when all pass).
    worst: Option<(Vec<u64>, f64, f64)>,
    mismatches: u64,
    problem: Option<String>,
}

impl Row {
    fn missing(why: &str) -> Row {
        Row { problem: Some(why.to_string()), ..Default::default() }
    }
    pub(crate) fn pass(&self) -> bool {
        self.problem.is_none() && self.mismatches == 0
    }

    /// The measured errors as JSON (dtype, shape, errors, worst element, problem).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut o = json!({
            "pass": self.pass(),
            "dtype": {"a": self.dtype.0, "b": self.dtype.1, "match": self.dtype.0 == self.dtype.1},
            "shape": {"a": self.shape.0, "b": self.shape.1, "match": self.shape.0 == self.shape.1},
            "max_abs_error": num(self.max_abs),
            "max_rel_error": num(self.max_rel),
            "mismatches": self.mismatches,
        });
        if let Some((idx, va, vb)) = &self.worst {
            o["worst"] = json!({"index": idx, "a": num(*va), "b": num(*vb)});
        }
        if let Some(pr) = &self.problem {
            o["problem"] = json!(pr);
        }
        o
    }

    /// One line: the problem, or the errors and how many elements are outside the tolerance.
    pub(crate) fn summary(&self, rtol: f64, atol: f64) -> String {
        if let Some(pr) = &self.problem {
            return pr.clone();
        }
        let mut s = format!("max abs error {:.3e}  max rel error {:.3e}", self.max_abs, self.max_rel);
        if self.mismatches > 0 {
            s += &format!("  ({} element(s) outside atol {atol} + rtol {rtol} * |expected|)", self.mismatches);
        }
        s
    }
}

pub(crate) fn compare_values(a: &Value, b: &Value, rtol: f64, atol: f64) -> Row {
    match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => compare_tensors(x, y, rtol, atol),
        (Value::Optional(None), Value::Optional(None)) => Row::default(),
        (Value::Optional(Some(x)), Value::Optional(Some(y))) => compare_values(x, y, rtol, atol),
        (Value::Sequence(xs), Value::Sequence(ys)) => {
            if xs.len() != ys.len() {
                return Row::missing(&format!("sequence lengths differ: {} vs {}", xs.len(), ys.len()));
            }
            let mut total = Row::default();
            for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                let r = compare_values(x, y, rtol, atol);
                if let Some(p) = r.problem {
                    return Row::missing(&format!("item {i}: {p}"));
                }
                total.mismatches += r.mismatches;
                if r.max_abs > total.max_abs || total.worst.is_none() {
                    total.worst = r.worst.map(|(mut idx, va, vb)| {
                        idx.insert(0, i as u64);
                        (idx, va, vb)
                    });
                }
                total.max_abs = total.max_abs.max(r.max_abs);
                total.max_rel = total.max_rel.max(r.max_rel);
            }
            total
        }
        (x, y) => Row::missing(&format!("kinds differ: {} vs {}", x.kind(), y.kind())),
    }
}

fn values_f64(t: &Tensor) -> Result<Vec<f64>, String> {
    if ferry_runtime::lowbits::is_lowbits(t.dtype) {
        return ferry_runtime::lowbits::to_f64(t);
    }
    Ok(ferry_runtime::array::Array::from_tensor(t)?.to_f64()?.iter().copied().collect())
}

fn unravel(mut flat: u64, shape: &[u64]) -> Vec<u64> {
    let mut idx = vec![0; shape.len()];
    for (i, d) in shape.iter().enumerate().rev() {
        if *d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

fn compare_tensors(a: &Tensor, b: &Tensor, rtol: f64, atol: f64) -> Row {
    let mut row = Row {
        dtype: (a.dtype.to_string(), b.dtype.to_string()),
        shape: (a.shape.clone(), b.shape.clone()),
        ..Default::default()
    };
    if a.dtype != b.dtype {
        row.problem = Some(format!("element types differ: {} vs {}", a.dtype, b.dtype));
        return row;
    }
    if a.shape != b.shape {
        row.problem = Some(format!("shapes differ: {:?} vs {:?}", a.shape, b.shape));
        return row;
    }
    if let (TensorData::Strings(x), TensorData::Strings(y)) = (&a.data, &b.data) {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            if p != q {
                row.mismatches += 1;
                if row.worst.is_none() {
                    row.worst = Some((unravel(i as u64, &a.shape), f64::NAN, f64::NAN));
                }
            }
        }
        if row.mismatches > 0 {
            row.max_abs = f64::INFINITY;
            row.max_rel = f64::INFINITY;
        }
        return row;
    }
    let (x, y) = match (values_f64(a), values_f64(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            row.problem = Some(format!("cannot read the values: {e}"));
            return row;
        }
    };
    // The worst element: the largest error measured in units of the allowed error.
    let mut worst_score = -1.0f64;
    for (i, (&p, &q)) in x.iter().zip(&y).enumerate() {
        let same = p == q || (p.is_nan() && q.is_nan());
        let (abs, rel, score) = if same {
            (0.0, 0.0, 0.0)
        } else {
            let abs = (p - q).abs();
            let abs = if abs.is_nan() { f64::INFINITY } else { abs };
            let rel = if p == 0.0 { f64::INFINITY } else { abs / p.abs() };
            let allowed = atol + rtol * p.abs();
            if abs > allowed {
                row.mismatches += 1;
            }
            (abs, rel, if allowed > 0.0 { abs / allowed } else { f64::INFINITY })
        };
        row.max_abs = row.max_abs.max(abs);
        row.max_rel = row.max_rel.max(rel);
        if score > worst_score {
            worst_score = score;
            row.worst = Some((unravel(i as u64, &a.shape), p, q));
        }
    }
    row
}

/// The outcome of one comparison.
pub struct Report {
    pairs: Vec<Pair>,
    rtol: f64,
    atol: f64,
}

fn num(x: f64) -> serde_json::Value {
    if x.is_finite() { json!(x) } else { json!(x.to_string()) }
}

impl Report {
    pub fn agree(&self) -> bool {
        self.pairs.iter().all(|p| p.row.pass())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let outputs: Vec<serde_json::Value> = self
            .pairs
            .iter()
            .map(|p| {
                let r = &p.row;
                let mut o = json!({
                    "a": p.a.as_ref().map(|(k, n)| json!({"index": k, "name": n})),
                    "b": p.b.as_ref().map(|(k, n)| json!({"index": k, "name": n})),
                    "paired_by": if p.by_name { "name" } else { "position" },
                    "pass": r.pass(),
                });
                if p.a.is_some() && p.b.is_some() {
                    for (k, v) in r.to_json().as_object().into_iter().flatten() {
                        o[k] = v.clone();
                    }
                } else if let Some(pr) = &r.problem {
                    o["problem"] = json!(pr);
                }
                o
            })
            .collect();
        json!({"agree": self.agree(), "rtol": self.rtol, "atol": self.atol, "outputs": outputs})
    }

    pub fn print(&self, a: &Path, b: &Path, as_json: bool) {
        if as_json {
            let mut j = self.to_json();
            j["model_a"] = json!(a.display().to_string());
            j["model_b"] = json!(b.display().to_string());
            println!("{j}");
            return;
        }
        println!("A: {}\nB: {}", a.display(), b.display());
        for p in &self.pairs {
            let name = |s: &Option<(usize, String)>| s.as_ref().map_or("-".to_string(), |(k, n)| format!("#{k} '{n}'"));
            let r = &p.row;
            let verdict = if r.pass() { "PASS" } else { "FAIL" };
            println!("{verdict} A {} <-> B {}", name(&p.a), name(&p.b));
            if p.a.is_some() && p.b.is_some() && !r.dtype.0.is_empty() {
                println!("     {}[{}] vs {}[{}]", r.dtype.0, dims(&r.shape.0), r.dtype.1, dims(&r.shape.1));
            }
            if let Some(pr) = &r.problem {
                println!("     {pr}");
                continue;
            }
            if p.a.is_some() && p.b.is_some() {
                print!("     max abs error {:.3e}  max rel error {:.3e}", r.max_abs, r.max_rel);
                if let Some((idx, va, vb)) = &r.worst {
                    print!("  worst at [{}]: {va} vs {vb}", dims(idx));
                }
                println!();
                if r.mismatches > 0 {
                    println!("     {} element(s) outside atol {} + rtol {} * |A|", r.mismatches, self.atol, self.rtol);
                }
            }
        }
        let bad = self.pairs.iter().filter(|p| !p.row.pass()).count();
        if bad == 0 {
            println!("agree: all {} output(s) within rtol {} atol {}", self.pairs.len(), self.rtol, self.atol);
        } else {
            println!("differ: {bad} of {} output(s) outside rtol {} atol {}", self.pairs.len(), self.rtol, self.atol);
        }
    }
}

fn dims(d: &[u64]) -> String {
    d.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}
