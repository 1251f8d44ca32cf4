//! `_contrib_MultiBoxDetection` (SSD's output layer) as a composition of core ops, following
//! MXNet 1.9's CPU operator step by step:
//! 1. each anchor's best non-background class and score; it is valid when that score is not
//!    below `threshold`; its box is the anchor decoded by the location deltas (and `variances`);
//! 2. the valid rows are packed to the front in anchor order, the rest are rows of -1;
//! 3. unless `nms_threshold` lies outside (0, 1], the valid rows are (stably) sorted by score;
//!    with `nms_topk`, only the first `nms_topk` rows are the sorted ones, the later rows keep the
//!    packed rows with class -1;
//! 4. greedy suppression over those sorted rows in order: a row whose box overlaps (IoU >=
//!    `nms_threshold`) an earlier surviving row of the same class (any class with
//!    `force_suppress`) gets class -1 and keeps its score and box.
//!
//! Step 4 is core NonMaxSuppression with the row order as score, the classes shifted apart.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use super::detection::{bin, class_shifted, coord, floats, known, last_slice, selected_mask};
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[("_contrib_MultiBoxDetection", multibox_detection)];

fn f32_const(c: &mut NodeCtx, shape: Vec<u64>, v: &[f32], hint: &str) -> ValueId {
    c.constant(Tensor::from_f32(shape, v).expect("length matches"), hint)
}

/// `x` with a trailing unit axis.
fn col(c: &mut NodeCtx, x: ValueId) -> ValueId {
    let ax = c.const_i64s(&[-1], "last");
    c.emit_temp(Op::Unsqueeze, vec![x, ax], "col")
}

/// Rows of `a` (`[B, N, 6]`) in the order `idx` (`[B, N]`), rows where `keep` is false set to -1.
fn reorder(c: &mut NodeCtx, a: ValueId, idx: ValueId, keep: ValueId) -> Result<ValueId> {
    let i3 = col(c, idx);
    let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![a], "rows_shape");
    let i3 = c.emit_temp(Op::Expand, vec![i3, shape], "row_index");
    let rows = c.emit_temp(Op::GatherElements { axis: 1 }, vec![a, i3], "rows");
    let k3 = col(c, keep);
    let m1 = c.scalar(DType::F32, -1.0, "minus_one")?;
    Ok(c.emit_temp(Op::Where, vec![k3, rows, m1], "rows_or_none"))
}

/// TopK over `key` (`[B, N]`, all N, largest first; ties keep the lower index first).
fn sort_desc(c: &mut NodeCtx, key: ValueId, n: u64) -> (ValueId, ValueId) {
    let k = c.const_i64s(&[n as i64], "n");
    let (v, i) = (c.temp("sorted"), c.temp("order"));
    c.emit(Op::TopK { axis: 1, largest: true, sorted: true }, vec![Some(key), Some(k)], vec![Some(v), Some(i)]);
    (v, i)
}

/// Replaces column 0 (the class id) of `[B, N, 6]` rows.
fn with_ids(c: &mut NodeCtx, rows: ValueId, ids: ValueId) -> ValueId {
    let rest = last_slice(c, rows, 1, 5);
    let ids = col(c, ids);
    c.emit_temp(Op::Concat { axis: -1 }, vec![ids, rest], "rows")
}

