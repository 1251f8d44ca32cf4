//! Bytes -> MXNet `.params` reader -> parameters by name -> writer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ferry_mxnet::read_params(bytes::Bytes::copy_from_slice(data)) else { return };
    let _ = ferry_mxnet::params_by_name(&p);
    let _ = ferry_mxnet::write_params(&p);
});
