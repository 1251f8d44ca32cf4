//! Indexing, sorting, sequences and generators: Embedding, topk/sort/argsort, pick, gather_nd,
//! repeat, slice_like, Crop, UpSampling, Sequence{Mask,Last,Reverse}, _arange, arange_like.

use super::Canonicalizer;
use super::ctx::{NodeCtx, scalar_tensor};
use super::elementwise::{cast_op, dtype_by_name};
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, Resize};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Embedding", embedding),
    ("topk", topk),
    ("sort", sort),
    ("argsort", argsort),
    ("pick", pick),
    ("gather_nd", gather_nd),
    ("repeat", repeat),
    ("slice_like", slice_like),
    ("Crop", crop),
    ("UpSampling", upsampling),
    ("SequenceMask", sequence_mask),
    ("SequenceLast", sequence_last),
    ("SequenceReverse", sequence_reverse),
    ("_arange", arange),
    ("_contrib_arange_like", arange_like),
];

fn norm_axis(c: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(c.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

fn known_dims(c: &NodeCtx, v: ValueId) -> Result<Vec<u64>> {
    c.dims_of(v)
        .and_then(|d| d.into_iter().collect::<Option<Vec<u64>>>())
        .ok_or_else(|| c.error("the input shape must be known (give input shapes with --input-shape)"))
}

fn to_i64(c: &mut NodeCtx, v: ValueId) -> ValueId {
    if c.dtype_of(v) == Some(DType::I64) { v } else { c.emit_temp(cast_op(DType::I64), vec![v], "as_i64") }
}

fn opt_dtype(c: &NodeCtx, default: DType) -> Result<DType> {
    match c.attr("dtype") {
        Some(d) => dtype_by_name(c, d),
        None => Ok(default),
    }
}

fn embedding(c: &mut NodeCtx) -> Result<()> {
    let (idx, w) = (c.input(0)?, c.input(1)?);
    let i = to_i64(c, idx);
    c.emit_out(Op::Gather { axis: 0 }, vec![w, i], 0);
    Ok(())
}

/// TopK along `axis` with k elements: (values, i64 indices).
fn top(c: &mut NodeCtx, x: ValueId, axis: i64, k: i64, largest: bool) -> (ValueId, ValueId) {
    let kv = c.const_i64s(&[k], "k");
    let (v, i) = (c.temp("values"), c.temp("indices"));
    c.emit(Op::TopK { axis, largest, sorted: true }, vec![Some(x), Some(kv)], vec![Some(v), Some(i)]);
    (v, i)
}

fn topk(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let explicit_none = c.attrs.iter().any(|(k, v)| k == "axis" && v.trim() == "None");
    if explicit_none {
        return Err(c.error("topk with axis=None is not supported yet"));
    }
    let axis = norm_axis(c, c.int("axis", -1)?, rank)? as i64;
    let k = c.int("k", 1)?;
    let k = if k <= 0 { known_dims(c, x)?[axis as usize] as i64 } else { k };
    let largest = !c.bool("is_ascend", false)?;
    let dt = opt_dtype(c, DType::F32)?;
    let ret = c.string("ret_typ", "indices");
    let (v, i) = top(c, x, axis, k, largest);
    match ret.as_str() {
        "value" => c.emit_out(Op::Identity, vec![v], 0),
        "indices" => c.emit_out(cast_op(dt), vec![i], 0),
        "both" => {
            c.emit_out(Op::Identity, vec![v], 0);
            c.emit_out(cast_op(dt), vec![i], 1);
        }
        "mask" => {
            // Ones where an element is among the top k: scatter ones into zeros.
            let xdt = c.input_dtype(0)?;
            let zero = c.scalar(xdt, 0.0, "zero")?;
            let zeros = c.emit_temp(Op::Binary(BinaryOp::Mul), vec![x, zero], "zeros");
            let one = c.scalar(xdt, 1.0, "one")?;
            let vz = c.emit_temp(Op::Binary(BinaryOp::Mul), vec![v, zero], "vzeros");
            let ones = c.emit_temp(Op::Binary(BinaryOp::Add), vec![vz, one], "ones");
            let op = Op::ScatterElements { axis, reduction: ferry_ir::ops::ScatterReduction::None };
            c.emit_out(op, vec![zeros, i, ones], 0);
        }
        other => return Err(c.error(format!("unknown ret_typ '{other}'"))),
    }
    Ok(())
}

fn sort(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", -1)?, rank)?;
    let n = known_dims(c, x)?[axis] as i64;
    let largest = !c.bool("is_ascend", true)?;
    let (v, _) = top(c, x, axis as i64, n, largest);
    c.emit_out(Op::Identity, vec![v], 0);
    Ok(())
}

fn argsort(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", -1)?, rank)?;
    let n = known_dims(c, x)?[axis] as i64;
    let largest = !c.bool("is_ascend", true)?;
    let dt = opt_dtype(c, DType::F32)?;
    let (_, i) = top(c, x, axis as i64, n, largest);
    c.emit_out(cast_op(dt), vec![i], 0);
    Ok(())
}

/// Clips (mode "clip") or wraps (mode "wrap") i64 indices into [0, n).
fn fix_indices(c: &mut NodeCtx, i: ValueId, n: i64) -> Result<ValueId> {
    Ok(match c.string("mode", "clip").as_str() {
        "wrap" => {
            let nv = c.scalar(DType::I64, n as f64, "dim")?;
            c.emit_temp(Op::Binary(BinaryOp::Mod), vec![i, nv], "wrapped")
        }
        _ => {
            let lo = c.scalar(DType::I64, 0.0, "zero")?;
            let hi = c.scalar(DType::I64, (n - 1) as f64, "last")?;
            let m = c.emit_temp(Op::Binary(BinaryOp::Max), vec![i, lo], "clip_low");
            c.emit_temp(Op::Binary(BinaryOp::Min), vec![m, hi], "clipped")
        }
    })
}

fn pick(c: &mut NodeCtx) -> Result<()> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", -1)?, rank)?;
    let n = known_dims(c, x)?[axis] as i64;
    let i = to_i64(c, idx);
    let i = fix_indices(c, i, n)?;
    let axes = c.const_i64s(&[axis as i64], "axes");
    let i = c.emit_temp(Op::Unsqueeze, vec![i, axes], "index");
    if c.bool("keepdims", false)? {
        c.emit_out(Op::GatherElements { axis: axis as i64 }, vec![x, i], 0);
    } else {
        let g = c.emit_temp(Op::GatherElements { axis: axis as i64 }, vec![x, i], "picked");
        c.emit_out(Op::Squeeze, vec![g, axes], 0);
    }
    Ok(())
}

fn gather_nd(c: &mut NodeCtx) -> Result<()> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let r = c.input_rank(1)?;
    let i = to_i64(c, idx);
    // MXNet indexes with the first axis of `indices`, ONNX with the last.
    let i = if r > 1 {
        let perm: Vec<usize> = (1..r).chain([0]).collect();
        c.emit_temp(Op::Transpose { perm: Some(perm) }, vec![i], "indices_last")
    } else {
        let axes = c.const_i64s(&[-1], "axes");
        c.emit_temp(Op::Unsqueeze, vec![i, axes], "indices_last")
    };
    c.emit_out(Op::GatherNd { batch_dims: 0 }, vec![x, i], 0);
    Ok(())
}

