//! Layout kernels: shapes, reshapes, permutations and joins.

use crate::array::Array;
use crate::{KernelResult, map_array};
use ndarray::{ArrayD, Axis, IxDyn};

fn axis(a: i64, rank: usize) -> KernelResult<usize> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if x < 0 || x >= r { Err(format!("axis {a} is out of range for rank {rank}")) } else { Ok(x as usize) }
}

pub fn shape(x: &Array, start: i64, end: Option<i64>) -> Array {
    let dims = x.shape();
    let r = dims.len() as i64;
    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
    let (a, b) = (clamp(start), clamp(end.unwrap_or(r)));
    let v: Vec<i64> = if a < b { dims[a..b].iter().map(|d| *d as i64).collect() } else { vec![] };
    Array::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"))
}

pub fn reshape(x: Array, target: &[i64], allowzero: bool) -> KernelResult<Array> {
    let dims = x.shape().to_vec();
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, t) in target.iter().enumerate() {
        match *t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*dims.get(i).ok_or("Reshape copies a dimension the input lacks")?),
            t if t < 0 => return Err(format!("invalid Reshape target {target:?}")),
            t => out.push(t as usize),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, d)| *d).product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(format!("cannot reshape {dims:?} into {target:?}"));
        }
        out[i] = total / rest;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!("cannot reshape {dims:?} ({total} elements) into {out:?}"));
    }
    Ok(map_array!(x, a => {
        let v: Vec<_> = a.iter().cloned().collect();
        ArrayD::from_shape_vec(IxDyn(&out), v).expect("element count checked")
    }))
}

pub fn transpose(x: Array, perm: Option<&[usize]>) -> KernelResult<Array> {
    let rank = x.shape().len();
    let perm: Vec<usize> = perm.map(<[usize]>::to_vec).unwrap_or_else(|| (0..rank).rev().collect());
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|p| *p >= rank || std::mem::replace(&mut seen[*p], true)) {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    Ok(map_array!(x, a => a.permuted_axes(IxDyn(&perm)).as_standard_layout().to_owned()))
}

pub fn expand(x: &Array, target: &[i64]) -> KernelResult<Array> {
    let target: Vec<usize> = target.iter().map(|d| (*d).max(0) as usize).collect();
    let shape = super::elementwise::broadcast_shape(x.shape(), &target)?;
    Ok(map_array!(x.clone(), a => a.broadcast(IxDyn(&shape)).ok_or("cannot expand")?.to_owned()))
}

pub fn squeeze(x: Array, axes: Option<Vec<i64>>) -> KernelResult<Array> {
    let dims = x.shape().to_vec();
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|a| axis(*a, dims.len())).collect::<KernelResult<_>>()?,
        None => (0..dims.len()).filter(|i| dims[*i] == 1).collect(),
    };
    if let Some(a) = axes.iter().find(|a| dims[**a] != 1) {
        return Err(format!("cannot squeeze axis {a} of size {}", dims[*a]));
    }
    let out: Vec<i64> = dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d as i64).collect();
    reshape(x, &out, true)
}

pub fn unsqueeze(x: Array, axes: &[i64]) -> KernelResult<Array> {
    let dims = x.shape().to_vec();
    let rank = dims.len() + axes.len();
    let axes: Vec<usize> = axes.iter().map(|a| axis(*a, rank)).collect::<KernelResult<_>>()?;
    let mut it = dims.iter();
    let out: Vec<i64> =
        (0..rank).map(|i| if axes.contains(&i) { 1 } else { *it.next().unwrap_or(&1) as i64 }).collect();
    reshape(x, &out, true)
}

pub fn flatten(x: Array, a: i64) -> KernelResult<Array> {
    let dims = x.shape().to_vec();
    let r = dims.len() as i64;
    let a = if a < 0 { a + r } else { a };
    if a < 0 || a > r {
        return Err(format!("Flatten axis out of range for rank {r}"));
    }
    let (l, rr) = dims.split_at(a as usize);
    reshape(x, &[l.iter().product::<usize>() as i64, rr.iter().product::<usize>() as i64], true)
}

pub fn concat(parts: &[Array], a: i64) -> KernelResult<Array> {
    let first = parts.first().ok_or("Concat of nothing")?;
    let ax = Axis(axis(a, first.shape().len())?);
    if let Some(p) = parts.iter().find(|p| p.shape().len() != first.shape().len()) {
        return Err(format!("Concat inputs differ in rank ({:?} and {:?})", first.shape(), p.shape()));
    }
    macro_rules! join {
        ($variant:ident) => {{
            let views: Vec<_> = parts
                .iter()
                .map(|p| match p {
                    Array::$variant(x) => Ok(x.view()),
                    other => Err(format!("Concat inputs differ in type ({})", other.dtype())),
                })
                .collect::<KernelResult<_>>()?;
            Array::$variant(ndarray::concatenate(ax, &views).map_err(|e| format!("Concat: {e}"))?)
        }};
    }
    Ok(match first {
        Array::F32(_) => join!(F32),
        Array::F64(_) => join!(F64),
        Array::F16(_) => join!(F16),
        Array::BF16(_) => join!(BF16),
        Array::I8(_) => join!(I8),
        Array::I16(_) => join!(I16),
        Array::I32(_) => join!(I32),
        Array::I64(_) => join!(I64),
        Array::U8(_) => join!(U8),
        Array::U16(_) => join!(U16),
        Array::U32(_) => join!(U32),
        Array::U64(_) => join!(U64),
        Array::Bool(_) => join!(Bool),
        Array::Str(_) => join!(Str),
    })
}
