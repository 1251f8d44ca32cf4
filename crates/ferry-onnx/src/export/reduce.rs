//! Reductions, arg-reductions, top-k, scans, softmax and contractions -> ONNX, choosing each
//! op's form in the target opset (attribute forms of axes/k for older opsets).

use super::ctx::{LowerCtx, LowerResult, attr_i, attr_ints, attr_s};
use crate::proto;
use ferry_ir::DType;
use ferry_ir::ops::ReduceKind;

fn rank(c: &LowerCtx, i: usize) -> Option<usize> {
    c.input_type(i).and_then(|t| t.shape()).map(|s| s.rank())
}

fn dtype(c: &LowerCtx, i: usize) -> Option<DType> {
    c.input_type(i).and_then(|t| t.dtype())
}

/// Before opset 11 axes could not be negative: make them non-negative with the input's rank.
fn fix_axes(c: &LowerCtx, axes: &[i64]) -> Result<Vec<i64>, crate::error::ExportProblem> {
    if c.opset >= 11 || axes.iter().all(|a| *a >= 0) {
        return Ok(axes.to_vec());
    }
    let r = rank(c, 0).ok_or_else(|| c.problem("negative axes of an input of unknown rank", Some(11)))? as i64;
    Ok(axes.iter().map(|a| if *a < 0 { a + r } else { *a }).collect())
}

/// The first version of `op_type` whose type constraint admits `d`, for the ops lowered here
/// (`None`: the earliest does, or ONNX never does and the checker will say so).
fn dtype_since(op_type: &str, d: DType) -> Option<u32> {
    use DType::*;
    Some(match (op_type, d) {
        ("ReduceMax" | "ReduceMin", Bool) => 20,
        ("ReduceMax" | "ReduceMin", I8 | U8) => 12,
        ("TopK", BF16) => 24,
        ("TopK", d) if d.is_int() => 11,
        ("Einsum" | "Unique", BF16) => 28,
        ("CumSum", BF16 | F16) => 14,
        ("MatMul", d) if d.is_int() => 9,
        (_, BF16) => 13,
        _ => return None,
    })
}

/// Fails when the target opset's version of `op_type` does not admit input 0's element type.
fn check_dtype(c: &LowerCtx, op_type: &str) -> LowerResult {
    let Some(d) = dtype(c, 0) else { return Ok(()) };
    match dtype_since(op_type, d) {
        Some(v) if c.op_version(op_type).is_some_and(|have| have < v) => {
            Err(c.problem(format!("{op_type} of {d} needs opset {v}"), Some(v)))
        }
        _ => Ok(()),
    }
}

pub fn reduce_op_type(kind: ReduceKind) -> &'static str {
    match kind {
        ReduceKind::Sum => "ReduceSum",
        ReduceKind::Mean => "ReduceMean",
        ReduceKind::Max => "ReduceMax",
        ReduceKind::Min => "ReduceMin",
        ReduceKind::Prod => "ReduceProd",
        ReduceKind::L1 => "ReduceL1",
        ReduceKind::L2 => "ReduceL2",
        ReduceKind::LogSum => "ReduceLogSum",
        ReduceKind::LogSumExp => "ReduceLogSumExp",
        ReduceKind::SumSquare => "ReduceSumSquare",
    }
}

pub fn reduce(c: &mut LowerCtx, kind: ReduceKind, keepdims: bool, noop_with_empty_axes: bool) -> LowerResult {
    let op_type = reduce_op_type(kind);
    let version = c.require_op(op_type)?;
    check_dtype(c, op_type)?;
    let axes_input_from = if kind == ReduceKind::Sum { 13 } else { 18 };
    let (x, o) = (c.input(0), c.output(0));
    let mut attrs = vec![attr_i("keepdims", keepdims as i64)];
    if version >= axes_input_from {
        if noop_with_empty_axes {
            attrs.push(attr_i("noop_with_empty_axes", 1));
        }
        let axes = c.input(1);
        c.emit(op_type, vec![x, axes], vec![o], attrs);
        return Ok(());
    }
    let axes = if c.has_input(1) {
        let Some(t) = c.const_input(1) else {
            if c.op_version("ReduceSum").is_some_and(|v| v >= 13)
                && via_reduce_sum(c, kind, keepdims, noop_with_empty_axes)?
            {
                return Ok(());
            }
            return Err(c.problem(
                format!("{op_type} with non-constant axes needs opset {axes_input_from}"),
                Some(axes_input_from),
            ));
        };
        t.to_i64_vec().map_err(|e| c.problem(format!("axes: {e}"), None))?
    } else {
        vec![]
    };
    if axes.is_empty() {
        if noop_with_empty_axes {
            c.emit("Identity", vec![x], vec![o], vec![]);
            return Ok(());
        }
    } else {
        attrs.push(attr_ints("axes", &fix_axes(c, &axes)?));
    }
    c.emit(op_type, vec![x], vec![o], attrs);
    Ok(())
}

