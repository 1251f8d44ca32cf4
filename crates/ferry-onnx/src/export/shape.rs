//! Layout, indexing and source core ops -> ONNX. Parameter inputs (axes, pads, shapes, split
//! sizes) are folded into attributes for opsets whose op version takes them that way; where the
//! input is not constant the lowering names the first opset that can take it as an input.

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_i, attr_ints, attr_s, attr_tensor};
use crate::proto;
use ferry_ir::ops::{PadMode, ScatterReduction};
use ferry_ir::{DType, Tensor};

fn const_ints(c: &LowerCtx, i: usize) -> Option<Vec<i64>> {
    c.const_input(i).and_then(|t| t.to_i64_vec().ok())
}

fn rank(c: &LowerCtx, i: usize) -> Option<usize> {
    c.input_type(i).and_then(|t| t.shape()).map(|s| s.rank())
}

/// A constant parameter input for an opset that takes it as an attribute.
fn folded(c: &LowerCtx, i: usize, what: &str, input_from: u32) -> Result<Vec<i64>, crate::error::ExportProblem> {
    const_ints(c, i).ok_or_else(|| {
        c.problem(
            format!("{what} is not a constant; it can be an input only from opset {input_from}"),
            Some(input_from),
        )
    })
}

/// Before opset 11 most axis attributes had to be non-negative: resolve negative ones against
/// `rank` (the rank the axis counts in).
fn axis_for_opset(c: &LowerCtx, axis: i64, rank: Option<usize>) -> Result<i64, crate::error::ExportProblem> {
    if axis >= 0 || c.opset >= 11 {
        return Ok(axis);
    }
    match rank {
        Some(r) if axis + r as i64 >= 0 => Ok(axis + r as i64),
        _ => Err(c.problem(format!("negative axis {axis} with unknown rank needs opset 11"), Some(11))),
    }
}

fn axes_for_opset(c: &LowerCtx, axes: &[i64], rank: Option<usize>) -> Result<Vec<i64>, crate::error::ExportProblem> {
    axes.iter().map(|a| axis_for_opset(c, *a, rank)).collect()
}

/// The first opset at which `op_type`'s main tensor type admits `d` (`None`: none does), for the
/// element types whose support was added after the op itself.
fn dtype_min_opset(op_type: &str, d: DType) -> Option<u32> {
    use DType::*;
    let f8 = matches!(d, F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ);
    let exotic = f8 || matches!(d, U4 | I4 | F4E2M1 | F8E8M0 | U2 | I2 | F6E2M3 | F6E3M2);
    let non_numeric = matches!(d, String | Bool | C64 | C128);
    match op_type {
        "Shape" | "Size" | "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" | "Flatten" | "Pad" => Some(match d {
            BF16 => 13,
            _ if f8 => {
                if matches!(op_type, "Shape" | "Size" | "Reshape") {
                    19
                } else {
                    21
                }
            }
            U4 | I4 => 21,
            F4E2M1 => 23,
            F8E8M0 => 24,
            U2 | I2 => 25,
            F6E2M3 | F6E3M2 => return None,
            _ if non_numeric => match op_type {
                "Reshape" => 5,
                "Flatten" => 9,
                "Pad" => 13,
                _ => 1,
            },
            _ => 1,
        }),
        _ if exotic => None,
        "OneHot" | "Compress" | "ReverseSequence" if d == BF16 => Some(28),
        "Range" if matches!(d, F16 | BF16) => Some(27),
        "EyeLike" if d == BF16 => Some(22),
        "EyeLike" if matches!(d, String | C64 | C128) => None,
        "Scatter" if d == BF16 => None,
        "Concat" if non_numeric => Some(4),
        "Split" if non_numeric => Some(2),
        "Tile" if non_numeric => Some(6),
        "OneHot" | "Compress" | "ReverseSequence" | "Range" | "EyeLike" | "Trilu" | "ConstantOfShape" => Some(1),
        _ if d == BF16 => Some(13),
        _ => Some(1),
    }
}

/// Fails unless the target opset's `op_type` admits the element type of input `i`.
fn require_dtype(c: &LowerCtx, op_type: &str, i: usize) -> LowerResult {
    let Some(d) = c.input_type(i).and_then(|t| t.dtype()) else { return Ok(()) };
    match dtype_min_opset(op_type, d) {
        Some(min) if c.opset >= min => Ok(()),
        Some(min) => Err(c.problem(format!("{op_type} of {d} needs opset {min}"), Some(min))),
        None => Err(c.problem(format!("ONNX {op_type} has no {d} form"), None)),
    }
}

