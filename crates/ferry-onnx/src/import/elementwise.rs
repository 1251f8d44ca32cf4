//! Elementwise and broadcasting ops, and the activations that are compositions of them.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, Cast, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Abs", |c| unary(c, UnaryOp::Abs)),
    ("Neg", |c| unary(c, UnaryOp::Neg)),
    ("Floor", |c| unary(c, UnaryOp::Floor)),
    ("Ceil", |c| unary(c, UnaryOp::Ceil)),
    ("Round", |c| unary(c, UnaryOp::Round)),
    ("Sqrt", |c| unary(c, UnaryOp::Sqrt)),
    ("Reciprocal", |c| unary(c, UnaryOp::Reciprocal)),
    ("Exp", |c| unary(c, UnaryOp::Exp)),
    ("Log", |c| unary(c, UnaryOp::Log)),
    ("Sin", |c| unary(c, UnaryOp::Sin)),
    ("Cos", |c| unary(c, UnaryOp::Cos)),
    ("Tan", |c| unary(c, UnaryOp::Tan)),
    ("Asin", |c| unary(c, UnaryOp::Asin)),
    ("Acos", |c| unary(c, UnaryOp::Acos)),
    ("Atan", |c| unary(c, UnaryOp::Atan)),
    ("Sinh", |c| unary(c, UnaryOp::Sinh)),
    ("Cosh", |c| unary(c, UnaryOp::Cosh)),
    ("Tanh", |c| unary(c, UnaryOp::Tanh)),
    ("Asinh", |c| unary(c, UnaryOp::Asinh)),
    ("Acosh", |c| unary(c, UnaryOp::Acosh)),
    ("Atanh", |c| unary(c, UnaryOp::Atanh)),
    ("Sigmoid", |c| unary(c, UnaryOp::Sigmoid)),
    ("Erf", |c| unary(c, UnaryOp::Erf)),
    ("Sign", |c| unary(c, UnaryOp::Sign)),
    ("Not", |c| unary(c, UnaryOp::Not)),
    ("BitwiseNot", |c| unary(c, UnaryOp::BitwiseNot)),
    ("IsNaN", |c| unary(c, UnaryOp::IsNaN)),
    ("Relu", |c| unary(c, UnaryOp::Relu)),
    ("Softplus", |c| unary(c, UnaryOp::Softplus)),
    ("Identity", identity),
    ("Add", |c| binary(c, BinaryOp::Add)),
    ("Sub", |c| binary(c, BinaryOp::Sub)),
    ("Mul", |c| binary(c, BinaryOp::Mul)),
    ("Div", |c| binary(c, BinaryOp::Div)),
    ("Pow", |c| binary(c, BinaryOp::Pow)),
    ("And", |c| binary(c, BinaryOp::And)),
    ("Or", |c| binary(c, BinaryOp::Or)),
    ("Xor", |c| binary(c, BinaryOp::Xor)),
    ("BitwiseAnd", |c| binary(c, BinaryOp::BitAnd)),
    ("BitwiseOr", |c| binary(c, BinaryOp::BitOr)),
    ("BitwiseXor", |c| binary(c, BinaryOp::BitXor)),
    ("Equal", |c| binary(c, BinaryOp::Equal)),
    ("Less", |c| binary(c, BinaryOp::Less)),
    ("LessOrEqual", |c| binary(c, BinaryOp::LessOrEqual)),
    ("Greater", |c| binary(c, BinaryOp::Greater)),
    ("GreaterOrEqual", |c| binary(c, BinaryOp::GreaterOrEqual)),
    ("Mod", modulo),
    ("BitShift", bit_shift),
    ("Max", |c| variadic(c, BinaryOp::Max)),
    ("Min", |c| variadic(c, BinaryOp::Min)),
    ("Sum", |c| variadic(c, BinaryOp::Add)),
    ("Mean", mean),
    ("Where", where_),
    ("Cast", cast),
    ("CastLike", cast_like),
    ("IsInf", is_inf),
    ("Clip", clip),
    ("LeakyRelu", leaky_relu),
    ("Elu", elu),
    ("Selu", selu),
    ("Celu", celu),
    ("ThresholdedRelu", thresholded_relu),
    ("HardSigmoid", hard_sigmoid),
    ("HardSwish", hard_swish),
    ("Softsign", softsign),
    ("Mish", mish),
    ("PRelu", prelu),
];