fn multibox_detection(c: &mut NodeCtx) -> Result<()> {
    let (cls, loc, anchor) = (c.input(0)?, c.input(1)?, c.input(2)?);
    for i in 0..3 {
        if c.input_dtype(i)? != DType::F32 {
            return Err(c.error("MultiBoxDetection is supported for float32 inputs only"));
        }
    }
    let d = known(c, cls)?;
    let [b, classes, n] = d[..] else { return Err(c.error("cls_prob must be [batch, classes, anchors]")) };
    if classes < 2 {
        return Err(c.error("cls_prob needs a background class and at least one other"));
    }
    let clip = c.bool("clip", true)?;
    let threshold = c.float("threshold", 0.01)? as f32;
    let nms_threshold = c.float("nms_threshold", 0.5)? as f32;
    let force = c.bool("force_suppress", false)?;
    let topk = c.int("nms_topk", -1)?;
    let var = floats(c, "variances")?.unwrap_or(vec![0.1, 0.1, 0.2, 0.2]);
    let [vx, vy, vw, vh] = var[..] else { return Err(c.error("variances must have 4 entries")) };
    let (bi, ni) = (b as i64, n as i64);

    // 1. Best non-background class (the first on ties) and its score, per anchor.
    let fg = {
        let (s, e, a) = (c.const_i64s(&[1], "from"), c.const_i64s(&[classes as i64], "to"), c.const_i64s(&[1], "axis"));
        c.emit_temp(Op::Slice, vec![cls, s, e, a], "foreground")
    };
    let axis1 = c.const_i64s(&[1], "axis1");
    let op = Op::Reduce { kind: ReduceKind::Max, keepdims: false, noop_with_empty_axes: false };
    let score = c.emit_temp(op, vec![fg, axis1], "score");
    let op = Op::ArgReduce { max: true, axis: 1, keepdims: false, select_last_index: false };
    let class = c.emit_temp(op, vec![fg], "class");
    let class = c.emit_temp(super::elementwise::cast_op(DType::F32), vec![class], "class_f");
    // MXNet starts its search at score -1 and takes a strictly greater one.
    let m1 = c.scalar(DType::F32, -1.0, "minus_one")?;
    let found = bin(c, BinaryOp::Greater, score, m1, "found");
    let th = c.scalar(DType::F32, threshold as f64, "threshold")?;
    let low = bin(c, BinaryOp::Less, score, th, "below_threshold");
    let high = c.emit_temp(Op::Unary(UnaryOp::Not), vec![low], "not_below");
    let valid = bin(c, BinaryOp::And, found, high, "valid");

    // Decoded boxes, with MXNet's operation order.
    let shape = c.const_i64s(&[bi, ni, 4], "loc_shape");
    let loc = c.emit_temp(Op::Reshape { allowzero: false }, vec![loc, shape], "loc");
    let shape = c.const_i64s(&[1, ni, 4], "anchor_shape");
    let anchor = c.emit_temp(Op::Reshape { allowzero: false }, vec![anchor, shape], "anchors");
    let [al, at, ar, ab] = [0, 1, 2, 3].map(|k| coord(c, anchor, k));
    let half = c.scalar(DType::F32, 0.5, "half")?;
    let aw = bin(c, BinaryOp::Sub, ar, al, "aw");
    let ah = bin(c, BinaryOp::Sub, ab, at, "ah");
    let ax = bin(c, BinaryOp::Add, al, ar, "ax2");
    let ax = bin(c, BinaryOp::Mul, ax, half, "ax");
    let ay = bin(c, BinaryOp::Add, at, ab, "ay2");
    let ay = bin(c, BinaryOp::Mul, ay, half, "ay");
    let [px, py, pw, ph] = [0, 1, 2, 3].map(|k| coord(c, loc, k));
    let mut scaled = Vec::new();
    for (p, v) in [(px, vx), (py, vy), (pw, vw), (ph, vh)] {
        let v = c.scalar(DType::F32, v, "variance")?;
        scaled.push(bin(c, BinaryOp::Mul, p, v, "scaled"));
    }
    let ox = bin(c, BinaryOp::Mul, scaled[0], aw, "dx");
    let ox = bin(c, BinaryOp::Add, ox, ax, "ox");
    let oy = bin(c, BinaryOp::Mul, scaled[1], ah, "dy");
    let oy = bin(c, BinaryOp::Add, oy, ay, "oy");
    let ew = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![scaled[2]], "exp_w");
    let ow = bin(c, BinaryOp::Mul, ew, aw, "ow2");
    let ow = bin(c, BinaryOp::Mul, ow, half, "ow");
    let eh = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![scaled[3]], "exp_h");
    let oh = bin(c, BinaryOp::Mul, eh, ah, "oh2");
    let oh = bin(c, BinaryOp::Mul, oh, half, "oh");
    let mut parts = vec![
        bin(c, BinaryOp::Sub, ox, ow, "x1"),
        bin(c, BinaryOp::Sub, oy, oh, "y1"),
        bin(c, BinaryOp::Add, ox, ow, "x2"),
        bin(c, BinaryOp::Add, oy, oh, "y2"),
    ];
    if clip {
        let (zero, one) = (c.scalar(DType::F32, 0.0, "zero")?, c.scalar(DType::F32, 1.0, "one")?);
        for p in &mut parts {
            let v = bin(c, BinaryOp::Min, *p, one, "clip_hi");
            *p = bin(c, BinaryOp::Max, v, zero, "clip");
        }
    }
    let mut fields = vec![class, score];
    fields.extend(parts);
    let fields: Vec<ValueId> = fields.into_iter().map(|f| col(c, f)).collect();
    let rows = c.emit_temp(Op::Concat { axis: -1 }, fields, "anchor_rows");

    // 2. Valid rows packed in anchor order: sort by (valid ? N - i : 0).
    let rank: Vec<f32> = (0..n).map(|i| (n - i) as f32).collect();
    let rank = f32_const(c, vec![n], &rank, "anchor_rank");
    let zero = c.scalar(DType::F32, 0.0, "zero")?;
    let key = c.emit_temp(Op::Where, vec![valid, rank, zero], "pack_key");
    let (pv, porder) = sort_desc(c, key, n);
    let pvalid = bin(c, BinaryOp::Greater, pv, zero, "packed_valid");
    let packed = reorder(c, rows, porder, pvalid)?;
    if !(nms_threshold > 0.0 && nms_threshold <= 1.0) {
        c.emit_out(Op::Identity, vec![packed], 0);
        return Ok(());
    }

    // 3. Valid rows by score, best first (stable).
    let ninf = c.scalar(DType::F32, f64::NEG_INFINITY, "minus_inf")?;
    let key = c.emit_temp(Op::Where, vec![valid, score, ninf], "score_key");
    let (sv, sorder) = sort_desc(c, key, n);
    let svalid = bin(c, BinaryOp::Greater, sv, ninf, "sorted_valid");
    let sorted = reorder(c, rows, sorder, svalid)?;
    let (pre, in_nms) = if topk > 0 && (topk as u64) < n {
        let first: Vec<u8> = (0..n).map(|i| u8::from(i < topk as u64)).collect();
        let first_t = Tensor::from_raw(DType::Bool, vec![n], first.into()).expect("length matches");
        let first = c.constant(first_t, "in_topk");
        let bn = c.const_i64s(&[bi, ni], "bn");
        let none = c.emit_temp(Op::ConstantOfShape(Tensor::from_f32(vec![1], &[-1.0]).expect("one")), vec![bn], "none");
        let packed_dropped = with_ids(c, packed, none);
        let f3 = col(c, first);
        let pre = c.emit_temp(Op::Where, vec![f3, sorted, packed_dropped], "pre_nms");
        let in_nms = bin(c, BinaryOp::And, svalid, first, "in_nms");
        (pre, in_nms)
    } else {
        (sorted, svalid)
    };

    // 4. Greedy suppression in row order: NonMaxSuppression scored by N - row.
    let ids = coord(c, pre, 0);
    // MXNet's overlap reads corners as given: a box with x2 < x1 (or y2 < y1) overlaps nothing.
    // NonMaxSuppression would swap such corners; collapsing them to zero size keeps MXNet's IoU 0.
    let [x1, y1, x2, y2] = [2, 3, 4, 5].map(|k| coord(c, pre, k));
    let x2 = bin(c, BinaryOp::Max, x2, x1, "x2_not_before_x1");
    let y2 = bin(c, BinaryOp::Max, y2, y1, "y2_not_before_y1");
    let corners: Vec<ValueId> = [x1, y1, x2, y2].into_iter().map(|v| col(c, v)).collect();
    let mut boxes = c.emit_temp(Op::Concat { axis: -1 }, corners, "nms_boxes");
    if !force {
        boxes = class_shifted(c, boxes, ids, false, DType::F32)?;
    }
    let prio = c.emit_temp(Op::Where, vec![in_nms, rank, zero], "priority");
    let prio = c.emit_temp(Op::Unsqueeze, vec![prio, axis1], "priority3");
    let max_out = c.const_i64s(&[ni], "max_out");
    // MXNet suppresses at IoU >= t; NonMaxSuppression at IoU > t: the float just below t.
    let below = f32::from_bits(nms_threshold.to_bits() - 1);
    let iou = f32_const(c, vec![1], &[below], "iou_threshold");
    let st = f32_const(c, vec![1], &[0.0], "score_threshold");
    let sel =
        c.emit_temp(Op::NonMaxSuppression { center_point_box: false }, vec![boxes, prio, max_out, iou, st], "selected");
    let kept = selected_mask(c, sel, pre);
    let not_kept = c.emit_temp(Op::Unary(UnaryOp::Not), vec![kept], "not_kept");
    let dropped = bin(c, BinaryOp::And, in_nms, not_kept, "suppressed");
    let ids = c.emit_temp(Op::Where, vec![dropped, m1, ids], "final_ids");
    let rest = last_slice(c, pre, 1, 5);
    let ids = col(c, ids);
    c.emit_out(Op::Concat { axis: -1 }, vec![ids, rest], 0);
    Ok(())
}
