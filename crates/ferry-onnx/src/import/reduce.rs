//! Reductions, arg-reductions, top-k, scans, softmax-like ops, contractions and the
//! normalizations that are compositions of them.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, Cast, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("ReduceSum", |c| reduce(c, ReduceKind::Sum)),
    ("ReduceMean", |c| reduce(c, ReduceKind::Mean)),
    ("ReduceMax", |c| reduce(c, ReduceKind::Max)),
    ("ReduceMin", |c| reduce(c, ReduceKind::Min)),
    ("ReduceProd", |c| reduce(c, ReduceKind::Prod)),
    ("ReduceL1", |c| reduce(c, ReduceKind::L1)),
    ("ReduceL2", |c| reduce(c, ReduceKind::L2)),
    ("ReduceLogSum", |c| reduce(c, ReduceKind::LogSum)),
    ("ReduceLogSumExp", |c| reduce(c, ReduceKind::LogSumExp)),
    ("ReduceSumSquare", |c| reduce(c, ReduceKind::SumSquare)),
    ("ArgMax", |c| arg_reduce(c, true)),
    ("ArgMin", |c| arg_reduce(c, false)),
    ("TopK", top_k),
    ("CumSum", cum_sum),
    ("Softmax", |c| softmax_like(c, AxisOp::Softmax)),
    ("LogSoftmax", |c| softmax_like(c, AxisOp::LogSoftmax)),
    ("Hardmax", |c| softmax_like(c, AxisOp::Hardmax)),
    ("MatMul", |c| pass_through(c, Op::MatMul)),
    ("MatMulInteger", |c| pass_through(c, Op::MatMulInteger)),
    ("Einsum", einsum),
    ("Gemm", gemm),
    ("Unique", unique),
    ("BatchNormalization", batch_norm),
    ("InstanceNormalization", instance_norm),
    ("LayerNormalization", layer_norm),
    ("GroupNormalization", group_norm),
    ("MeanVarianceNormalization", mean_variance_norm),
    ("LpNormalization", lp_norm),
    ("Dropout", dropout),
];

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

/// The ONNX version from which a Reduce op takes its axes as an input.
fn axes_input_version(kind: ReduceKind) -> u32 {
    if kind == ReduceKind::Sum { 13 } else { 18 }
}

fn reduce(c: &mut NodeCtx, kind: ReduceKind) -> Result<Canon> {
    let x = c.required_input(0)?;
    let keepdims = c.attr_i("keepdims", 1)? != 0;
    let noop_with_empty_axes = c.attr_i("noop_with_empty_axes", 0)? != 0;
    let axes = if c.version < axes_input_version(kind) {
        c.attr_ints("axes")?.map(|a| c.const_i64s(&a, "axes"))
    } else {
        c.input(1)
    };
    c.emit_to_output(Op::Reduce { kind, keepdims, noop_with_empty_axes }, vec![Some(x), axes], 0);
    Ok(Canon::Done)
}

