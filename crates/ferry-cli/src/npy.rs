//! NumPy `.npy` and `.npz` files, read and written without numpy.
//!
//! `.npy`: magic `\x93NUMPY`, version, header length, a Python-dict header (`descr`,
//! `fortran_order`, `shape`) padded to 64 bytes, then the elements. `.npz`: a zip archive of
//! `NAME.npy` entries; stored (uncompressed) entries are read and written (`np.savez`), and
//! compressed ones (`np.savez_compressed`) are refused with a clear message.
//! Headers are untrusted: sizes are checked against the bytes present before anything is allocated.

use bytes::Bytes;
use ferry_ir::{DType, Tensor, TensorData};
use ferry_runtime::limits::max_tensor_bytes;

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr_dtype(descr: &str) -> Result<(DType, usize), String> {
    // The first character, whatever its width: a multi-byte one must not split a char.
    let (order, code) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
    if order == ">" && !matches!(code, "i1" | "u1" | "b1") {
        return Err(format!("big-endian arrays ('{descr}') are not supported"));
    }
    if !matches!(order, "<" | "|" | "=" | ">") {
        return Err(format!("unsupported array type '{descr}'"));
    }
    Ok(match code {
        "f4" => (DType::F32, 4),
        "f8" => (DType::F64, 8),
        "f2" => (DType::F16, 2),
        "i1" => (DType::I8, 1),
        "i2" => (DType::I16, 2),
        "i4" => (DType::I32, 4),
        "i8" => (DType::I64, 8),
        "u1" => (DType::U8, 1),
        "u2" => (DType::U16, 2),
        "u4" => (DType::U32, 4),
        "u8" => (DType::U64, 8),
        "b1" => (DType::Bool, 1),
        c if c.starts_with('U') || c.starts_with('S') => {
            let n: usize = c[1..].parse().map_err(|_| format!("unsupported array type '{descr}'"))?;
            let unit = if c.starts_with('U') { 4 } else { 1 };
            (DType::String, n.checked_mul(unit).ok_or("string width overflows")?)
        }
        _ => return Err(format!("unsupported array type '{descr}' (numbers, bools and strings are)")),
    })
}

fn dtype_descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

/// The value of `key` in a numpy header dict (a quoted string, a bool, or a tuple), as text.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let pat_a = format!("'{key}'");
    let pat_b = format!("\"{key}\"");
    let at = header.find(&pat_a).or_else(|| header.find(&pat_b)).ok_or_else(|| format!("header has no '{key}'"))?;
    let rest = header[at + pat_a.len()..].trim_start();
    let rest = rest.strip_prefix(':').ok_or("malformed header")?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|e| e + 1)
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q).map(|e| e + 2)
    } else {
        rest.find([',', '}'])
    }
    .ok_or("malformed header")?;
    Ok(rest[..end].trim())
}