/// Opsets 13..=17 take non-constant axes only in ReduceSum: write the reductions that are
/// ReduceSum of an elementwise function (then another one) that way. Returns false when `kind`
/// is not one of them.
fn via_reduce_sum(
    c: &mut LowerCtx,
    kind: ReduceKind,
    keepdims: bool,
    noop_with_empty_axes: bool,
) -> Result<bool, crate::error::ExportProblem> {
    let float = dtype(c, 0).filter(|d| d.is_float());
    if !matches!(kind, ReduceKind::L1 | ReduceKind::L2 | ReduceKind::SumSquare | ReduceKind::LogSum | ReduceKind::Mean)
        || (kind == ReduceKind::Mean && float.is_none())
    {
        return Ok(false);
    }
    let (x, axes, o) = (c.input(0), c.input(1), c.output(0));
    let pre = match kind {
        ReduceKind::L1 => Some(c.emit_temp("Abs", vec![x.clone()], vec![], "abs")),
        ReduceKind::L2 | ReduceKind::SumSquare => {
            Some(c.emit_temp("Mul", vec![x.clone(), x.clone()], vec![], "square"))
        }
        _ => None,
    };
    let mut attrs = vec![attr_i("keepdims", keepdims as i64)];
    if noop_with_empty_axes {
        attrs.push(attr_i("noop_with_empty_axes", 1));
    }
    let summed_input = pre.unwrap_or_else(|| x.clone());
    if kind == ReduceKind::SumSquare {
        c.emit("ReduceSum", vec![summed_input, axes], vec![o], attrs);
        return Ok(true);
    }
    let sum = c.emit_temp("ReduceSum", vec![summed_input, axes], attrs, "sum");
    match kind {
        ReduceKind::L1 => c.emit("Identity", vec![sum], vec![o], vec![]),
        ReduceKind::L2 => c.emit("Sqrt", vec![sum], vec![o], vec![]),
        ReduceKind::LogSum => c.emit("Log", vec![sum], vec![o], vec![]),
        _ => {
            // mean = sum / (size(x) / max(size(sum), 1))
            let n_in = c.emit_temp("Size", vec![x], vec![], "size_in");
            let n_out = c.emit_temp("Size", vec![sum.clone()], vec![], "size_out");
            let one = c.constant(&ferry_ir::Tensor::from_i64(vec![], &[1]).expect("scalar"), "one");
            let n_out = c.emit_temp("Max", vec![n_out, one], vec![], "size_out_nonzero");
            let count = c.emit_temp("Div", vec![n_in, n_out], vec![], "count");
            let to = float.expect("checked").onnx_code() as i64;
            let count = c.emit_temp("Cast", vec![count], vec![attr_i("to", to)], "count_t");
            c.emit("Div", vec![sum, count], vec![o], vec![]);
        }
    }
    Ok(true)
}

pub fn arg_reduce(c: &mut LowerCtx, max: bool, axis: i64, keepdims: bool, select_last_index: bool) -> LowerResult {
    let op_type = if max { "ArgMax" } else { "ArgMin" };
    c.require_op(op_type)?;
    check_dtype(c, op_type)?;
    let mut attrs = vec![attr_i("axis", fix_axes(c, &[axis])?[0]), attr_i("keepdims", keepdims as i64)];
    if select_last_index {
        c.require_opset(12, &format!("{op_type} with select_last_index=1"))?;
        attrs.push(attr_i("select_last_index", 1));
    }
    let (x, o) = (c.input(0), c.output(0));
    c.emit(op_type, vec![x], vec![o], attrs);
    Ok(())
}