fn arg_reduce(c: &mut NodeCtx, max: bool) -> Result<Canon> {
    let x = c.required_input(0)?;
    let op = Op::ArgReduce {
        max,
        axis: c.attr_i("axis", 0)?,
        keepdims: c.attr_i("keepdims", 1)? != 0,
        select_last_index: c.attr_i("select_last_index", 0)? != 0,
    };
    c.emit_to_output(op, vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn top_k(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let k = if c.version < 10 {
        let k = c.attr_i_opt("k")?.ok_or_else(|| c.error("attribute 'k' is required"))?;
        c.const_i64s(&[k], "k")
    } else {
        c.required_input(1)?
    };
    let op = Op::TopK {
        axis: c.attr_i("axis", -1)?,
        largest: c.attr_i("largest", 1)? != 0,
        sorted: c.attr_i("sorted", 1)? != 0,
    };
    let outs = vec![c.output(0).or_else(|| Some(c.temp("values"))), c.output(1).or_else(|| Some(c.temp("indices")))];
    c.emit(op, vec![Some(x), Some(k)], outs);
    Ok(Canon::Done)
}

fn cum_sum(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let axis = c.required_input(1)?;
    let op = Op::CumSum { exclusive: c.attr_i("exclusive", 0)? != 0, reverse: c.attr_i("reverse", 0)? != 0 };
    c.emit_to_output(op, vec![Some(x), Some(axis)], 0);
    Ok(Canon::Done)
}

fn pass_through(c: &mut NodeCtx, op: Op) -> Result<Canon> {
    let inputs = c.inputs.clone();
    let outputs = c.outputs.clone();
    c.emit(op, inputs, outputs);
    Ok(Canon::Done)
}

fn einsum(c: &mut NodeCtx) -> Result<Canon> {
    let equation = c.attr_s("equation", "")?;
    if equation.is_empty() {
        return Err(c.error("attribute 'equation' is required"));
    }
    pass_through(c, Op::Einsum { equation })
}

fn unique(c: &mut NodeCtx) -> Result<Canon> {
    let op = Op::Unique { axis: c.attr_i_opt("axis")?, sorted: c.attr_i("sorted", 1)? != 0 };
    pass_through(c, op)
}

#[derive(Clone, Copy, PartialEq)]
enum AxisOp {
    Softmax,
    LogSoftmax,
    Hardmax,
}

/// Softmax, LogSoftmax and Hardmax. From opset 13 they work along one axis (default -1); before,
/// they coerce the input to 2-D at `axis` (default 1) and work along the flattened trailing dims.
fn softmax_like(c: &mut NodeCtx, kind: AxisOp) -> Result<Canon> {
    let x = c.required_input(0)?;
    if kind == AxisOp::Hardmax && c.input_dtype(0).and_then(|d| scalar(d, 0.0)).is_none() {
        return Ok(Canon::KeepOpaque("Hardmax needs the input dtype".into()));
    }
    let out = c.output(0).unwrap_or_else(|| c.temp("unused"));
    if c.version >= 13 {
        let axis = c.attr_i("axis", -1)?;
        axis_op(c, kind, x, axis, out);
        return Ok(Canon::Done);
    }
    let axis = c.attr_i("axis", 1)?;
    let last = match c.input_rank(0) {
        Some(r) => axis == r as i64 - 1 || axis == -1,
        None => axis == -1,
    };
    if last {
        // Coercing at the last axis leaves it alone: the op works along it.
        axis_op(c, kind, x, -1, out);
        return Ok(Canon::Done);
    }
    let flat = c.emit_temp(Op::Flatten { axis }, vec![Some(x)], "coerced_2d");
    let y2 = c.temp("result_2d");
    axis_op(c, kind, flat, -1, y2);
    let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(x)], "shape");
    c.emit(Op::Reshape { allowzero: false }, vec![Some(y2), Some(shape)], vec![Some(out)]);
    Ok(Canon::Done)
}

fn axis_op(c: &mut NodeCtx, kind: AxisOp, x: ValueId, axis: i64, out: ValueId) {
    let dtype = c.input_dtype(0);
    match kind {
        AxisOp::Softmax => c.emit(Op::Softmax { axis }, vec![Some(x)], vec![Some(out)]),
        AxisOp::LogSoftmax => c.emit(Op::LogSoftmax { axis }, vec![Some(x)], vec![Some(out)]),
        AxisOp::Hardmax => {
            // one_hot(argmax(x, axis), depth = dim(axis), values = [0, 1], axis)
            let dtype = dtype.expect("checked by the caller");
            let idx = c.emit_temp(
                Op::ArgReduce { max: true, axis, keepdims: false, select_last_index: false },
                vec![Some(x)],
                "argmax",
            );
            let end = if axis == -1 { None } else { Some(axis + 1) };
            let depth = c.emit_temp(Op::Shape { start: axis, end }, vec![Some(x)], "depth");
            let zero = scalar(dtype, 0.0).expect("numeric dtype");
            let one = scalar(dtype, 1.0).expect("numeric dtype");
            let mut bytes = zero.raw().expect("numeric").to_vec();
            bytes.extend_from_slice(one.raw().expect("numeric"));
            let values = Tensor::from_raw(dtype, vec![2], bytes::Bytes::from(bytes)).expect("two elements");
            let values = c.constant(values, "values");
            c.emit(Op::OneHot { axis }, vec![Some(idx), Some(depth), Some(values)], vec![Some(out)]);
        }
    }
}

fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![Some(a), Some(b)], hint)
}

fn un(c: &mut NodeCtx, op: UnaryOp, a: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Unary(op), vec![Some(a)], hint)
}

fn scalar_const(c: &mut NodeCtx, dtype: DType, v: f64, hint: &str) -> ValueId {
    let t = scalar(dtype, v).expect("dtype checked by the caller");
    c.constant(t, hint)
}

fn reduce_mean(c: &mut NodeCtx, x: ValueId, axes: &[i64], hint: &str) -> ValueId {
    let axes = c.const_i64s(axes, "axes");
    c.emit_temp(
        Op::Reduce { kind: ReduceKind::Mean, keepdims: true, noop_with_empty_axes: false },
        vec![Some(x), Some(axes)],
        hint,
    )
}

fn cast_to(c: &mut NodeCtx, x: ValueId, to: DType, hint: &str) -> ValueId {
    c.emit_temp(Op::Cast(Cast { to, saturate: true, round_mode: "up".into() }), vec![Some(x)], hint)
}

/// Whether `scalar` can make constants of this dtype (floating or integer numbers).
fn float_dtype(d: Option<DType>) -> Option<DType> {
    d.filter(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16))
}

/// `Y = alpha * A' B' + beta * C`, A' and B' optionally transposed.
fn gemm(c: &mut NodeCtx) -> Result<Canon> {
    let a = c.required_input(0)?;
    let b = c.required_input(1)?;
    let cc = c.input(2);
    let alpha = c.attr_f("alpha", 1.0)?;
    let beta = c.attr_f("beta", 1.0)?;
    let (trans_a, trans_b) = (c.attr_i("transA", 0)? != 0, c.attr_i("transB", 0)? != 0);
    let dtype = c.input_dtype(0);
    let needs_scalars = alpha != 1.0 || (beta != 1.0 && cc.is_some());
    let dtype = match dtype {
        Some(d) if scalar(d, 0.0).is_some() => Some(d),
        _ if needs_scalars => return Ok(Canon::KeepOpaque("alpha/beta need the input dtype".into())),
        _ => None,
    };
    if needs_scalars && float_dtype(dtype).is_none() && (alpha.fract() != 0.0 || beta.fract() != 0.0) {
        return Ok(Canon::KeepOpaque("fractional alpha/beta on integers".into()));
    }
    let a = if trans_a { c.emit_temp(Op::Transpose { perm: Some(vec![1, 0]) }, vec![Some(a)], "a_t") } else { a };
    let b = if trans_b { c.emit_temp(Op::Transpose { perm: Some(vec![1, 0]) }, vec![Some(b)], "b_t") } else { b };
    let out = c.output(0).unwrap_or_else(|| c.temp("unused"));
    let last_is_matmul = alpha == 1.0 && cc.is_none();
    if last_is_matmul {
        c.emit(Op::MatMul, vec![Some(a), Some(b)], vec![Some(out)]);
        return Ok(Canon::Done);
    }
    let mut y = c.emit_temp(Op::MatMul, vec![Some(a), Some(b)], "product");
    if alpha != 1.0 {
        let s = scalar_const(c, dtype.expect("checked"), alpha as f64, "alpha");
        match cc {
            None => {
                c.emit(Op::Binary(BinaryOp::Mul), vec![Some(s), Some(y)], vec![Some(out)]);
                return Ok(Canon::Done);
            }
            Some(_) => y = bin(c, BinaryOp::Mul, s, y, "scaled"),
        }
    }
    let mut cv = cc.expect("handled above");
    if beta != 1.0 {
        let s = scalar_const(c, dtype.expect("checked"), beta as f64, "beta");
        cv = bin(c, BinaryOp::Mul, s, cv, "scaled_c");
    }
    c.emit(Op::Binary(BinaryOp::Add), vec![Some(y), Some(cv)], vec![Some(out)]);
    Ok(Canon::Done)
}

