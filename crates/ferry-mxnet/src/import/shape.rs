//! Layout, indexing, reductions and contractions. MXNet reductions over every axis give shape
//! (1,), not a scalar.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use super::elementwise::{cast_op, dtype_by_name};
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, PadMode, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Flatten", flatten),
    ("flatten", flatten),
    ("Concat", concat),
    ("_rnn_param_concat", concat),
    ("concat", concat),
    ("Reshape", reshape),
    ("reshape", reshape),
    ("expand_dims", expand_dims),
    ("transpose", transpose),
    ("SwapAxis", swap_axis),
    ("swapaxes", swap_axis),
    ("squeeze", squeeze),
    ("slice_axis", slice_axis),
    ("slice", slice),
    ("SliceChannel", slice_channel),
    ("split", slice_channel),
    ("_split_v2", split_v2),
    ("stack", stack),
    ("sum", |c| reduce(c, ReduceKind::Sum)),
    ("sum_axis", |c| reduce(c, ReduceKind::Sum)),
    ("mean", |c| reduce(c, ReduceKind::Mean)),
    ("max", |c| reduce(c, ReduceKind::Max)),
    ("max_axis", |c| reduce(c, ReduceKind::Max)),
    ("min", |c| reduce(c, ReduceKind::Min)),
    ("min_axis", |c| reduce(c, ReduceKind::Min)),
    ("prod", |c| reduce(c, ReduceKind::Prod)),
    ("norm", norm),
    ("argmax", |c| arg_reduce(c, true)),
    ("argmin", |c| arg_reduce(c, false)),
    ("tile", tile),
    ("Pad", pad),
    ("pad", pad),
    ("dot", dot),
    ("batch_dot", batch_dot),
    ("_linalg_gemm2", gemm2),
    ("shape_array", shape_array),
    ("size_array", size_array),
    ("depth_to_space", |c| block(c, true)),
    ("space_to_depth", |c| block(c, false)),
    ("broadcast_to", broadcast_to),
    ("broadcast_axis", broadcast_axis),
    ("broadcast_axes", broadcast_axis),
    ("broadcast_like", broadcast_like),
    ("reshape_like", reshape_like),
    ("_zeros", |c| filled(c, 0.0)),
    ("_ones", |c| filled(c, 1.0)),
    ("zeros_like", |c| filled_like(c, 0.0)),
    ("ones_like", |c| filled_like(c, 1.0)),
    ("where", where_),
    ("reverse", reverse),
    ("flip", reverse),
    ("take", take),
    ("one_hot", one_hot),
];

fn norm_axis(c: &NodeCtx, axis: i64, rank: usize) -> Result<i64> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(c.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a)
}

/// All dims of a value, which must be known.
fn known_dims(c: &NodeCtx, v: ValueId) -> Result<Vec<u64>> {
    c.dims_of(v)
        .and_then(|d| d.into_iter().collect::<Option<Vec<u64>>>())
        .ok_or_else(|| c.error("the input shape must be known (give input shapes with --input-shape)"))
}

fn flatten(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Flatten { axis: 1 }, vec![x], 0);
    Ok(())
}

fn concat(c: &mut NodeCtx) -> Result<()> {
    let axis = c.int("dim", 1)?;
    let inputs = c.inputs.clone();
    c.emit_out(Op::Concat { axis }, inputs, 0);
    Ok(())
}

