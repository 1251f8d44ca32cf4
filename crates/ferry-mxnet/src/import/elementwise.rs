//! Elementwise, broadcasting and scalar ops. MXNet comparisons and logical ops return the input's
//! element type (1/0), not booleans.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, Cast, UnaryOp};
use ferry_ir::{DType, Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("abs", |c| unary(c, UnaryOp::Abs)),
    ("negative", |c| unary(c, UnaryOp::Neg)),
    ("floor", |c| unary(c, UnaryOp::Floor)),
    ("ceil", |c| unary(c, UnaryOp::Ceil)),
    ("sqrt", |c| unary(c, UnaryOp::Sqrt)),
    ("reciprocal", |c| unary(c, UnaryOp::Reciprocal)),
    ("exp", |c| unary(c, UnaryOp::Exp)),
    ("log", |c| unary(c, UnaryOp::Log)),
    ("sin", |c| unary(c, UnaryOp::Sin)),
    ("cos", |c| unary(c, UnaryOp::Cos)),
    ("tan", |c| unary(c, UnaryOp::Tan)),
    ("arcsin", |c| unary(c, UnaryOp::Asin)),
    ("arccos", |c| unary(c, UnaryOp::Acos)),
    ("arctan", |c| unary(c, UnaryOp::Atan)),
    ("arcsinh", |c| unary(c, UnaryOp::Asinh)),
    ("arccosh", |c| unary(c, UnaryOp::Acosh)),
    ("arctanh", |c| unary(c, UnaryOp::Atanh)),
    ("sinh", |c| unary(c, UnaryOp::Sinh)),
    ("cosh", |c| unary(c, UnaryOp::Cosh)),
    ("tanh", |c| unary(c, UnaryOp::Tanh)),
    ("sigmoid", |c| unary(c, UnaryOp::Sigmoid)),
    ("relu", |c| unary(c, UnaryOp::Relu)),
    ("softsign", |c| {
        let x = c.input(0)?;
        super::nn::softsign(c, x)
    }),
    ("erf", |c| unary(c, UnaryOp::Erf)),
    ("sign", |c| unary(c, UnaryOp::Sign)),
    ("square", square),
    ("log2", log2),
    ("logical_not", logical_not),
    ("identity", super::nn::identity_first),
    ("_copy", super::nn::identity_first),
    ("BlockGrad", super::nn::identity_first),
    ("stop_gradient", super::nn::identity_first),
    ("MakeLoss", super::nn::identity_first),
    ("make_loss", super::nn::identity_first),
    ("elemwise_add", |c| binary(c, BinaryOp::Add)),
    ("elemwise_sub", |c| binary(c, BinaryOp::Sub)),
    ("elemwise_mul", |c| binary(c, BinaryOp::Mul)),
    ("elemwise_div", |c| binary(c, BinaryOp::Div)),
    ("_plus", |c| binary(c, BinaryOp::Add)),
    ("_Plus", |c| binary(c, BinaryOp::Add)),
    ("_minus", |c| binary(c, BinaryOp::Sub)),
    ("_Minus", |c| binary(c, BinaryOp::Sub)),
    ("_mul", |c| binary(c, BinaryOp::Mul)),
    ("_Mul", |c| binary(c, BinaryOp::Mul)),
    ("_div", |c| binary(c, BinaryOp::Div)),
    ("_Div", |c| binary(c, BinaryOp::Div)),
    ("_power", |c| binary(c, BinaryOp::Pow)),
    ("_Power", |c| binary(c, BinaryOp::Pow)),
    ("_maximum", |c| binary(c, BinaryOp::Max)),
    ("_Maximum", |c| binary(c, BinaryOp::Max)),
    ("_minimum", |c| binary(c, BinaryOp::Min)),
    ("_Minimum", |c| binary(c, BinaryOp::Min)),
    ("broadcast_add", |c| binary(c, BinaryOp::Add)),
    ("broadcast_plus", |c| binary(c, BinaryOp::Add)),
    ("broadcast_sub", |c| binary(c, BinaryOp::Sub)),
    ("broadcast_minus", |c| binary(c, BinaryOp::Sub)),
    ("broadcast_mul", |c| binary(c, BinaryOp::Mul)),
    ("broadcast_div", |c| binary(c, BinaryOp::Div)),
    ("broadcast_power", |c| binary(c, BinaryOp::Pow)),
    ("broadcast_maximum", |c| binary(c, BinaryOp::Max)),
    ("broadcast_minimum", |c| binary(c, BinaryOp::Min)),
    ("broadcast_mod", |c| binary(c, BinaryOp::Mod)),
    ("broadcast_equal", |c| compare(c, BinaryOp::Equal, false)),
    ("broadcast_not_equal", |c| compare(c, BinaryOp::Equal, true)),
    ("broadcast_greater", |c| compare(c, BinaryOp::Greater, false)),
    ("broadcast_greater_equal", |c| compare(c, BinaryOp::GreaterOrEqual, false)),
    ("broadcast_lesser", |c| compare(c, BinaryOp::Less, false)),
    ("broadcast_lesser_equal", |c| compare(c, BinaryOp::LessOrEqual, false)),
    ("broadcast_logical_and", |c| logical(c, BinaryOp::And)),
    ("broadcast_logical_or", |c| logical(c, BinaryOp::Or)),
    ("broadcast_logical_xor", |c| logical(c, BinaryOp::Xor)),
    ("_plus_scalar", |c| scalar_op(c, BinaryOp::Add, false)),
    ("_PlusScalar", |c| scalar_op(c, BinaryOp::Add, false)),
    ("_minus_scalar", |c| scalar_op(c, BinaryOp::Sub, false)),
    ("_MinusScalar", |c| scalar_op(c, BinaryOp::Sub, false)),
    ("_rminus_scalar", |c| scalar_op(c, BinaryOp::Sub, true)),
    ("_RMinusScalar", |c| scalar_op(c, BinaryOp::Sub, true)),
    ("_mul_scalar", |c| scalar_op(c, BinaryOp::Mul, false)),
    ("_MulScalar", |c| scalar_op(c, BinaryOp::Mul, false)),
    ("_div_scalar", |c| scalar_op(c, BinaryOp::Div, false)),
    ("_DivScalar", |c| scalar_op(c, BinaryOp::Div, false)),
    ("_rdiv_scalar", |c| scalar_op(c, BinaryOp::Div, true)),
    ("_RDivScalar", |c| scalar_op(c, BinaryOp::Div, true)),
    ("_power_scalar", |c| scalar_op(c, BinaryOp::Pow, false)),
    ("_PowerScalar", |c| scalar_op(c, BinaryOp::Pow, false)),
    ("_rpower_scalar", |c| scalar_op(c, BinaryOp::Pow, true)),
    ("_RPowerScalar", |c| scalar_op(c, BinaryOp::Pow, true)),
    ("_maximum_scalar", |c| scalar_op(c, BinaryOp::Max, false)),
    ("_MaximumScalar", |c| scalar_op(c, BinaryOp::Max, false)),
    ("_minimum_scalar", |c| scalar_op(c, BinaryOp::Min, false)),
    ("_MinimumScalar", |c| scalar_op(c, BinaryOp::Min, false)),
    ("_mod_scalar", |c| scalar_op(c, BinaryOp::Mod, false)),
    ("_equal_scalar", |c| scalar_compare(c, BinaryOp::Equal, false)),
    ("_not_equal_scalar", |c| scalar_compare(c, BinaryOp::Equal, true)),
    ("_greater_scalar", |c| scalar_compare(c, BinaryOp::Greater, false)),
    ("_greater_equal_scalar", |c| scalar_compare(c, BinaryOp::GreaterOrEqual, false)),
    ("_lesser_scalar", |c| scalar_compare(c, BinaryOp::Less, false)),
    ("_lesser_equal_scalar", |c| scalar_compare(c, BinaryOp::LessOrEqual, false)),
    ("add_n", add_n),
    ("ElementWiseSum", add_n),
    ("clip", clip),
    ("Cast", cast),
    ("cast", cast),
    ("hard_sigmoid", hard_sigmoid),
    ("_contrib_div_sqrt_dim", div_sqrt_dim),
];