fn repeat(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let reps = c.int_opt("repeats")?.ok_or_else(|| c.error("attribute 'repeats' is required"))?;
    let mut dims: Vec<i64> = known_dims(c, x)?.iter().map(|d| *d as i64).collect();
    let (x, axis) = match c.int_opt("axis")? {
        Some(a) => (x, norm_axis(c, a, dims.len())?),
        None => {
            let s = c.const_i64s(&[-1], "shape");
            let n: i64 = dims.iter().product();
            dims = vec![n];
            (c.emit_temp(Op::Reshape { allowzero: false }, vec![x, s], "flat"), 0)
        }
    };
    let axes = c.const_i64s(&[axis as i64 + 1], "axes");
    let u = c.emit_temp(Op::Unsqueeze, vec![x, axes], "expanded");
    let mut tile = vec![1i64; dims.len() + 1];
    tile[axis + 1] = reps;
    let t = c.const_i64s(&tile, "reps");
    let tiled = c.emit_temp(Op::Tile, vec![u, t], "tiled");
    dims[axis] *= reps;
    let s = c.const_i64s(&dims, "shape");
    c.emit_out(Op::Reshape { allowzero: false }, vec![tiled, s], 0);
    Ok(())
}

fn slice_to(c: &mut NodeCtx, x: ValueId, starts: &[i64], ends: &[i64], axes: &[i64]) {
    let s = c.const_i64s(starts, "starts");
    let e = c.const_i64s(ends, "ends");
    let a = c.const_i64s(axes, "axes");
    c.emit_out(Op::Slice, vec![x, s, e, a], 0);
}

