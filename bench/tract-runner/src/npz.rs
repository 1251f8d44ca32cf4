//! Reads the tensors of an uncompressed or deflated `.npz` (numpy's `savez`) into tract tensors.
//! Only what the benchmark inputs use: little-endian f32/f64/i64/i32/bool, C order.

use std::fs::File;
use std::io::Read;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure, format_err};

/// (name, tensor) in the order the archive stores them.
pub fn read_npz(path: &str) -> TractResult<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|e| format_err!("cannot open {path}: {e}"))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format_err!("{path} is not a zip archive: {e}"))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).map_err(|e| format_err!("{path}: member {i}: {e}"))?;
        let name = member.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).map_err(|e| format_err!("{path}: {name}: {e}"))?;
        out.push((name.clone(), parse_npy(&bytes).map_err(|e| format_err!("{path}: {name}: {e}"))?));
    }
    Ok(out)
}

fn parse_npy(bytes: &[u8]) -> TractResult<Tensor> {
    ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "not an .npy member");
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
    };
    let data_start = header_start + header_len;
    ensure!(bytes.len() >= data_start, "truncated .npy header");
    let header = std::str::from_utf8(&bytes[header_start..data_start])?;
    ensure!(!header.contains("'fortran_order': True"), "Fortran-ordered arrays are not supported");
    let descr = quoted_value(header, "descr").ok_or_else(|| format_err!("no descr in {header}"))?;
    let shape = shape_of(header)?;
    let (dt, size) = match descr {
        "<f4" => (DatumType::F32, 4),
        "<f8" => (DatumType::F64, 8),
        "<i8" => (DatumType::I64, 8),
        "<i4" => (DatumType::I32, 4),
        "|b1" => (DatumType::Bool, 1),
        other => bail!("dtype {other} is not supported"),
    };
    let count: usize = shape.iter().product();
    let data = &bytes[data_start..];
    ensure!(data.len() == count * size, "data is {} bytes, shape {shape:?} needs {}", data.len(), count * size);
    // SAFETY: the byte count matches shape × element size and the dtype is a plain little-endian scalar.
    unsafe { Tensor::from_raw_dt(dt, &shape, data) }
}

fn quoted_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = &header[at..];
    let open = rest.find('\'')? + 1;
    let close = open + rest[open..].find('\'')?;
    Some(&rest[open..close])
}

fn shape_of(header: &str) -> TractResult<Vec<usize>> {
    let at = header.find("'shape'").ok_or_else(|| format_err!("no shape in {header}"))?;
    let rest = &header[at..];
    let open = rest.find('(').ok_or_else(|| format_err!("bad shape in {header}"))? + 1;
    let close = rest.find(')').ok_or_else(|| format_err!("bad shape in {header}"))?;
    rest[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| format_err!("bad dimension {s:?}: {e}")))
        .collect()
}
