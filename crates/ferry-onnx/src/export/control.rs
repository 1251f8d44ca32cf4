//! Control flow, sequences, optionals and random sources -> ONNX. Bodies are written with
//! `c.subgraph`, so their ops are lowered at the same target opset.

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_graph, attr_i, attr_ints, sizes};
use crate::proto::{self, attribute_proto::AttributeType};
use crate::types::type_to_proto;
use ferry_ir::ops::Scan;
use ferry_ir::{DType, Graph, Shape, ValueType};

/// The first opset whose If/Loop (`scan`: Scan) accepts values of type `ty`; `None` if none does.
fn control_flow_min_opset(ty: &ValueType, scan: bool) -> Option<u32> {
    use DType::*;
    match ty {
        ValueType::Unknown => Some(1),
        ValueType::Tensor { dtype, .. } => match dtype {
            None => Some(1),
            Some(BF16) => Some(16),
            Some(F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ) => Some(19),
            Some(U4 | I4) => Some(21),
            Some(F4E2M1) => Some(23),
            Some(F8E8M0) => Some(24),
            Some(U2 | I2) => Some(25),
            Some(F6E2M3 | F6E3M2) => None,
            Some(_) => Some(1),
        },
        ValueType::Sequence(e) if !scan => control_flow_min_opset(e, scan).map(|v| v.max(13)),
        ValueType::Optional(e) if !scan => control_flow_min_opset(e, scan).map(|v| v.max(16)),
        _ => None,
    }
}

/// Fails unless every value the node passes in or out has a type `op_type` accepts at the target.
fn check_control_flow_types(c: &LowerCtx, op_type: &str, skip_inputs: usize) -> LowerResult {
    let scan = op_type == "Scan";
    let node = c.node;
    let values = node.inputs.iter().skip(skip_inputs).chain(&node.outputs).flatten();
    for v in values {
        let ty = &c.graph.values[*v].ty;
        match control_flow_min_opset(ty, scan) {
            Some(min) if min <= c.opset => {}
            Some(min) => {
                return Err(c.problem(
                    format!("{op_type} carries '{}' of type {ty} only from opset {min}", c.graph.values[*v].name),
                    Some(min),
                ));
            }
            None => {
                return Err(
                    c.problem(format!("no ONNX {op_type} carries '{}' of type {ty}", c.graph.values[*v].name), None)
                );
            }
        }
    }
    Ok(())
}

pub fn if_(c: &mut LowerCtx, then_branch: &Graph, else_branch: &Graph) -> LowerResult {
    c.require_op("If")?;
    check_control_flow_types(c, "If", 1)?;
    let then_g = c.subgraph(then_branch);
    let else_g = c.subgraph(else_branch);
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("If", inputs, outputs, vec![attr_graph("else_branch", else_g), attr_graph("then_branch", then_g)]);
    Ok(())
}

pub fn loop_(c: &mut LowerCtx, body: &Graph) -> LowerResult {
    c.require_op("Loop")?;
    check_control_flow_types(c, "Loop", 2)?;
    let g = c.subgraph(body);
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("Loop", inputs, outputs, vec![attr_graph("body", g)]);
    Ok(())
}

fn rank_of(ty: Option<&ValueType>) -> Option<usize> {
    ty.and_then(|t| t.shape()).map(Shape::rank)
}