/// MXNet's Reshape with its special codes (0 copy, -1 infer, -2 copy rest, -3 merge two, -4 split
/// one), evaluated against the known input shape.
pub fn reshape_dims(input: &[u64], spec: &[i64], reverse: bool) -> std::result::Result<Vec<u64>, String> {
    let (inp, spec): (Vec<u64>, Vec<i64>) = if reverse {
        (input.iter().rev().copied().collect(), spec.iter().rev().copied().collect())
    } else {
        (input.to_vec(), spec.to_vec())
    };
    let total = inp
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .ok_or_else(|| format!("input shape {inp:?} has more elements than fit in 64 bits"))?;
    let mut out: Vec<u64> = Vec::new();
    let mut src = 0usize;
    let mut infer: Option<usize> = None;
    let get = |i: usize| {
        inp.get(i).copied().ok_or_else(|| format!("shape {spec:?} reads past the input's {} dims", inp.len()))
    };
    let mut i = 0;
    while i < spec.len() {
        let p = spec[i];
        match p {
            p if p > 0 => {
                out.push(p as u64);
                src += 1;
            }
            0 => {
                out.push(get(src)?);
                src += 1;
            }
            -1 => {
                if infer.is_some() {
                    return Err("more than one -1".into());
                }
                infer = Some(out.len());
                out.push(1);
                src += 1;
            }
            -2 => {
                out.extend(inp.iter().skip(src));
                src = inp.len();
            }
            -3 => {
                out.push(get(src)?.checked_mul(get(src + 1)?).ok_or("-3 merges dims too large to multiply")?);
                src += 2;
            }
            -4 => {
                let (mut d0, mut d1) = (
                    *spec.get(i + 1).ok_or("-4 needs two following values")?,
                    *spec.get(i + 2).ok_or("-4 needs two following values")?,
                );
                let dim = get(src)? as i64;
                src += 1;
                if d0 == -1 && d1 > 0 {
                    d0 = dim / d1;
                }
                if d1 == -1 && d0 > 0 {
                    d1 = dim / d0;
                }
                if d0 <= 0 || d1 <= 0 || d0.checked_mul(d1) != Some(dim) {
                    return Err(format!("cannot split {dim} into ({d0}, {d1})"));
                }
                out.push(d0 as u64);
                out.push(d1 as u64);
                i += 2;
            }
            other => return Err(format!("unknown shape code {other}")),
        }
        i += 1;
    }
    if let Some(k) = infer {
        let rest: u64 = out.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, d)| *d).product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(format!("cannot infer -1 for {total} elements into {out:?}"));
        }
        out[k] = total / rest;
    }
    if reverse {
        out.reverse();
    }
    Ok(out)
}

fn reshape(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let spec = c.ints("shape")?.or(c.ints("target_shape")?).ok_or_else(|| c.error("attribute 'shape' is required"))?;
    let reverse = c.bool("reverse", false)?;
    let dims: Vec<i64> = match c.dims_of(x).and_then(|d| d.into_iter().collect::<Option<Vec<u64>>>()) {
        Some(input) => {
            reshape_dims(&input, &spec, reverse).map_err(|e| c.error(e))?.iter().map(|d| *d as i64).collect()
        }
        None if !reverse && spec.iter().all(|d| *d >= -1) => spec.clone(),
        None => return Err(c.error("Reshape with codes -2/-3/-4 or reverse needs a known input shape")),
    };
    let shape = c.const_i64s(&dims, "shape");
    c.emit_out(Op::Reshape { allowzero: false }, vec![x, shape], 0);
    Ok(())
}

fn expand_dims(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axis = c.int_opt("axis")?.ok_or_else(|| c.error("attribute 'axis' is required"))?;
    let axes = c.const_i64s(&[axis], "axes");
    c.emit_out(Op::Unsqueeze, vec![x, axes], 0);
    Ok(())
}

fn transpose(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let perm = match c.ints("axes")? {
        Some(a) if !a.is_empty() => {
            let rank = a.len();
            Some(a.iter().map(|v| norm_axis(c, *v, rank).map(|v| v as usize)).collect::<Result<Vec<_>>>()?)
        }
        _ => None,
    };
    c.emit_out(Op::Transpose { perm }, vec![x], 0);
    Ok(())
}

fn swap_axis(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let a = norm_axis(c, c.int("dim1", 0)?, rank)? as usize;
    let b = norm_axis(c, c.int("dim2", 0)?, rank)? as usize;
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(a, b);
    c.emit_out(Op::Transpose { perm: Some(perm) }, vec![x], 0);
    Ok(())
}

fn squeeze(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    match c.ints("axis")? {
        Some(a) if !a.is_empty() => {
            let axes = c.const_i64s(&a, "axes");
            c.emit_out(Op::Squeeze, vec![x, axes], 0);
        }
        _ => {
            let dims = known_dims(c, x)?;
            let axes: Vec<i64> = dims.iter().enumerate().filter(|(_, d)| **d == 1).map(|(i, _)| i as i64).collect();
            if axes.len() == dims.len() {
                // MXNet keeps one dimension.
                let shape = c.const_i64s(&[1], "shape");
                c.emit_out(Op::Reshape { allowzero: false }, vec![x, shape], 0);
            } else {
                let axes = c.const_i64s(&axes, "axes");
                c.emit_out(Op::Squeeze, vec![x, axes], 0);
            }
        }
    }
    Ok(())
}