fn slice_like(c: &mut NodeCtx) -> Result<()> {
    let (x, like) = (c.input(0)?, c.input(1)?);
    let dl = known_dims(c, like)?;
    let rank = c.input_rank(0)?;
    let axes: Vec<usize> = match c.ints("axes")?.filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(|v| norm_axis(c, *v, rank)).collect::<Result<_>>()?,
        None => (0..rank.min(dl.len())).collect(),
    };
    let ends: Vec<i64> = axes.iter().map(|a| dl[*a] as i64).collect();
    let axes: Vec<i64> = axes.iter().map(|a| *a as i64).collect();
    slice_to(c, x, &vec![0; axes.len()], &ends, &axes);
    Ok(())
}

fn crop(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let d = known_dims(c, x)?;
    if d.len() != 4 {
        return Err(c.error("Crop needs a 4-D input"));
    }
    let (h, w) = if c.inputs.len() > 1 {
        let like = c.input(1)?;
        let dl = known_dims(c, like)?;
        (dl[2] as i64, dl[3] as i64)
    } else {
        let hw = c.ints("h_w")?.unwrap_or_default();
        if hw.len() != 2 {
            return Err(c.error("attribute 'h_w' must have two entries"));
        }
        (hw[0], hw[1])
    };
    let (oh, ow) = if c.bool("center_crop", false)? {
        ((d[2] as i64 - h) / 2, (d[3] as i64 - w) / 2)
    } else {
        let o = c.ints("offset")?.unwrap_or_else(|| vec![0, 0]);
        (o.first().copied().unwrap_or(0), o.get(1).copied().unwrap_or(0))
    };
    slice_to(c, x, &[oh, ow], &[oh + h, ow + w], &[2, 3]);
    Ok(())
}

fn nearest(c: &mut NodeCtx, x: ValueId, sh: f32, sw: f32, out: Option<usize>) -> ValueId {
    let scales = Tensor::from_f32(vec![4], &[1.0, 1.0, sh, sw]).expect("length matches");
    let s = c.constant(scales, "scales");
    let r = Resize {
        mode: "nearest".into(),
        coordinate_transformation_mode: "asymmetric".into(),
        nearest_mode: "floor".into(),
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        keep_aspect_ratio_policy: "stretch".into(),
        axes: None,
    };
    let o = match out {
        Some(i) => c.output(i).unwrap_or_else(|| c.temp("unused")),
        None => c.temp("upsampled"),
    };
    c.emit(Op::Resize(r), vec![Some(x), None, Some(s)], vec![Some(o)]);
    o
}