/// Parses a `.npy` file into a tensor.
pub fn read_npy(data: &[u8]) -> Result<Tensor, String> {
    if data.len() < 10 || &data[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = data[6];
    let (hlen, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 => {
            if data.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let body = start.checked_add(hlen).filter(|e| *e <= data.len()).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(&data[start..body]).map_err(|_| "the .npy header is not text")?;
    let descr = header_field(header, "descr")?.trim_matches(['\'', '"']);
    let fortran = match header_field(header, "fortran_order")? {
        "False" => false,
        "True" => true,
        other => return Err(format!("bad fortran_order '{other}'")),
    };
    let shape_txt = header_field(header, "shape")?;
    let inner = shape_txt.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or("bad shape in header")?;
    let shape: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>().map_err(|_| format!("bad dimension '{s}' in header")))
        .collect::<Result<_, _>>()?;
    let (dtype, item) = descr_dtype(descr)?;
    let numel = shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).ok_or("the header's shape overflows")?;
    let need = numel.checked_mul(item as u64).ok_or("the header's shape overflows")?;
    let present = (data.len() - body) as u64;
    if need > present {
        return Err(format!(
            "the .npy header declares {numel} elements ({need} bytes) of '{descr}' but only {present} bytes follow (truncated or corrupt file)"
        ));
    }
    let mut raw = &data[body..body + need as usize];
    let reordered;
    if fortran && shape.len() > 1 {
        reordered = fortran_to_c(raw, &shape, item);
        raw = &reordered;
    }
    if dtype == DType::String {
        let utf32 = descr[1..].starts_with('U');
        let strings = raw
            .chunks_exact(item.max(1))
            .map(|c| {
                let s: String = if utf32 {
                    c.chunks_exact(4)
                        .map(|u| u32::from_le_bytes(u.try_into().unwrap()))
                        .filter_map(char::from_u32)
                        .collect()
                } else {
                    String::from_utf8_lossy(c).into_owned()
                };
                Bytes::from(s.trim_end_matches('\0').as_bytes().to_vec())
            })
            .collect::<Vec<_>>();
        // Zero-width strings take no file bytes, so only the element count bounds the list.
        if item == 0 && numel.saturating_mul(std::mem::size_of::<Bytes>() as u64) > max_tensor_bytes() {
            return Err(format!(
                "the header declares {numel} empty strings, over the {}-byte limit for one tensor \
                 (raise it with FERRY_MAX_TENSOR_BYTES)",
                max_tensor_bytes()
            ));
        }
        let strings = if item == 0 { vec![Bytes::new(); numel as usize] } else { strings };
        return Tensor::from_strings(shape, strings).map_err(|e| e.to_string());
    }
    let mut bytes = raw.to_vec();
    if dtype == DType::Bool {
        bytes.iter_mut().for_each(|b| *b = (*b != 0) as u8);
    }
    Tensor::from_raw(dtype, shape, Bytes::from(bytes)).map_err(|e| e.to_string())
}

/// Column-major element bytes to row-major.
fn fortran_to_c(raw: &[u8], shape: &[u64], item: usize) -> Vec<u8> {
    let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
    let n: usize = dims.iter().product();
    // Fortran strides (in elements): the first axis is contiguous.
    let mut fstride = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        fstride[k] = fstride[k - 1] * dims[k - 1];
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&raw[off * item..(off + 1) * item]);
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// Serializes a tensor as `.npy` (version 1.0, or 2.0 for huge headers).
pub fn write_npy(t: &Tensor) -> Result<Vec<u8>, String> {
    let (descr, body) = match &t.data {
        TensorData::Strings(v) => {
            let strs: Vec<String> = v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
            let width = strs.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
            let mut body = Vec::with_capacity(strs.len() * width * 4);
            for s in &strs {
                let n = s.chars().count();
                s.chars().for_each(|c| body.extend_from_slice(&(c as u32).to_le_bytes()));
                body.resize(body.len() + (width - n) * 4, 0);
            }
            (format!("<U{width}"), body)
        }
        TensorData::Raw(b) => match dtype_descr(t.dtype) {
            Some(d) => (d.to_string(), b.to_vec()),
            None => {
                return Err(format!("{} has no .npy form; write it as ONNX TensorProto (--format pb)", t.dtype));
            }
        },
    };
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let v1 = header.len() + 11 < 65536;
    let pre = if v1 { 10 } else { 12 };
    let total = (pre + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - pre - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + body.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, b| table[((c ^ *b as u32) & 0xFF) as usize] ^ (c >> 8))
}

fn u16_at(d: &[u8], at: usize) -> Result<u16, String> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| "truncated .npz".to_string())
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, String> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated .npz".to_string())
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, String> {
    d.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| "truncated .npz".to_string())
}

/// Reads every array of a `.npz` archive, keyed by name (without `.npy`).
pub fn read_npz(d: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    // The end-of-central-directory record: within the last 64 KiB + 22 bytes.
    let lo = d.len().saturating_sub(65536 + 22);
    let eocd = (lo..d.len().saturating_sub(21))
        .rev()
        .find(|i| d[*i..].starts_with(b"PK\x05\x06"))
        .ok_or("not a .npz file (no zip directory)")?;
    let count = u16_at(d, eocd + 10)? as usize;
    let mut at = u32_at(d, eocd + 16)? as usize;
    let mut out = Vec::new();
    for _ in 0..count {
        if u32_at(d, at)? != 0x0201_4b50 {
            return Err("corrupt .npz (bad central directory entry)".into());
        }
        let method = u16_at(d, at + 10)?;
        let crc = u32_at(d, at + 16)?;
        let mut csize = u32_at(d, at + 20)? as u64;
        let mut usize_ = u32_at(d, at + 24)? as u64;
        let (nlen, xlen, clen) =
            (u16_at(d, at + 28)? as usize, u16_at(d, at + 30)? as usize, u16_at(d, at + 32)? as usize);
        let mut local = u32_at(d, at + 42)? as u64;
        let name_bytes = d.get(at + 46..at + 46 + nlen).ok_or("truncated .npz")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // zip64 extra field: the 0xFFFFFFFF sizes/offset follow in order.
        let extra = d.get(at + 46 + nlen..at + 46 + nlen + xlen).ok_or("truncated .npz")?;
        let mut x = 0;
        while x + 4 <= extra.len() {
            let (id, len) = (u16_at(extra, x)?, u16_at(extra, x + 2)? as usize);
            if id == 1 {
                let mut p = x + 4;
                for field in [&mut usize_, &mut csize, &mut local] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, p)?;
                        p += 8;
                    }
                }
            }
            x += 4 + len;
        }
        at += 46 + nlen + xlen + clen;
        if method != 0 {
            return Err(format!(
                "entry '{name}' of the .npz is compressed; save it with np.savez (not savez_compressed)"
            ));
        }
        let local = usize::try_from(local).map_err(|_| "corrupt .npz")?;
        if u32_at(d, local)? != 0x0403_4b50 {
            return Err("corrupt .npz (bad local header)".into());
        }
        let start = local + 30 + u16_at(d, local + 26)? as usize + u16_at(d, local + 28)? as usize;
        let end = usize::try_from(csize).ok().and_then(|c| start.checked_add(c)).filter(|e| *e <= d.len());
        let data = &d[start..end.ok_or_else(|| format!("entry '{name}' of the .npz is truncated"))?];
        if crc32(data) != crc {
            return Err(format!("entry '{name}' of the .npz is corrupt (CRC mismatch)"));
        }
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let t = read_npy(data).map_err(|e| format!("entry '{key}': {e}"))?;
        out.push((key, t));
    }
    Ok(out)
}