fn emit_slice(c: &mut NodeCtx, x: ValueId, starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64], out: usize) {
    let s = c.const_i64s(starts, "starts");
    let e = c.const_i64s(ends, "ends");
    let a = c.const_i64s(axes, "axes");
    let st = c.const_i64s(steps, "steps");
    c.emit_out(Op::Slice, vec![x, s, e, a, st], out);
}

fn slice_axis(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axis = c.int("axis", 0)?;
    let begin = c.int("begin", 0)?;
    let end = c.int_opt("end")?.unwrap_or(i64::MAX);
    emit_slice(c, x, &[begin], &[end], &[axis], &[1], 0);
    Ok(())
}

fn slice(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let begin = c.tuple_opt("begin")?.ok_or_else(|| c.error("attribute 'begin' is required"))?;
    let end = c.tuple_opt("end")?.ok_or_else(|| c.error("attribute 'end' is required"))?;
    let step = c.tuple_opt("step")?.unwrap_or_default();
    let (mut starts, mut ends, mut axes, mut steps) = (vec![], vec![], vec![], vec![]);
    for i in 0..begin.len().max(end.len()) {
        let st = step.get(i).copied().flatten().unwrap_or(1);
        if st == 0 {
            return Err(c.error("slice step 0"));
        }
        let b = begin.get(i).copied().flatten().unwrap_or(if st > 0 { 0 } else { i64::MAX });
        let e = end.get(i).copied().flatten().unwrap_or(if st > 0 { i64::MAX } else { i64::MIN });
        starts.push(b);
        ends.push(e);
        axes.push(i as i64);
        steps.push(st);
    }
    emit_slice(c, x, &starts, &ends, &axes, &steps, 0);
    Ok(())
}

/// Splits into pieces of the given sizes along `axis`, squeezing the axis if asked.
/// The most pieces one split may produce: the same ceiling as a node's outputs.
const MAX_SPLIT_OUTPUTS: usize = 65536;

fn split_into(c: &mut NodeCtx, axis: i64, sizes: Option<Vec<i64>>, n: usize, squeeze_axis: bool) -> Result<()> {
    if n > MAX_SPLIT_OUTPUTS {
        return Err(c.error(format!("{n} outputs requested; ferry splits into at most {MAX_SPLIT_OUTPUTS}")));
    }
    let x = c.input(0)?;
    let mut outs = Vec::with_capacity(n);
    for i in 0..n {
        let o = if squeeze_axis { c.temp("piece") } else { c.output(i).unwrap_or_else(|| c.temp("unused")) };
        outs.push(Some(o));
    }
    let mut inputs = vec![Some(x)];
    let op = match sizes {
        Some(s) => {
            inputs.push(Some(c.const_i64s(&s, "split")));
            Op::Split { axis, num_outputs: None }
        }
        None => Op::Split { axis, num_outputs: Some(n as u64) },
    };
    c.emit(op, inputs, outs.clone());
    if squeeze_axis {
        for (i, o) in outs.iter().enumerate() {
            let axes = c.const_i64s(&[axis], "axes");
            c.emit_out(Op::Squeeze, vec![o.unwrap(), axes], i);
        }
    }
    Ok(())
}

fn slice_channel(c: &mut NodeCtx) -> Result<()> {
    let n = c.int("num_outputs", 0)?;
    let n = usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| c.error("num_outputs must be positive"))?;
    let axis = c.int("axis", 1)?;
    let squeeze_axis = c.bool("squeeze_axis", false)?;
    split_into(c, axis, None, n, squeeze_axis)
}

