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
    if matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        match dtype(c, 0) {
            Some(DType::Bool) => c.require_opset(20, &format!("{op_type} of bool"))?,
            Some(DType::I8 | DType::U8) => c.require_opset(12, &format!("{op_type} of 8-bit integers"))?,
            _ => {}
        }
    }
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
        let t = c.const_input(1).ok_or_else(|| {
            c.problem(format!("{op_type} with non-constant axes needs opset {axes_input_from}"), Some(axes_input_from))
        })?;
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

pub fn arg_reduce(c: &mut LowerCtx, max: bool, axis: i64, keepdims: bool, select_last_index: bool) -> LowerResult {
    let op_type = if max { "ArgMax" } else { "ArgMin" };
    c.require_op(op_type)?;
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
    let (x, k, outs) = (c.input(0), c.input(1), c.outputs());
    if version >= 11 {
        let attrs = vec![attr_i("axis", axis), attr_i("largest", largest as i64), attr_i("sorted", sorted as i64)];
        c.emit("TopK", vec![x, k], outs, attrs);
        return Ok(());
    }
    if !largest {
        return Err(c.problem("TopK with largest=0 needs opset 11", Some(11)));
    }
    if dtype(c, 0).is_some_and(|d| !d.is_float()) {
        return Err(c.problem("TopK of integers needs opset 11", Some(11)));
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
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("CumSum", inputs, vec![o], vec![attr_i("exclusive", exclusive as i64), attr_i("reverse", reverse as i64)]);
    Ok(())
}

/// Softmax/LogSoftmax along one axis. Before opset 13 the ONNX op works on the input coerced to
/// 2-D at `axis`, which is the same thing only for the last axis: other axes are transposed there.
pub fn softmax(c: &mut LowerCtx, log: bool, axis: i64) -> LowerResult {
    let op_type = if log { "LogSoftmax" } else { "Softmax" };
    let version = c.require_op(op_type)?;
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
    let mut attrs = vec![attr_i("sorted", sorted as i64)];
    if let Some(a) = axis {
        attrs.push(attr_i("axis", a));
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("Unique", inputs, outputs, attrs);
    Ok(())
}

pub fn matmul(c: &mut LowerCtx) -> LowerResult {
    let version = c.require_op("MatMul")?;
    if version < 9 && dtype(c, 0).is_some_and(|d| !d.is_float()) {
        return Err(c.problem("MatMul of integers needs opset 9", Some(9)));
    }
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
    let (inputs, o) = (c.inputs(), c.output(0));
    let attrs: Vec<proto::AttributeProto> = vec![attr_s("equation", equation)];
    c.emit("Einsum", inputs, vec![o], attrs);
    Ok(())
}
