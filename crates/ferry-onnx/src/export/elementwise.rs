//! Elementwise core ops -> ONNX, choosing each op's form in the target opset.

use super::ctx::{LowerCtx, LowerResult, attr_i, attr_s};
use ferry_ir::ops::{BinaryOp, Cast, UnaryOp};
use ferry_ir::{DType, Shape};

pub fn unary_op_type(u: UnaryOp) -> &'static str {
    use UnaryOp::*;
    match u {
        Abs => "Abs",
        Neg => "Neg",
        Floor => "Floor",
        Ceil => "Ceil",
        Round => "Round",
        Sqrt => "Sqrt",
        Reciprocal => "Reciprocal",
        Exp => "Exp",
        Log => "Log",
        Sin => "Sin",
        Cos => "Cos",
        Tan => "Tan",
        Asin => "Asin",
        Acos => "Acos",
        Atan => "Atan",
        Sinh => "Sinh",
        Cosh => "Cosh",
        Tanh => "Tanh",
        Asinh => "Asinh",
        Acosh => "Acosh",
        Atanh => "Atanh",
        Sigmoid => "Sigmoid",
        Erf => "Erf",
        Sign => "Sign",
        Not => "Not",
        BitwiseNot => "BitwiseNot",
        IsNaN => "IsNaN",
        Relu => "Relu",
        Softplus => "Softplus",
    }
}

pub fn unary(c: &mut LowerCtx, u: UnaryOp) -> LowerResult {
    let op_type = unary_op_type(u);
    c.require_op(op_type)?;
    let (i, o) = (c.input(0), c.output(0));
    c.emit(op_type, vec![i], vec![o], vec![]);
    Ok(())
}

pub fn identity(c: &mut LowerCtx) -> LowerResult {
    let (i, o) = (c.input(0), c.output(0));
    c.emit("Identity", vec![i], vec![o], vec![]);
    Ok(())
}

/// Before opset 7 an op broadcast only when told (`broadcast=1`), and only B to a suffix of A.
fn legacy_broadcast(c: &LowerCtx) -> Result<Vec<crate::proto::AttributeProto>, ferry_ir::ops::Op> {
    let shape = |i| c.input_type(i).and_then(|t| t.shape()).cloned();
    match (shape(0), shape(1)) {
        (Some(a), Some(b)) if a == b => Ok(vec![]),
        (Some(a), Some(b)) if b.rank() <= a.rank() && suffix_matches(&a, &b) => Ok(vec![attr_i("broadcast", 1)]),
        _ => Err(c.node.op.clone()),
    }
}

fn suffix_matches(a: &Shape, b: &Shape) -> bool {
    let off = a.rank() - b.rank();
    b.0.iter()
        .enumerate()
        .all(|(i, d)| *d == a.0[off + i] || *d == ferry_ir::Dim::Known(1) && b.rank() == 1 && b.0.len() == 1)
}