fn split_v2(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", 0)?, rank)?;
    let squeeze_axis = c.bool("squeeze_axis", false)?;
    let sections = c.int("sections", 0)?;
    if sections > 0 {
        return split_into(c, axis, None, sections as usize, squeeze_axis);
    }
    let indices = c.ints("indices")?.ok_or_else(|| c.error("indices or sections is required"))?;
    let dim = known_dims(c, x)?[axis as usize] as i64;
    let mut sizes = Vec::new();
    for (k, start) in indices.iter().enumerate() {
        let end = indices.get(k + 1).copied().unwrap_or(dim);
        sizes.push(end - start);
    }
    let n = sizes.len();
    split_into(c, axis, Some(sizes), n, squeeze_axis)
}

fn stack(c: &mut NodeCtx) -> Result<()> {
    let axis = c.int("axis", 0)?;
    let inputs = c.inputs.clone();
    let mut parts = Vec::new();
    for x in inputs {
        let axes = c.const_i64s(&[axis], "axes");
        parts.push(c.emit_temp(Op::Unsqueeze, vec![x, axes], "expanded"));
    }
    c.emit_out(Op::Concat { axis }, parts, 0);
    Ok(())
}

/// The axes a reduction runs over: `axis` (None or () = all), complemented when `exclude`.
fn reduce_axes(c: &NodeCtx) -> Result<Option<Vec<i64>>> {
    let axis = c.ints("axis")?.filter(|a| !a.is_empty());
    if !c.bool("exclude", false)? {
        return Ok(axis);
    }
    let rank = c.input_rank(0)?;
    let given: Vec<i64> = axis.unwrap_or_default().iter().map(|a| norm_axis(c, *a, rank)).collect::<Result<_>>()?;
    Ok(Some((0..rank as i64).filter(|a| !given.contains(a)).collect()))
}

fn reduce_with(c: &mut NodeCtx, kind: ReduceKind, axes: Option<Vec<i64>>) -> Result<()> {
    let x = c.input(0)?;
    let keepdims = c.bool("keepdims", false)?;
    let op = Op::Reduce { kind, keepdims, noop_with_empty_axes: false };
    match axes {
        Some(a) => {
            let a = c.const_i64s(&a, "axes");
            c.emit_out(op, vec![x, a], 0);
        }
        None if keepdims => c.emit_out(op, vec![x], 0),
        None => {
            // Every axis: MXNet returns shape (1,).
            let r = c.emit_temp(op, vec![x], "reduced");
            let shape = c.const_i64s(&[1], "shape");
            c.emit_out(Op::Reshape { allowzero: false }, vec![r, shape], 0);
        }
    }
    Ok(())
}

fn reduce(c: &mut NodeCtx, kind: ReduceKind) -> Result<()> {
    let axes = reduce_axes(c)?;
    reduce_with(c, kind, axes)
}

fn norm(c: &mut NodeCtx) -> Result<()> {
    let kind = match c.int("ord", 2)? {
        1 => ReduceKind::L1,
        2 => ReduceKind::L2,
        o => return Err(c.error(format!("norm ord={o} is not supported"))),
    };
    let axes = c.ints("axis")?.filter(|a| !a.is_empty());
    reduce_with(c, kind, axes)
}

fn arg_reduce(c: &mut NodeCtx, max: bool) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let keepdims = c.bool("keepdims", false)?;
    let r = match c.int_opt("axis")? {
        Some(axis) => c.emit_temp(Op::ArgReduce { max, axis, keepdims, select_last_index: false }, vec![x], "index"),
        None => {
            let shape = c.const_i64s(&[-1], "shape");
            let flat = c.emit_temp(Op::Reshape { allowzero: false }, vec![x, shape], "flat");
            let i = c.emit_temp(
                Op::ArgReduce { max, axis: 0, keepdims: true, select_last_index: false },
                vec![flat],
                "index",
            );
            if keepdims {
                // Every axis kept, each of size 1.
                let rank = c.input_rank(0)?;
                let ones = c.const_i64s(&vec![1; rank], "shape");
                c.emit_temp(Op::Reshape { allowzero: false }, vec![i, ones], "index_kept")
            } else {
                i
            }
        }
    };
    c.emit_out(cast_op(dt), vec![r], 0);
    Ok(())
}

