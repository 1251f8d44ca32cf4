//! Losses, legacy PRelu, signal processing and the other ops without a family of their own.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, Cast, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("NegativeLogLikelihoodLoss", nll_loss),
    ("SoftmaxCrossEntropyLoss", softmax_cross_entropy_loss),
    ("DFT", dft),
    ("STFT", stft),
    ("MelWeightMatrix", mel_weight_matrix),
    ("HannWindow", |c| window(c, Window::Hann)),
    ("HammingWindow", |c| window(c, Window::Hamming)),
    ("BlackmanWindow", |c| window(c, Window::Blackman)),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

fn reduction(c: &NodeCtx) -> Result<Reduction> {
    match c.attr_s("reduction", "mean")?.as_str() {
        "none" => Ok(Reduction::None),
        "sum" => Ok(Reduction::Sum),
        "mean" => Ok(Reduction::Mean),
        other => Err(c.error(format!("reduction must be none, sum or mean, not '{other}'"))),
    }
}

/// What the loss composition needs to know before emitting anything.
struct LossPlan {
    dtype: DType,
    target_dtype: DType,
    weight: Option<ValueId>,
    ignore_index: Option<i64>,
    reduction: Reduction,
}

fn loss_plan(c: &NodeCtx) -> Result<std::result::Result<LossPlan, String>> {
    let reduction = reduction(c)?;
    let ignore_index = c.attr_i_opt("ignore_index")?;
    let Some(dtype) = c.input_dtype(0).filter(|d| scalar(*d, 0.0).is_some()) else {
        return Ok(Err("input dtype unknown".into()));
    };
    let Some(target_dtype) = c.input_dtype(1).filter(|d| matches!(d, DType::I32 | DType::I64)) else {
        return Ok(Err("target dtype unknown".into()));
    };
    Ok(Ok(LossPlan { dtype, target_dtype, weight: c.input(2), ignore_index, reduction }))
}

/// `loss[n, d...] = -x[n, t[n, d...], d...] * w[t[n, d...]]`, zero where `t == ignore_index`,
/// then reduced: `sum`, or `mean` = `sum(loss) / sum(w[t])` (a plain mean without weights or an
/// ignore_index). `x` is `[N, C, d...]`, `t` is `[N, d...]`.
fn nll_composition(c: &mut NodeCtx, x: ValueId, target: ValueId, p: &LossPlan) {
    let one_axis = c.const_i64s(&[1], "class_axis");
    // Ignored positions gather class 0 (any valid index) and get weight 0.
    let (t, mask) = match p.ignore_index {
        Some(ii) => {
            let ii = c.constant(scalar(p.target_dtype, ii as f64).expect("integer dtype"), "ignore_index");
            let mask = c.emit_temp(Op::Binary(BinaryOp::Equal), vec![Some(target), Some(ii)], "ignored");
            let zero = c.constant(scalar(p.target_dtype, 0.0).expect("integer dtype"), "zero_index");
            let t = c.emit_temp(Op::Where, vec![Some(mask), Some(zero), Some(target)], "safe_target");
            (t, Some(mask))
        }
        None => (target, None),
    };
    let tu = c.emit_temp(Op::Unsqueeze, vec![Some(t), Some(one_axis)], "target_unsqueezed");
    let picked = c.emit_temp(Op::GatherElements { axis: 1 }, vec![Some(x), Some(tu)], "picked");
    let picked = c.emit_temp(Op::Squeeze, vec![Some(picked), Some(one_axis)], "picked_squeezed");
    let zero = |c: &mut NodeCtx| c.constant(scalar(p.dtype, 0.0).expect("numeric dtype"), "zero");
    let w = match (p.weight, mask) {
        (Some(weight), mask) => {
            let w = c.emit_temp(Op::Gather { axis: 0 }, vec![Some(weight), Some(t)], "target_weight");
            Some(match mask {
                Some(m) => {
                    let zero = zero(c);
                    c.emit_temp(Op::Where, vec![Some(m), Some(zero), Some(w)], "masked_weight")
                }
                None => w,
            })
        }
        (None, Some(m)) => {
            let zero = zero(c);
            let one = c.constant(scalar(p.dtype, 1.0).expect("numeric dtype"), "one");
            Some(c.emit_temp(Op::Where, vec![Some(m), Some(zero), Some(one)], "masked_weight"))
        }
        (None, None) => None,
    };
    let reduce = |kind| Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
    let last = p.reduction == Reduction::None;
    let loss = match w {
        Some(w) => {
            let neg = c.emit_temp(Op::Unary(UnaryOp::Neg), vec![Some(picked)], "negated");
            if last {
                c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(neg), Some(w)], 0);
                return;
            }
            c.emit_temp(Op::Binary(BinaryOp::Mul), vec![Some(neg), Some(w)], "weighted")
        }
        None => {
            if last {
                c.emit_to_output(Op::Unary(UnaryOp::Neg), vec![Some(picked)], 0);
                return;
            }
            c.emit_temp(Op::Unary(UnaryOp::Neg), vec![Some(picked)], "negated")
        }
    };
    match (p.reduction, w) {
        (Reduction::Sum, _) => c.emit_to_output(reduce(ReduceKind::Sum), vec![Some(loss)], 0),
        (Reduction::Mean, None) => c.emit_to_output(reduce(ReduceKind::Mean), vec![Some(loss)], 0),
        (Reduction::Mean, Some(w)) => {
            let total = c.emit_temp(reduce(ReduceKind::Sum), vec![Some(loss)], "loss_sum");
            let wsum = c.emit_temp(reduce(ReduceKind::Sum), vec![Some(w)], "weight_sum");
            c.emit_to_output(Op::Binary(BinaryOp::Div), vec![Some(total), Some(wsum)], 0);
        }
        (Reduction::None, _) => unreachable!("returned above"),
    }
}

