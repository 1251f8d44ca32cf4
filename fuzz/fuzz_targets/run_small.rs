//! ONNX bytes -> load -> (≤ 32 nodes, small known-shape inputs) prepare and run on zero-filled
//! inputs with the reference runtime. The per-tensor ceiling is set low so that hostile graphs
//! meet the limit instead of exhausting memory.
#![no_main]
use ferry_ir::{Dim, ValueType};
use ferry_runtime::{Prepared, Value};
use libfuzzer_sys::fuzz_target;

const MAX_INPUT_ELEMS: u64 = 4096;

fn zero_input(ty: &ValueType) -> Option<Value> {
    let ValueType::Tensor { dtype: Some(dtype), shape: Some(shape) } = ty else { return None };
    let mut dims = Vec::new();
    for d in &shape.0 {
        match d {
            Dim::Known(n) => dims.push(*n),
            _ => dims.push(1),
        }
    }
    let numel = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d))?;
    if numel > MAX_INPUT_ELEMS {
        return None;
    }
    let t = if *dtype == ferry_ir::DType::String {
        ferry_ir::Tensor::from_strings(dims, vec![bytes::Bytes::new(); numel as usize]).ok()?
    } else {
        let n = dtype.storage_bytes(numel)?;
        ferry_ir::Tensor::from_raw(*dtype, dims, bytes::Bytes::from(vec![0u8; n as usize])).ok()?
    };
    Some(Value::Tensor(t))
}

fuzz_target!(
    init: {
        // SAFETY: set once at start, before any thread reads the environment.
        unsafe { std::env::set_var("FERRY_MAX_TENSOR_BYTES", "1048576") };
    },
    |data: &[u8]| {
        let Ok(mut model) = ferry_onnx::load_bytes(bytes::Bytes::copy_from_slice(data)) else { return };
        let mut nodes = 0usize;
        model.graph.visit(&mut |g, _| nodes += g.nodes.len());
        if nodes > 32 {
            return;
        }
        let _ = ferry_ir::infer::infer_graph(&mut model.graph);
        let Ok(prepared) = Prepared::new(&model) else { return };
        let g = prepared.graph();
        let mut inputs = Vec::new();
        for &id in &g.inputs {
            if g.initializer(id).is_some() {
                continue;
            }
            let Some(v) = zero_input(&g.values[id].ty) else { return };
            inputs.push((g.values[id].name.clone(), v));
        }
        let _ = prepared.run(inputs);
    }
);