/// Reshapes a per-channel vector `[C]` to `[C, 1, ..., 1]` for an input of rank `rank`.
fn per_channel(c: &mut NodeCtx, v: ValueId, rank: usize, hint: &str) -> ValueId {
    if rank <= 2 {
        return v;
    }
    let axes: Vec<i64> = (1..=rank as i64 - 2).collect();
    let axes = c.const_i64s(&axes, "channel_axes");
    c.emit_temp(Op::Unsqueeze, vec![Some(v), Some(axes)], hint)
}

/// Batch normalization at inference: `(x - mean) / sqrt(var + eps) * scale + B`.
fn batch_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (scale, bias, mean, var) =
        (c.required_input(1)?, c.required_input(2)?, c.required_input(3)?, c.required_input(4)?);
    if c.version >= 14 && c.attr_i("training_mode", 0)? != 0 {
        return batch_norm_training(c, x, (scale, bias, mean, var));
    }
    if c.outputs.iter().skip(1).any(Option::is_some) {
        return Ok(Canon::KeepOpaque("training outputs (running/saved statistics) requested".into()));
    }
    if c.version < 7 && c.attr_i("is_test", 0)? == 0 {
        return Ok(Canon::KeepOpaque("is_test=0 (training mode)".into()));
    }
    if c.version < 9 && c.attr_i("spatial", 1)? == 0 {
        return Ok(Canon::KeepOpaque("spatial=0 (per-activation statistics)".into()));
    }
    let rank = need!(c.input_rank(0), "input rank unknown");
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    if rank < 2 {
        return Err(c.error(format!("input of rank {rank}; needs [N, C, ...]")));
    }
    let eps = c.attr_f("epsilon", 1e-5)?;
    let eps = scalar_const(c, dtype, eps as f64, "epsilon");
    let var_eps = bin(c, BinaryOp::Add, var, eps, "var_eps");
    let std = un(c, UnaryOp::Sqrt, var_eps, "std");
    let mean = per_channel(c, mean, rank, "mean_b");
    let std = per_channel(c, std, rank, "std_b");
    let scale = per_channel(c, scale, rank, "scale_b");
    let bias = per_channel(c, bias, rank, "bias_b");
    let centered = bin(c, BinaryOp::Sub, x, mean, "centered");
    let normalized = bin(c, BinaryOp::Div, centered, std, "normalized");
    let scaled = bin(c, BinaryOp::Mul, normalized, scale, "scaled");
    c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(scaled), Some(bias)], 0);
    Ok(Canon::Done)
}

