//! `ferry bench`: how long a model takes to load and prepare, how long one run takes
//! (min/median/p90/mean over N timed runs after warm-up runs), and the process's peak memory.
//! The figures are what bench/run.py compares with onnxruntime and tract.

use super::compare::ExecPath;
use super::inputs::{self, InputSpec};
use crate::Refusal;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The model to time (.onnx, or MXNet prefix-symbol.json).
    model: PathBuf,
    /// MXNet: the .params file (default: prefix-0000.params beside prefix-symbol.json).
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// Intra-op threads for the optimized path (0 = all cores). The reference path uses one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16))]
    threads: u16,
    /// Timed runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    runs: u32,
    /// Untimed runs before the timed ones (caches, allocator, thread pool).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    warmup: u32,
    /// Time budget in seconds for the warm-up runs and again for the timed runs: each stops early
    /// once its runs have taken this long (after at least one run); the report gives the counts done.
    #[arg(long, value_name = "SECS", value_parser = parse_budget)]
    max_seconds: Option<f64>,
    /// Inputs from a .npz archive (keys are input names).
    #[arg(long = "inputs", value_name = "FILE.npz")]
    npz: Option<PathBuf>,
    /// An input: NAME=FILE with FILE .npy or .pb (repeatable).
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Fill every input not given with deterministic random values.
    #[arg(long)]
    random_inputs: bool,
    /// Seed for --random-inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shape for a random input, binding its symbolic dims: NAME=1,3,224,224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<String>,
    /// The execution path to time.
    #[arg(long, value_enum, default_value = "optimized")]
    path: ExecPath,
    /// Print one JSON object (the last stdout line) instead of text.
    #[arg(long)]
    json: bool,
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

/// Prepares `model` on the chosen path (the `ferry::prepare` facade); returns the runner and the
/// threads it really uses (the reference path runs on one; 0 means all cores).
fn prepare(model: &ferry::Model, path: ExecPath, threads: u16) -> Result<(ferry::Runner, u16), Refusal> {
    let threads = match (path, threads) {
        (ExecPath::Reference, _) => 1,
        (ExecPath::Optimized, 0) => {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(usize::from(u16::MAX)) as u16)
        }
        (ExecPath::Optimized, n) => n,
    };
    let runner =
        ferry::prepare(model, &path.prepare_options(usize::from(threads))).map_err(|e| Refusal(e.to_string()))?;
    Ok((runner, threads))
}