pub fn top_k(c: &mut LowerCtx, axis: i64, largest: bool, sorted: bool) -> LowerResult {
    let version = c.require_op("TopK")?;
    check_dtype(c, "TopK")?;
    let (x, k, outs) = (c.input(0), c.input(1), c.outputs());
    if version >= 11 {
        let attrs = vec![attr_i("axis", axis), attr_i("largest", largest as i64), attr_i("sorted", sorted as i64)];
        c.emit("TopK", vec![x, k], outs, attrs);
        return Ok(());
    }
    if !largest {
        return Err(c.problem("TopK with largest=0 needs opset 11", Some(11)));
    }
    // sorted=0 leaves the order unspecified: the sorted order older TopK gives is one of them.
    let mut attrs = vec![attr_i("axis", fix_axes(c, &[axis])?[0])];
    if version >= 10 {
        c.emit("TopK", vec![x, k], outs, attrs);
        return Ok(());
    }
    let kv = c
        .const_input(1)
        .and_then(|t| t.to_i64_vec().ok())
        .filter(|v| v.len() == 1)
        .ok_or_else(|| c.problem("TopK with a non-constant k needs opset 10", Some(10)))?;
    attrs.push(attr_i("k", kv[0]));
    c.emit("TopK", vec![x], outs, attrs);
    Ok(())
}

pub fn cum_sum(c: &mut LowerCtx, exclusive: bool, reverse: bool) -> LowerResult {
    c.require_op("CumSum")?;
    check_dtype(c, "CumSum")?;
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("CumSum", inputs, vec![o], vec![attr_i("exclusive", exclusive as i64), attr_i("reverse", reverse as i64)]);
    Ok(())
}

/// Softmax/LogSoftmax along one axis. Before opset 13 the ONNX op works on the input coerced to
/// 2-D at `axis`, which is the same thing only for the last axis: other axes are transposed there.
pub fn softmax(c: &mut LowerCtx, log: bool, axis: i64) -> LowerResult {
    let op_type = if log { "LogSoftmax" } else { "Softmax" };
    let version = c.require_op(op_type)?;
    check_dtype(c, op_type)?;
    let (x, o) = (c.input(0), c.output(0));
    if version >= 13 {
        c.emit(op_type, vec![x], vec![o], vec![attr_i("axis", axis)]);
        return Ok(());
    }
    let r = rank(c, 0);
    let a = match r {
        Some(r) => {
            let a = if axis < 0 { axis + r as i64 } else { axis };
            if a < 0 || a >= r as i64 {
                return Err(c.problem(format!("axis {axis} out of range for rank {r}"), None));
            }
            a
        }
        None if axis == -1 && c.opset >= 11 => {
            c.emit(op_type, vec![x], vec![o], vec![attr_i("axis", -1)]);
            return Ok(());
        }
        None => {
            return Err(c.problem(format!("{op_type} along axis {axis} of an input of unknown rank"), Some(13)));
        }
    };
    let r = r.expect("known here") as i64;
    if a == r - 1 {
        c.emit(op_type, vec![x], vec![o], vec![attr_i("axis", a)]);
        return Ok(());
    }
    // Swap the axis with the last one, work along the last, swap back.
    let mut perm: Vec<i64> = (0..r).collect();
    perm.swap(a as usize, (r - 1) as usize);
    let t = c.emit_temp("Transpose", vec![x], vec![attr_ints("perm", &perm)], "axis_last");
    let s = c.emit_temp(op_type, vec![t], vec![attr_i("axis", r - 1)], "result_axis_last");
    c.emit("Transpose", vec![s], vec![o], vec![attr_ints("perm", &perm)]);
    Ok(())
}