/// BatchNormalization-14/15 with `training_mode=1`: normalizes with the batch statistics (mean
/// and population variance over every axis but 1) and outputs the updated running statistics
/// `running * momentum + batch * (1 - momentum)`.
fn batch_norm_training(
    c: &mut NodeCtx,
    x: ValueId,
    (scale, bias, mean, var): (ValueId, ValueId, ValueId, ValueId),
) -> Result<Canon> {
    let rank = need!(c.input_rank(0), "input rank unknown");
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    if (1..5).any(|i| c.input_dtype(i) != Some(dtype)) {
        return Ok(Canon::KeepOpaque("statistics or scale of another (or unknown) type than the input".into()));
    }
    if rank < 2 {
        return Err(c.error(format!("input of rank {rank}; needs [N, C, ...]")));
    }
    let momentum = c.attr_f("momentum", 0.9)? as f64;
    let eps = c.attr_f("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = std::iter::once(0).chain(2..rank as i64).collect();
    let axes = c.const_i64s(&axes, "batch_axes");
    let reduce = Op::Reduce { kind: ReduceKind::Mean, keepdims: false, noop_with_empty_axes: false };
    let batch_mean = c.emit_temp(reduce.clone(), vec![Some(x), Some(axes)], "batch_mean");
    let mean_b = per_channel(c, batch_mean, rank, "batch_mean_b");
    let centered = bin(c, BinaryOp::Sub, x, mean_b, "centered");
    let squared = bin(c, BinaryOp::Mul, centered, centered, "squared");
    let batch_var = c.emit_temp(reduce, vec![Some(squared), Some(axes)], "batch_var");
    let eps = scalar_const(c, dtype, eps, "epsilon");
    let var_eps = bin(c, BinaryOp::Add, batch_var, eps, "var_eps");
    let std = un(c, UnaryOp::Sqrt, var_eps, "std");
    let std = per_channel(c, std, rank, "std_b");
    let scale_b = per_channel(c, scale, rank, "scale_b");
    let bias_b = per_channel(c, bias, rank, "bias_b");
    let scaled = bin(c, BinaryOp::Mul, scale_b, centered, "scaled");
    let normalized = bin(c, BinaryOp::Div, scaled, std, "normalized");
    c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(normalized), Some(bias_b)], 0);
    for (slot, running, batch) in [(1, mean, batch_mean), (2, var, batch_var)] {
        if c.output(slot).is_none() {
            continue;
        }
        let m = scalar_const(c, dtype, momentum, "momentum");
        let rest = scalar_const(c, dtype, 1.0 - momentum, "one_minus_momentum");
        let kept = bin(c, BinaryOp::Mul, running, m, "kept");
        let added = bin(c, BinaryOp::Mul, batch, rest, "added");
        c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(kept), Some(added)], slot);
    }
    Ok(Canon::Done)
}

/// Normalizes `x` over `axes` (keeping dims): returns `(x - mean, 1 / sqrt(var + eps), mean)`.
fn normalize_parts(c: &mut NodeCtx, x: ValueId, axes: &[i64], eps: f32, dtype: DType) -> (ValueId, ValueId, ValueId) {
    let mean = reduce_mean(c, x, axes, "mean");
    let d = bin(c, BinaryOp::Sub, x, mean, "centered");
    let dd = bin(c, BinaryOp::Mul, d, d, "squared");
    let var = reduce_mean(c, dd, axes, "variance");
    let eps = scalar_const(c, dtype, eps as f64, "epsilon");
    let var_eps = bin(c, BinaryOp::Add, var, eps, "var_eps");
    let std = un(c, UnaryOp::Sqrt, var_eps, "std");
    let inv_std = un(c, UnaryOp::Reciprocal, std, "inv_std");
    (d, inv_std, mean)
}

/// `scale * (x - mean) / sqrt(var + eps) + B`, statistics over the spatial axes.
fn instance_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (scale, bias) = (c.required_input(1)?, c.required_input(2)?);
    let rank = need!(c.input_rank(0), "input rank unknown");
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    if rank < 3 {
        return Ok(Canon::KeepOpaque(format!("input of rank {rank} has no spatial axes")));
    }
    let eps = c.attr_f("epsilon", 1e-5)?;
    let axes: Vec<i64> = (2..rank as i64).collect();
    let mean = reduce_mean(c, x, &axes, "mean");
    let d = bin(c, BinaryOp::Sub, x, mean, "centered");
    let dd = bin(c, BinaryOp::Mul, d, d, "squared");
    let var = reduce_mean(c, dd, &axes, "variance");
    let eps = scalar_const(c, dtype, eps as f64, "epsilon");
    let var_eps = bin(c, BinaryOp::Add, var, eps, "var_eps");
    let std = un(c, UnaryOp::Sqrt, var_eps, "std");
    let normalized = bin(c, BinaryOp::Div, d, std, "normalized");
    let scale = per_channel(c, scale, rank, "scale_b");
    let bias = per_channel(c, bias, rank, "bias_b");
    let scaled = bin(c, BinaryOp::Mul, normalized, scale, "scaled");
    c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(scaled), Some(bias)], 0);
    Ok(Canon::Done)
}