fn tile(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let mut reps = c.ints("reps")?.ok_or_else(|| c.error("attribute 'reps' is required"))?;
    let mut x = x;
    if reps.len() < rank {
        let mut r = vec![1; rank - reps.len()];
        r.extend(reps);
        reps = r;
    } else if reps.len() > rank {
        let axes: Vec<i64> = (0..(reps.len() - rank) as i64).collect();
        let axes = c.const_i64s(&axes, "axes");
        x = c.emit_temp(Op::Unsqueeze, vec![x, axes], "expanded");
    }
    let reps = c.const_i64s(&reps, "reps");
    c.emit_out(Op::Tile, vec![x, reps], 0);
    Ok(())
}

fn pad(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let mode = match c.string("mode", "constant").as_str() {
        "constant" => PadMode::Constant,
        "edge" => PadMode::Edge,
        "reflect" => PadMode::Reflect,
        other => return Err(c.error(format!("unknown pad mode '{other}'"))),
    };
    let pw = c.ints("pad_width")?.ok_or_else(|| c.error("attribute 'pad_width' is required"))?;
    let n = pw.len() / 2;
    let pads: Vec<i64> = (0..n).map(|i| pw[2 * i]).chain((0..n).map(|i| pw[2 * i + 1])).collect();
    let pads = c.const_i64s(&pads, "pads");
    let mut inputs = vec![x, pads];
    if mode == PadMode::Constant {
        let v = c.float("constant_value", 0.0)?;
        inputs.push(c.scalar(dt, v, "value")?);
    }
    c.emit_out(Op::Pad { mode }, inputs, 0);
    Ok(())
}

/// Swaps the last two axes of a rank-`rank` value.
fn swap_last(c: &mut NodeCtx, v: ValueId, rank: usize) -> ValueId {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(rank - 1, rank - 2);
    c.emit_temp(Op::Transpose { perm: Some(perm) }, vec![v], "transposed")
}

fn dot(c: &mut NodeCtx) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let (ta, tb) = (c.bool("transpose_a", false)?, c.bool("transpose_b", false)?);
    let (ra, rb) = (c.input_rank(0)?, c.input_rank(1)?);
    if ra == 2 && rb == 2 {
        let a = if ta { swap_last(c, a, 2) } else { a };
        let b = if tb { swap_last(c, b, 2) } else { b };
        c.emit_out(Op::MatMul, vec![a, b], 0);
        return Ok(());
    }
    if ta || tb {
        return Err(c.error("dot with transpose on non-2-D inputs is not supported yet"));
    }
    // Contract a's last axis with b's first: reshape to 2-D, multiply, reshape back.
    let (da, db) = (known_dims(c, a)?, known_dims(c, b)?);
    let k = *da.last().unwrap_or(&1) as i64;
    let s1 = c.const_i64s(&[-1, k], "shape_a");
    let a2 = c.emit_temp(Op::Reshape { allowzero: false }, vec![a, s1], "a2d");
    let s2 = c.const_i64s(&[k, -1], "shape_b");
    let b2 = c.emit_temp(Op::Reshape { allowzero: false }, vec![b, s2], "b2d");
    let m = c.emit_temp(Op::MatMul, vec![a2, b2], "matmul");
    let out: Vec<i64> = da[..da.len() - 1].iter().chain(db.iter().skip(1)).map(|d| *d as i64).collect();
    let s = c.const_i64s(&out, "shape");
    c.emit_out(Op::Reshape { allowzero: false }, vec![m, s], 0);
    Ok(())
}

fn batch_dot(c: &mut NodeCtx) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let (ta, tb) = (c.bool("transpose_a", false)?, c.bool("transpose_b", false)?);
    let (ra, rb) = (c.input_rank(0)?, c.input_rank(1)?);
    let a = if ta { swap_last(c, a, ra) } else { a };
    let b = if tb { swap_last(c, b, rb) } else { b };
    c.emit_out(Op::MatMul, vec![a, b], 0);
    Ok(())
}