/// Builds a `.npz` (stored zip, as `np.savez` writes) from `(name, npy bytes)` entries.
pub fn write_npz(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let fname = format!("{name}.npy");
        let (crc, size) = (crc32(data), u32::try_from(data.len()).map_err(|_| "entry over 4 GiB")?);
        let offset = u32::try_from(out.len()).map_err(|_| ".npz over 4 GiB is not supported")?;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x21u16.to_le_bytes()); // date (1980-01-01)
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&(fname.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(fname.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(fname.as_bytes());
    }
    let cd_off = u32::try_from(out.len()).map_err(|_| ".npz over 4 GiB is not supported")?;
    let n = u16::try_from(entries.len()).map_err(|_| "too many entries")?;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_npz_round_trip() {
        let t = Tensor::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let bytes = write_npy(&t).unwrap();
        assert_eq!(bytes.len() % 64, 24); // header padded to 64, then 6 f32s
        assert_eq!(read_npy(&bytes).unwrap(), t);
        let s = Tensor::from_strings(vec![2], vec![Bytes::from("héllo"), Bytes::from("")]).unwrap();
        assert_eq!(read_npy(&write_npy(&s).unwrap()).unwrap(), s);
        let z = write_npz(&[("a".into(), bytes.clone()), ("b".into(), write_npy(&s).unwrap())]).unwrap();
        let back = read_npz(&z).unwrap();
        assert_eq!(back, vec![("a".to_string(), t), ("b".to_string(), s)]);
    }

    /// Found by fuzzing (fuzz/, target npy): a descr starting with a multi-byte character.
    #[test]
    fn a_descr_starting_with_a_wide_character_is_an_error() {
        let e = descr_dtype("\u{67b}i8").unwrap_err();
        assert!(e.contains("unsupported array type"), "{e}");
    }

    #[test]
    fn bad_headers_are_errors_not_allocations() {
        let mut huge = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }\n";
        huge.extend_from_slice(&(h.len() as u16).to_le_bytes());
        huge.extend_from_slice(h.as_bytes());
        assert!(read_npy(&huge).unwrap_err().contains("truncated"));
        let t = Tensor::from_f32(vec![4], &[1.0; 4]).unwrap();
        let b = write_npy(&t).unwrap();
        assert!(read_npy(&b[..b.len() - 3]).is_err());
        assert!(read_npy(&b[..20]).is_err());
    }

    /// Found by fuzzing (target npy): zero-width strings ('<U0') take no bytes, so a header with
    /// 2e15 of them passed the size check and sized a list by the count.
    #[test]
    fn a_header_with_absurdly_many_empty_strings_is_an_error() {
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<U0', 'fortran_order': False, 'shape': (1999999999999999,), }\n";
        npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
        npy.extend_from_slice(h.as_bytes());
        let e = read_npy(&npy).unwrap_err();
        assert!(e.contains("FERRY_MAX_TENSOR_BYTES"), "{e}");
        let h = "{'descr': '<U0', 'fortran_order': False, 'shape': (3,), }\n";
        let mut small = b"\x93NUMPY\x01\x00".to_vec();
        small.extend_from_slice(&(h.len() as u16).to_le_bytes());
        small.extend_from_slice(h.as_bytes());
        assert_eq!(read_npy(&small).unwrap().numel(), 3);
    }

    #[test]
    fn fortran_order_is_reordered() {
        let h = "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        // Column-major [[0, 1, 2], [3, 4, 5]] is 0 3 1 4 2 5.
        for v in [0i64, 3, 1, 4, 2, 5] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(read_npy(&b).unwrap().to_i64_vec().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }
}