/// LayerNormalization-17, as its function body: statistics in `stash_type` over axes
/// `[axis, rank)`, then `normalized * Scale + B` in the input type.
fn layer_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let scale = c.required_input(1)?;
    let bias = c.input(2);
    let axis = c.attr_i("axis", -1)?;
    let eps = c.attr_f("epsilon", 1e-5)?;
    let stash = c.attr_dtype("stash_type")?.unwrap_or(DType::F32);
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    need!(float_dtype(Some(stash)), "stash_type is not a floating type");
    let axes: Vec<i64> = if axis < 0 {
        // Bounded even when the rank is unknown, so a hostile axis cannot ask for a huge list.
        let rank = c.input_rank(0).map_or(64, |r| r as i64);
        if axis < -rank {
            return Err(c.error(format!("axis {axis} out of range for rank {rank}")));
        }
        (axis..0).collect()
    } else {
        let rank = need!(c.input_rank(0), "input rank unknown") as i64;
        if axis > rank {
            return Err(c.error(format!("axis {axis} out of range for rank {rank}")));
        }
        (axis..rank).collect()
    };
    let xs = if stash != dtype { cast_to(c, x, stash, "x_stash") } else { x };
    let (d, inv_std, mean) = normalize_parts(c, xs, &axes, eps, stash);
    let normalized = bin(c, BinaryOp::Mul, d, inv_std, "normalized");
    let normalized = if stash != dtype { cast_to(c, normalized, dtype, "normalized_t") } else { normalized };
    if let Some(m) = c.output(1) {
        c.emit(Op::Identity, vec![Some(mean)], vec![Some(m)]);
    }
    if let Some(s) = c.output(2) {
        c.emit(Op::Identity, vec![Some(inv_std)], vec![Some(s)]);
    }
    match bias {
        None => c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(normalized), Some(scale)], 0),
        Some(b) => {
            let scaled = bin(c, BinaryOp::Mul, normalized, scale, "scaled");
            c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(scaled), Some(b)], 0);
        }
    }
    Ok(Canon::Done)
}

/// GroupNormalization: statistics over `[N, G, C/G * spatial]`; version 18 scales per group,
/// version 21 per channel (and computes in `stash_type`).
fn group_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (scale, bias) = (c.required_input(1)?, c.required_input(2)?);
    let groups = c.attr_i_opt("num_groups")?.ok_or_else(|| c.error("attribute 'num_groups' is required"))?;
    let eps = c.attr_f("epsilon", 1e-5)?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let rank = need!(c.input_rank(0), "input rank unknown");
    let stash = if c.version >= 21 { c.attr_dtype("stash_type")?.unwrap_or(DType::F32) } else { dtype };
    need!(float_dtype(Some(stash)), "stash_type is not a floating type");
    if rank < 2 {
        return Err(c.error(format!("input of rank {rank}; needs [N, C, ...]")));
    }
    let xs = if stash != dtype { cast_to(c, x, stash, "x_stash") } else { x };
    let shape3 = c.const_i64s(&[0, groups, -1], "grouped_shape");
    let x3 = c.emit_temp(Op::Reshape { allowzero: false }, vec![Some(xs), Some(shape3)], "grouped");
    let (d, inv_std, _) = normalize_parts(c, x3, &[2], eps, stash);
    let mut normalized = bin(c, BinaryOp::Mul, d, inv_std, "normalized");
    if c.version < 21 {
        // Scale and bias are per group: [G] -> [G, 1] against [N, G, -1].
        let axes = c.const_i64s(&[1], "group_axes");
        let s = c.emit_temp(Op::Unsqueeze, vec![Some(scale), Some(axes)], "scale_g");
        let b = c.emit_temp(Op::Unsqueeze, vec![Some(bias), Some(axes)], "bias_g");
        let scaled = bin(c, BinaryOp::Mul, normalized, s, "scaled");
        normalized = bin(c, BinaryOp::Add, scaled, b, "shifted");
    }
    let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(x)], "shape");
    let y = c.emit_temp(Op::Reshape { allowzero: false }, vec![Some(normalized), Some(shape)], "ungrouped");
    if c.version < 21 {
        c.emit_to_output(Op::Identity, vec![Some(y)], 0);
        return Ok(Canon::Done);
    }
    let y = if stash != dtype { cast_to(c, y, dtype, "normalized_t") } else { y };
    let scale = per_channel(c, scale, rank, "scale_b");
    let bias = per_channel(c, bias, rank, "bias_b");
    let scaled = bin(c, BinaryOp::Mul, y, scale, "scaled");
    c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(scaled), Some(bias)], 0);
    Ok(Canon::Done)
}

