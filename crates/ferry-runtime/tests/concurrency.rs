//! One prepared model run from many threads at once must give exactly what sequential runs give:
//! 8 threads share one `Prepared` for 1 000 runs in all, each on its own input.

use bytes::Bytes;
use ferry_ir::{DType, Tensor};
use ferry_runtime::{Prepared, Value};
use std::path::Path;
use std::sync::Arc;

const THREADS: usize = 8;
const RUNS: usize = 1000;

/// A deterministic input per run index (xorshift), so every run differs from its neighbours.
fn image(run: usize, batch: u64) -> Value {
    let n = (batch * 3 * 16 * 16) as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (run as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut raw = Vec::with_capacity(n * 4);
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let x = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        raw.extend_from_slice(&x.to_le_bytes());
    }
    Value::Tensor(Tensor::from_raw(DType::F32, vec![batch, 3, 16, 16], Bytes::from(raw)).expect("image"))
}

/// Batch sizes vary by run, so the symbolic batch dim is resolved anew on each call.
fn batch_of(run: usize) -> u64 {
    1 + (run % 3) as u64
}

#[test]
fn eight_threads_share_one_prepared_model_and_match_sequential_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tiny_cnn.onnx");
    let model = ferry_onnx::load_bytes(Bytes::from(std::fs::read(&path).expect("example model"))).expect("load");
    let prepared = Arc::new(Prepared::new(&model).expect("prepare"));
    let run = |p: &Prepared, k: usize| p.run(vec![("image".to_string(), image(k, batch_of(k)))]).expect("run");

    let sequential: Vec<Vec<Value>> = (0..RUNS).map(|k| run(&prepared, k)).collect();
    let changes = sequential.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, RUNS - 1, "neighbouring runs should give different outputs");

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let prepared = Arc::clone(&prepared);
            std::thread::spawn(move || (t..RUNS).step_by(THREADS).map(|k| (k, run(&prepared, k))).collect::<Vec<_>>())
        })
        .collect();
    let mut seen = 0;
    for h in handles {
        for (k, outputs) in h.join().expect("a worker thread panicked") {
            assert_eq!(outputs, sequential[k], "run {k} differs from its sequential result");
            seen += 1;
        }
    }
    assert_eq!(seen, RUNS);
}
