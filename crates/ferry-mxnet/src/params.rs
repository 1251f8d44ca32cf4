//! `.params` files: MXNet's NDArray list format (`mx.nd.save`, `HybridBlock.export`,
//! `Module.save_checkpoint`). Reads every record version MXNet wrote (legacy v0, V1, V2, V3),
//! dense arrays of every dtype and sparse (row_sparse, csr) arrays, which become dense. Dense
//! tensors borrow their bytes from the file. A list that was read and not changed is written back
//! byte for byte: dense records are re-encoded from the layout they were read with, and records
//! ferry cannot re-encode (sparse, "none") keep their original bytes.

use crate::error::{MxnetError, Result};
use bytes::Bytes;
use ferry_ir::{DType, Tensor};

pub const LIST_MAGIC: u64 = 0x112;
pub const V1_MAGIC: u32 = 0xF993_FAC8;
pub const V2_MAGIC: u32 = 0xF993_FAC9;
pub const V3_MAGIC: u32 = 0xF993_FACA;

/// Dense arrays made from sparse records are refused above this size (a tiny hostile file can
/// declare an enormous logical shape).
pub const MAX_DENSIFIED_BYTES: u64 = 1 << 32;
/// MXNet's own limit on tensor rank is far below this.
const MAX_NDIM: u64 = 64;

/// How a record was laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordVersion {
    /// No magic; u32 ndim and u32 dims (MXNet <= 0.8).
    Legacy,
    /// Magic 0xF993FAC8: i64 dims, no storage type.
    V1,
    /// Magic 0xF993FAC9: storage type, i64 dims (all MXNet 1.x files).
    V2,
    /// Magic 0xF993FACA: as V2 with numpy shape semantics (ndim 0 is a scalar).
    V3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    Dense,
    RowSparse,
    Csr,
}

/// One NDArray of the list.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    /// The array as a dense tensor; `None` for a "none" (empty, uninitialised) record.
    pub tensor: Option<Tensor>,
    pub version: RecordVersion,
    pub storage: StorageType,
    /// Device the array was saved from (dev_type, dev_id); readers ignore it, writers keep it.
    pub context: (i32, i32),
    /// MXNet dtype flag as written (0 float32 ... 12 bfloat16).
    pub dtype_flag: i32,
    /// The record's original bytes when it cannot be re-encoded from `tensor` (sparse or none).
    /// Cleared by [`NdArray::dense`]; writers emit it verbatim when present.
    pub original: Option<Bytes>,
}

impl NdArray {
    /// A fresh array written as MXNet 1.x writes it (V2 dense, cpu(0)).
    pub fn dense(tensor: Tensor) -> Result<NdArray> {
        let dtype_flag = dtype_flag(tensor.dtype)
            .ok_or_else(|| MxnetError::invalid(format!("MXNet has no {} arrays", tensor.dtype)))?;
        Ok(NdArray {
            tensor: Some(tensor),
            version: RecordVersion::V2,
            storage: StorageType::Dense,
            context: (1, 0),
            dtype_flag,
            original: None,
        })
    }
}

/// A whole `.params` file: the arrays and their names (`None` when the list was saved unnamed).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParamsFile {
    pub arrays: Vec<NdArray>,
    pub names: Option<Vec<String>>,
}

impl ParamsFile {
    /// (name, tensor) pairs; unnamed lists are numbered.
    pub fn named(&self) -> impl Iterator<Item = (String, Option<&Tensor>)> {
        self.arrays.iter().enumerate().map(|(i, a)| {
            let name = self.names.as_ref().map_or_else(|| i.to_string(), |n| n[i].clone());
            (name, a.tensor.as_ref())
        })
    }
}

/// MXNet dtype flag -> element type (mshadow TypeFlag).
pub fn dtype_from_flag(flag: i32) -> Option<DType> {
    Some(match flag {
        0 => DType::F32,
        1 => DType::F64,
        2 => DType::F16,
        3 => DType::U8,
        4 => DType::I32,
        5 => DType::I8,
        6 => DType::I64,
        7 => DType::Bool,
        8 => DType::I16,
        9 => DType::U16,
        10 => DType::U32,
        11 => DType::U64,
        12 => DType::BF16,
        _ => return None,
    })
}