fn upsampling(c: &mut NodeCtx) -> Result<()> {
    match c.string("sample_type", "nearest").as_str() {
        "nearest" => {}
        "bilinear" => return super::detection::upsampling_bilinear(c),
        other => return Err(c.error(format!("unknown sample_type '{other}'"))),
    }
    let scale = c.int("scale", 1)?;
    let inputs = c.inputs.clone();
    if inputs.len() == 1 {
        nearest(c, inputs[0], scale as f32, scale as f32, Some(0));
        return Ok(());
    }
    if c.string("multi_input_mode", "concat") != "concat" {
        return Err(c.error("UpSampling with multi_input_mode=sum is not supported yet"));
    }
    // Every input is scaled to the first one's output size, then concatenated on channels.
    let d0 = known_dims(c, inputs[0])?;
    let (oh, ow) = (d0[2] as i64 * scale, d0[3] as i64 * scale);
    let mut parts = Vec::new();
    for x in inputs {
        let d = known_dims(c, x)?;
        let (sh, sw) = (oh / d[2] as i64, ow / d[3] as i64);
        parts.push(nearest(c, x, sh as f32, sw as f32, None));
    }
    c.emit_out(Op::Concat { axis: 1 }, parts, 0);
    Ok(())
}

/// `mask[..]` (bool) of shape (T, B) for axis 0 or (B, T) for axis 1: `t < length[b]`.
fn length_mask(c: &mut NodeCtx, t: u64, axis: usize) -> Result<ValueId> {
    let len = c.input(1)?;
    let len = to_i64(c, len);
    let steps: Vec<i64> = (0..t as i64).collect();
    let range = c.const_i64s(&steps, "steps");
    let (a, b) = if axis == 0 {
        let ax = c.const_i64s(&[1], "axes");
        let r = c.emit_temp(Op::Unsqueeze, vec![range, ax], "steps_col");
        let ax = c.const_i64s(&[0], "axes");
        let l = c.emit_temp(Op::Unsqueeze, vec![len, ax], "len_row");
        (r, l)
    } else {
        let ax = c.const_i64s(&[0], "axes");
        let r = c.emit_temp(Op::Unsqueeze, vec![range, ax], "steps_row");
        let ax = c.const_i64s(&[1], "axes");
        let l = c.emit_temp(Op::Unsqueeze, vec![len, ax], "len_col");
        (r, l)
    };
    Ok(c.emit_temp(Op::Binary(BinaryOp::Less), vec![a, b], "valid"))
}

fn seq_axis(c: &NodeCtx) -> Result<usize> {
    match c.int("axis", 0)? {
        0 => Ok(0),
        1 => Ok(1),
        a => Err(c.error(format!("sequence axis {a} is not supported (0 or 1)"))),
    }
}

fn sequence_mask(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    if !c.bool("use_sequence_length", false)? {
        c.emit_out(Op::Identity, vec![x], 0);
        return Ok(());
    }
    let axis = seq_axis(c)?;
    let d = known_dims(c, x)?;
    let dt = c.input_dtype(0)?;
    let mut m = length_mask(c, d[axis], axis)?;
    if d.len() > 2 {
        let axes: Vec<i64> = (2..d.len() as i64).collect();
        let axes = c.const_i64s(&axes, "axes");
        m = c.emit_temp(Op::Unsqueeze, vec![m, axes], "valid_b");
    }
    let v = c.float("value", 0.0)?;
    let v = c.scalar(dt, v, "value")?;
    c.emit_out(Op::Where, vec![m, x, v], 0);
    Ok(())
}

fn sequence_last(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axis = seq_axis(c)?;
    let d = known_dims(c, x)?;
    if !c.bool("use_sequence_length", false)? {
        let i = c.constant(Tensor::scalar_i64(d[axis] as i64 - 1), "last");
        c.emit_out(Op::Gather { axis: axis as i64 }, vec![x, i], 0);
        return Ok(());
    }
    // Put batch first, then gather each row's last valid step.
    let xb = if axis == 0 {
        let mut perm: Vec<usize> = (0..d.len()).collect();
        perm.swap(0, 1);
        c.emit_temp(Op::Transpose { perm: Some(perm) }, vec![x], "batch_first")
    } else {
        x
    };
    let len = c.input(1)?;
    let len = to_i64(c, len);
    let one = c.scalar(DType::I64, 1.0, "one")?;
    let last = c.emit_temp(Op::Binary(BinaryOp::Sub), vec![len, one], "last");
    let ax = c.const_i64s(&[1], "axes");
    let idx = c.emit_temp(Op::Unsqueeze, vec![last, ax], "index");
    c.emit_out(Op::GatherNd { batch_dims: 1 }, vec![xb, idx], 0);
    Ok(())
}