fn gemm2(c: &mut NodeCtx) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if c.int("axis", -2)? != -2 {
        return Err(c.error("_linalg_gemm2 with axis other than -2 is not supported"));
    }
    let (ta, tb) = (c.bool("transpose_a", false)?, c.bool("transpose_b", false)?);
    let (ra, rb) = (c.input_rank(0)?, c.input_rank(1)?);
    let dt = c.input_dtype(0)?;
    let a = if ta { swap_last(c, a, ra) } else { a };
    let b = if tb { swap_last(c, b, rb) } else { b };
    let alpha = c.float("alpha", 1.0)?;
    if alpha == 1.0 {
        c.emit_out(Op::MatMul, vec![a, b], 0);
    } else {
        let m = c.emit_temp(Op::MatMul, vec![a, b], "matmul");
        let s = c.scalar(dt, alpha, "alpha")?;
        c.emit_out(Op::Binary(BinaryOp::Mul), vec![m, s], 0);
    }
    Ok(())
}

fn shape_array(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Shape { start: 0, end: None }, vec![x], 0);
    Ok(())
}

fn size_array(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let s = c.emit_temp(Op::Size, vec![x], "size");
    let shape = c.const_i64s(&[1], "shape");
    c.emit_out(Op::Reshape { allowzero: false }, vec![s, shape], 0);
    Ok(())
}

fn block(c: &mut NodeCtx, to_space: bool) -> Result<()> {
    let x = c.input(0)?;
    let b = c.int("block_size", 0)?;
    let blocksize = u64::try_from(b).ok().filter(|b| *b > 0).ok_or_else(|| c.error("block_size must be positive"))?;
    let op = if to_space {
        Op::DepthToSpace { blocksize, column_row_depth: false }
    } else {
        Op::SpaceToDepth { blocksize, column_row_depth: false }
    };
    c.emit_out(op, vec![x], 0);
    Ok(())
}

fn broadcast_to(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let shape = c.ints("shape")?.ok_or_else(|| c.error("attribute 'shape' is required"))?;
    let dims = known_dims(c, x)?;
    let target: Vec<i64> = shape.iter().enumerate().map(|(i, s)| if *s == 0 { dims[i] as i64 } else { *s }).collect();
    let t = c.const_i64s(&target, "shape");
    c.emit_out(Op::Expand, vec![x, t], 0);
    Ok(())
}

fn broadcast_axis(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axes = c.ints("axis")?.unwrap_or_default();
    let sizes = c.ints("size")?.unwrap_or_default();
    let rank = c.input_rank(0)?;
    let mut target = vec![1i64; rank];
    for (a, s) in axes.iter().zip(&sizes) {
        target[norm_axis(c, *a, rank)? as usize] = *s;
    }
    let t = c.const_i64s(&target, "shape");
    c.emit_out(Op::Expand, vec![x, t], 0);
    Ok(())
}

fn broadcast_like(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.input(0)?, c.input(1)?);
    let lhs = c.ints("lhs_axes")?;
    let rhs = c.ints("rhs_axes")?;
    match (lhs, rhs) {
        (Some(l), Some(r)) => {
            let dy = known_dims(c, y)?;
            let rank = c.input_rank(0)?;
            let ry = dy.len();
            let mut target = vec![1i64; rank];
            for (a, b) in l.iter().zip(&r) {
                target[norm_axis(c, *a, rank)? as usize] = dy[norm_axis(c, *b, ry)? as usize] as i64;
            }
            let t = c.const_i64s(&target, "shape");
            c.emit_out(Op::Expand, vec![x, t], 0);
        }
        _ => {
            let s = c.emit_temp(Op::Shape { start: 0, end: None }, vec![y], "shape");
            c.emit_out(Op::Expand, vec![x, s], 0);
        }
    }
    Ok(())
}

fn reshape_like(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.input(0)?, c.input(1)?);
    let any = ["lhs_begin", "lhs_end", "rhs_begin", "rhs_end"].iter().any(|k| c.attr(k).is_some());
    if any {
        let dx = known_dims(c, x)?;
        let dy = known_dims(c, y)?;
        let rng = |b: Option<i64>, e: Option<i64>, n: usize| {
            let f = |v: i64| if v < 0 { (v + n as i64) as usize } else { v as usize };
            (b.map_or(0, f), e.map_or(n, f))
        };
        let (lb, le) = rng(c.int_opt("lhs_begin")?, c.int_opt("lhs_end")?, dx.len());
        let (rb, re) = rng(c.int_opt("rhs_begin")?, c.int_opt("rhs_end")?, dy.len());
        if lb > le || le > dx.len() || rb > re || re > dy.len() {
            return Err(c.error("reshape_like ranges are out of bounds"));
        }
        let target: Vec<i64> = dx[..lb].iter().chain(&dy[rb..re]).chain(&dx[le..]).map(|d| *d as i64).collect();
        let t = c.const_i64s(&target, "shape");
        c.emit_out(Op::Reshape { allowzero: false }, vec![x, t], 0);
    } else {
        let s = c.emit_temp(Op::Shape { start: 0, end: None }, vec![y], "shape");
        c.emit_out(Op::Reshape { allowzero: false }, vec![x, s], 0);
    }
    Ok(())
}

