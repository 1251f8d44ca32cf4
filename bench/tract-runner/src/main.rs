//! Times tract on one ONNX model the way `ferry bench` times ferry, for bench/run.py.
//!
//! tract-runner MODEL (--inputs FILE.npz | --input-shape NAME=DxDxD ...) [--threads N] [--runs N] [--warmup N]
//! Prints progress on stderr and, as its last stdout line, one JSON object:
//! {"engine":"tract","model":..,"threads":..,"runs":..,"prepare_ms":..,"latency_ms":{"min","median","p90","mean"},
//!  "cpu_ms_per_run":..,"peak_rss_mb":..}

mod npz;

use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure, format_err};

struct Args {
    model: String,
    inputs: Option<String>,
    shapes: Vec<(String, Vec<usize>)>,
    threads: usize,
    runs: usize,
    warmup: usize,
    max_seconds: Option<f64>,
}

fn parse_args() -> TractResult<Args> {
    let mut args =
        Args { model: String::new(), inputs: None, shapes: vec![], threads: 1, runs: 10, warmup: 2, max_seconds: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format_err!("{name} needs a value"));
        match a.as_str() {
            "--inputs" => args.inputs = Some(value("--inputs")?),
            "--input-shape" => {
                let v = value("--input-shape")?;
                let (name, dims) = v.split_once('=').ok_or_else(|| format_err!("--input-shape wants NAME=DIMS"))?;
                let dims = dims.split('x').map(|d| d.parse::<usize>()).collect::<Result<Vec<_>, _>>()?;
                args.shapes.push((name.to_string(), dims));
            }
            "--threads" => args.threads = value("--threads")?.parse()?,
            "--runs" => args.runs = value("--runs")?.parse()?,
            "--warmup" => args.warmup = value("--warmup")?.parse()?,
            "--max-seconds" => {
                let v: f64 = value("--max-seconds")?.parse()?;
                ensure!(v.is_finite() && v > 0.0, "--max-seconds must be a positive number");
                args.max_seconds = Some(v);
            }
            "-h" | "--help" => {
                println!(
                    "tract-runner MODEL (--inputs FILE.npz | --input-shape NAME=1x3x224x224 ...) [--threads N] [--runs N] [--warmup N] [--max-seconds S]"
                );
                std::process::exit(0);
            }
            m if !m.starts_with('-') && args.model.is_empty() => args.model = m.to_string(),
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(!args.model.is_empty(), "no model given");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(args.threads > 0, "--threads must be at least 1");
    Ok(args)
}

/// Deterministic f32 values in [-1, 1) for inputs given only by shape.
fn pseudo_random(shape: &[usize]) -> TractResult<Tensor> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &data)
}

/// The model's inputs in declaration order, matched by name to the given tensors.
fn bind_inputs(model: &InferenceModel, args: &Args) -> TractResult<Vec<Tensor>> {
    let mut given: Vec<(String, Tensor)> = match &args.inputs {
        Some(path) => npz::read_npz(path)?,
        None => vec![],
    };
    for (name, dims) in &args.shapes {
        given.retain(|(n, _)| n != name);
        given.push((name.clone(), pseudo_random(dims)?));
    }
    let mut bound = Vec::new();
    for outlet in model.input_outlets()? {
        let name = &model.node(outlet.node).name;
        let at = given.iter().position(|(n, _)| n == name).ok_or_else(|| format_err!("no value for input {name}"))?;
        bound.push(given.swap_remove(at).1);
    }
    Ok(bound)
}

/// User + system CPU time of this process so far (all threads), in ms.
fn process_cpu_ms() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Linear interpolation between closest ranks (numpy's default), the same rule ferry bench and run.py use.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn main() -> TractResult<()> {
    let args = parse_args()?;
    if args.threads > 1 {
        tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(args.threads));
    }
    let started = Instant::now();
    let mut model = tract_onnx::onnx().model_for_path(&args.model)?;
    let inputs = bind_inputs(&model, &args)?;
    for (i, t) in inputs.iter().enumerate() {
        model.set_input_fact(i, InferenceFact::dt_shape_from_tensor(t))?;
    }
    let runnable = model.into_optimized()?.into_runnable()?;
    let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
    eprintln!("tract: prepared {} in {prepare_ms:.1} ms", args.model);

    let values: TVec<TValue> = inputs.into_iter().map(|t| t.into_tvalue()).collect();
    // Same budget rule as `ferry bench --max-seconds`: at least one run of each kind.
    let over = |since: Instant| args.max_seconds.is_some_and(|b| since.elapsed().as_secs_f64() >= b);
    let mut first_run_ms = None;
    let (mut warmup_done, started) = (0, Instant::now());
    while warmup_done < args.warmup && (warmup_done == 0 || !over(started)) {
        let t = Instant::now();
        runnable.run(values.clone())?;
        first_run_ms.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
        warmup_done += 1;
    }
    let mut times = Vec::with_capacity(args.runs.min(100_000));
    let cpu_before = process_cpu_ms();
    let started = Instant::now();
    while times.len() < args.runs && (times.is_empty() || !over(started)) {
        let t = Instant::now();
        runnable.run(values.clone())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if times.len() % 10 == 0 {
            eprintln!("tract: {} / {} runs", times.len(), args.runs);
        }
    }
    let cpu_ms_per_run = process_cpu_ms().zip(cpu_before).map(|(after, before)| (after - before) / times.len() as f64);
    let first_run_ms = first_run_ms.unwrap_or(times[0]);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "engine": "tract",
        "model": args.model,
        "threads": args.threads,
        "runs": times.len(),
        "warmup": warmup_done,
        "prepare_ms": prepare_ms,
        "first_run_ms": first_run_ms,
        "latency_ms": {"min": times[0], "median": percentile(&times, 0.5), "p90": percentile(&times, 0.9), "mean": mean},
        "cpu_ms_per_run": cpu_ms_per_run,
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{report}");
    Ok(())
}
