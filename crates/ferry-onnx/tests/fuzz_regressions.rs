//! Inputs the fuzzer (fuzz/, target onnx_load) once crashed on: each must load, infer and export
//! (or refuse) without a panic or an allocation failure.

use std::path::Path;

fn check(name: &str) -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(name);
    let bytes = std::fs::read(&path).expect("fixture");
    let mut model = ferry_onnx::load_bytes(bytes::Bytes::from(bytes)).map_err(|e| e.to_string())?;
    let _ = ferry_ir::infer::infer_graph(&mut model.graph);
    for opset in [None, Some(13)] {
        let _ = ferry_onnx::export_model(&model, &ferry_onnx::ExportOptions { opset });
    }
    Ok(())
}

#[test]
fn rms_normalization_with_a_huge_negative_axis_is_refused() {
    let e = check("rmsnorm_huge_negative_axis.onnx").unwrap_err();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn layer_normalization_with_a_huge_negative_axis_is_refused() {
    let e = check("layernorm_huge_negative_axis.onnx").unwrap_err();
    assert!(e.contains("out of range"), "{e}");
}

/// Found by the CLI mutation smoke run: the opset-13 decomposition of a causal Attention built a
/// [Sq, Skv] mask constant sized by the file's (absurd) sequence length.
#[test]
fn attention_decomposition_refuses_an_absurd_mask_constant() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/attention_huge_causal_mask.onnx");
    let model = ferry_onnx::load_bytes(bytes::Bytes::from(std::fs::read(path).unwrap())).unwrap();
    let e = ferry_onnx::export_model(&model, &ferry_onnx::ExportOptions { opset: Some(13) }).unwrap_err().to_string();
    assert!(e.contains("element limit"), "{e}");
}