pub fn scan(c: &mut LowerCtx, s: &Scan) -> LowerResult {
    let version = c.require_op("Scan")?;
    check_control_flow_types(c, "Scan", 0)?;
    let m = s.num_scan_inputs as usize;
    let n = c.node.inputs.len().saturating_sub(m);
    // Negative axes exist from Scan-11; before, make them non-negative from known ranks.
    let mut in_axes = s.scan_input_axes.clone();
    let mut out_axes = s.scan_output_axes.clone();
    if version < 11 {
        for (j, a) in in_axes.iter_mut().enumerate() {
            if *a < 0 {
                let r = rank_of(c.input_type(n + j))
                    .ok_or_else(|| c.problem("negative scan_input_axes need Scan-11 (input rank unknown)", Some(11)))?;
                *a += r as i64;
            }
        }
        for (k, a) in out_axes.iter_mut().enumerate() {
            if *a < 0 {
                let r = rank_of(s.body.outputs.get(n + k).map(|o| &s.body.values[*o].ty)).ok_or_else(|| {
                    c.problem("negative scan_output_axes need Scan-11 (body output rank unknown)", Some(11))
                })?;
                *a += r as i64 + 1;
            }
        }
    }
    let dirs = |v: &[bool]| v.iter().map(|r| *r as i64).collect::<Vec<_>>();
    if version >= 9 {
        let g = c.subgraph(&s.body);
        let mut attrs = vec![attr_graph("body", g), attr_i("num_scan_inputs", m as i64)];
        if in_axes.iter().any(|a| *a != 0) {
            attrs.push(attr_ints("scan_input_axes", &in_axes));
        }
        if s.scan_input_reverse.iter().any(|r| *r) {
            attrs.push(attr_ints("scan_input_directions", &dirs(&s.scan_input_reverse)));
        }
        if out_axes.iter().any(|a| *a != 0) {
            attrs.push(attr_ints("scan_output_axes", &out_axes));
        }
        if s.scan_output_reverse.iter().any(|r| *r) {
            attrs.push(attr_ints("scan_output_directions", &dirs(&s.scan_output_reverse)));
        }
        let (inputs, outputs) = (c.inputs(), c.outputs());
        c.emit("Scan", inputs, outputs, attrs);
        return Ok(());
    }
    // Scan-8 scans axis 1 of [batch, sequence, ...] inputs: add a batch axis of 1 around it.
    if in_axes.iter().chain(&out_axes).any(|a| *a != 0) || s.scan_output_reverse.iter().any(|r| *r) {
        return Err(c.problem("Scan-8 scans only axis 0 of each element and writes outputs forward", Some(9)));
    }
    let mut inputs = vec![String::new()];
    for i in 0..c.node.inputs.len() {
        let name = c.input(i);
        if name.is_empty() {
            return Err(c.problem("Scan state and scan inputs are required", None));
        }
        inputs.push(c.emit_temp("Unsqueeze", vec![name], vec![attr_ints("axes", &[0])], "batched"));
    }
    let g = c.subgraph(&s.body);
    let mut attrs = vec![attr_graph("body", g), attr_i("num_scan_inputs", m as i64)];
    if s.scan_input_reverse.iter().any(|r| *r) {
        attrs.push(attr_ints("directions", &dirs(&s.scan_input_reverse)));
    }
    let outputs: Vec<String> = c.outputs();
    let batched: Vec<String> = outputs.iter().map(|_| c.temp("batched_out")).collect();
    c.emit("Scan", inputs, batched.clone(), attrs);
    for (b, o) in batched.into_iter().zip(outputs) {
        if !o.is_empty() {
            c.emit("Squeeze", vec![b], vec![o], vec![attr_ints("axes", &[0])]);
        }
    }
    Ok(())
}

/// Sequence ops exist from opset 11 in one form each (later versions only add element types).
pub fn sequence_op(c: &mut LowerCtx, op_type: &str, attrs: Vec<proto::AttributeProto>) -> LowerResult {
    c.require_op(op_type)?;
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit(op_type, inputs, outputs, attrs);
    Ok(())
}

pub fn sequence_empty(c: &mut LowerCtx, dtype: DType) -> LowerResult {
    sequence_op(c, "SequenceEmpty", vec![attr_i("dtype", dtype.onnx_code() as i64)])
}

pub fn split_to_sequence(c: &mut LowerCtx, axis: i64, keepdims: bool) -> LowerResult {
    sequence_op(c, "SplitToSequence", vec![attr_i("axis", axis), attr_i("keepdims", keepdims as i64)])
}

pub fn concat_from_sequence(c: &mut LowerCtx, axis: i64, new_axis: bool) -> LowerResult {
    sequence_op(c, "ConcatFromSequence", vec![attr_i("axis", axis), attr_i("new_axis", new_axis as i64)])
}

fn attr_type(name: &str, t: &ValueType) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::TypeProto as i32),
        tp: type_to_proto(t).map(Box::new),
        ..Default::default()
    }
}

pub fn optional_construct(c: &mut LowerCtx, ty: &Option<ValueType>) -> LowerResult {
    c.require_op("Optional")?;
    let attrs = ty.iter().map(|t| attr_type("type", t)).collect();
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("Optional", inputs, outputs, attrs);
    Ok(())
}

fn is_optional(c: &LowerCtx, i: usize) -> bool {
    matches!(c.input_type(i), Some(ValueType::Optional(_)))
}

/// Whether the input is known not to be an optional (a tensor or a sequence).
fn is_plain(c: &LowerCtx, i: usize) -> bool {
    matches!(c.input_type(i), Some(ValueType::Tensor { .. } | ValueType::Sequence(_)))
}

/// A bool scalar constant as output 0 (Constant takes bool from opset 9; before, cast a float).
fn bool_constant(c: &mut LowerCtx, v: bool) -> LowerResult {
    let out = c.output(0);
    if c.opset >= 9 {
        let t = ferry_ir::Tensor::from_raw(DType::Bool, vec![], bytes::Bytes::from(vec![v as u8])).expect("bool");
        c.emit("Constant", vec![], vec![out], vec![super::ctx::attr_tensor("value", &t)]);
    } else {
        c.require_opset(6, "a bool constant")?;
        let f = c.constant(&ferry_ir::Tensor::scalar_f32(v as u8 as f32), "value");
        c.emit("Cast", vec![f], vec![out], vec![attr_i("to", DType::Bool.onnx_code() as i64)]);
    }
    Ok(())
}