fn nll_loss(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let target = c.required_input(1)?;
    let plan = match loss_plan(c)? {
        Ok(p) => p,
        Err(why) => return Ok(Canon::KeepOpaque(why)),
    };
    nll_composition(c, x, target, &plan);
    Ok(Canon::Done)
}

/// `log_prob = log_softmax(scores, axis 1)`, then the negative log-likelihood loss of it.
fn softmax_cross_entropy_loss(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let target = c.required_input(1)?;
    let plan = match loss_plan(c)? {
        Ok(p) => p,
        Err(why) => return Ok(Canon::KeepOpaque(why)),
    };
    let log_prob = match c.output(1) {
        Some(o) => {
            c.emit(Op::LogSoftmax { axis: 1 }, vec![Some(x)], vec![Some(o)]);
            o
        }
        None => c.emit_temp(Op::LogSoftmax { axis: 1 }, vec![Some(x)], "log_prob"),
    };
    nll_composition(c, log_prob, target, &plan);
    Ok(Canon::Done)
}

/// PRelu before opset 7 has no numpy broadcasting: a 1-D slope of size C = X.shape[1] applies
/// per channel (axis 1), a slope of size 1 is shared, and otherwise the slope has X's shape. Returns
/// the slope reshaped so that numpy broadcasting gives those semantics, or why it can't.
pub(crate) fn legacy_prelu_slope(c: &mut NodeCtx, x: ValueId, slope: ValueId) -> std::result::Result<ValueId, String> {
    let xs = c.value_type(x).shape().cloned().ok_or("input rank unknown")?;
    let ss = c.value_type(slope).shape().cloned().ok_or("slope rank unknown")?;
    let numel = ss.numel().known();
    if numel == Some(1) || ss == xs {
        return Ok(slope);
    }
    let r = xs.rank();
    if ss.rank() == 1 && r >= 2 {
        let (Some(c_dim), Some(s_dim)) = (xs.dims()[1].known(), ss.dims()[0].known()) else {
            return Err("channel count unknown".into());
        };
        if c_dim == s_dim {
            if r == 2 {
                return Ok(slope);
            }
            let axes: Vec<i64> = (1..r as i64 - 1).collect();
            let axes = c.const_i64s(&axes, "slope_axes");
            return Ok(c.emit_temp(Op::Unsqueeze, vec![Some(slope), Some(axes)], "channel_slope"));
        }
    }
    Err(format!("slope shape {ss:?} does not fit input shape {xs:?}"))
}

/// DFT-17 names the axis as an attribute (default 1), DFT-20 as an optional input (default -2).
fn dft(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let op = Op::Dft { inverse: c.attr_i("inverse", 0)? != 0, onesided: c.attr_i("onesided", 0)? != 0 };
    let axis = match c.input(2) {
        Some(a) if c.version >= 20 => a,
        _ => {
            let axis = if c.version >= 20 { -2 } else { c.attr_i("axis", 1)? };
            let t = ferry_ir::Tensor::from_i64(vec![], &[axis]).expect("scalar");
            c.constant(t, "axis")
        }
    };
    c.emit_to_output(op, vec![Some(x), c.input(1), Some(axis)], 0);
    Ok(Canon::Done)
}

fn stft(c: &mut NodeCtx) -> Result<Canon> {
    let signal = c.required_input(0)?;
    let step = c.required_input(1)?;
    let op = Op::Stft { onesided: c.attr_i("onesided", 1)? != 0 };
    c.emit_to_output(op, vec![Some(signal), Some(step), c.input(2), c.input(3)], 0);
    Ok(Canon::Done)
}