pub fn cast_op(to: DType) -> Op {
    Op::Cast(Cast { to, saturate: true, round_mode: "up".into() })
}

/// MXNet dtype names ("float32", "int64", ...).
pub fn dtype_by_name(c: &NodeCtx, name: &str) -> Result<DType> {
    Ok(match name {
        "float32" => DType::F32,
        "float64" => DType::F64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "bool" => DType::Bool,
        "int16" => DType::I16,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        other => return Err(c.error(format!("unknown dtype '{other}'"))),
    })
}

fn unary(c: &mut NodeCtx, op: UnaryOp) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Unary(op), vec![x], 0);
    Ok(())
}

fn binary(c: &mut NodeCtx, op: BinaryOp) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    c.emit_out(Op::Binary(op), vec![a, b], 0);
    Ok(())
}

fn square(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Binary(BinaryOp::Mul), vec![x, x], 0);
    Ok(())
}

fn log2(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let l = c.emit_temp(Op::Unary(UnaryOp::Log), vec![x], "ln");
    let ln2 = c.scalar(dt, std::f64::consts::LN_2, "ln2")?;
    c.emit_out(Op::Binary(BinaryOp::Div), vec![l, ln2], 0);
    Ok(())
}

/// A bool result cast back to `dt`, optionally negated first.
fn bool_out(c: &mut NodeCtx, b: ValueId, negate: bool, dt: DType) {
    let b = if negate { c.emit_temp(Op::Unary(UnaryOp::Not), vec![b], "not") } else { b };
    c.emit_out(cast_op(dt), vec![b], 0);
}