fn filled(c: &mut NodeCtx, v: f64) -> Result<()> {
    // A 0 dim is "unknown" in legacy shape semantics (MXNet infers it from the consumers, e.g.
    // an RNN begin state's batch size): size 1 broadcasts against whatever it meets, and the
    // value is the same everywhere.
    let shape: Vec<u64> = c.sizes("shape")?.unwrap_or_default().into_iter().map(|d| d.max(1)).collect();
    let dt = match c.attr("dtype") {
        Some(d) => dtype_by_name(c, d)?,
        None => DType::F32,
    };
    let one = super::ctx::scalar_tensor(dt, v).ok_or_else(|| c.error("unsupported dtype"))?;
    let n = ferry_ir::tensor::checked_numel(&shape)?;
    let raw = one.raw().expect("numeric").repeat(n as usize);
    let t = Tensor::from_raw(dt, shape, bytes::Bytes::from(raw))?;
    c.emit_out(Op::Constant(t), vec![], 0);
    Ok(())
}

fn filled_like(c: &mut NodeCtx, v: f64) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    // A known shape as a constant keeps the result's shape known to later nodes.
    let known = c.dims_of(x).and_then(|d| d.into_iter().map(|d| d.map(|d| d as i64)).collect::<Option<Vec<i64>>>());
    let s = match known {
        Some(d) => c.const_i64s(&d, "shape"),
        None => c.emit_temp(Op::Shape { start: 0, end: None }, vec![x], "shape"),
    };
    let mut t = super::ctx::scalar_tensor(dt, v).ok_or_else(|| c.error("unsupported dtype"))?;
    t.shape = vec![1];
    c.emit_out(Op::ConstantOfShape(t), vec![s], 0);
    Ok(())
}

fn where_(c: &mut NodeCtx) -> Result<()> {
    let (cond, x, y) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let cdt = c.input_dtype(0)?;
    let (rc, rx) = (c.input_rank(0)?, c.input_rank(1)?);
    let zero = c.scalar(cdt, 0.0, "zero")?;
    let z = c.emit_temp(Op::Binary(BinaryOp::Equal), vec![cond, zero], "is_zero");
    let mut b = c.emit_temp(Op::Unary(UnaryOp::Not), vec![z], "cond");
    if rc == 1 && rx > 1 {
        // A 1-D condition selects whole rows along axis 0.
        let axes: Vec<i64> = (1..rx as i64).collect();
        let axes = c.const_i64s(&axes, "axes");
        b = c.emit_temp(Op::Unsqueeze, vec![b, axes], "cond_rows");
    }
    c.emit_out(Op::Where, vec![b, x, y], 0);
    Ok(())
}

fn reverse(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axes = c.ints("axis")?.ok_or_else(|| c.error("attribute 'axis' is required"))?;
    let n = axes.len();
    emit_slice(c, x, &vec![-1; n], &vec![i64::MIN; n], &axes, &vec![-1; n], 0);
    Ok(())
}

fn take(c: &mut NodeCtx) -> Result<()> {
    let (a, idx) = (c.input(0)?, c.input(1)?);
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", 0)?, rank)?;
    let dim = known_dims(c, a)?[axis as usize] as i64;
    let i = c.emit_temp(cast_op(DType::I64), vec![idx], "indices");
    let i = match c.string("mode", "clip").as_str() {
        "wrap" => {
            let n = c.scalar(DType::I64, dim as f64, "dim")?;
            c.emit_temp(Op::Binary(BinaryOp::Mod), vec![i, n], "wrapped")
        }
        _ => {
            let lo = c.scalar(DType::I64, 0.0, "zero")?;
            let hi = c.scalar(DType::I64, (dim - 1) as f64, "last")?;
            let m = c.emit_temp(Op::Binary(BinaryOp::Max), vec![i, lo], "clip_low");
            c.emit_temp(Op::Binary(BinaryOp::Min), vec![m, hi], "clipped")
        }
    };
    c.emit_out(Op::Gather { axis }, vec![a, i], 0);
    Ok(())
}

