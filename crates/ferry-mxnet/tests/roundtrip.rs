//! Round-trips over the real MXNet files in ../shared/mxnet: every `.params` file re-encodes
//! byte for byte, every symbol JSON of models/ and ops/ is re-emitted byte for byte.

use bytes::Bytes;
use ferry_mxnet::{read_params, read_symbol, write_params, write_symbol};
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mxnet");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found (the shared MXNet corpus)", p.display());
        None
    }
}

fn files(dir: &Path, pred: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, pred, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(pred) {
            out.push(p);
        }
    }
}

#[test]
fn params_round_trip_byte_for_byte() {
    let Some(root) = shared() else { return };
    let mut list = Vec::new();
    files(&root, &|n| n.ends_with(".params") || n.ends_with(".v0"), &mut list);
    assert!(list.len() > 20, "expected the corpus' .params files, found {}", list.len());
    for p in &list {
        let bytes = std::fs::read(p).unwrap();
        let parsed = read_params(Bytes::from(bytes.clone())).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let again = write_params(&parsed).unwrap();
        assert!(again == bytes, "{}: re-encoding differs", p.display());
    }
}

#[test]
fn format_variants_read_as_documented() {
    let Some(root) = shared() else { return };
    let f = |n: &str| read_params(Bytes::from(std::fs::read(root.join("formats").join(n)).unwrap())).unwrap();
    let unnamed = f("v2_list_unnamed.params");
    assert!(unnamed.names.is_none());
    let legacy = f("legacy_ndarray.v0");
    assert_eq!(legacy.arrays.len(), 6);
    let t = legacy.arrays[0].tensor.as_ref().unwrap();
    assert_eq!(t.shape, vec![128]);
    assert_eq!(t.to_f64_vec().unwrap()[..3], [0.0, 1.0, 2.0]);
    // Sparse arrays read as dense, including the stale storage shape.
    let sparse = f("v2_sparse.params");
    assert!(sparse.arrays.iter().all(|a| a.tensor.is_some()));
    let bf16 = f("v2_bfloat16_handmade.params");
    assert_eq!(bf16.arrays[0].tensor.as_ref().unwrap().dtype, ferry_ir::DType::BF16);
    let v3 = f("v3_npshape.params");
    assert!(v3.arrays.iter().any(|a| a.tensor.as_ref().is_some_and(|t| t.shape.is_empty())));
}

#[test]
fn sparse_reads_dense_with_stale_storage_shape() {
    let Some(root) = shared() else { return };
    let sparse = read_params(Bytes::from(std::fs::read(root.join("formats/v2_sparse.params")).unwrap())).unwrap();
    let get = |name: &str| {
        let (_, t) = sparse.named().find(|(n, _)| n == name).unwrap();
        let t = t.unwrap();
        (t.shape.clone(), t.to_f64_vec().unwrap())
    };
    // csr_f64 was saved with a stale storage shape (0,); it holds the same matrix as csr.
    let (csr_shape, csr) = get("csr");
    let (f64_shape, csr_f64) = get("csr_f64");
    assert_eq!(csr_shape, vec![6, 4]);
    assert_eq!(f64_shape, csr_shape);
    assert_eq!(csr, csr_f64);
    assert_eq!(csr.iter().filter(|v| **v != 0.0).count(), 4);
    let (rsp_shape, rsp) = get("rsp");
    assert_eq!(rsp_shape, vec![6, 4]);
    assert_eq!(rsp.iter().sum::<f64>(), 10.0);
    let (_, empty) = get("rsp_empty");
    assert!(empty.iter().all(|v| *v == 0.0));
}

#[test]
fn symbol_json_round_trip_byte_for_byte() {
    let Some(root) = shared() else { return };
    let mut list = Vec::new();
    files(&root.join("models"), &|n| n.ends_with("-symbol.json"), &mut list);
    files(&root.join("ops"), &|n| n.ends_with("-symbol.json"), &mut list);
    files(&root.join("formats"), &|n| n.ends_with(".json") && !n.starts_with("verify"), &mut list);
    assert!(list.len() > 100, "expected the corpus' symbol files, found {}", list.len());
    for p in &list {
        let text = std::fs::read(p).unwrap();
        let sym = read_symbol(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let again = write_symbol(&sym);
        assert!(again.as_bytes() == text.as_slice(), "{}: re-emitted JSON differs", p.display());
    }
}

#[test]
fn legacy_json_reads_param_and_attr() {
    let Some(root) = shared() else { return };
    let sym = read_symbol(&std::fs::read(root.join("formats/legacy_json/save_000800.json")).unwrap()).unwrap();
    assert_eq!(sym.mxnet_version(), 800);
    let fc = sym.nodes.iter().find(|n| n.op == "FullyConnected").unwrap();
    assert!(fc.effective_attrs().iter().any(|(k, _)| k == "num_hidden"));
}