fn mel_weight_matrix(c: &mut NodeCtx) -> Result<Canon> {
    let dtype = c.attr_dtype("output_datatype")?.unwrap_or(DType::F32);
    let mut inputs = Vec::with_capacity(5);
    for i in 0..5 {
        inputs.push(Some(c.required_input(i)?));
    }
    c.emit_to_output(Op::MelWeightMatrix { dtype }, inputs, 0);
    Ok(Canon::Done)
}

#[derive(Clone, Copy)]
enum Window {
    Hann,
    Hamming,
    Blackman,
}

/// Windows of `size` points, as compositions: with `n = 0..size` and `N = size` (periodic) or
/// `size - 1` (symmetric), `x = 2 pi n / N`:
/// Hann `sin^2(x / 2)`, Hamming `25/46 - 21/46 cos(x)`, Blackman `0.42 - 0.5 cos(x) + 0.08 cos(2x)`.
/// Computed in float (double for a double output) and cast to `output_datatype`.
fn window(c: &mut NodeCtx, kind: Window) -> Result<Canon> {
    let size = c.required_input(0)?;
    let out_dtype = c.attr_dtype("output_datatype")?.unwrap_or(DType::F32);
    let periodic = c.attr_i("periodic", 1)? != 0;
    let work = if out_dtype == DType::F64 { DType::F64 } else { DType::F32 };
    if scalar(out_dtype, 0.0).is_none() {
        return Ok(Canon::KeepOpaque(format!("output type {out_dtype} has no scalar form")));
    }
    let cast = |to| Op::Cast(Cast { to, saturate: true, round_mode: "up".into() });
    let k = |c: &mut NodeCtx, v: f64, hint: &str| c.constant(scalar(work, v).expect("float"), hint);
    let size64 = c.emit_temp(cast(DType::I64), vec![Some(size)], "size");
    let zero = c.constant(scalar(DType::I64, 0.0).expect("int"), "zero");
    let one = c.constant(scalar(DType::I64, 1.0).expect("int"), "one");
    let steps = c.emit_temp(Op::Range, vec![Some(zero), Some(size64), Some(one)], "steps");
    let n = c.emit_temp(cast(work), vec![Some(steps)], "n");
    let size_f = c.emit_temp(cast(work), vec![Some(size64)], "size_float");
    let big_n = if periodic {
        size_f
    } else {
        let one_f = k(c, 1.0, "one_float");
        c.emit_temp(Op::Binary(BinaryOp::Sub), vec![Some(size_f), Some(one_f)], "size_minus_one")
    };
    let two_pi = k(c, 2.0 * std::f64::consts::PI, "two_pi");
    let scaled = c.emit_temp(Op::Binary(BinaryOp::Mul), vec![Some(n), Some(two_pi)], "scaled");
    let x = c.emit_temp(Op::Binary(BinaryOp::Div), vec![Some(scaled), Some(big_n)], "angle");
    let bin = |c: &mut NodeCtx, op, a: ValueId, b: ValueId, hint: &str| {
        c.emit_temp(Op::Binary(op), vec![Some(a), Some(b)], hint)
    };
    let un = |c: &mut NodeCtx, op, a: ValueId, hint: &str| c.emit_temp(Op::Unary(op), vec![Some(a)], hint);
    let w = match kind {
        Window::Hann => {
            let half = k(c, 0.5, "half");
            let hx = bin(c, BinaryOp::Mul, x, half, "half_angle");
            let s = un(c, UnaryOp::Sin, hx, "sin");
            (BinaryOp::Mul, s, s)
        }
        Window::Hamming => {
            let alpha = k(c, 25.0 / 46.0, "alpha");
            let beta = k(c, 1.0 - 25.0 / 46.0, "beta");
            let cx = un(c, UnaryOp::Cos, x, "cos");
            let bc = bin(c, BinaryOp::Mul, cx, beta, "scaled_cos");
            (BinaryOp::Sub, alpha, bc)
        }
        Window::Blackman => {
            let a0 = k(c, 0.42, "a0");
            let a1 = k(c, 0.5, "a1");
            let a2 = k(c, 0.08, "a2");
            let two = k(c, 2.0, "two");
            let cx = un(c, UnaryOp::Cos, x, "cos");
            let x2 = bin(c, BinaryOp::Mul, x, two, "double_angle");
            let c2x = un(c, UnaryOp::Cos, x2, "cos2");
            let t1 = bin(c, BinaryOp::Mul, cx, a1, "term1");
            let t2 = bin(c, BinaryOp::Mul, c2x, a2, "term2");
            let d = bin(c, BinaryOp::Sub, a0, t1, "difference");
            (BinaryOp::Add, d, t2)
        }
    };
    if out_dtype == work {
        c.emit_to_output(Op::Binary(w.0), vec![Some(w.1), Some(w.2)], 0);
    } else {
        let r = bin(c, w.0, w.1, w.2, "window");
        c.emit_to_output(cast(out_dtype), vec![Some(r)], 0);
    }
    Ok(Canon::Done)
}