pub fn dtype_flag(d: DType) -> Option<i32> {
    (0..=12).find(|f| dtype_from_flag(*f) == Some(d))
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> Result<Bytes> {
        if n > self.remaining() as u64 {
            return Err(MxnetError::invalid(format!(
                "truncated .params file: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let n = n as usize;
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.as_ref().try_into().unwrap()))
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(self.u32(what)? as i32)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.as_ref().try_into().unwrap()))
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(self.u64(what)? as i64)
    }

    /// TShape: i32 ndim then i64 dims. `None` for ndim -1 (V3 "unknown").
    fn tshape(&mut self) -> Result<Option<Vec<i64>>> {
        let ndim = self.i32("shape rank")?;
        if ndim == -1 {
            return Ok(None);
        }
        if ndim < 0 || ndim as u64 > MAX_NDIM {
            return Err(MxnetError::invalid(format!("array rank {ndim} at offset {} is out of range", self.pos - 4)));
        }
        self.check_room(ndim as u64 * 8, "shape")?;
        (0..ndim).map(|_| self.i64("shape dim")).collect::<Result<Vec<_>>>().map(Some)
    }

    fn check_room(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() as u64 {
            return Err(MxnetError::invalid(format!(
                "truncated .params file: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        Ok(())
    }
}

fn dims_u64(dims: &[i64], what: &str) -> Result<Vec<u64>> {
    dims.iter()
        .map(|d| u64::try_from(*d).map_err(|_| MxnetError::invalid(format!("{what} has a negative dimension {d}"))))
        .collect()
}

fn numel(shape: &[u64]) -> Result<u64> {
    ferry_ir::tensor::checked_numel(shape).map_err(|e| MxnetError::invalid(e.to_string()))
}

fn elem_size(flag: i32) -> Result<(DType, u64)> {
    let d = dtype_from_flag(flag).ok_or_else(|| MxnetError::invalid(format!("unknown MXNet dtype flag {flag}")))?;
    Ok((d, d.storage_bytes(1).expect("fixed-size dtype")))
}

/// Reads a `.params` file held in memory (the tensors borrow from `buf`).
pub fn read_params(buf: Bytes) -> Result<ParamsFile> {
    if buf.starts_with(b"PK\x03\x04") {
        return Err(MxnetError::invalid(
            "this .params file is a NumPy .npz archive (MXNet 2 numpy mode), which ferry does not read yet",
        ));
    }
    let mut r = Reader { buf, pos: 0 };
    let magic = r.u64("list header")?;
    if magic != LIST_MAGIC {
        return Err(MxnetError::invalid(format!(
            "not an MXNet .params file: header magic {magic:#x}, expected {LIST_MAGIC:#x}"
        )));
    }
    let _reserved = r.u64("list header")?;
    let n = r.u64("array count")?;
    // Every record has at least 4 bytes: a count larger than that is a lie.
    r.check_room(n.saturating_mul(4), "array records")?;
    let mut arrays = Vec::with_capacity(n as usize);
    for i in 0..n {
        let start = r.pos;
        let a = read_record(&mut r).map_err(|e| MxnetError::invalid(format!("array {i} (offset {start}): {e}")))?;
        arrays.push(a);
    }
    let k = r.u64("name count")?;
    if k != 0 && k != n {
        return Err(MxnetError::invalid(format!("the file has {n} arrays but {k} names")));
    }
    r.check_room(k.saturating_mul(8), "names")?;
    let mut names = Vec::with_capacity(k as usize);
    for _ in 0..k {
        let len = r.u64("name length")?;
        let b = r.take(len, "name")?;
        names.push(String::from_utf8(b.to_vec()).map_err(|_| MxnetError::invalid("an array name is not UTF-8"))?);
    }
    if r.remaining() != 0 {
        return Err(MxnetError::invalid(format!("{} unexpected bytes after the name table", r.remaining())));
    }
    Ok(ParamsFile { arrays, names: if k == 0 { None } else { Some(names) } })
}

fn read_record(r: &mut Reader) -> Result<NdArray> {
    let start = r.pos;
    let magic = r.u32("record magic")?;
    let version = match magic {
        V1_MAGIC => RecordVersion::V1,
        V2_MAGIC => RecordVersion::V2,
        V3_MAGIC => RecordVersion::V3,
        _ => RecordVersion::Legacy,
    };
    let mut storage = StorageType::Dense;
    let mut storage_shape = None;
    let shape: Option<Vec<i64>> = match version {
        RecordVersion::Legacy => {
            let ndim = magic as u64;
            if ndim > MAX_NDIM {
                return Err(MxnetError::invalid(format!("unknown record magic {magic:#x} (not a legacy rank either)")));
            }
            r.check_room(ndim * 4, "shape")?;
            Some((0..ndim).map(|_| r.u32("shape dim").map(|d| d as i64)).collect::<Result<Vec<_>>>()?)
        }
        RecordVersion::V1 => r.tshape()?,
        RecordVersion::V2 | RecordVersion::V3 => {
            let stype = r.i32("storage type")?;
            storage = match stype {
                0 => StorageType::Dense,
                1 => StorageType::RowSparse,
                2 => StorageType::Csr,
                other => return Err(MxnetError::invalid(format!("unknown storage type {other}"))),
            };
            if storage != StorageType::Dense {
                storage_shape = Some(r.tshape()?.ok_or_else(|| MxnetError::invalid("sparse storage shape unknown"))?);
            }
            r.tshape()?
        }
    };
    // "none" arrays end after the shape.
    let none = match (&shape, version) {
        (None, _) => true,
        (Some(s), RecordVersion::V3) => s.contains(&-1),
        (Some(s), _) => s.is_empty(),
    };
    if none {
        return Ok(NdArray {
            tensor: None,
            version,
            storage,
            context: (1, 0),
            dtype_flag: -1,
            original: Some(r.buf.slice(start..r.pos)),
        });
    }
    let shape = dims_u64(shape.as_ref().unwrap(), "array shape")?;
    let dev_type = r.i32("context")?;
    let dev_id = r.i32("context")?;
    let flag = r.i32("dtype flag")?;
    let (dtype, esize) = elem_size(flag)?;
    let tensor = match storage {
        StorageType::Dense => {
            let count = numel(&shape)?;
            let bytes = count.checked_mul(esize).ok_or_else(|| MxnetError::invalid("array size overflows"))?;
            let data = r.take(bytes, "array data")?;
            Tensor::from_raw(dtype, shape, data).map_err(|e| MxnetError::invalid(e.to_string()))?
        }
        StorageType::RowSparse | StorageType::Csr => {
            let naux = if storage == StorageType::RowSparse { 1 } else { 2 };
            let mut aux = Vec::new();
            for _ in 0..naux {
                let aflag = r.i32("aux dtype")?;
                let ashape = r.tshape()?.ok_or_else(|| MxnetError::invalid("aux shape unknown"))?;
                aux.push((aflag, dims_u64(&ashape, "aux shape")?));
            }
            let sshape = dims_u64(storage_shape.as_ref().unwrap(), "storage shape")?;
            // The storage shape may be stale (written before the producer finished): when it
            // has no elements, derive it from the aux shapes as MXNet's loader does.
            let sshape = if numel(&sshape)? == 0 {
                match storage {
                    StorageType::RowSparse => {
                        let mut s = vec![*aux[0].1.first().unwrap_or(&0)];
                        s.extend(shape.iter().skip(1));
                        s
                    }
                    _ => aux[1].1.clone(),
                }
            } else {
                sshape
            };
            let vcount = numel(&sshape)?;
            let values =
                r.take(vcount.checked_mul(esize).ok_or_else(|| MxnetError::invalid("size overflows"))?, "values")?;
            let mut aux_data = Vec::new();
            for (aflag, ashape) in &aux {
                let (adt, asz) = elem_size(*aflag)?;
                let n = numel(ashape)?;
                let b = r.take(n.checked_mul(asz).ok_or_else(|| MxnetError::invalid("size overflows"))?, "aux data")?;
                let t = Tensor::from_raw(adt, ashape.clone(), b).map_err(|e| MxnetError::invalid(e.to_string()))?;
                aux_data.push(t.to_i64_vec().map_err(|e| MxnetError::invalid(e.to_string()))?);
            }
            densify(storage, dtype, esize, &shape, &sshape, &values, &aux_data)?
        }
    };
    let original = (storage != StorageType::Dense).then(|| r.buf.slice(start..r.pos));
    Ok(NdArray { tensor: Some(tensor), version, storage, context: (dev_type, dev_id), dtype_flag: flag, original })
}

fn densify(
    storage: StorageType,
    dtype: DType,
    esize: u64,
    shape: &[u64],
    sshape: &[u64],
    values: &[u8],
    aux: &[Vec<i64>],
) -> Result<Tensor> {
    let total = numel(shape)?;
    let bytes = total
        .checked_mul(esize)
        .filter(|b| *b <= MAX_DENSIFIED_BYTES)
        .ok_or_else(|| MxnetError::invalid(format!("sparse array of shape {shape:?} is too large to make dense")))?;
    let esize = esize as usize;
    let mut out = vec![0u8; bytes as usize];
    match storage {
        StorageType::RowSparse => {
            let rows = shape.first().copied().unwrap_or(0);
            let row_elems = numel(&shape[1.min(shape.len())..])? as usize;
            let idx = &aux[0];
            if sshape.first().copied().unwrap_or(0) != idx.len() as u64
                || numel(&sshape[1.min(sshape.len())..])? as usize != row_elems
            {
                return Err(MxnetError::invalid("row_sparse: value rows and index count differ"));
            }
            for (k, &row) in idx.iter().enumerate() {
                if row < 0 || row as u64 >= rows {
                    return Err(MxnetError::invalid(format!("row_sparse: row index {row} out of range")));
                }
                let src = &values[k * row_elems * esize..(k + 1) * row_elems * esize];
                let dst = row as usize * row_elems * esize;
                out[dst..dst + src.len()].copy_from_slice(src);
            }
        }
        StorageType::Csr => {
            if shape.len() != 2 {
                return Err(MxnetError::invalid("csr arrays must be 2-D"));
            }
            let (rows, cols) = (shape[0], shape[1]);
            let (indptr, colidx) = (&aux[0], &aux[1]);
            if indptr.len() as u64 != rows + 1 || numel(sshape)? != colidx.len() as u64 {
                return Err(MxnetError::invalid("csr: index array sizes do not match the shape"));
            }
            for row in 0..rows as usize {
                let (a, b) = (indptr[row], indptr[row + 1]);
                if a < 0 || b < a || b as usize > colidx.len() {
                    return Err(MxnetError::invalid("csr: malformed indptr"));
                }
                for k in a as usize..b as usize {
                    let col = colidx[k];
                    if col < 0 || col as u64 >= cols {
                        return Err(MxnetError::invalid(format!("csr: column index {col} out of range")));
                    }
                    let dst = (row * cols as usize + col as usize) * esize;
                    out[dst..dst + esize].copy_from_slice(&values[k * esize..(k + 1) * esize]);
                }
            }
        }
        StorageType::Dense => unreachable!("dense arrays are not densified"),
    }
    Tensor::from_raw(dtype, shape.to_vec(), Bytes::from(out)).map_err(|e| MxnetError::invalid(e.to_string()))
}

/// Encodes a list as MXNet writes it.
pub fn write_params(file: &ParamsFile) -> Result<Vec<u8>> {
    if let Some(names) = &file.names {
        if names.len() != file.arrays.len() {
            return Err(MxnetError::invalid(format!("{} arrays but {} names", file.arrays.len(), names.len())));
        }
    }
    let mut out = Vec::new();
    out.extend(LIST_MAGIC.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((file.arrays.len() as u64).to_le_bytes());
    for a in &file.arrays {
        write_record(&mut out, a)?;
    }
    let names = file.names.as_deref().unwrap_or(&[]);
    out.extend((names.len() as u64).to_le_bytes());
    for n in names {
        out.extend((n.len() as u64).to_le_bytes());
        out.extend(n.as_bytes());
    }
    Ok(out)
}

fn write_record(out: &mut Vec<u8>, a: &NdArray) -> Result<()> {
    if let Some(orig) = &a.original {
        out.extend_from_slice(orig);
        return Ok(());
    }
    let t = a.tensor.as_ref().ok_or_else(|| MxnetError::invalid("a none array has no bytes to write"))?;
    let raw = t.raw().ok_or_else(|| MxnetError::invalid("MXNet has no string arrays"))?;
    let flag = if dtype_from_flag(a.dtype_flag) == Some(t.dtype) {
        a.dtype_flag
    } else {
        dtype_flag(t.dtype).ok_or_else(|| MxnetError::invalid(format!("MXNet has no {} arrays", t.dtype)))?
    };
    let mut shape = t.shape.clone();
    if shape.is_empty() && a.version != RecordVersion::V3 {
        // ndim 0 means "none" outside numpy shape semantics: write scalars as (1,).
        shape.push(1);
    }
    match a.version {
        RecordVersion::Legacy => {
            out.extend((shape.len() as u32).to_le_bytes());
            for d in &shape {
                let d =
                    u32::try_from(*d).map_err(|_| MxnetError::invalid("dimension too large for a legacy record"))?;
                out.extend(d.to_le_bytes());
            }
        }
        RecordVersion::V1 | RecordVersion::V2 | RecordVersion::V3 => {
            let magic = match a.version {
                RecordVersion::V1 => V1_MAGIC,
                RecordVersion::V2 => V2_MAGIC,
                _ => V3_MAGIC,
            };
            out.extend(magic.to_le_bytes());
            if a.version != RecordVersion::V1 {
                out.extend(0i32.to_le_bytes());
            }
            out.extend((shape.len() as i32).to_le_bytes());
            for d in &shape {
                out.extend((*d as i64).to_le_bytes());
            }
        }
    }
    out.extend(a.context.0.to_le_bytes());
    out.extend(a.context.1.to_le_bytes());
    out.extend(flag.to_le_bytes());
    out.extend_from_slice(raw);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(LIST_MAGIC.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        v.extend(n.to_le_bytes());
        v
    }

    #[test]
    fn hostile_sizes_are_errors() {
        // A count of 2^60 arrays in a 24-byte file.
        let e = read_params(Bytes::from(header(1 << 60))).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // A dense record declaring 2^62 floats.
        let mut v = header(1);
        v.extend(V2_MAGIC.to_le_bytes());
        v.extend(0i32.to_le_bytes());
        v.extend(2i32.to_le_bytes());
        v.extend((1i64 << 30).to_le_bytes());
        v.extend((1i64 << 30).to_le_bytes());
        v.extend([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let e = read_params(Bytes::from(v)).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // An empty list is fine; a huge name count or length is not.
        let mut v = header(0);
        v.extend(0u64.to_le_bytes());
        assert!(read_params(Bytes::from(v.clone())).is_ok());
        let mut v = header(0);
        v.extend(u64::MAX.to_le_bytes());
        assert!(read_params(Bytes::from(v)).is_err());
        // Negative dims, unknown dtype flags and huge ranks are refused.
        let mut v = header(1);
        v.extend(V2_MAGIC.to_le_bytes());
        v.extend(0i32.to_le_bytes());
        v.extend(1000i32.to_le_bytes());
        assert!(read_params(Bytes::from(v)).is_err());
        assert!(read_params(Bytes::from(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn round_trip_fresh() {
        let t = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
        let f = ParamsFile { arrays: vec![NdArray::dense(t.clone()).unwrap()], names: Some(vec!["arg:w".into()]) };
        let bytes = write_params(&f).unwrap();
        let back = read_params(Bytes::from(bytes)).unwrap();
        assert_eq!(back.arrays[0].tensor.as_ref().unwrap(), &t);
        assert_eq!(back.names.unwrap(), vec!["arg:w".to_string()]);
    }
}
