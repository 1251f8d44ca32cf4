//! Indexing kernels: slicing, padding, gathers and scatters, rearrangements, sources (Range,
//! ConstantOfShape, EyeLike) and the sorting-flavoured ops (TopK, ArgMax/ArgMin, Unique, CumSum).
//!
//! Most kernels here compute, for every output element, the flat (row-major) position of the
//! input element it copies (`None`: a fill value), then [`take`] builds the output in one pass.

use crate::KernelResult;
use crate::array::Array;
use bytes::Bytes;
use ferry_ir::DType;
use ferry_ir::ops::ScatterReduction;
use ndarray::{ArrayD, IxDyn};
use std::cmp::Ordering;

/// Like `each_array!`, but also binds the variant (as `$v`) so the body can build or match it.
macro_rules! with_variant {
    ($arr:expr, $v:ident, $a:ident => $body:expr) => {
        match $arr {
            Array::F32($a) => {
                use Array::F32 as $v;
                $body
            }
            Array::F64($a) => {
                use Array::F64 as $v;
                $body
            }
            Array::F16($a) => {
                use Array::F16 as $v;
                $body
            }
            Array::BF16($a) => {
                use Array::BF16 as $v;
                $body
            }
            Array::I8($a) => {
                use Array::I8 as $v;
                $body
            }
            Array::I16($a) => {
                use Array::I16 as $v;
                $body
            }
            Array::I32($a) => {
                use Array::I32 as $v;
                $body
            }
            Array::I64($a) => {
                use Array::I64 as $v;
                $body
            }
            Array::U8($a) => {
                use Array::U8 as $v;
                $body
            }
            Array::U16($a) => {
                use Array::U16 as $v;
                $body
            }
            Array::U32($a) => {
                use Array::U32 as $v;
                $body
            }
            Array::U64($a) => {
                use Array::U64 as $v;
                $body
            }
            Array::Bool($a) => {
                use Array::Bool as $v;
                $body
            }
            Array::Str($a) => {
                use Array::Str as $v;
                $body
            }
        }
    };
}

pub(crate) fn norm_axis(a: i64, rank: usize) -> KernelResult<usize> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if x < 0 || x >= r { Err(format!("axis {a} is out of range for rank {rank}")) } else { Ok(x as usize) }
}

/// Normalizes an index into `0..d` (negative counts from the end).
fn norm_index(i: i64, d: usize, what: &str) -> KernelResult<usize> {
    let x = if i < 0 { i + d as i64 } else { i };
    if x < 0 || x >= d as i64 {
        Err(format!("{what} index {i} is out of range for a dimension of {d}"))
    } else {
        Ok(x as usize)
    }
}

pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f` with every multi-index of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize]) -> KernelResult<()>) -> KernelResult<()> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx)?;
        let mut k = shape.len();
        loop {
            if k == 0 {
                return Ok(());
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// A scalar zero of `dtype` (the empty string for strings).
pub(crate) fn zero(dtype: DType) -> KernelResult<Array> {
    if dtype == DType::String {
        return Ok(Array::Str(ArrayD::from_elem(IxDyn(&[]), Bytes::new())));
    }
    Array::from_f64(dtype, ArrayD::zeros(IxDyn(&[])))
}

/// Output element `i` is `a`'s flat element `src[i]`, or `fill`'s (first) element for `None`.
pub(crate) fn take(a: &Array, src: &[Option<usize>], shape: &[usize], fill: Option<&Array>) -> KernelResult<Array> {
    with_variant!(a, V, x => {
        let flat: Vec<_> = x.iter().cloned().collect();
        let f = match fill {
            Some(V(f)) => f.iter().next().cloned(),
            Some(other) => return Err(format!("fill value is {}, data is {}", other.dtype(), a.dtype())),
            None => None,
        };
        let out = src
            .iter()
            .map(|s| match s {
                Some(i) => flat.get(*i).cloned().ok_or_else(|| format!("index {i} is out of range")),
                None => f.as_ref().cloned().ok_or_else(|| "no fill value".to_string()),
            })
            .collect::<KernelResult<Vec<_>>>()?;
        Ok(V(ArrayD::from_shape_vec(IxDyn(shape), out).map_err(|e| e.to_string())?))
    })
}

/// The output picks, along each axis `k`, the input positions `per_axis[k]` (None: fill).
fn select_axes(a: &Array, per_axis: &[Vec<Option<usize>>], fill: Option<&Array>) -> KernelResult<Array> {
    let st = strides(a.shape());
    let shape: Vec<usize> = per_axis.iter().map(Vec::len).collect();
    let mut src = Vec::with_capacity(shape.iter().product());
    for_each_index(&shape, |idx| {
        let mut flat = Some(0);
        for (k, i) in idx.iter().enumerate() {
            flat = match (flat, per_axis[k][*i]) {
                (Some(f), Some(p)) => Some(f + p * st[k]),
                _ => None,
            };
        }
        src.push(flat);
        Ok(())
    })?;
    take(a, &src, &shape, fill)
}

fn identity_axes(shape: &[usize]) -> Vec<Vec<Option<usize>>> {
    shape.iter().map(|d| (0..*d).map(Some).collect()).collect()
}

/// Python slicing of one axis of length `d`.
fn slice_positions(start: i64, end: i64, step: i64, d: usize) -> KernelResult<Vec<Option<usize>>> {
    let d = d as i64;
    if step == 0 {
        return Err("Slice step 0".into());
    }
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, e) = (fix(start).clamp(0, d), fix(end).clamp(0, d));
        while i < e {
            out.push(Some(i as usize));
            i = i.saturating_add(step);
        }
    } else {
        let (mut i, e) = (fix(start).clamp(-1, d - 1), fix(end).clamp(-1, d - 1));
        while i > e {
            out.push(Some(i as usize));
            i = i.saturating_add(step);
        }
    }
    Ok(out)
}

pub fn slice(
    x: &Array,
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> KernelResult<Array> {
    let shape = x.shape().to_vec();
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice starts/ends/axes/steps differ in length".into());
    }
    let mut per_axis = identity_axes(&shape);
    for k in 0..starts.len() {
        let ax = norm_axis(axes[k], shape.len())?;
        per_axis[ax] = slice_positions(starts[k], ends[k], steps[k], shape[ax])?;
    }
    select_axes(x, &per_axis, None)
}

/// Sizes of Split's outputs: `split`, or `n` chunks of `ceil(len / n)` with the last smaller.
fn split_sizes(len: usize, split: Option<Vec<i64>>, n: usize) -> KernelResult<Vec<usize>> {
    match split {
        Some(s) => {
            if s.iter().any(|v| *v < 0) || s.iter().sum::<i64>() != len as i64 {
                return Err(format!("split sizes {s:?} do not add up to the axis length {len}"));
            }
            Ok(s.iter().map(|v| *v as usize).collect())
        }
        None => {
            if n == 0 {
                return Err("Split into zero outputs".into());
            }
            let chunk = len.div_ceil(n);
            Ok((0..n).map(|i| chunk.min(len.saturating_sub(i * chunk))).collect())
        }
    }
}

/// Cuts `x` along `ax` into pieces of the given sizes.
pub(crate) fn split_along(x: &Array, ax: usize, sizes: &[usize]) -> KernelResult<Vec<Array>> {
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        let mut per_axis = identity_axes(x.shape());
        per_axis[ax] = (start..start + s).map(Some).collect();
        out.push(select_axes(x, &per_axis, None)?);
        start += s;
    }
    Ok(out)
}

pub fn split(
    x: &Array,
    axis: i64,
    split: Option<Vec<i64>>,
    num_outputs: Option<u64>,
    n_out: usize,
) -> KernelResult<Vec<Array>> {
    let ax = norm_axis(axis, x.shape().len())?;
    let n = num_outputs.map_or(n_out, |n| n as usize);
    let sizes = split_sizes(x.shape()[ax], split, n)?;
    split_along(x, ax, &sizes)
}

pub fn split_to_sequence(x: &Array, axis: i64, keepdims: bool, split: Option<Array>) -> KernelResult<Vec<Array>> {
    let ax = norm_axis(axis, x.shape().len())?;
    let len = x.shape()[ax];
    let Some(s) = split else {
        let pieces = split_along(x, ax, &vec![1; len])?;
        if keepdims {
            return Ok(pieces);
        }
        return pieces.into_iter().map(|p| super::layout::squeeze(p, Some(vec![ax as i64]))).collect();
    };
    let v: Vec<i64> = s.to_i64()?.iter().copied().collect();
    let sizes = if s.shape().is_empty() {
        let c = *v.first().ok_or("empty split")?;
        if c <= 0 {
            return Err(format!("split size {c} must be positive"));
        }
        let c = c as usize;
        (0..len.div_ceil(c)).map(|i| c.min(len - i * c)).collect()
    } else {
        split_sizes(len, Some(v), 0)?
    };
    split_along(x, ax, &sizes)
}

pub fn pad(
    x: &Array,
    mode: ferry_ir::ops::PadMode,
    pads: &[i64],
    value: Option<Array>,
    axes: Option<Vec<i64>>,
) -> KernelResult<Array> {
    use ferry_ir::ops::PadMode::*;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|a| norm_axis(*a, rank)).collect::<KernelResult<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut per_axis = identity_axes(&shape);
    for (k, ax) in axes.iter().enumerate() {
        let (b, e, d) = (pads[k], pads[k + axes.len()], shape[*ax] as i64);
        let n = d + b + e;
        if n < 0 {
            return Err(format!("pads {b}, {e} remove more than axis {ax}'s {d} elements"));
        }
        per_axis[*ax] = (0..n)
            .map(|o| {
                let p = o - b;
                if (0..d).contains(&p) {
                    return Ok(Some(p as usize));
                }
                if d == 0 && mode != Constant {
                    return Err(format!("cannot {mode:?}-pad an empty axis"));
                }
                Ok(match mode {
                    Constant => None,
                    Edge => Some(p.clamp(0, d - 1) as usize),
                    Wrap => Some(p.rem_euclid(d) as usize),
                    Reflect if d == 1 => Some(0),
                    Reflect => {
                        let m = p.rem_euclid(2 * (d - 1));
                        Some(if m >= d { 2 * (d - 1) - m } else { m } as usize)
                    }
                })
            })
            .collect::<KernelResult<_>>()?;
    }
    let fill = match value {
        Some(v) if v.shape().iter().product::<usize>() > 0 => v,
        _ => zero(x.dtype())?,
    };
    select_axes(x, &per_axis, Some(&fill))
}

pub fn tile(x: &Array, repeats: &[i64]) -> KernelResult<Array> {
    let shape = x.shape();
    if repeats.len() != shape.len() || repeats.iter().any(|r| *r < 0) {
        return Err(format!("Tile repeats {repeats:?} do not fit a rank-{} input", shape.len()));
    }
    let out: Option<Vec<u64>> = shape.iter().zip(repeats).map(|(d, r)| (*d as u64).checked_mul(*r as u64)).collect();
    let Some(out) = out else { return Err(format!("Tile output of {shape:?} repeated {repeats:?} overflows")) };
    crate::limits::check_tensor(x.dtype(), &out, "the Tile output")?;
    // An empty output may still have a huge axis; its index list is allocated below.
    for n in &out {
        crate::limits::check_tensor(DType::I64, &[*n], "a Tile index list")?;
    }
    let per_axis: Vec<Vec<Option<usize>>> =
        shape.iter().zip(repeats).map(|(d, r)| (0..d * *r as usize).map(|i| Some(i % d)).collect()).collect();
    select_axes(x, &per_axis, None)
}

pub fn gather(x: &Array, indices: &Array, axis: i64) -> KernelResult<Array> {
    let shape = x.shape();
    let ax = norm_axis(axis, shape.len())?;
    let idx = indices.to_i64()?;
    let d = shape[ax];
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let idx: Vec<usize> = idx.iter().map(|i| norm_index(*i, d, "Gather")).collect::<KernelResult<_>>()?;
    let mut src = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for i in &idx {
            for n in 0..inner {
                src.push(Some((o * d + i) * inner + n));
            }
        }
    }
    let out_shape: Vec<usize> = shape[..ax].iter().chain(indices.shape()).chain(&shape[ax + 1..]).copied().collect();
    take(x, &src, &out_shape, None)
}

pub fn gather_elements(x: &Array, indices: &Array, axis: i64) -> KernelResult<Array> {
    let shape = x.shape();
    let ax = norm_axis(axis, shape.len())?;
    if indices.shape().len() != shape.len() {
        return Err("GatherElements indices differ in rank from data".into());
    }
    let st = strides(shape);
    let idx = indices.to_i64()?;
    let mut src = Vec::with_capacity(idx.len());
    for_each_index(indices.shape(), |p| {
        let mut flat = 0;
        for (k, i) in p.iter().enumerate() {
            let i = if k == ax { norm_index(idx[p], shape[k], "GatherElements")? } else { *i };
            if i >= shape[k] {
                return Err("GatherElements indices are larger than data".into());
            }
            flat += i * st[k];
        }
        src.push(Some(flat));
        Ok(())
    })?;
    take(x, &src, indices.shape(), None)
}

/// Row-major offset of the index tuple `t` within `dims` (negative entries count from the end).
fn tuple_offset(t: &[i64], dims: &[usize], what: &str) -> KernelResult<usize> {
    let mut off = 0;
    for (i, d) in t.iter().zip(dims) {
        off = off * d + norm_index(*i, *d, what)?;
    }
    Ok(off)
}

pub fn gather_nd(x: &Array, indices: &Array, batch_dims: usize) -> KernelResult<Array> {
    let shape = x.shape();
    let ishape = indices.shape();
    let k = *ishape.last().ok_or("GatherND indices must have rank >= 1")?;
    if batch_dims >= ishape.len() || batch_dims + k > shape.len() || shape[..batch_dims] != ishape[..batch_dims] {
        return Err(format!("GatherND shapes do not fit: data {shape:?}, indices {ishape:?}"));
    }
    let idx: Vec<i64> = indices.to_i64()?.iter().copied().collect();
    let batches: usize = shape[..batch_dims].iter().product();
    let per_batch: usize = ishape[batch_dims..ishape.len() - 1].iter().product();
    let slice: usize = shape[batch_dims + k..].iter().product();
    let batch_stride: usize = shape[batch_dims..].iter().product();
    let mut src = Vec::with_capacity(batches * per_batch * slice);
    for b in 0..batches {
        for t in 0..per_batch {
            let at = (b * per_batch + t) * k;
            let base = b * batch_stride
                + tuple_offset(&idx[at..at + k], &shape[batch_dims..batch_dims + k], "GatherND")? * slice;
            src.extend((0..slice).map(|j| Some(base + j)));
        }
    }
    let out_shape: Vec<usize> = ishape[..ishape.len() - 1].iter().chain(&shape[batch_dims + k..]).copied().collect();
    take(x, &src, &out_shape, None)
}

/// Writes (or combines) `updates`' flat element `u` into `data`'s flat element `t` for each pair.
fn scatter(
    data: &Array,
    updates: &Array,
    pairs: &[(usize, usize)],
    reduction: ScatterReduction,
) -> KernelResult<Array> {
    if data.dtype() != updates.dtype() {
        return Err(format!("updates are {}, data is {}", updates.dtype(), data.dtype()));
    }
    let n = data.shape().iter().product::<usize>();
    if pairs.iter().any(|(t, _)| *t >= n) {
        return Err("scatter index out of range".into());
    }
    if reduction == ScatterReduction::None {
        return with_variant!(data, V, d => {
            let V(u) = updates else { unreachable!("dtypes checked") };
            let u: Vec<_> = u.iter().cloned().collect();
            let mut out: Vec<_> = d.iter().cloned().collect();
            for (t, i) in pairs {
                out[*t] = u.get(*i).cloned().ok_or("updates are too small")?;
            }
            Ok(V(ArrayD::from_shape_vec(d.raw_dim(), out).map_err(|e| e.to_string())?))
        });
    }
    macro_rules! combine {
        ($d:expr, $u:expr, $add:expr, $mul:expr) => {{
            let u: Vec<_> = $u.iter().copied().collect();
            let mut out: Vec<_> = $d.iter().copied().collect();
            for (t, i) in pairs {
                let (a, b) = (out[*t], *u.get(*i).ok_or("updates are too small")?);
                out[*t] = match reduction {
                    ScatterReduction::Add => $add(a, b),
                    ScatterReduction::Mul => $mul(a, b),
                    ScatterReduction::Max => {
                        if b > a {
                            b
                        } else {
                            a
                        }
                    }
                    ScatterReduction::Min => {
                        if b < a {
                            b
                        } else {
                            a
                        }
                    }
                    ScatterReduction::None => b,
                };
            }
            ArrayD::from_shape_vec($d.raw_dim(), out).map_err(|e| e.to_string())?
        }};
    }
    let dtype = data.dtype();
    if dtype.is_int() || dtype == DType::Bool {
        let r = combine!(data.to_i64()?, updates.to_i64()?, i64::wrapping_add, i64::wrapping_mul);
        Array::from_i64(dtype, r)
    } else {
        let r = combine!(data.to_f64()?, updates.to_f64()?, |a: f64, b: f64| a + b, |a: f64, b: f64| a * b);
        Array::from_f64(dtype, r)
    }
}

pub fn scatter_elements(
    data: &Array,
    indices: &Array,
    updates: &Array,
    axis: i64,
    reduction: ScatterReduction,
) -> KernelResult<Array> {
    let shape = data.shape();
    let ax = norm_axis(axis, shape.len())?;
    if indices.shape() != updates.shape() || indices.shape().len() != shape.len() {
        return Err("ScatterElements indices and updates must have data's rank and one shape".into());
    }
    let st = strides(shape);
    let idx = indices.to_i64()?;
    let mut pairs = Vec::with_capacity(idx.len());
    for_each_index(indices.shape(), |p| {
        let mut flat = 0;
        for (k, i) in p.iter().enumerate() {
            let i = if k == ax { norm_index(idx[p], shape[k], "ScatterElements")? } else { *i };
            if i >= shape[k] {
                return Err("ScatterElements indices are larger than data".into());
            }
            flat += i * st[k];
        }
        pairs.push((flat, pairs.len()));
        Ok(())
    })?;
    scatter(data, updates, &pairs, reduction)
}

pub fn scatter_nd(data: &Array, indices: &Array, updates: &Array, reduction: ScatterReduction) -> KernelResult<Array> {
    let shape = data.shape();
    let ishape = indices.shape();
    let k = *ishape.last().ok_or("ScatterND indices must have rank >= 1")?;
    if k > shape.len() {
        return Err(format!("ScatterND index tuples of {k} for rank {}", shape.len()));
    }
    let idx: Vec<i64> = indices.to_i64()?.iter().copied().collect();
    let tuples: usize = ishape[..ishape.len() - 1].iter().product();
    let slice: usize = shape[k..].iter().product();
    if updates.shape().iter().product::<usize>() != tuples * slice {
        return Err("ScatterND updates do not fit indices and data".into());
    }
    let mut pairs = Vec::with_capacity(tuples * slice);
    for t in 0..tuples {
        let base = tuple_offset(&idx[t * k..t * k + k], &shape[..k], "ScatterND")? * slice;
        pairs.extend((0..slice).map(|j| (base + j, t * slice + j)));
    }
    scatter(data, updates, &pairs, reduction)
}

pub fn one_hot(indices: &Array, depth: &Array, values: &Array, axis: i64) -> KernelResult<Array> {
    let depth = *depth.to_f64()?.iter().next().ok_or("OneHot depth is empty")? as i64;
    if depth < 0 {
        return Err(format!("OneHot depth {depth} is negative"));
    }
    if values.shape().iter().product::<usize>() != 2 {
        return Err("OneHot values must have two elements".into());
    }
    let ishape = indices.shape();
    let ax = norm_axis(axis, ishape.len() + 1)?;
    let idx = indices.to_f64()?;
    let idx: Vec<i64> = idx.iter().map(|v| *v as i64).collect();
    let mut shape = ishape.to_vec();
    shape.insert(ax, depth as usize);
    let outer: usize = ishape[..ax].iter().product();
    let inner: usize = ishape[ax..].iter().product();
    let mut src = Vec::with_capacity(outer * depth as usize * inner);
    for o in 0..outer {
        for d in 0..depth {
            for n in 0..inner {
                let i = idx[o * inner + n];
                let i = if i < 0 { i + depth } else { i };
                src.push(Some(usize::from(i == d)));
            }
        }
    }
    take(values, &src, &shape, None)
}

pub fn trilu(x: &Array, k: i64, upper: bool) -> KernelResult<Array> {
    let shape = x.shape();
    let r = shape.len();
    if r < 2 {
        return Err("Trilu needs rank >= 2".into());
    }
    let mut src = Vec::with_capacity(x.shape().iter().product());
    let mut flat = 0;
    for_each_index(shape, |p| {
        let diff = p[r - 1] as i64 - p[r - 2] as i64;
        let keep = if upper { diff >= k } else { diff <= k };
        src.push(keep.then_some(flat));
        flat += 1;
        Ok(())
    })?;
    take(x, &src, shape, Some(&zero(x.dtype())?))
}

fn nchw(x: &Array, what: &str) -> KernelResult<[i64; 4]> {
    match x.shape() {
        [n, c, h, w] => Ok([*n as i64, *c as i64, *h as i64, *w as i64]),
        s => Err(format!("{what} needs a rank-4 input, not {s:?}")),
    }
}

pub fn depth_to_space(x: Array, b: u64, crd: bool) -> KernelResult<Array> {
    use super::layout::{reshape, transpose};
    let [n, c, h, w] = nchw(&x, "DepthToSpace")?;
    let b = b as i64;
    if b <= 0 || c % (b * b) != 0 {
        return Err(format!("DepthToSpace: {c} channels do not split into blocks of {b}x{b}"));
    }
    let cc = c / (b * b);
    let t = if crd {
        transpose(reshape(x, &[n, cc, b, b, h, w], true)?, Some(&[0, 1, 4, 2, 5, 3]))?
    } else {
        transpose(reshape(x, &[n, b, b, cc, h, w], true)?, Some(&[0, 3, 4, 1, 5, 2]))?
    };
    reshape(t, &[n, cc, h * b, w * b], true)
}

pub fn space_to_depth(x: Array, b: u64, crd: bool) -> KernelResult<Array> {
    use super::layout::{reshape, transpose};
    let [n, c, h, w] = nchw(&x, "SpaceToDepth")?;
    let b = b as i64;
    if b <= 0 || h % b != 0 || w % b != 0 {
        return Err(format!("SpaceToDepth: {h}x{w} does not split into blocks of {b}x{b}"));
    }
    let r = reshape(x, &[n, c, h / b, b, w / b, b], true)?;
    let perm: &[usize] = if crd { &[0, 1, 3, 5, 2, 4] } else { &[0, 3, 5, 1, 2, 4] };
    reshape(transpose(r, Some(perm))?, &[n, c * b * b, h / b, w / b], true)
}

pub fn compress(x: &Array, cond: &Array, axis: Option<i64>) -> KernelResult<Array> {
    let cond: Vec<bool> = cond.to_f64()?.iter().map(|v| *v != 0.0).collect();
    let (x, ax) = match axis {
        Some(a) => (x.clone(), norm_axis(a, x.shape().len())?),
        None => (super::layout::reshape(x.clone(), &[-1], true)?, 0),
    };
    let d = x.shape()[ax];
    if cond.len() > d {
        return Err(format!("Compress condition has {} entries for an axis of {d}", cond.len()));
    }
    let mut per_axis = identity_axes(x.shape());
    per_axis[ax] = (0..cond.len()).filter(|i| cond[*i]).map(Some).collect();
    select_axes(&x, &per_axis, None)
}

pub fn non_zero(x: &Array) -> KernelResult<Array> {
    let v = x.to_f64()?;
    let r = v.ndim();
    let mut coords: Vec<Vec<i64>> = vec![Vec::new(); r];
    for_each_index(v.shape(), |p| {
        if v[p] != 0.0 {
            for (k, i) in p.iter().enumerate() {
                coords[k].push(*i as i64);
            }
        }
        Ok(())
    })?;
    let count = if r == 0 { usize::from(v.iter().any(|x| *x != 0.0)) } else { coords[0].len() };
    let flat: Vec<i64> = coords.into_iter().flatten().collect();
    Ok(Array::I64(ArrayD::from_shape_vec(IxDyn(&[r, count]), flat).map_err(|e| e.to_string())?))
}

pub fn reverse_sequence(x: &Array, lens: &[i64], batch_axis: usize, time_axis: usize) -> KernelResult<Array> {
    let shape = x.shape();
    if batch_axis >= shape.len() || time_axis >= shape.len() || lens.len() != shape[batch_axis] {
        return Err("ReverseSequence axes or sequence_lens do not fit the input".into());
    }
    let st = strides(shape);
    let mut src = Vec::with_capacity(shape.iter().product());
    for_each_index(shape, |p| {
        let (b, t) = (p[batch_axis], p[time_axis] as i64);
        let l = lens[b].clamp(0, shape[time_axis] as i64);
        let t2 = if t < l { l - 1 - t } else { t } as usize;
        let flat: usize = p.iter().enumerate().map(|(k, i)| if k == time_axis { t2 } else { *i } * st[k]).sum();
        src.push(Some(flat));
        Ok(())
    })?;
    take(x, &src, shape, None)
}

/// Larger outputs are refused rather than allocated (a bad input, not a real model).
const MAX_ELEMENTS: f64 = (1u64 << 40) as f64;

pub fn range(start: &Array, limit: &Array, delta: &Array) -> KernelResult<Array> {
    let dtype = start.dtype();
    let one = |a: &Array| a.to_f64()?.iter().next().copied().ok_or_else(|| "Range takes scalars".to_string());
    if dtype.is_int() {
        let get = |a: &Array| a.to_i64()?.iter().next().copied().ok_or_else(|| "Range takes scalars".to_string());
        let (s, l, d) = (get(start)?, get(limit)?, get(delta)?);
        if d == 0 {
            return Err("Range delta 0".into());
        }
        let n = ((l as i128 - s as i128) as f64 / d as f64).ceil().max(0.0);
        if n > MAX_ELEMENTS {
            return Err(format!("Range of {n} elements"));
        }
        let n = n as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| s.wrapping_add(i.wrapping_mul(d))).collect();
        return Array::from_i64(dtype, ArrayD::from_shape_vec(IxDyn(&[n]), v).map_err(|e| e.to_string())?);
    }
    let (s, l, d) = (one(start)?, one(limit)?, one(delta)?);
    if d == 0.0 {
        return Err("Range delta 0".into());
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if !n.is_finite() || n > MAX_ELEMENTS {
        return Err(format!("Range of {n} elements"));
    }
    let n = n as usize;
    let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&[n]), v).map_err(|e| e.to_string())?)
}

pub fn constant_of_shape(value: &ferry_ir::Tensor, shape: &[i64]) -> KernelResult<Array> {
    let v = Array::from_tensor(value)?;
    if v.shape().iter().product::<usize>() != 1 {
        return Err("ConstantOfShape value must have one element".into());
    }
    if shape.iter().any(|d| *d < 0) {
        return Err(format!("ConstantOfShape shape {shape:?} is negative"));
    }
    let shape: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
    let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or("ConstantOfShape shape overflows")?;
    take(&v, &vec![Some(0); n], &shape, None)
}

pub fn eye_like(x: &Array, dtype: Option<DType>, k: i64) -> KernelResult<Array> {
    let [r, c] = x.shape() else { return Err("EyeLike needs a 2-D input".into()) };
    let a = ArrayD::from_shape_fn(IxDyn(&[*r, *c]), |i| f64::from(u8::from(i[1] as i64 - i[0] as i64 == k)));
    Array::from_f64(dtype.unwrap_or(x.dtype()), a)
}

pub fn is_inf(x: &Array, neg: bool, pos: bool) -> KernelResult<Array> {
    Ok(Array::Bool(x.to_f64()?.mapv(|v| v.is_infinite() && if v > 0.0 { pos } else { neg })))
}

/// Sort keys of an array's elements (row-major).
enum Keys {
    F(Vec<f64>),
    I(Vec<i128>),
    S(Vec<Bytes>),
}

impl Keys {
    fn of(a: &Array) -> KernelResult<Keys> {
        Ok(match a {
            Array::Str(s) => Keys::S(s.iter().cloned().collect()),
            Array::U64(u) => Keys::I(u.iter().map(|v| *v as i128).collect()),
            a if a.dtype().is_int() || a.dtype() == DType::Bool => {
                Keys::I(a.to_i64()?.iter().map(|v| *v as i128).collect())
            }
            a => Keys::F(a.to_f64()?.iter().copied().collect()),
        })
    }

    /// Total order: NaN after every number, NaNs equal to each other.
    fn cmp(&self, i: usize, j: usize) -> Ordering {
        match self {
            Keys::F(v) => {
                let (a, b) = (v[i], v[j]);
                a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
            }
            Keys::I(v) => v[i].cmp(&v[j]),
            Keys::S(v) => v[i].cmp(&v[j]),
        }
    }
}

/// `(outer, len, inner)` of a row-major array around axis `ax`.
fn lanes(shape: &[usize], ax: usize) -> (usize, usize, usize) {
    (shape[..ax].iter().product(), shape[ax], shape[ax + 1..].iter().product())
}

pub fn top_k(x: &Array, k: i64, axis: i64, largest: bool) -> KernelResult<(Array, Array)> {
    let shape = x.shape().to_vec();
    let ax = norm_axis(axis, shape.len())?;
    let (outer, d, inner) = lanes(&shape, ax);
    if k < 0 || k as usize > d {
        return Err(format!("TopK k={k} for an axis of {d}"));
    }
    let k = k as usize;
    let keys = Keys::of(x)?;
    let mut src = vec![None; outer * k * inner];
    let mut ind = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for n in 0..inner {
            let at = |i: usize| (o * d + i) * inner + n;
            let mut order: Vec<usize> = (0..d).collect();
            order.sort_by(|a, b| {
                let c = keys.cmp(at(*a), at(*b));
                (if largest { c.reverse() } else { c }).then(a.cmp(b))
            });
            for (j, i) in order.into_iter().take(k).enumerate() {
                let out = (o * k + j) * inner + n;
                src[out] = Some(at(i));
                ind[out] = i as i64;
            }
        }
    }
    let mut out_shape = shape.clone();
    out_shape[ax] = k;
    let values = take(x, &src, &out_shape, None)?;
    let indices = Array::I64(ArrayD::from_shape_vec(IxDyn(&out_shape), ind).map_err(|e| e.to_string())?);
    Ok((values, indices))
}

pub fn arg_reduce(x: &Array, axis: i64, max: bool, keepdims: bool, last: bool) -> KernelResult<Array> {
    let shape = x.shape().to_vec();
    let ax = norm_axis(axis, shape.len())?;
    let (outer, d, inner) = lanes(&shape, ax);
    if d == 0 {
        return Err("ArgMax/ArgMin over an empty axis".into());
    }
    let keys = Keys::of(x)?;
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for n in 0..inner {
            let at = |i: usize| (o * d + i) * inner + n;
            let mut best = 0;
            for i in 1..d {
                let c = keys.cmp(at(i), at(best));
                let c = if max { c } else { c.reverse() };
                if c == Ordering::Greater || (last && c == Ordering::Equal) {
                    best = i;
                }
            }
            out.push(best as i64);
        }
    }
    let mut out_shape = shape;
    if keepdims {
        out_shape[ax] = 1;
    } else {
        out_shape.remove(ax);
    }
    Ok(Array::I64(ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?))
}

pub fn cum_sum(x: &Array, axis: i64, exclusive: bool, reverse: bool) -> KernelResult<Array> {
    let shape = x.shape().to_vec();
    let ax = norm_axis(axis, shape.len())?;
    let (outer, d, inner) = lanes(&shape, ax);
    macro_rules! scan {
        ($v:expr, $zero:expr, $add:expr) => {{
            let v: Vec<_> = $v.iter().copied().collect();
            let mut out = vec![$zero; v.len()];
            for o in 0..outer {
                for n in 0..inner {
                    let mut acc = $zero;
                    for s in 0..d {
                        let i = if reverse { d - 1 - s } else { s };
                        let at = (o * d + i) * inner + n;
                        if exclusive {
                            out[at] = acc;
                            acc = $add(acc, v[at]);
                        } else {
                            acc = $add(acc, v[at]);
                            out[at] = acc;
                        }
                    }
                }
            }
            ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())?
        }};
    }
    let dtype = x.dtype();
    if dtype.is_int() {
        Array::from_i64(dtype, scan!(x.to_i64()?, 0i64, i64::wrapping_add))
    } else {
        Array::from_f64(dtype, scan!(x.to_f64()?, 0f64, |a: f64, b: f64| a + b))
    }
}

/// Unique: `(Y, indices, inverse_indices, counts)`.
pub fn unique(x: &Array, axis: Option<i64>, sorted: bool) -> KernelResult<[Array; 4]> {
    let (x, ax) = match axis {
        Some(a) => (x.clone(), norm_axis(a, x.shape().len())?),
        None => (super::layout::reshape(x.clone(), &[-1], true)?, 0),
    };
    let shape = x.shape().to_vec();
    let (outer, d, inner) = lanes(&shape, ax);
    let keys = Keys::of(&x)?;
    // Compares slice `a` with slice `b` along the axis, lexicographically in row-major order.
    let cmp = |a: usize, b: usize| -> Ordering {
        for o in 0..outer {
            for n in 0..inner {
                let c = keys.cmp((o * d + a) * inner + n, (o * d + b) * inner + n);
                if c != Ordering::Equal {
                    return c;
                }
            }
        }
        Ordering::Equal
    };
    // Sorted order (stable: ties keep their first occurrence first), then group equal runs.
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|a, b| cmp(*a, *b).then(a.cmp(b)));
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new(); // (first occurrence, members)
    for i in order {
        match groups.last_mut() {
            Some((first, members)) if cmp(*first, i) == Ordering::Equal => members.push(i),
            _ => groups.push((i, vec![i])),
        }
    }
    if !sorted {
        groups.sort_by_key(|(first, _)| *first);
    }
    let mut inverse = vec![0i64; d];
    for (g, (_, members)) in groups.iter().enumerate() {
        for m in members {
            inverse[*m] = g as i64;
        }
    }
    let mut per_axis = identity_axes(&shape);
    per_axis[ax] = groups.iter().map(|(f, _)| Some(*f)).collect();
    let y = select_axes(&x, &per_axis, None)?;
    let vec1 = |v: Vec<i64>| Array::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"));
    Ok([
        y,
        vec1(groups.iter().map(|(f, _)| *f as i64).collect()),
        vec1(inverse),
        vec1(groups.iter().map(|(_, m)| m.len() as i64).collect()),
    ])
}

/// Stacks same-shaped arrays along a new axis `axis` (counted against the result's rank).
pub(crate) fn stack_along(parts: &[Array], axis: i64) -> KernelResult<Array> {
    let first = parts.first().ok_or("nothing to stack")?;
    let ax = norm_axis(axis, first.shape().len() + 1)? as i64;
    let expanded: Vec<Array> =
        parts.iter().map(|a| super::layout::unsqueeze(a.clone(), &[ax])).collect::<KernelResult<_>>()?;
    super::layout::concat(&expanded, ax)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Array {
        Array::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    fn vals(a: &Array) -> Vec<f64> {
        a.to_f64().unwrap().iter().copied().collect()
    }

    #[test]
    fn negative_step_slice_walks_backwards() {
        // numpy: np.arange(5)[-1:-6:-2] == [4, 2, 0]
        let x = f32s(&[5], &[0., 1., 2., 3., 4.]);
        let y = slice(&x, &[-1], &[-6], None, Some(vec![-2])).unwrap();
        assert_eq!(vals(&y), vec![4., 2., 0.]);
        // Out-of-range ends clamp: [i64::MIN] as end with step -1 takes everything reversed.
        let y = slice(&x, &[10], &[i64::MIN], None, Some(vec![-1])).unwrap();
        assert_eq!(vals(&y), vec![4., 3., 2., 1., 0.]);
    }

    #[test]
    fn reflect_pad_mirrors_without_the_edge() {
        // numpy: np.pad([1, 2, 3], (2, 3), 'reflect') == [3, 2, 1, 2, 3, 2, 1, 2]
        let x = f32s(&[3], &[1., 2., 3.]);
        let y = pad(&x, ferry_ir::ops::PadMode::Reflect, &[2, 3], None, None).unwrap();
        assert_eq!(vals(&y), vec![3., 2., 1., 2., 3., 2., 1., 2.]);
        let y = pad(&x, ferry_ir::ops::PadMode::Wrap, &[2, -1], None, None).unwrap();
        assert_eq!(vals(&y), vec![2., 3., 1., 2.]);
    }

    #[test]
    fn unique_unsorted_keeps_first_occurrence_order() {
        // ONNX Unique example 1: X = [2, 1, 1, 3, 4, 3], sorted = 0
        let x = f32s(&[6], &[2., 1., 1., 3., 4., 3.]);
        let [y, ind, inv, cnt] = unique(&x, None, false).unwrap();
        assert_eq!(vals(&y), vec![2., 1., 3., 4.]);
        assert_eq!(vals(&ind), vec![0., 1., 3., 4.]);
        assert_eq!(vals(&inv), vec![0., 1., 1., 2., 3., 2.]);
        assert_eq!(vals(&cnt), vec![1., 2., 2., 1.]);
    }
}