/// `(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)` over `axes` (default [0, 2, 3]).
fn mean_variance_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let axes = c.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let mean = reduce_mean(c, x, &axes, "mean");
    let mean_sq = bin(c, BinaryOp::Mul, mean, mean, "mean_squared");
    let x_sq = bin(c, BinaryOp::Mul, x, x, "x_squared");
    let e_x_sq = reduce_mean(c, x_sq, &axes, "mean_of_squares");
    let var = bin(c, BinaryOp::Sub, e_x_sq, mean_sq, "variance");
    let std = un(c, UnaryOp::Sqrt, var, "std");
    let d = bin(c, BinaryOp::Sub, x, mean, "centered");
    let eps = scalar_const(c, dtype, 1e-9, "epsilon");
    let std_eps = bin(c, BinaryOp::Add, std, eps, "std_eps");
    c.emit_to_output(Op::Binary(BinaryOp::Div), vec![Some(d), Some(std_eps)], 0);
    Ok(Canon::Done)
}

/// `x / ||x||_p` along `axis` (0 where the norm is 0).
fn lp_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let axis = c.attr_i("axis", -1)?;
    let kind = match c.attr_i("p", 2)? {
        1 => ReduceKind::L1,
        2 => ReduceKind::L2,
        p => return Err(c.error(format!("p must be 1 or 2, not {p}"))),
    };
    let axes = c.const_i64s(&[axis], "axes");
    let norm = c.emit_temp(
        Op::Reduce { kind, keepdims: true, noop_with_empty_axes: false },
        vec![Some(x), Some(axes)],
        "norm",
    );
    let zero = scalar_const(c, dtype, 0.0, "zero");
    let is_zero = bin(c, BinaryOp::Equal, norm, zero, "norm_is_zero");
    let q = bin(c, BinaryOp::Div, x, norm, "quotient");
    c.emit_to_output(Op::Where, vec![Some(is_zero), Some(zero), Some(q)], 0);
    Ok(Canon::Done)
}

/// Dropout at inference is the identity; its mask (when asked for) is all true.
fn dropout(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    if c.version < 7 && c.attr_i("is_test", 0)? == 0 {
        return Ok(Canon::KeepOpaque("is_test=0 (training mode)".into()));
    }
    if c.version >= 12 && c.input(2).is_some() {
        match c.const_input(2).and_then(|t| t.to_i64_vec().ok()) {
            Some(v) if v.iter().all(|x| *x == 0) => {}
            Some(_) => return Ok(Canon::KeepOpaque("training_mode is true".into())),
            None => return Ok(Canon::KeepOpaque("training_mode is not a constant".into())),
        }
    }
    let mask = c.output(1);
    if mask.is_some() && c.version < 10 {
        return Ok(Canon::KeepOpaque("the mask output has the data type before opset 10".into()));
    }
    c.emit_to_output(Op::Identity, vec![Some(x)], 0);
    if let Some(mask) = mask {
        let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(x)], "shape");
        let t = Tensor::from_raw(DType::Bool, vec![1], bytes::Bytes::from(vec![1u8])).expect("one bool");
        c.emit(Op::ConstantOfShape(t), vec![Some(shape)], vec![Some(mask)]);
    }
    Ok(Canon::Done)
}