fn unary(c: &mut NodeCtx, op: UnaryOp) -> Result<Canon> {
    let x = c.required_input(0)?;
    c.emit_to_output(Op::Unary(op), vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn identity(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    c.emit_to_output(Op::Identity, vec![Some(x)], 0);
    Ok(Canon::Done)
}

/// Before opset 7, broadcasting was opt-in (`broadcast=1`) and aligned B to A at `axis` rather
/// than at the trailing dimensions: make that explicit by appending ones to B's shape.
fn legacy_broadcast_rhs(c: &mut NodeCtx, b: ValueId) -> Result<std::result::Result<ValueId, String>> {
    if c.version >= 7 || c.attr_i("broadcast", 0)? == 0 {
        return Ok(Ok(b));
    }
    let Some(axis) = c.attr_i_opt("axis")? else {
        return Ok(Ok(b));
    };
    let (Some(ra), Some(rb)) = (c.input_rank(0), c.input_rank(1)) else {
        return Ok(Err("legacy broadcast with an axis needs both input ranks known".into()));
    };
    let axis = if axis < 0 { axis + ra as i64 } else { axis };
    let trailing = ra as i64 - axis - rb as i64;
    if axis < 0 || trailing < 0 {
        return Err(c.error(format!("broadcast axis {axis} does not fit ranks {ra} and {rb}")));
    }
    if trailing == 0 {
        return Ok(Ok(b));
    }
    let axes: Vec<i64> = (rb as i64..rb as i64 + trailing).collect();
    let axes = c.const_i64s(&axes, "broadcast_axes");
    Ok(Ok(c.emit_temp(Op::Unsqueeze, vec![Some(b), Some(axes)], "aligned")))
}

fn binary(c: &mut NodeCtx, op: BinaryOp) -> Result<Canon> {
    let a = c.required_input(0)?;
    let b = c.required_input(1)?;
    if c.version < 7
        && c.attr_i("broadcast", 0)? == 1
        && c.has_attr("axis")
        && (c.input_rank(0).is_none() || c.input_rank(1).is_none())
    {
        return Ok(Canon::KeepOpaque("legacy broadcast with unknown ranks".into()));
    }
    let b = match legacy_broadcast_rhs(c, b)? {
        Ok(b) => b,
        Err(why) => return Ok(Canon::KeepOpaque(why)),
    };
    c.emit_to_output(Op::Binary(op), vec![Some(a), Some(b)], 0);
    Ok(Canon::Done)
}

fn modulo(c: &mut NodeCtx) -> Result<Canon> {
    let op = if c.attr_i("fmod", 0)? == 1 { BinaryOp::Fmod } else { BinaryOp::Mod };
    binary(c, op)
}

fn bit_shift(c: &mut NodeCtx) -> Result<Canon> {
    let op = match c.attr_s("direction", "")?.as_str() {
        "LEFT" => BinaryOp::ShiftLeft,
        "RIGHT" => BinaryOp::ShiftRight,
        other => return Err(c.error(format!("direction must be LEFT or RIGHT, not '{other}'"))),
    };
    binary(c, op)
}

/// Max/Min/Sum of any number of inputs, as a chain of binary ops.
fn variadic(c: &mut NodeCtx, op: BinaryOp) -> Result<Canon> {
    let inputs: Vec<ValueId> = c.inputs.iter().flatten().copied().collect();
    if inputs.is_empty() {
        return Err(c.error("needs at least one input"));
    }
    if inputs.len() == 1 {
        c.emit_to_output(Op::Identity, vec![Some(inputs[0])], 0);
        return Ok(Canon::Done);
    }
    let mut acc = inputs[0];
    for (k, x) in inputs[1..].iter().enumerate() {
        if k + 2 == inputs.len() {
            c.emit_to_output(Op::Binary(op), vec![Some(acc), Some(*x)], 0);
        } else {
            acc = c.emit_temp(Op::Binary(op), vec![Some(acc), Some(*x)], "partial");
        }
    }
    Ok(Canon::Done)
}

/// A scalar constant of the dtype of input `like`, or `None` when that dtype is unknown.
fn scalar_like(c: &mut NodeCtx, like: usize, v: f64, hint: &str) -> Option<ValueId> {
    let dtype = c.input_dtype(like)?;
    let t = scalar(dtype, v)?;
    Some(c.constant(t, hint))
}

pub(crate) fn scalar(dtype: DType, v: f64) -> Option<Tensor> {
    Tensor::scalar_from_f64(dtype, v)
}

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

fn mean(c: &mut NodeCtx) -> Result<Canon> {
    let inputs: Vec<ValueId> = c.inputs.iter().flatten().copied().collect();
    let n = need!(scalar_like(c, 0, inputs.len() as f64, "count"), "input dtype unknown");
    let mut acc = inputs[0];
    for x in &inputs[1..] {
        acc = c.emit_temp(Op::Binary(BinaryOp::Add), vec![Some(acc), Some(*x)], "sum");
    }
    c.emit_to_output(Op::Binary(BinaryOp::Div), vec![Some(acc), Some(n)], 0);
    Ok(Canon::Done)
}

fn where_(c: &mut NodeCtx) -> Result<Canon> {
    let (cond, a, b) = (c.required_input(0)?, c.required_input(1)?, c.required_input(2)?);
    c.emit_to_output(Op::Where, vec![Some(cond), Some(a), Some(b)], 0);
    Ok(Canon::Done)
}

fn cast(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let to = if c.version == 1 {
        // Cast-1 names the type as a string ("FLOAT", "INT64", ...).
        let name = c.attr_s("to", "")?;
        let code = crate::proto::tensor_proto::DataType::from_str_name(&name).map(|d| d as i32).unwrap_or(0);
        DType::from_onnx_code(code).ok_or_else(|| c.error(format!("unknown target type '{name}'")))?
    } else {
        c.attr_dtype("to")?.ok_or_else(|| c.error("attribute 'to' is required"))?
    };
    let cast = Cast { to, saturate: c.attr_i("saturate", 1)? != 0, round_mode: c.attr_s("round_mode", "up")? };
    c.emit_to_output(Op::Cast(cast), vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn cast_like(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let to = need!(c.input_dtype(1), "target dtype unknown");
    let cast = Cast { to, saturate: c.attr_i("saturate", 1)? != 0, round_mode: c.attr_s("round_mode", "up")? };
    c.emit_to_output(Op::Cast(cast), vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn is_inf(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let op = Op::IsInf {
        detect_negative: c.attr_i("detect_negative", 1)? != 0,
        detect_positive: c.attr_i("detect_positive", 1)? != 0,
    };
    c.emit_to_output(op, vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn clip(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (lo, hi) = if c.version < 11 {
        let lo = c.attr_f_opt("min")?;
        let hi = c.attr_f_opt("max")?;
        let lo = match lo {
            Some(v) => Some(need!(scalar_like(c, 0, v as f64, "min"), "input dtype unknown")),
            None => None,
        };
        let hi = match hi {
            Some(v) => Some(need!(scalar_like(c, 0, v as f64, "max"), "input dtype unknown")),
            None => None,
        };
        (lo, hi)
    } else {
        (c.input(1), c.input(2))
    };
    let mut acc = x;
    let steps: Vec<(BinaryOp, ValueId)> =
        [(BinaryOp::Max, lo), (BinaryOp::Min, hi)].into_iter().filter_map(|(op, v)| v.map(|v| (op, v))).collect();
    if steps.is_empty() {
        c.emit_to_output(Op::Identity, vec![Some(x)], 0);
        return Ok(Canon::Done);
    }
    for (k, (op, bound)) in steps.iter().enumerate() {
        if k + 1 == steps.len() {
            c.emit_to_output(Op::Binary(*op), vec![Some(acc), Some(*bound)], 0);
        } else {
            acc = c.emit_temp(Op::Binary(*op), vec![Some(acc), Some(*bound)], "clipped_low");
        }
    }
    Ok(Canon::Done)
}

fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![Some(a), Some(b)], hint)
}

fn un(c: &mut NodeCtx, op: UnaryOp, a: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Unary(op), vec![Some(a)], hint)
}

/// `x < 0 ? alpha * x : x`
fn leaky_relu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 0.01)?;
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let alpha = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let neg = bin(c, BinaryOp::Less, x, zero, "is_negative");
    let scaled = bin(c, BinaryOp::Mul, x, alpha, "scaled");
    c.emit_to_output(Op::Where, vec![Some(neg), Some(scaled), Some(x)], 0);
    Ok(Canon::Done)
}

/// `x < 0 ? slope * x : x`, slope broadcast to x (unidirectionally).
fn prelu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let slope = c.required_input(1)?;
    need!(c.input_dtype(0).and_then(|d| scalar(d, 0.0)), "input dtype unknown");
    let slope = if c.version < 7 {
        match super::misc::legacy_prelu_slope(c, x, slope) {
            Ok(s) => s,
            Err(why) => return Ok(Canon::KeepOpaque(format!("PRelu before opset 7: {why}"))),
        }
    } else {
        slope
    };
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let neg = bin(c, BinaryOp::Less, x, zero, "is_negative");
    let scaled = bin(c, BinaryOp::Mul, x, slope, "scaled");
    c.emit_to_output(Op::Where, vec![Some(neg), Some(scaled), Some(x)], 0);
    Ok(Canon::Done)
}

/// `x < 0 ? alpha * (exp(x) - 1) : x`
fn elu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let one = need!(scalar_like(c, 0, 1.0, "one"), "input dtype unknown");
    let alpha = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let neg = bin(c, BinaryOp::Less, x, zero, "is_negative");
    let e = un(c, UnaryOp::Exp, x, "exp");
    let em1 = bin(c, BinaryOp::Sub, e, one, "expm1");
    let scaled = bin(c, BinaryOp::Mul, em1, alpha, "scaled");
    c.emit_to_output(Op::Where, vec![Some(neg), Some(scaled), Some(x)], 0);
    Ok(Canon::Done)
}

/// `gamma * (x <= 0 ? alpha * (exp(x) - 1) : x)`
fn selu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 1.673_263_2)?;
    let gamma = c.attr_f("gamma", 1.050_701)?;
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let one = need!(scalar_like(c, 0, 1.0, "one"), "input dtype unknown");
    let alpha = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let gamma = need!(scalar_like(c, 0, gamma as f64, "gamma"), "input dtype unknown");
    let pos = bin(c, BinaryOp::Greater, x, zero, "is_positive");
    let e = un(c, UnaryOp::Exp, x, "exp");
    let em1 = bin(c, BinaryOp::Sub, e, one, "expm1");
    let scaled = bin(c, BinaryOp::Mul, em1, alpha, "scaled");
    let sel = c.emit_temp(Op::Where, vec![Some(pos), Some(x), Some(scaled)], "selected");
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(sel), Some(gamma)], 0);
    Ok(Canon::Done)
}

