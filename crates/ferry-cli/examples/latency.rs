//! Latency of one model on both execution paths, with the optimized path's plan figures.
//!
//! Usage: cargo run --release -p ferry-cli --example latency -- MODEL.onnx INPUTS.npz [RUNS] [THREADS]
//! Prints the reference run time (one run), the optimized path's first run (plan build included)
//! and the median of RUNS steady-state runs, the arena size, and the largest output difference.

use ferry::{ExecPath, PrepareOptions, Value};
use std::time::Instant;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: latency MODEL.onnx INPUTS.npz [RUNS] [THREADS]".into());
    }
    let runs: usize = args.get(3).map_or(Ok(10), |s| s.parse()).map_err(|e| format!("RUNS: {e}"))?;
    let threads: usize = args.get(4).map_or(Ok(0), |s| s.parse()).map_err(|e| format!("THREADS: {e}"))?;
    let model = ferry::load(std::path::Path::new(&args[1])).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&args[2]).map_err(|e| format!("{}: {e}", args[2]))?;
    let inputs: Vec<(String, Value)> =
        ferry_cli::npy::read_npz(&bytes)?.into_iter().map(|(n, t)| (n, Value::Tensor(t))).collect();

    let reference =
        ferry::prepare(&model, &PrepareOptions { path: ExecPath::Reference, threads }).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let want = reference.run(inputs.clone()).map_err(|e| e.to_string())?;
    println!("reference: {:.1} ms (one run)", t.elapsed().as_secs_f64() * 1e3);

    let t = Instant::now();
    let engine =
        ferry_engine::Engine::compile(&model, &ferry_engine::EngineOptions { threads }).map_err(|e| e.to_string())?;
    let compile = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let got = engine.run(inputs.clone()).map_err(|e| e.to_string())?;
    println!(
        "optimized: compile {:.1} ms, first run (plan build included) {:.1} ms",
        compile * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        engine.run(inputs.clone()).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        println!(
            "optimized: median {:.2} ms, min {:.2} ms over {runs} runs ({threads} threads requested)",
            times[times.len() / 2],
            times[0]
        );
    }
    for s in engine.plan_stats() {
        println!(
            "plan: arena {:.2} MiB (tensors without reuse {:.2} MiB), {} steps, {} on reference kernels, {} nodes folded",
            s.arena_bytes as f64 / 1048576.0,
            s.unshared_bytes as f64 / 1048576.0,
            s.steps,
            s.fallback_steps,
            s.folded_nodes
        );
    }
    println!("reference kernels used: {:?}", engine.fallback_ops());
    for (kind, secs, count) in engine.profile(inputs.clone()).map_err(|e| e.to_string())? {
        println!("  {kind:<32} {count:>4} steps {:>9.2} ms", secs * 1e3);
    }
    for (k, (a, b)) in want.iter().zip(&got).enumerate() {
        let (Some(a), Some(b)) = (a.tensor(), b.tensor()) else { continue };
        let (a, b) = (a.to_f64_vec().unwrap_or_default(), b.to_f64_vec().unwrap_or_default());
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        let scale = a.iter().map(|x| x.abs()).fold(0.0, f64::max);
        println!("output {k}: max abs difference {diff:.3e} (max |reference| {scale:.3e})");
    }
    Ok(())
}
