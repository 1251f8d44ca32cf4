//! Losses, legacy PRelu, signal processing and the other ops without a family of their own.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] =
    &[("NegativeLogLikelihoodLoss", nll_loss), ("SoftmaxCrossEntropyLoss", softmax_cross_entropy_loss)];

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

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