fn emit_simple(c: &mut LowerCtx, op_type: &str, attrs: Vec<proto::AttributeProto>) -> LowerResult {
    c.require_op(op_type)?;
    let data = if op_type == "OneHot" { 2 } else { 0 };
    if let Err(p) = require_dtype(c, op_type, data) {
        return via_f32(c, op_type, attrs).unwrap_or(Err(p));
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit(op_type, inputs, outputs, attrs);
    Ok(())
}

/// For ops that move values without arithmetic (and Range, whose float16/bfloat16 form computes
/// in float anyway): a 16-bit float the target opset's op lacks goes through float32, exactly.
fn via_f32(c: &mut LowerCtx, op_type: &str, attrs: Vec<proto::AttributeProto>) -> Option<LowerResult> {
    let cast_inputs: &[usize] = match op_type {
        "OneHot" => &[2],
        "Compress" | "ReverseSequence" => &[0],
        "Range" => &[0, 1, 2],
        _ => return None,
    };
    let d = c.input_type(cast_inputs[0]).and_then(|t| t.dtype())?;
    let cast_from = match d {
        DType::F16 => 6,
        DType::BF16 => 13,
        _ => return None,
    };
    if c.opset < cast_from {
        return None;
    }
    let mut inputs = c.inputs();
    for i in cast_inputs {
        if c.has_input(*i) {
            let x = inputs[*i].clone();
            inputs[*i] = c.emit_temp("Cast", vec![x], vec![attr_i("to", DType::F32.onnx_code() as i64)], "as_f32");
        }
    }
    let wide = c.temp("f32");
    c.emit(op_type, inputs, vec![wide.clone()], attrs);
    let o = c.output(0);
    c.emit("Cast", vec![wide], vec![o], vec![attr_i("to", d.onnx_code() as i64)]);
    Some(Ok(()))
}

pub fn constant_of_shape(c: &mut LowerCtx, value: &Tensor) -> LowerResult {
    emit_simple(c, "ConstantOfShape", vec![attr_tensor("value", value)])
}

pub fn range(c: &mut LowerCtx) -> LowerResult {
    emit_simple(c, "Range", vec![])
}

pub fn eye_like(c: &mut LowerCtx, dtype: Option<DType>, k: i64) -> LowerResult {
    let mut attrs = vec![];
    if let Some(d) = dtype {
        attrs.push(attr_i("dtype", d.onnx_code() as i64));
    }
    if k != 0 {
        attrs.push(attr_i("k", k));
    }
    emit_simple(c, "EyeLike", attrs)
}

pub fn shape(c: &mut LowerCtx, start: i64, end: Option<i64>) -> LowerResult {
    if start == 0 && end.is_none() {
        return emit_simple(c, "Shape", vec![]);
    }
    if c.opset >= 15 {
        let mut attrs = vec![];
        if start != 0 {
            attrs.push(attr_i("start", start));
        }
        if let Some(e) = end {
            attrs.push(attr_i("end", e));
        }
        return emit_simple(c, "Shape", attrs);
    }
    // Older opsets: the whole shape, then a slice of it (Slice clamps like Shape does).
    let (x, o) = (c.input(0), c.output(0));
    let full = c.emit_temp("Shape", vec![x], vec![], "shape");
    let end = end.unwrap_or(i64::MAX);
    slice_with(c, full, o, &[start], &[end], Some(&[0]))
}

/// A Slice of `x` into `o` with constant parameters, in whatever form the opset has.
fn slice_with(
    c: &mut LowerCtx,
    x: String,
    o: String,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
) -> LowerResult {
    if c.opset >= 10 {
        let s = c.const_i64s(starts, "starts");
        let e = c.const_i64s(ends, "ends");
        let mut inputs = vec![x, s, e];
        if let Some(a) = axes {
            inputs.push(c.const_i64s(a, "axes"));
        }
        c.emit("Slice", inputs, vec![o], vec![]);
    } else {
        let mut attrs = vec![attr_ints("starts", starts), attr_ints("ends", ends)];
        if let Some(a) = axes {
            attrs.push(attr_ints("axes", a));
        }
        c.emit("Slice", vec![x], vec![o], attrs);
    }
    Ok(())
}

pub fn size(c: &mut LowerCtx) -> LowerResult {
    emit_simple(c, "Size", vec![])
}

pub fn reshape(c: &mut LowerCtx, allowzero: bool) -> LowerResult {
    let target = const_ints(c, 1);
    // allowzero only matters where the target shape has a zero (or may have one).
    // With a zero in the target, allowzero=1 gives an empty result, so a non-empty input rules
    // that out too.
    let needs_allowzero = allowzero
        && target.as_ref().is_none_or(|t| t.contains(&0))
        && !c.node.inputs[0].is_some_and(|v| known_nonempty(c.graph, v, 0))
        && !(target.is_none() && target_holds_minus_one(c));
    if needs_allowzero && c.opset < 14 {
        // A constant target with a zero (and so, by the spec, no -1) makes an empty tensor of
        // exactly that shape: reshape to ones with -1 where the first zero is, then Expand.
        let data_empty =
            c.input_type(0).and_then(|t| t.shape()).is_some_and(|s| s.0.contains(&ferry_ir::Dim::Known(0)));
        let dtype = c.input_type(0).and_then(|t| t.dtype()).filter(|d| *d != DType::String);
        if let (None, true, Some(d), true) = (&target, data_empty, dtype, c.opset >= 9) {
            // Empty data: the result is an empty tensor shaped like the target, its -1 read as 0.
            let zero_bytes = d.storage_bytes(1).unwrap_or(0) as usize;
            let zero = Tensor::from_raw(d, vec![1], bytes::Bytes::from(vec![0u8; zero_bytes]))
                .map_err(|e| c.problem(e.to_string(), None))?;
            let (t, o) = (c.input(1), c.output(0));
            let z = c.const_i64s(&[0], "zero");
            let neg = c.emit_temp("Less", vec![t.clone(), z.clone()], vec![], "is_negative");
            let dims = c.emit_temp("Where", vec![neg, z, t], vec![], "dims");
            c.emit("ConstantOfShape", vec![dims], vec![o], vec![attr_tensor("value", &zero)]);
            return Ok(());
        }
        let Some(t) = target.filter(|t| !t.contains(&-1)) else {
            return Err(c.problem("Reshape with allowzero=1 needs opset 14", Some(14)));
        };
        c.require_opset(8, "Reshape with allowzero=1 (as Reshape and Expand)")?;
        let at = t.iter().position(|d| *d == 0).expect("has a zero");
        let ones: Vec<i64> = (0..t.len()).map(|i| if i == at { -1 } else { 1 }).collect();
        let (x, o) = (c.input(0), c.output(0));
        let s = c.const_i64s(&ones, "flat_shape");
        let flat = c.emit_temp("Reshape", vec![x, s], vec![], "flat");
        let full = c.const_i64s(&t, "shape");
        c.emit("Expand", vec![flat, full], vec![o], vec![]);
        return Ok(());
    }
    let attrs = if needs_allowzero { vec![attr_i("allowzero", 1)] } else { vec![] };
    if c.opset < 5 {
        let t = folded(c, 1, "the target shape", 5)?;
        let (x, o) = (c.input(0), c.output(0));
        c.emit("Reshape", vec![x], vec![o], vec![attr_ints("shape", &t)]);
        return Ok(());
    }
    emit_simple(c, "Reshape", attrs)
}

/// Whether `v` certainly has at least one element: a fully known non-zero shape, or the result
/// of ops that keep the element count.
/// Whether a computed target shape is a Concat with a constant piece holding -1 (torch's dynamo export writes
/// `view(batch, seq, -1, 16)` that way, with allowzero=1). With allowzero=1 a target may not hold both -1 and 0,
/// so such a target holds no zero and allowzero changes nothing.
fn target_holds_minus_one(c: &LowerCtx) -> bool {
    let Some(t) = c.node.inputs.get(1).copied().flatten() else { return false };
    let Some(n) = c.graph.nodes.iter().find(|n| n.outputs.contains(&Some(t))) else { return false };
    matches!(n.op, ferry_ir::Op::Concat { .. })
        && n.inputs
            .iter()
            .flatten()
            .any(|v| c.consts.get(v).and_then(|k| k.to_i64_vec().ok()).is_some_and(|k| k.contains(&-1)))
}

fn known_nonempty(g: &ferry_ir::Graph, v: ferry_ir::ValueId, depth: usize) -> bool {
    if g.values[v].ty.shape().and_then(|s| s.to_known()).is_some_and(|d| d.iter().all(|x| *x > 0)) {
        return true;
    }
    if depth > 16 {
        return false;
    }
    let Some(n) = g.nodes.iter().find(|n| n.outputs.contains(&Some(v))) else { return false };
    matches!(
        n.op,
        ferry_ir::Op::Reshape { .. }
            | ferry_ir::Op::Transpose { .. }
            | ferry_ir::Op::Identity
            | ferry_ir::Op::Unary(_)
            | ferry_ir::Op::Cast(_)
            | ferry_ir::Op::Flatten { .. }
            | ferry_ir::Op::Squeeze
            | ferry_ir::Op::Unsqueeze
    ) && n.inputs.first().copied().flatten().is_some_and(|i| known_nonempty(g, i, depth + 1))
}

pub fn transpose(c: &mut LowerCtx, perm: Option<&[usize]>) -> LowerResult {
    let attrs = match perm {
        Some(p) => vec![attr_ints("perm", &p.iter().map(|x| *x as i64).collect::<Vec<_>>())],
        None => vec![],
    };
    emit_simple(c, "Transpose", attrs)
}

pub fn expand(c: &mut LowerCtx) -> LowerResult {
    emit_simple(c, "Expand", vec![])
}

/// Squeeze/Unsqueeze: axes an input from opset 13, an attribute before.
pub fn squeeze(c: &mut LowerCtx, op_type: &str) -> LowerResult {
    if c.opset >= 13 {
        return emit_simple(c, op_type, vec![]);
    }
    let (x, o) = (c.input(0), c.output(0));
    let mut attrs = vec![];
    if c.has_input(1) {
        let axes = folded(c, 1, "axes", 13)?;
        let r = if op_type == "Unsqueeze" { rank(c, 0).map(|r| r + axes.len()) } else { rank(c, 0) };
        let axes = axes_for_opset(c, &axes, r)?;
        attrs.push(attr_ints("axes", &axes));
    }
    c.emit(op_type, vec![x], vec![o], attrs);
    Ok(())
}

pub fn flatten(c: &mut LowerCtx, axis: i64) -> LowerResult {
    let axis = if axis < 0 && c.opset < 11 {
        match rank(c, 0) {
            Some(r) if axis + r as i64 >= 0 => axis + r as i64,
            _ => return Err(c.problem("negative axis with unknown rank needs opset 11", Some(11))),
        }
    } else {
        axis
    };
    emit_simple(c, "Flatten", vec![attr_i("axis", axis)])
}

pub fn concat(c: &mut LowerCtx, axis: i64) -> LowerResult {
    let axis = axis_for_opset(c, axis, rank(c, 0))?;
    emit_simple(c, "Concat", vec![attr_i("axis", axis)])
}

pub fn split(c: &mut LowerCtx, axis: i64, num_outputs: Option<u64>) -> LowerResult {
    c.require_op("Split")?;
    let axis_attr = axis_for_opset(c, axis, rank(c, 0))?;
    let x = c.input(0);
    let outputs = c.outputs();
    let n = outputs.len() as u64;
    let mut attrs = vec![attr_i("axis", axis_attr)];
    if c.has_input(1) {
        // Explicit sizes.
        if c.opset >= 13 {
            let s = c.input(1);
            c.emit("Split", vec![x, s], outputs, attrs);
        } else {
            let sizes = folded(c, 1, "the split sizes", 13)?;
            attrs.push(attr_ints("split", &sizes));
            c.emit("Split", vec![x], outputs, attrs);
        }
        return Ok(());
    }
    let n_parts = num_outputs.unwrap_or(n);
    if c.opset >= 18 {
        attrs.push(attr_i("num_outputs", n_parts as i64));
        c.emit("Split", vec![x], outputs, attrs);
        return Ok(());
    }
    // Before opset 18, equal parts had to divide the axis evenly; otherwise give the sizes.
    let dim = c
        .input_type(0)
        .and_then(|t| t.shape())
        .and_then(|s| ferry_ir::shape::normalize_axis(axis, s.rank()).ok().and_then(|a| s.0[a].known()))
        // Too small for the parts (a branch never taken, say): leave the failure to run time.
        .filter(|d| *d >= d.div_ceil(n_parts) * (n_parts - 1));
    match dim {
        Some(d) if d % n_parts == 0 => {}
        Some(d) if num_outputs.is_some() => {
            let chunk = d.div_ceil(n_parts);
            let sizes: Vec<i64> = (0..n_parts)
                .map(|k| if k + 1 == n_parts { (d - chunk * (n_parts - 1)) as i64 } else { chunk as i64 })
                .collect();
            if c.opset >= 13 {
                let s = c.const_i64s(&sizes, "split");
                c.emit("Split", vec![x, s], outputs, attrs);
            } else {
                attrs.push(attr_ints("split", &sizes));
                c.emit("Split", vec![x], outputs, attrs);
            }
            return Ok(());
        }
        Some(_) => return Err(c.problem("equal split of an axis the parts do not divide", None)),
        None if num_outputs.is_some() && c.opset >= 13 => {
            // Sizes at run time: n-1 chunks of ceil(d/n), then the rest.
            let shape = c.emit_temp("Shape", vec![x.clone()], vec![], "shape");
            let at = c.const_i64s(&[axis], "axis");
            let d = c.emit_temp("Gather", vec![shape, at], vec![attr_i("axis", 0)], "axis_size");
            let n_minus_1 = c.const_i64s(&[n_parts as i64 - 1], "parts_minus_one");
            let n = c.const_i64s(&[n_parts as i64], "parts");
            let padded = c.emit_temp("Add", vec![d.clone(), n_minus_1.clone()], vec![], "padded");
            let chunk = c.emit_temp("Div", vec![padded, n], vec![], "chunk");
            let head = c.emit_temp("Mul", vec![chunk.clone(), n_minus_1], vec![], "head");
            let last = c.emit_temp("Sub", vec![d, head], vec![], "last");
            let mut parts = vec![chunk; n_parts as usize - 1];
            parts.push(last);
            let sizes = c.emit_temp("Concat", parts, vec![attr_i("axis", 0)], "split");
            c.emit("Split", vec![x, sizes], outputs, attrs);
            return Ok(());
        }
        None if num_outputs.is_some() => {
            return Err(c.problem("num_outputs over an axis of unknown size needs opset 13", Some(13)));
        }
        None => {}
    }
    c.emit("Split", vec![x], outputs, attrs);
    Ok(())
}

pub fn slice(c: &mut LowerCtx) -> LowerResult {
    if c.opset >= 10 {
        let r = rank(c, 0);
        let mut inputs = c.inputs();
        if c.opset < 11 {
            // Slice-10 took only non-negative axes and positive steps.
            if let Some(steps) = const_ints(c, 4) {
                if steps.iter().any(|s| *s < 0) {
                    return Err(c.problem("negative slice steps need opset 11", Some(11)));
                }
            } else if c.has_input(4) {
                return Err(c.problem("non-constant slice steps need opset 11", Some(11)));
            }
            if c.has_input(3) {
                let axes = folded(c, 3, "axes", 11)?;
                if axes.iter().any(|a| *a < 0) {
                    let axes = axes_for_opset(c, &axes, r)?;
                    inputs[3] = c.const_i64s(&axes, "axes");
                }
            }
        }
        let o = c.output(0);
        c.emit("Slice", inputs, vec![o], vec![]);
        return Ok(());
    }
    let starts = folded(c, 1, "starts", 10)?;
    let ends = folded(c, 2, "ends", 10)?;
    let axes = if c.has_input(3) { Some(folded(c, 3, "axes", 10)?) } else { None };
    if c.has_input(4) {
        let steps = folded(c, 4, "steps", 10)?;
        if steps.iter().any(|s| *s != 1) {
            return Err(c.problem("slice steps other than 1 need opset 10", Some(10)));
        }
    }
    let axes = axes.map(|a| axes_for_opset(c, &a, rank(c, 0))).transpose()?;
    let (x, o) = (c.input(0), c.output(0));
    slice_with(c, x, o, &starts, &ends, axes.as_deref())
}

pub fn pad(c: &mut LowerCtx, mode: PadMode) -> LowerResult {
    let mode_name = match mode {
        PadMode::Constant => "constant",
        PadMode::Reflect => "reflect",
        PadMode::Edge => "edge",
        PadMode::Wrap => "wrap",
    };
    if mode == PadMode::Wrap {
        c.require_opset(19, "Pad with mode 'wrap'")?;
    }
    let mode_attr = attr_s("mode", mode_name);
    if c.opset >= 18 || (c.opset >= 11 && !c.has_input(3)) {
        return emit_simple(c, "Pad", vec![mode_attr]);
    }
    // Expand the pads to every axis when axes are given.
    let full_pads = |c: &LowerCtx, pads: Vec<i64>| -> Result<Vec<i64>, crate::error::ExportProblem> {
        if !c.has_input(3) {
            return Ok(pads);
        }
        let axes = folded(c, 3, "pad axes", 18)?;
        let r = rank(c, 0).ok_or_else(|| c.problem("pad axes with unknown rank need opset 18", Some(18)))?;
        let mut full = vec![0; 2 * r];
        for (k, a) in axes.iter().enumerate() {
            let a = ferry_ir::shape::normalize_axis(*a, r).map_err(|e| c.problem(e, None))?;
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        Ok(full)
    };
    if c.opset >= 11 && c.has_input(3) && const_ints(c, 3).is_none() {
        // Axes known only at run time: scatter the pads into a zero vector of length 2 * rank.
        let r = rank(c, 0).ok_or_else(|| c.problem("pad axes with unknown rank need opset 18", Some(18)))? as i64;
        let (x, o, v, p, axes) = (c.input(0), c.output(0), c.input(2), c.input(1), c.input(3));
        let axes = if c.input_type(3).and_then(|t| t.dtype()) == Some(DType::I64) {
            axes
        } else {
            c.emit_temp("Cast", vec![axes], vec![attr_i("to", DType::I64.onnx_code() as i64)], "axes_i64")
        };
        let rank_c = c.const_i64s(&[r], "rank");
        let shifted = c.emit_temp("Add", vec![axes, rank_c.clone()], vec![], "axes_shifted");
        let begin = c.emit_temp("Mod", vec![shifted, rank_c.clone()], vec![], "axes_begin");
        let end = c.emit_temp("Add", vec![begin.clone(), rank_c], vec![], "axes_end");
        let idx = c.emit_temp("Concat", vec![begin, end], vec![attr_i("axis", 0)], "pads_index");
        let zeros = c.const_i64s(&vec![0; 2 * r as usize], "zero_pads");
        let p = if c.input_type(1).and_then(|t| t.dtype()) == Some(DType::I64) {
            p
        } else {
            c.emit_temp("Cast", vec![p], vec![attr_i("to", DType::I64.onnx_code() as i64)], "pads_i64")
        };
        let full = c.emit_temp("ScatterElements", vec![zeros, idx, p], vec![attr_i("axis", 0)], "pads");
        c.emit("Pad", vec![x, full, v], vec![o], vec![mode_attr]);
        return Ok(());
    }
    if c.opset >= 11 && const_ints(c, 1).is_none() {
        // Spread the pads over every axis: gather from the pads followed by a zero.
        let axes = folded(c, 3, "pad axes", 18)?;
        let r = rank(c, 0).ok_or_else(|| c.problem("pad axes with unknown rank need opset 18", Some(18)))?;
        let n = axes.len() as i64;
        let mut idx = vec![2 * n; 2 * r];
        for (k, a) in axes.iter().enumerate() {
            let a = ferry_ir::shape::normalize_axis(*a, r).map_err(|e| c.problem(e, None))?;
            idx[a] = k as i64;
            idx[a + r] = k as i64 + n;
        }
        let (x, o, v, p) = (c.input(0), c.output(0), c.input(2), c.input(1));
        let zero = c.const_i64s(&[0], "zero");
        let ext = c.emit_temp("Concat", vec![p, zero], vec![attr_i("axis", 0)], "pads_ext");
        let idx = c.const_i64s(&idx, "pads_index");
        let full = c.emit_temp("Gather", vec![ext, idx], vec![attr_i("axis", 0)], "pads");
        c.emit("Pad", vec![x, full, v], vec![o], vec![mode_attr]);
        return Ok(());
    }
    if c.opset >= 11 {
        let pads = full_pads(c, folded(c, 1, "pads", 18)?)?;
        let (x, o, v) = (c.input(0), c.output(0), c.input(2));
        let p = c.const_i64s(&pads, "pads");
        c.emit("Pad", vec![x, p, v], vec![o], vec![mode_attr]);
        return Ok(());
    }
    let pads = full_pads(c, folded(c, 1, "pads", 11)?)?;
    let mut attrs = vec![mode_attr, attr_ints(if c.opset < 2 { "paddings" } else { "pads" }, &pads)];
    if c.has_input(2) {
        let v = c
            .const_input(2)
            .and_then(|t| t.to_f64_vec().ok())
            .ok_or_else(|| c.problem("a non-constant pad value needs opset 11", Some(11)))?;
        let v = *v.first().ok_or_else(|| c.problem("empty pad value", None))?;
        if v as f32 as f64 != v {
            return Err(c.problem("a pad value that a float attribute cannot hold needs opset 11", Some(11)));
        }
        if v != 0.0 {
            attrs.push(attr_f("value", v as f32));
        }
    }
    let (x, o) = (c.input(0), c.output(0));
    c.emit("Pad", vec![x], vec![o], attrs);
    Ok(())
}

pub fn tile(c: &mut LowerCtx) -> LowerResult {
    if c.opset < 6 {
        return Err(c.problem("Tile with per-axis repeats needs opset 6", Some(6)));
    }
    emit_simple(c, "Tile", vec![])
}

pub fn gather(c: &mut LowerCtx, op_type: &str, axis: i64) -> LowerResult {
    emit_simple(c, op_type, vec![attr_i("axis", axis)])
}

pub fn gather_nd(c: &mut LowerCtx, batch_dims: u64) -> LowerResult {
    if batch_dims != 0 {
        c.require_opset(12, "GatherND with batch_dims")?;
        return emit_simple(c, "GatherND", vec![attr_i("batch_dims", batch_dims as i64)]);
    }
    emit_simple(c, "GatherND", vec![])
}

fn reduction_attr(
    c: &LowerCtx,
    r: ScatterReduction,
) -> Result<Vec<proto::AttributeProto>, crate::error::ExportProblem> {
    let (name, min) = match r {
        ScatterReduction::None => return Ok(vec![]),
        ScatterReduction::Add => ("add", 16),
        ScatterReduction::Mul => ("mul", 16),
        ScatterReduction::Max => ("max", 18),
        ScatterReduction::Min => ("min", 18),
    };
    c.require_opset(min, &format!("scatter reduction '{name}'"))?;
    Ok(vec![attr_s("reduction", name)])
}

pub fn scatter_elements(c: &mut LowerCtx, axis: i64, reduction: ScatterReduction) -> LowerResult {
    let mut attrs = reduction_attr(c, reduction)?;
    attrs.push(attr_i("axis", axis));
    if c.opset < 11 {
        // Scatter-9 has the same semantics.
        return emit_simple(c, "Scatter", attrs);
    }
    emit_simple(c, "ScatterElements", attrs)
}

pub fn scatter_nd(c: &mut LowerCtx, reduction: ScatterReduction) -> LowerResult {
    let attrs = reduction_attr(c, reduction)?;
    emit_simple(c, "ScatterND", attrs)
}

pub fn one_hot(c: &mut LowerCtx, axis: i64) -> LowerResult {
    emit_simple(c, "OneHot", vec![attr_i("axis", axis)])
}

pub fn trilu(c: &mut LowerCtx, upper: bool) -> LowerResult {
    if c.op_version("Trilu").is_some() {
        return emit_simple(c, "Trilu", vec![attr_i("upper", upper as i64)]);
    }
    // Older opsets: Where(mask, x, 0), where the mask keeps col - row >= k (upper) or <= k.
    c.require_opset(9, "Trilu (as Where)")?;
    let dtype = c
        .input_type(0)
        .and_then(|t| t.dtype())
        .ok_or_else(|| c.problem("Trilu of an unknown element type needs opset 14", Some(14)))?;
    let zero_bytes = dtype.storage_bytes(1).filter(|_| dtype != DType::String);
    let zero_bytes = zero_bytes.ok_or_else(|| c.problem(format!("Trilu of {dtype} needs opset 14"), Some(14)))?;
    let zero = Tensor::from_raw(dtype, vec![], bytes::Bytes::from(vec![0u8; zero_bytes as usize]))
        .map_err(|e| c.problem(e.to_string(), None))?;
    let k = if c.has_input(1) { const_ints(c, 1).map(|v| v.first().copied().unwrap_or(0)) } else { Some(0) };
    let dims = c.input_type(0).and_then(|t| t.shape()).filter(|s| s.rank() >= 2).map(|s| {
        let r = s.rank();
        (s.0[r - 2].known(), s.0[r - 1].known())
    });
    let (x, o) = (c.input(0), c.output(0));
    let mask = match (dims, k) {
        (Some((Some(n), Some(m))), Some(k)) => {
            let keep: Vec<u8> = (0..n as i64)
                .flat_map(|i| (0..m as i64).map(move |j| if upper { j - i >= k } else { j - i <= k } as u8))
                .collect();
            let t = Tensor::from_raw(DType::Bool, vec![n, m], bytes::Bytes::from(keep))
                .map_err(|e| c.problem(e.to_string(), None))?;
            c.constant(&t, "mask")
        }
        _ => {
            c.require_opset(11, "Trilu of unknown size (as Range and Where)")?;
            let shape = c.emit_temp("Shape", vec![x.clone()], vec![], "shape");
            let i_rows = c.constant(&Tensor::scalar_i64(-2), "rows_at");
            let i_cols = c.constant(&Tensor::scalar_i64(-1), "cols_at");
            let n = c.emit_temp("Gather", vec![shape.clone(), i_rows], vec![attr_i("axis", 0)], "rows");
            let m = c.emit_temp("Gather", vec![shape, i_cols], vec![attr_i("axis", 0)], "cols");
            let zero_i = c.constant(&Tensor::scalar_i64(0), "zero");
            let one_i = c.constant(&Tensor::scalar_i64(1), "one");
            let rows = c.emit_temp("Range", vec![zero_i.clone(), n, one_i.clone()], vec![], "row_index");
            let cols = c.emit_temp("Range", vec![zero_i, m, one_i], vec![], "col_index");
            let rows = if c.opset >= 13 {
                let axes = c.const_i64s(&[1], "axes");
                c.emit_temp("Unsqueeze", vec![rows, axes], vec![], "row_column")
            } else {
                c.emit_temp("Unsqueeze", vec![rows], vec![attr_ints("axes", &[1])], "row_column")
            };
            let diff = c.emit_temp("Sub", vec![cols, rows], vec![], "diagonal");
            let k = if c.has_input(1) { c.input(1) } else { c.constant(&Tensor::scalar_i64(0), "k") };
            let outside = c.emit_temp(if upper { "Less" } else { "Greater" }, vec![diff, k], vec![], "outside");
            c.emit_temp("Not", vec![outside], vec![], "mask")
        }
    };
    let zero = c.constant(&zero, "zero");
    c.emit("Where", vec![mask, x, zero], vec![o], vec![]);
    Ok(())
}

/// Reshape, Transpose, Reshape with constant targets, in the opset's forms.
fn reshape_transpose_reshape(c: &mut LowerCtx, first: &[i64], perm: &[i64], last: &[i64]) -> LowerResult {
    let (x, o) = (c.input(0), c.output(0));
    let reshape = |c: &mut LowerCtx, x: String, shape: &[i64], out: Option<String>| -> String {
        let out = out.unwrap_or_else(|| c.temp("reshaped"));
        if c.opset >= 5 {
            let s = c.const_i64s(shape, "shape");
            c.emit("Reshape", vec![x, s], vec![out.clone()], vec![]);
        } else {
            c.emit("Reshape", vec![x], vec![out.clone()], vec![attr_ints("shape", shape)]);
        }
        out
    };
    let a = reshape(c, x, first, None);
    let t = c.emit_temp("Transpose", vec![a], vec![attr_ints("perm", perm)], "transposed");
    reshape(c, t, last, Some(o));
    Ok(())
}

/// Height and width of a rank-4 input, when known.
fn spatial_hw(c: &LowerCtx) -> Option<(i64, i64)> {
    let s = c.input_type(0)?.shape()?;
    if s.rank() != 4 {
        return None;
    }
    Some((s.0[2].known()? as i64, s.0[3].known()? as i64))
}

pub fn depth_to_space(c: &mut LowerCtx, blocksize: u64, crd: bool) -> LowerResult {
    let mut attrs = vec![attr_i("blocksize", blocksize as i64)];
    if crd && c.opset < 11 {
        // [b, c, h, w] -> [b, c/bs², bs, bs, h, w] -> [b, c/bs², h, bs, w, bs] -> [b, c/bs², h*bs, w*bs]
        let (h, w) = spatial_hw(c)
            .ok_or_else(|| c.problem("DepthToSpace CRD of unknown spatial size needs opset 11", Some(11)))?;
        let b = blocksize as i64;
        require_dtype(c, "DepthToSpace", 0)?;
        return reshape_transpose_reshape(c, &[0, -1, b, b, h, w], &[0, 1, 4, 2, 5, 3], &[0, 0, h * b, w * b]);
    }
    if crd {
        attrs.push(attr_s("mode", "CRD"));
    }
    emit_simple(c, "DepthToSpace", attrs)
}

pub fn space_to_depth(c: &mut LowerCtx, blocksize: u64, crd: bool) -> LowerResult {
    let mut attrs = vec![attr_i("blocksize", blocksize as i64)];
    if crd && c.opset < 28 {
        // [b, c, h, w] -> [b, c, h/bs, bs, w/bs, bs] -> [b, c, bs, bs, h/bs, w/bs] -> [b, c*bs², h/bs, w/bs]
        let (h, w) = spatial_hw(c)
            .ok_or_else(|| c.problem("SpaceToDepth CRD of unknown spatial size needs opset 28", Some(28)))?;
        let b = blocksize as i64;
        if h % b != 0 || w % b != 0 {
            return Err(c.problem(format!("blocksize {b} does not divide the spatial size {h}x{w}"), None));
        }
        require_dtype(c, "SpaceToDepth", 0)?;
        return reshape_transpose_reshape(c, &[0, 0, h / b, b, w / b, b], &[0, 1, 3, 5, 2, 4], &[0, -1, h / b, w / b]);
    }
    if crd {
        attrs.push(attr_s("mode", "CRD"));
    }
    emit_simple(c, "SpaceToDepth", attrs)
}

pub fn compress(c: &mut LowerCtx, axis: Option<i64>) -> LowerResult {
    let attrs = match axis {
        Some(a) => vec![attr_i("axis", axis_for_opset(c, a, rank(c, 0))?)],
        None => vec![],
    };
    emit_simple(c, "Compress", attrs)
}

pub fn non_zero(c: &mut LowerCtx) -> LowerResult {
    emit_simple(c, "NonZero", vec![])
}

pub fn reverse_sequence(c: &mut LowerCtx, batch_axis: u64, time_axis: u64) -> LowerResult {
    emit_simple(
        c,
        "ReverseSequence",
        vec![attr_i("batch_axis", batch_axis as i64), attr_i("time_axis", time_axis as i64)],
    )
}

#[cfg(test)]
mod tests {
    use crate::export::{ExportOptions, export_model};
    use ferry_ir::{DType, Dim, Graph, Model, Node, Op, Shape, Tensor, ValueType};

    /// x[N, 64] reshaped with allowzero=1 to Concat(Shape(x)[0:1], [-1], [16]), as torch's dynamo exporter
    /// writes `x.view(batch, -1, 16)`; `minus_one` false puts 4 where the -1 was.
    fn computed_view(minus_one: bool) -> Model {
        let mut g = Graph::default();
        let x = g.add_value("x", ValueType::tensor(DType::F32, Shape(vec![Dim::param("N"), Dim::Known(64)])));
        let y = g.add_value("y", ValueType::Unknown);
        g.inputs.push(x);
        g.outputs.push(y);
        let batch = g.add_value("batch", ValueType::Unknown);
        let mid = g.add_value("mid", ValueType::Unknown);
        let last = g.add_value("last", ValueType::Unknown);
        let target = g.add_value("target", ValueType::Unknown);
        let mid_value = if minus_one { -1 } else { 4 };
        g.initializers.push((mid, Tensor::from_i64(vec![1], &[mid_value]).unwrap()));
        g.initializers.push((last, Tensor::from_i64(vec![1], &[16]).unwrap()));
        let node = |name: &str, op, inputs: Vec<_>, out| Node {
            name: name.into(),
            op,
            inputs: inputs.into_iter().map(Some).collect(),
            outputs: vec![Some(out)],
            doc_string: String::new(),
        };
        g.nodes.push(node("shape", Op::Shape { start: 0, end: Some(1) }, vec![x], batch));
        g.nodes.push(node("concat", Op::Concat { axis: 0 }, vec![batch, mid, last], target));
        g.nodes.push(node("view", Op::Reshape { allowzero: true }, vec![x, target], y));
        Model { graph: g, meta: Default::default() }
    }

    #[test]
    fn allowzero_is_dropped_below_14_when_the_computed_target_holds_minus_one() {
        // A target may not hold both -1 and 0 under allowzero=1, so the flag changes nothing here.
        let nodes = export_model(&computed_view(true), &ExportOptions { opset: Some(13) }).unwrap().graph.unwrap().node;
        let reshape = nodes.iter().find(|n| n.op_type.as_deref() == Some("Reshape")).unwrap();
        assert!(reshape.attribute.is_empty());
        // Without the -1 the computed target could hold a 0 (N = 0): the flag is kept from 14, refused below.
        let nodes =
            export_model(&computed_view(false), &ExportOptions { opset: Some(14) }).unwrap().graph.unwrap().node;
        let reshape = nodes.iter().find(|n| n.op_type.as_deref() == Some("Reshape")).unwrap();
        assert_eq!(reshape.attribute.len(), 1);
        let err = export_model(&computed_view(false), &ExportOptions { opset: Some(13) }).unwrap_err();
        assert!(err.to_string().contains("allowzero=1 needs opset 14"), "{err}");
    }
}
