//! ONNX bytes -> load (decode + import) -> shape inference -> export at the newest opset and at 13.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut model) = ferry_onnx::load_bytes(bytes::Bytes::copy_from_slice(data)) else { return };
    let _ = ferry_ir::infer::infer_graph(&mut model.graph);
    for opset in [None, Some(13)] {
        let _ = ferry_onnx::export_model(&model, &ferry_onnx::ExportOptions { opset });
    }
});