fn compare(c: &mut NodeCtx, op: BinaryOp, negate: bool) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let dt = c.input_dtype(0)?;
    let r = c.emit_temp(Op::Binary(op), vec![a, b], "cmp");
    bool_out(c, r, negate, dt);
    Ok(())
}

fn nonzero(c: &mut NodeCtx, x: ValueId, dt: DType) -> Result<ValueId> {
    let zero = c.scalar(dt, 0.0, "zero")?;
    let z = c.emit_temp(Op::Binary(BinaryOp::Equal), vec![x, zero], "is_zero");
    Ok(c.emit_temp(Op::Unary(UnaryOp::Not), vec![z], "nonzero"))
}

fn logical(c: &mut NodeCtx, op: BinaryOp) -> Result<()> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let dt = c.input_dtype(0)?;
    let a = nonzero(c, a, dt)?;
    let b = nonzero(c, b, dt)?;
    let r = c.emit_temp(Op::Binary(op), vec![a, b], "logical");
    bool_out(c, r, false, dt);
    Ok(())
}

fn logical_not(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let zero = c.scalar(dt, 0.0, "zero")?;
    let z = c.emit_temp(Op::Binary(BinaryOp::Equal), vec![x, zero], "is_zero");
    bool_out(c, z, false, dt);
    Ok(())
}

fn scalar_value(c: &mut NodeCtx) -> Result<ValueId> {
    let dt = c.input_dtype(0)?;
    let v = c.float("scalar", 1.0)?;
    c.scalar(dt, v, "scalar")
}

fn scalar_op(c: &mut NodeCtx, op: BinaryOp, reverse: bool) -> Result<()> {
    let x = c.input(0)?;
    let s = scalar_value(c)?;
    let (a, b) = if reverse { (s, x) } else { (x, s) };
    c.emit_out(Op::Binary(op), vec![a, b], 0);
    Ok(())
}

fn scalar_compare(c: &mut NodeCtx, op: BinaryOp, negate: bool) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let s = scalar_value(c)?;
    let r = c.emit_temp(Op::Binary(op), vec![x, s], "cmp");
    bool_out(c, r, negate, dt);
    Ok(())
}

fn add_n(c: &mut NodeCtx) -> Result<()> {
    let inputs = c.inputs.clone();
    if inputs.is_empty() {
        return Err(c.error("needs at least one input"));
    }
    if inputs.len() == 1 {
        c.emit_out(Op::Identity, vec![inputs[0]], 0);
        return Ok(());
    }
    let mut acc = inputs[0];
    for (k, x) in inputs[1..].iter().enumerate() {
        if k + 2 == inputs.len() {
            c.emit_out(Op::Binary(BinaryOp::Add), vec![acc, *x], 0);
        } else {
            acc = c.emit_temp(Op::Binary(BinaryOp::Add), vec![acc, *x], "partial");
        }
    }
    Ok(())
}

fn clip(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let lo = c.float_opt("a_min")?.ok_or_else(|| c.error("attribute 'a_min' is required"))?;
    let hi = c.float_opt("a_max")?.ok_or_else(|| c.error("attribute 'a_max' is required"))?;
    let lo = c.scalar(dt, lo, "a_min")?;
    let hi = c.scalar(dt, hi, "a_max")?;
    let m = c.emit_temp(Op::Binary(BinaryOp::Max), vec![x, lo], "clipped_low");
    c.emit_out(Op::Binary(BinaryOp::Min), vec![m, hi], 0);
    Ok(())
}

fn cast(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let name = c.attr("dtype").ok_or_else(|| c.error("attribute 'dtype' is required"))?.to_string();
    let to = dtype_by_name(c, &name)?;
    c.emit_out(cast_op(to), vec![x], 0);
    Ok(())
}

/// `max(0, min(1, alpha * x + beta))`
fn hard_sigmoid(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let (alpha, beta) = (c.float("alpha", 0.2)?, c.float("beta", 0.5)?);
    let a = c.scalar(dt, alpha, "alpha")?;
    let b = c.scalar(dt, beta, "beta")?;
    let zero = c.scalar(dt, 0.0, "zero")?;
    let one = c.scalar(dt, 1.0, "one")?;
    let ax = c.emit_temp(Op::Binary(BinaryOp::Mul), vec![x, a], "scaled");
    let axb = c.emit_temp(Op::Binary(BinaryOp::Add), vec![ax, b], "shifted");
    let hi = c.emit_temp(Op::Binary(BinaryOp::Min), vec![axb, one], "clipped_high");
    c.emit_out(Op::Binary(BinaryOp::Max), vec![hi, zero], 0);
    Ok(())
}

/// `x / sqrt(x.shape[-1])`
fn div_sqrt_dim(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let last = c.dims_of(x).and_then(|d| d.last().copied().flatten());
    let last = last.ok_or_else(|| c.error("the last dimension of the input must be known"))?;
    let s = c.scalar(dt, (last as f64).sqrt(), "sqrt_dim")?;
    c.emit_out(Op::Binary(BinaryOp::Div), vec![x, s], 0);
    Ok(())
}
