//! Bytes -> `.npy` reader, `.npz` reader, and the ONNX TensorProto (`.pb` input) decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = ferry_cli::npy::read_npy(data) {
        let _ = ferry_cli::npy::write_npy(&t);
    }
    let _ = ferry_cli::npy::read_npz(data);
    if let Ok(t) = ferry_onnx::proto::TensorProto::decode(data) {
        let mut ext = ferry_onnx::external::ExternalData::new(None);
        let _ = ferry_onnx::tensor::tensor_from_proto(&t, &mut ext);
    }
});
