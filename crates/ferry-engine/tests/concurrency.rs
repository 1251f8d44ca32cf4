//! One engine run from 8 threads (1000 runs over four batch sizes, so four plans and their
//! arena pools are shared) gives bit-identical outputs to the same runs made one at a time.

mod common;

use common::{f32_input, floats};
use ferry_engine::{Engine, EngineOptions};
use std::path::Path;

fn inputs(run: usize) -> Vec<(String, ferry_engine::Value)> {
    let batch = 1 + run % 4;
    let n = batch * 3 * 16 * 16;
    let values: Vec<f32> = (0..n).map(|i| ((i * 31 + run * 17) % 97) as f32 / 48.0 - 1.0).collect();
    vec![f32_input("image", &[batch as u64, 3, 16, 16], &values)]
}

#[test]
fn the_engine_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
}

#[test]
fn concurrent_runs_match_sequential_runs_bit_for_bit() {
    let model = ferry_onnx::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx")).unwrap();
    let engine = Engine::compile(&model, &EngineOptions { threads: 2 }).unwrap();
    const RUNS: usize = 1000;
    let sequential: Vec<Vec<u32>> =
        (0..RUNS).map(|r| floats(&engine.run(inputs(r)).unwrap()[0]).iter().map(|v| v.to_bits()).collect()).collect();
    let concurrent: Vec<(usize, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let engine = &engine;
                s.spawn(move || {
                    (t..RUNS)
                        .step_by(8)
                        .map(|r| (r, floats(&engine.run(inputs(r)).unwrap()[0]).iter().map(|v| v.to_bits()).collect()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(concurrent.len(), RUNS);
    for (r, out) in concurrent {
        assert_eq!(out, sequential[r], "run {r} differs");
    }
    assert_eq!(engine.plan_stats().len(), 4, "one plan per batch size");
    // And the engine agrees with the reference runtime on one of them.
    let want = ferry_runtime::Prepared::new(&model).unwrap().run(inputs(3)).unwrap();
    let got = engine.run(inputs(3)).unwrap();
    for (a, b) in floats(&want[0]).iter().zip(floats(&got[0])) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
}