/// OptionalHasElement-18 also takes tensors and sequences (always present) and no input at all
/// (absent); older targets get the constant answer for those.
pub fn optional_has_element(c: &mut LowerCtx) -> LowerResult {
    let version = c.op_version("OptionalHasElement");
    if version.is_some_and(|v| v >= 18) || (version.is_some() && is_optional(c, 0)) {
        let (inputs, outputs) = (c.inputs(), c.outputs());
        c.emit("OptionalHasElement", inputs, outputs, vec![]);
        return Ok(());
    }
    if !c.has_input(0) {
        return bool_constant(c, false);
    }
    if is_plain(c, 0) {
        return bool_constant(c, true);
    }
    Err(c.problem("optional values need opset 15", Some(15)))
}

/// OptionalGetElement-18 also takes tensors and sequences, where it is the identity.
pub fn optional_get_element(c: &mut LowerCtx) -> LowerResult {
    let version = c.op_version("OptionalGetElement");
    if version.is_some_and(|v| v >= 18) || (version.is_some() && is_optional(c, 0)) {
        let (inputs, outputs) = (c.inputs(), c.outputs());
        c.emit("OptionalGetElement", inputs, outputs, vec![]);
        return Ok(());
    }
    let (input, output) = (c.input(0), c.output(0));
    match c.input_type(0) {
        Some(ValueType::Tensor { .. }) => {
            c.emit("Identity", vec![input], vec![output], vec![]);
            Ok(())
        }
        Some(ValueType::Sequence(_)) if c.opset >= 14 => {
            c.emit("Identity", vec![input], vec![output], vec![]);
            Ok(())
        }
        Some(seq @ ValueType::Sequence(_)) if c.opset >= 13 => {
            // Identity-13 takes no sequences; a Loop of zero iterations passes one through.
            let seq = seq.clone();
            let body = loop_passthrough_body(c, &seq);
            let zero = c.constant(&ferry_ir::Tensor::scalar_i64(0), "zero_trips");
            c.emit("Loop", vec![zero, String::new(), input], vec![output], vec![attr_graph("body", body)]);
            Ok(())
        }
        Some(ValueType::Sequence(_)) => Err(c.problem("passing a sequence through needs opset 13", Some(13))),
        _ => Err(c.problem("optional values need opset 15", Some(15))),
    }
}

fn loop_passthrough_body(c: &mut LowerCtx, seq: &ValueType) -> proto::GraphProto {
    let vi = |name: String, ty: &ValueType| proto::ValueInfoProto {
        name: Some(name),
        r#type: type_to_proto(ty),
        ..Default::default()
    };
    let (i, cond, s) = (c.temp("iter"), c.temp("cond"), c.temp("seq"));
    proto::GraphProto {
        name: Some(c.temp("passthrough")),
        input: vec![
            vi(i, &ValueType::tensor(DType::I64, Shape::scalar())),
            vi(cond.clone(), &ValueType::tensor(DType::Bool, Shape::scalar())),
            vi(s.clone(), seq),
        ],
        output: vec![vi(cond, &ValueType::tensor(DType::Bool, Shape::scalar())), vi(s, seq)],
        ..Default::default()
    }
}

pub fn random(
    c: &mut LowerCtx,
    normal: bool,
    shape: &Option<Vec<u64>>,
    dtype: DType,
    params: (f32, f32),
    seed: Option<f32>,
) -> LowerResult {
    let base = if normal { "RandomNormal" } else { "RandomUniform" };
    let op_type = if shape.is_some() { base.to_string() } else { format!("{base}Like") };
    c.require_op(&op_type)?;
    match dtype {
        DType::F16 | DType::F32 | DType::F64 => {}
        DType::BF16 => c.require_opset(22, &format!("{op_type} of bfloat16"))?,
        d => return Err(c.problem(format!("{op_type} cannot produce {d}"), None)),
    }
    let (p, q) = if normal { ("mean", "scale") } else { ("low", "high") };
    let mut attrs = vec![attr_i("dtype", dtype.onnx_code() as i64), attr_f(p, params.0), attr_f(q, params.1)];
    if let Some(s) = seed {
        attrs.push(attr_f("seed", s));
    }
    if let Some(s) = shape {
        attrs.push(attr_ints("shape", &sizes(s)));
    }
    let (inputs, outputs) = (if shape.is_some() { vec![] } else { vec![c.input(0)] }, c.outputs());
    c.emit(&op_type, inputs, outputs, attrs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_flow_type_opsets() {
        let t = |d| ValueType::Tensor { dtype: Some(d), shape: None };
        assert_eq!(control_flow_min_opset(&t(DType::F32), false), Some(1));
        assert_eq!(control_flow_min_opset(&t(DType::BF16), false), Some(16));
        assert_eq!(control_flow_min_opset(&ValueType::Sequence(Box::new(t(DType::F32))), false), Some(13));
        assert_eq!(control_flow_min_opset(&ValueType::Sequence(Box::new(t(DType::F32))), true), None);
        let opt_seq = ValueType::Optional(Box::new(ValueType::Sequence(Box::new(t(DType::I4)))));
        assert_eq!(control_flow_min_opset(&opt_seq, false), Some(21));
        assert_eq!(control_flow_min_opset(&t(DType::F6E2M3), false), None);
    }
}