/// `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`
fn celu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let one = need!(scalar_like(c, 0, 1.0, "one"), "input dtype unknown");
    let a = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let xa = bin(c, BinaryOp::Div, x, a, "x_over_alpha");
    let e = un(c, UnaryOp::Exp, xa, "exp");
    let em1 = bin(c, BinaryOp::Sub, e, one, "expm1");
    let scaled = bin(c, BinaryOp::Mul, em1, a, "scaled");
    let neg_part = bin(c, BinaryOp::Min, scaled, zero, "negative_part");
    let pos_part = bin(c, BinaryOp::Max, x, zero, "positive_part");
    c.emit_to_output(Op::Binary(BinaryOp::Add), vec![Some(pos_part), Some(neg_part)], 0);
    Ok(Canon::Done)
}

/// `x > alpha ? x : 0`
fn thresholded_relu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let alpha = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let keep = bin(c, BinaryOp::Greater, x, alpha, "above");
    c.emit_to_output(Op::Where, vec![Some(keep), Some(x), Some(zero)], 0);
    Ok(Canon::Done)
}

/// `max(0, min(1, alpha * x + beta))`
fn hard_sigmoid(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (alpha, beta) = (c.attr_f("alpha", 0.2)?, c.attr_f("beta", 0.5)?);
    hard_sigmoid_of(c, x, alpha, beta, None)
}