fn sequence_reverse(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    if seq_axis(c)? != 0 {
        return Err(c.error("SequenceReverse supports axis 0 only"));
    }
    if !c.bool("use_sequence_length", false)? {
        let s = c.const_i64s(&[-1], "starts");
        let e = c.const_i64s(&[i64::MIN], "ends");
        let a = c.const_i64s(&[0], "axes");
        let st = c.const_i64s(&[-1], "steps");
        c.emit_out(Op::Slice, vec![x, s, e, a, st], 0);
        return Ok(());
    }
    let len = c.input(1)?;
    let len = to_i64(c, len);
    c.emit_out(Op::ReverseSequence { batch_axis: 1, time_axis: 0 }, vec![x, len], 0);
    Ok(())
}

fn constant_of(c: &mut NodeCtx, dt: DType, shape: Vec<u64>, values: &[f64]) -> Result<()> {
    let mut raw = Vec::new();
    for v in values {
        raw.extend_from_slice(scalar_tensor(dt, *v).ok_or_else(|| c.error("unsupported dtype"))?.raw().unwrap());
    }
    let t = Tensor::from_raw(dt, shape, bytes::Bytes::from(raw))?;
    c.emit_out(Op::Constant(t), vec![], 0);
    Ok(())
}

fn arange_values(start: f64, step: f64, n: u64, repeat: u64) -> Vec<f64> {
    (0..n).flat_map(|i| std::iter::repeat_n(start + i as f64 * step, repeat as usize)).collect()
}

/// Ranges become constants at import: 4M elements (16 MiB as f32) is far beyond any position or
/// index table a model holds, and keeps a hostile `_arange` from stalling the import (the fuzzer
/// found 13.8M elements taking 13 s in its instrumented build).
const MAX_GENERATED: u64 = 1 << 22;

fn arange(c: &mut NodeCtx) -> Result<()> {
    let (start, stop) = match c.float_opt("stop")? {
        Some(s) => (c.float("start", 0.0)?, s),
        None => (0.0, c.float("start", 0.0)?),
    };
    let step = c.float("step", 1.0)?;
    let repeat = c.int("repeat", 1)?.max(1) as u64;
    if step == 0.0 {
        return Err(c.error("step must not be 0"));
    }
    let n = ((stop - start) / step).ceil().max(0.0) as u64;
    if n.saturating_mul(repeat) > MAX_GENERATED {
        return Err(
            c.error(format!("the range is too large to store as a constant (more than {MAX_GENERATED} elements)"))
        );
    }
    let dt = opt_dtype(c, DType::F32)?;
    let v = arange_values(start, step, n, repeat);
    constant_of(c, dt, vec![n * repeat], &v)
}

fn arange_like(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let d = known_dims(c, x)?;
    let dt = c.input_dtype(0)?;
    let (start, step) = (c.float("start", 0.0)?, c.float("step", 1.0)?);
    let repeat = c.int("repeat", 1)?.max(1) as u64;
    let shape = match c.int_opt("axis")? {
        Some(a) => vec![d[norm_axis(c, a, d.len())?]],
        None => d.clone(),
    };
    let total: u64 = shape.iter().product();
    if total > MAX_GENERATED {
        return Err(
            c.error(format!("the range is too large to store as a constant (more than {MAX_GENERATED} elements)"))
        );
    }
    let v = arange_values(start, step, total.div_ceil(repeat), repeat);
    constant_of(c, dt, shape, &v[..total as usize])
}