pub fn unique(c: &mut LowerCtx, axis: Option<i64>, sorted: bool) -> LowerResult {
    c.require_op("Unique")?;
    check_dtype(c, "Unique")?;
    let mut attrs = vec![attr_i("sorted", sorted as i64)];
    if let Some(a) = axis {
        attrs.push(attr_i("axis", a));
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("Unique", inputs, outputs, attrs);
    Ok(())
}

pub fn matmul(c: &mut LowerCtx) -> LowerResult {
    c.require_op("MatMul")?;
    check_dtype(c, "MatMul")?;
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("MatMul", inputs, vec![o], vec![]);
    Ok(())
}

pub fn matmul_integer(c: &mut LowerCtx) -> LowerResult {
    c.require_op("MatMulInteger")?;
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("MatMulInteger", inputs, vec![o], vec![]);
    Ok(())
}

pub fn einsum(c: &mut LowerCtx, equation: &str) -> LowerResult {
    c.require_op("Einsum")?;
    check_dtype(c, "Einsum")?;
    let (inputs, o) = (c.inputs(), c.output(0));
    let attrs: Vec<proto::AttributeProto> = vec![attr_s("equation", equation)];
    c.emit("Einsum", inputs, vec![o], attrs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::export::{ExportOptions, export_model};
    use crate::proto;
    use ferry_ir::ops::ReduceKind;
    use ferry_ir::{DType, Graph, Model, Node, Op, Shape, Tensor, ValueType};

    /// One-node model over a float input of shape `dims`, plus optional constant i64 axes.
    fn model(op: Op, dims: &[u64], axes: Option<&[i64]>) -> Model {
        let mut g = Graph::default();
        let x = g.add_value("x", ValueType::tensor(DType::F32, Shape::known(dims)));
        let y = g.add_value("y", ValueType::Unknown);
        g.inputs.push(x);
        g.outputs.push(y);
        let mut inputs = vec![Some(x)];
        if let Some(a) = axes {
            let av = g.add_value("axes", ValueType::Unknown);
            g.initializers.push((av, Tensor::from_i64(vec![a.len() as u64], a).unwrap()));
            inputs.push(Some(av));
        }
        g.nodes.push(Node { name: "n".into(), op, inputs, outputs: vec![Some(y)], doc_string: String::new() });
        Model { graph: g, meta: Default::default() }
    }

    fn nodes(m: &Model, opset: u32) -> Vec<proto::NodeProto> {
        export_model(m, &ExportOptions { opset: Some(opset) }).unwrap().graph.unwrap().node
    }

    fn ints(n: &proto::NodeProto, name: &str) -> Option<Vec<i64>> {
        n.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .map(|a| if a.ints.is_empty() { a.i.into_iter().collect() } else { a.ints.clone() })
    }

    #[test]
    fn softmax_before_13_moves_a_middle_axis_last() {
        // Softmax-1..12 normalize over the input coerced to 2-D at `axis`: only the last axis
        // means the same as Softmax-13's single axis.
        let m = model(Op::Softmax { axis: 1 }, &[2, 3, 4], None);
        let n = nodes(&m, 11);
        let ops: Vec<_> = n.iter().map(|n| n.op_type.clone().unwrap()).collect();
        assert_eq!(ops, ["Transpose", "Softmax", "Transpose"]);
        assert_eq!(ints(&n[0], "perm"), Some(vec![0, 2, 1]));
        assert_eq!(ints(&n[1], "axis"), Some(vec![2]));
        let n = nodes(&m, 13);
        assert_eq!(n.len(), 1);
        assert_eq!(ints(&n[0], "axis"), Some(vec![1]));
        let last = model(Op::LogSoftmax { axis: -1 }, &[2, 3, 4], None);
        let n = nodes(&last, 9);
        assert_eq!(n.len(), 1);
        assert_eq!(ints(&n[0], "axis"), Some(vec![2]));
    }

    #[test]
    fn reduce_axes_become_an_attribute_before_18() {
        let op = Op::Reduce { kind: ReduceKind::Mean, keepdims: false, noop_with_empty_axes: false };
        let m = model(op, &[2, 3, 4], Some(&[-1, 0]));
        let n = nodes(&m, 18);
        assert_eq!(n.last().unwrap().input.len(), 2);
        let n = nodes(&m, 13);
        let r = n.iter().find(|n| n.op_type.as_deref() == Some("ReduceMean")).unwrap();
        assert_eq!(r.input.len(), 1);
        assert_eq!(ints(r, "axes"), Some(vec![-1, 0]));
        // Negative axes exist from opset 11.
        let n = nodes(&m, 10);
        let r = n.iter().find(|n| n.op_type.as_deref() == Some("ReduceMean")).unwrap();
        assert_eq!(ints(r, "axes"), Some(vec![2, 0]));
    }

    #[test]
    fn reduce_noop_with_empty_axes_is_identity_before_it_existed() {
        let op = Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: true };
        let m = model(op, &[2, 3], None);
        let n = nodes(&m, 11);
        assert_eq!(n.iter().map(|n| n.op_type.clone().unwrap()).collect::<Vec<_>>(), ["Identity"]);
        let n = nodes(&m, 13);
        assert_eq!(ints(&n[0], "noop_with_empty_axes"), Some(vec![1]));
    }
}
