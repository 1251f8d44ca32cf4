//! Bytes -> `.npy` reader, `.npz` reader, and the ONNX TensorProto (`.pb` input) decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(
    init: {
        // The fuzzer's RSS limit is 2 GiB; the default per-tensor ceiling (4 GiB) would let a
        // legitimate-by-the-rules tensor trip it. SAFETY: set once, before any thread reads it.
        unsafe { std::env::set_var("FERRY_MAX_TENSOR_BYTES", "1048576") };
    },
    |data: &[u8]| {
    if let Ok(t) = ferry_cli::npy::read_npy(data) {
        let _ = ferry_cli::npy::write_npy(&t);
    }
    let _ = ferry_cli::npy::read_npz(data);
    if let Ok(t) = ferry_onnx::proto::TensorProto::decode(data) {
        let mut ext = ferry_onnx::external::ExternalData::new(None);
        let _ = ferry_onnx::tensor::tensor_from_proto(&t, &mut ext);
    }
});