fn one_hot(c: &mut NodeCtx) -> Result<()> {
    let idx = c.input(0)?;
    let depth = c.int_opt("depth")?.ok_or_else(|| c.error("attribute 'depth' is required"))?;
    let dt = match c.attr("dtype") {
        Some(d) => dtype_by_name(c, d)?,
        None => DType::F32,
    };
    let (on, off) = (c.float("on_value", 1.0)?, c.float("off_value", 0.0)?);
    let i = c.emit_temp(cast_op(DType::I64), vec![idx], "indices");
    // MXNet gives negative indices an all-off row; ONNX would count them from the end.
    let zero = c.scalar(DType::I64, 0.0, "zero")?;
    let neg = c.emit_temp(Op::Binary(BinaryOp::Less), vec![i, zero], "negative");
    let off_row = c.scalar(DType::I64, depth as f64, "off_row")?;
    let i = c.emit_temp(Op::Where, vec![neg, off_row, i], "indices_fixed");
    let d = c.constant(Tensor::scalar_i64(depth), "depth");
    // Values in float32, cast afterwards: runtimes lack OneHot for most value types.
    let out_dt = dt;
    let dt = DType::F32;
    let mut vals = super::ctx::scalar_tensor(dt, off).ok_or_else(|| c.error("unsupported dtype"))?;
    let on_t = super::ctx::scalar_tensor(dt, on).ok_or_else(|| c.error("unsupported dtype"))?;
    let mut raw = vals.raw().unwrap().to_vec();
    raw.extend_from_slice(on_t.raw().unwrap());
    vals = Tensor::from_raw(dt, vec![2], bytes::Bytes::from(raw))?;
    let v = c.constant(vals, "values");
    if out_dt == DType::F32 {
        c.emit_out(Op::OneHot { axis: -1 }, vec![i, d, v], 0);
    } else {
        let o = c.emit_temp(Op::OneHot { axis: -1 }, vec![i, d, v], "one_hot");
        c.emit_out(cast_op(out_dt), vec![o], 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reshape_dims;

    /// Found by fuzzing (fuzz/, target mxnet_symbol): a known input shape whose element count
    /// overflows u64 panicked on the multiplication.
    #[test]
    fn reshape_of_an_overflowing_input_shape_is_an_error() {
        let e = reshape_dims(&[1 << 40, 1 << 40], &[-1], false).unwrap_err();
        assert!(e.contains("more elements than fit"), "{e}");
    }

    #[test]
    fn reshape_codes() {
        // Examples from MXNet's Reshape documentation.
        assert_eq!(reshape_dims(&[2, 3, 4], &[4, 0, 2], false).unwrap(), vec![4, 3, 2]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[2, 0, 0], false).unwrap(), vec![2, 3, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[6, 1, -1], false).unwrap(), vec![6, 1, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[3, -1, 8], false).unwrap(), vec![3, 1, 8]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-1], false).unwrap(), vec![24]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-2], false).unwrap(), vec![2, 3, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[2, -2], false).unwrap(), vec![2, 3, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-2, 1, 1], false).unwrap(), vec![2, 3, 4, 1, 1]);
        assert_eq!(reshape_dims(&[2, 3, 4, 5], &[-3, -3], false).unwrap(), vec![6, 20]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -3], false).unwrap(), vec![2, 12]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-3, -2], false).unwrap(), vec![6, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-4, 1, 2, -2], false).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[2, -4, -1, 3, -2], false).unwrap(), vec![2, 1, 3, 4]);
        assert_eq!(reshape_dims(&[10, 5, 4], &[-1, 0], false).unwrap(), vec![40, 5]);
        assert_eq!(reshape_dims(&[10, 5, 4], &[-1, 0], true).unwrap(), vec![50, 4]);
    }
}