fn path_name(path: ExecPath) -> &'static str {
    match path {
        ExecPath::Reference => "reference",
        ExecPath::Optimized => "optimized",
    }
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let spec = a.spec();
    let started = Instant::now();
    let model = inputs::load_model(&a.model, a.params.as_ref(), &spec)?;
    let load = started.elapsed();
    // The feeds are built before preparing so that their cost stays out of the prepare time.
    let feeds = inputs::feeds(&model.graph, &spec)?.all();
    let prepare_started = Instant::now();
    let (runner, threads) = prepare(&model, a.path, a.threads)?;
    let prepare_only = prepare_started.elapsed();
    if a.path == ExecPath::Reference && a.threads > 1 {
        eprintln!("note: the reference path is single-threaded; --threads {} does not apply to it", a.threads);
    }

    let mut progress = Progress::new();
    // The first run can carry work an engine defers from prepare (planning for the input shapes):
    // it is reported on its own.
    let mut first_run_ms = None;
    let budget = a.max_seconds.map(Duration::from_secs_f64);
    let over_budget = |since: Instant| budget.is_some_and(|b| since.elapsed() >= b);
    let warmup_started = Instant::now();
    let mut warmup_done = 0;
    while warmup_done < a.warmup && (warmup_done == 0 || !over_budget(warmup_started)) {
        let t = Instant::now();
        runner.run(feeds.clone()).map_err(|m| Refusal(format!("warm-up run {}: {m}", warmup_done + 1)))?;
        first_run_ms.get_or_insert(ms(t.elapsed()));
        warmup_done += 1;
        progress.note(|| format!("warm-up {warmup_done} / {}", a.warmup));
    }
    let mut times_ms = Vec::with_capacity(a.runs as usize);
    let cpu_before = process_cpu_time();
    let timed_started = Instant::now();
    while times_ms.len() < a.runs as usize && (times_ms.is_empty() || !over_budget(timed_started)) {
        let run_feeds = feeds.clone();
        let t = Instant::now();
        let outputs = runner.run(run_feeds).map_err(|m| Refusal(format!("run {}: {m}", times_ms.len() + 1)))?;
        times_ms.push(ms(t.elapsed()));
        drop(outputs);
        progress.note(|| format!("run {} / {}: {:.1} ms", times_ms.len(), a.runs, times_ms[times_ms.len() - 1]));
    }
    let runs_done = times_ms.len() as u32;
    // CPU time says how much work a run is even when other processes share the cores (wall time
    // then stretches); with several threads it is the sum over them, spinning included.
    let cpu_ms_per_run = match (cpu_before, process_cpu_time()) {
        (Some(before), Some(after)) => Some(ms(after.saturating_sub(before)) / f64::from(runs_done)),
        _ => None,
    };
    let first_run_ms = first_run_ms.unwrap_or(times_ms[0]);
    let latency = Latency::of(&mut times_ms);
    let peak_rss_mb = peak_rss_mb();
    let prepare_ms = ms(load + prepare_only);

    if a.json {
        let report = json!({
            "engine": "ferry",
            "model": a.model.display().to_string(),
            "path": path_name(a.path),
            "threads": threads,
            "runs": runs_done,
            "warmup": warmup_done,
            "load_ms": ms(load),
            "prepare_ms": prepare_ms,
            "first_run_ms": first_run_ms,
            "latency_ms": {"min": latency.min, "median": latency.median, "p90": latency.p90,
                           "mean": latency.mean, "max": latency.max},
            "cpu_ms_per_run": cpu_ms_per_run,
            "peak_rss_mb": peak_rss_mb,
        });
        println!("{report}");
    } else {
        println!("model     {}", a.model.display());
        println!("path      {} ({threads} thread{})", path_name(a.path), if threads == 1 { "" } else { "s" });
        println!("prepare   {prepare_ms:.1} ms (load {:.1} ms + prepare {:.1} ms)", ms(load), ms(prepare_only));
        println!("first run {first_run_ms:.2} ms");
        println!(
            "latency   min {:.2} ms  median {:.2} ms  p90 {:.2} ms  mean {:.2} ms  ({} runs after {} warm-up)",
            latency.min, latency.median, latency.p90, latency.mean, runs_done, warmup_done
        );
        if let Some(cpu) = cpu_ms_per_run {
            println!("cpu       {cpu:.2} ms per run (process CPU time, all threads)");
        }
        match peak_rss_mb {
            Some(mb) => println!("peak RSS  {mb:.1} MB"),
            None => println!("peak RSS  unavailable (read from /proc/self/status on Linux only)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds between 0 and 1000000")),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Summary of the timed runs, in milliseconds.
struct Latency {
    min: f64,
    median: f64,
    p90: f64,
    mean: f64,
    max: f64,
}

impl Latency {
    /// `times` must not be empty (clap keeps --runs at 1 or more).
    fn of(times: &mut [f64]) -> Latency {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        Latency {
            min: times[0],
            median: percentile(times, 0.5),
            p90: percentile(times, 0.9),
            mean,
            max: times[times.len() - 1],
        }
    }
}

/// Linear interpolation between closest ranks (numpy's default), the rule bench/run.py and the
/// tract runner use too, so the engines' figures mean the same thing.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The high-water mark of resident memory (VmHWM), in MB; None where /proc is not there.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU time of this process so far (all threads).
fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
        Some(tv(usage.ru_utime) + tv(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Progress lines on stderr, at most one every two seconds, so short benchmarks stay quiet and
/// long ones show they are alive.
struct Progress {
    last: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress { last: Instant::now() }
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(2) {
            eprintln!("{}", line());
            self.last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 90]) == [2.5, 3.7]
        let mut t = [4.0, 1.0, 3.0, 2.0];
        let l = Latency::of(&mut t);
        assert_eq!((l.min, l.max, l.mean), (1.0, 4.0, 2.5));
        assert!((l.median - 2.5).abs() < 1e-12);
        assert!((l.p90 - 3.7).abs() < 1e-12);
        let one = Latency::of(&mut [7.0]);
        assert_eq!((one.min, one.median, one.p90), (7.0, 7.0, 7.0));
    }
}
