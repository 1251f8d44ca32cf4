//! Bytes -> MXNet symbol JSON parser -> (when it parses) import without parameters.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(sym) = ferry_mxnet::read_symbol(data) else { return };
    let _ = ferry_mxnet::write_symbol(&sym);
    let _ = ferry_mxnet::import::import_symbol(&sym, &HashMap::new(), &HashMap::new());
});
