//! Models the fuzzer (fuzz/, target run_small) once crashed the runtime on: run on zero-filled
//! inputs, each must end in an error (or outputs), never a panic or an allocation failure.

use bytes::Bytes;
use ferry_ir::{Dim, Tensor, ValueType};
use ferry_runtime::{Prepared, Value};
use std::path::Path;

fn run_zeros(name: &str) -> Result<Vec<Value>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(name);
    let model =
        ferry_onnx::load_bytes(Bytes::from(std::fs::read(&path).expect("fixture"))).map_err(|e| e.to_string())?;
    let prepared = Prepared::new(&model).map_err(|e| e.to_string())?;
    let g = prepared.graph();
    let mut inputs = Vec::new();
    for &id in &g.inputs {
        if g.initializer(id).is_some() {
            continue;
        }
        let ValueType::Tensor { dtype: Some(dtype), shape: Some(shape) } = &g.values[id].ty else {
            panic!("input type")
        };
        let dims: Vec<u64> = shape.0.iter().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect();
        let n = dtype.storage_bytes(dims.iter().product()).expect("raw");
        let t = Tensor::from_raw(*dtype, dims, Bytes::from(vec![0u8; n as usize])).expect("zeros");
        inputs.push((g.values[id].name.clone(), Value::Tensor(t)));
    }
    prepared.run(inputs).map_err(|e| e.to_string())
}

#[test]
fn tile_with_huge_repeats_meets_the_tensor_limit() {
    let e = run_zeros("tile_huge_repeats.onnx").unwrap_err();
    assert!(e.contains("FERRY_MAX_TENSOR_BYTES"), "{e}");
}

#[test]
fn attention_with_a_value_batch_unlike_the_query_batch_is_refused() {
    let e = run_zeros("attention_v_batch_mismatch.onnx").unwrap_err();
    assert!(e.contains("do not fit"), "{e}");
}

#[test]
fn concat_from_sequence_of_tensors_of_different_ranks_is_refused() {
    let e = run_zeros("concat_from_sequence_rank_mismatch.onnx").unwrap_err();
    assert!(e.contains("differ in rank"), "{e}");
}

#[test]
fn matmul_integer_with_a_zero_point_that_does_not_broadcast_is_refused() {
    let e = run_zeros("matmul_integer_zero_point_mismatch.onnx").unwrap_err();
    assert!(e.contains("MatMulInteger") && e.contains("broadcast"), "{e}");
}

/// RoiAlign over a feature map with no rows or columns indexed an empty buffer (found by fuzzing,
/// run_small): every sample lies outside the map, so the output is zeros.
#[test]
fn roi_align_over_an_empty_feature_map_gives_zeros() {
    let outs = run_zeros("roi_align_empty_feature_map.onnx").expect("runs");
    for v in outs {
        let t = v.tensor().expect("a tensor");
        assert!(t.to_f64_vec().unwrap().iter().all(|x| *x == 0.0));
    }
}

/// Resize with an roi of neither 2 values per resized axis nor 2 per input axis indexed past it
/// (found by fuzzing, run_small).
#[test]
fn resize_with_an_roi_of_the_wrong_length_is_refused() {
    let e = run_zeros("resize_roi_wrong_length.onnx").unwrap_err();
    assert!(e.contains("roi has"), "{e}");
}