fn hard_sigmoid_of(c: &mut NodeCtx, x: ValueId, alpha: f32, beta: f32, times: Option<ValueId>) -> Result<Canon> {
    let zero = need!(scalar_like(c, 0, 0.0, "zero"), "input dtype unknown");
    let one = need!(scalar_like(c, 0, 1.0, "one"), "input dtype unknown");
    let alpha = need!(scalar_like(c, 0, alpha as f64, "alpha"), "input dtype unknown");
    let beta = need!(scalar_like(c, 0, beta as f64, "beta"), "input dtype unknown");
    let ax = bin(c, BinaryOp::Mul, x, alpha, "scaled");
    let axb = bin(c, BinaryOp::Add, ax, beta, "shifted");
    let hi = bin(c, BinaryOp::Min, axb, one, "clipped_high");
    match times {
        None => c.emit_to_output(Op::Binary(BinaryOp::Max), vec![Some(hi), Some(zero)], 0),
        Some(t) => {
            let hs = bin(c, BinaryOp::Max, hi, zero, "hard_sigmoid");
            c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(t), Some(hs)], 0);
        }
    }
    Ok(Canon::Done)
}

/// `x * hard_sigmoid(x; 1/6, 1/2)`
fn hard_swish(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    hard_sigmoid_of(c, x, 1.0 / 6.0, 0.5, Some(x))
}

/// `x / (1 + |x|)`
fn softsign(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let one = need!(scalar_like(c, 0, 1.0, "one"), "input dtype unknown");
    let a = un(c, UnaryOp::Abs, x, "abs");
    let d = bin(c, BinaryOp::Add, a, one, "denominator");
    c.emit_to_output(Op::Binary(BinaryOp::Div), vec![Some(x), Some(d)], 0);
    Ok(Canon::Done)
}

/// `x * tanh(softplus(x))`
fn mish(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let sp = un(c, UnaryOp::Softplus, x, "softplus");
    let t = un(c, UnaryOp::Tanh, sp, "tanh");
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(x), Some(t)], 0);
    Ok(Canon::Done)
}