pub fn binary(c: &mut LowerCtx, b: BinaryOp) -> LowerResult {
    use BinaryOp::*;
    let (x, y, o) = (c.input(0), c.input(1), c.output(0));
    let (op_type, attrs): (&str, Vec<_>) = match b {
        Add => ("Add", vec![]),
        Sub => ("Sub", vec![]),
        Mul => ("Mul", vec![]),
        Div => ("Div", vec![]),
        Pow => ("Pow", vec![]),
        And => ("And", vec![]),
        Or => ("Or", vec![]),
        Xor => ("Xor", vec![]),
        Equal => ("Equal", vec![]),
        Less => ("Less", vec![]),
        Greater => ("Greater", vec![]),
        Min => ("Min", vec![]),
        Max => ("Max", vec![]),
        BitAnd => ("BitwiseAnd", vec![]),
        BitOr => ("BitwiseOr", vec![]),
        BitXor => ("BitwiseXor", vec![]),
        Mod => ("Mod", vec![attr_i("fmod", 0)]),
        Fmod => ("Mod", vec![attr_i("fmod", 1)]),
        ShiftLeft => ("BitShift", vec![attr_s("direction", "LEFT")]),
        ShiftRight => ("BitShift", vec![attr_s("direction", "RIGHT")]),
        LessOrEqual | GreaterOrEqual => {
            let name = if b == LessOrEqual { "LessOrEqual" } else { "GreaterOrEqual" };
            if c.op_version(name).is_some() {
                c.emit(name, vec![x, y], vec![o], vec![]);
                return Ok(());
            }
            // Older opsets: (x < y) or (x == y).
            c.require_opset(7, "broadcasting comparisons")?;
            let strict = c.emit_temp(
                if b == LessOrEqual { "Less" } else { "Greater" },
                vec![x.clone(), y.clone()],
                vec![],
                "strict",
            );
            let eq = c.emit_temp("Equal", vec![x, y], vec![], "equal");
            c.emit("Or", vec![strict, eq], vec![o], vec![]);
            return Ok(());
        }
    };
    c.require_op(op_type)?;
    let mut attrs = attrs;
    let numpy_broadcast_from = if matches!(b, Min | Max) { 8 } else { 7 };
    if c.opset < numpy_broadcast_from {
        match legacy_broadcast(c) {
            Ok(extra) if matches!(b, Min | Max) && !extra.is_empty() => {
                return Err(c.problem("Min/Max broadcast only from opset 8", Some(8)));
            }
            Ok(extra) => attrs.extend(extra),
            Err(_) => {
                return Err(c.problem(
                    format!("numpy-style broadcasting (or unknown shapes) needs opset {numpy_broadcast_from}"),
                    Some(numpy_broadcast_from),
                ));
            }
        }
    }
    c.emit(op_type, vec![x, y], vec![o], attrs);
    Ok(())
}

pub fn where_(c: &mut LowerCtx) -> LowerResult {
    c.require_op("Where")?;
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("Where", inputs, vec![o], vec![]);
    Ok(())
}

pub fn is_inf(c: &mut LowerCtx, neg: bool, pos: bool) -> LowerResult {
    c.require_op("IsInf")?;
    let (i, o) = (c.input(0), c.output(0));
    c.emit(
        "IsInf",
        vec![i],
        vec![o],
        vec![attr_i("detect_negative", neg as i64), attr_i("detect_positive", pos as i64)],
    );
    Ok(())
}

fn is_float8(d: DType) -> bool {
    matches!(d, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0)
}

pub fn cast(c: &mut LowerCtx, cast: &Cast) -> LowerResult {
    let (i, o) = (c.input(0), c.output(0));
    let version = c.require_op("Cast")?;
    let mut attrs = Vec::new();
    if version == 1 {
        let name = crate::proto::tensor_proto::DataType::try_from(cast.to.onnx_code())
            .map(|d| d.as_str_name())
            .map_err(|_| c.problem(format!("Cast-1 cannot name {}", cast.to), Some(6)))?;
        attrs.push(attr_s("to", name));
    } else {
        attrs.push(attr_i("to", cast.to.onnx_code() as i64));
    }
    if !cast.saturate && is_float8(cast.to) {
        c.require_opset(19, "Cast with saturate=0")?;
        attrs.push(attr_i("saturate", 0));
    }
    if cast.round_mode != "up" {
        let has_round_mode = crate::schemas::resolve("", "Cast", c.opset)
            .is_some_and(|s| s.attributes.iter().any(|(n, _)| *n == "round_mode"));
        if !has_round_mode {
            let min = crate::schemas::versions("", "Cast")
                .find(|s| s.attributes.iter().any(|(n, _)| *n == "round_mode"))
                .map(|s| s.since_version);
            return Err(c.problem(format!("Cast with round_mode '{}'", cast.round_mode), min));
        }
        attrs.push(attr_s("round_mode", &cast.round_mode));
    }
    c.emit("Cast", vec![i], vec![o], attrs);
    Ok(())
}
