//! `_contrib_Proposal` and `_contrib_MultiProposal` (Faster R-CNN's region proposal layer) as
//! compositions of core ops, following MXNet 1.9's CPU operator:
//! anchors (from `feature_stride`, `ratios` × `scales`) shifted over the feature map; boxes
//! decoded from `bbox_pred` with the "+1" pixel convention (or offset directly with `iou_loss`)
//! and clipped to the image in `im_info` (height, width, scale); positions beyond the image's
//! feature extent and boxes smaller than `rpn_min_size × scale` get score -1 (the small ones
//! also grow by that size); the `rpn_pre_nms_top_n` best (stable) go through greedy NMS
//! (IoU > `threshold`, "+1" areas) that keeps at most `rpn_post_nms_top_n`; the output always has
//! `rpn_post_nms_top_n` rows per image, repeating the kept ones cyclically.
//!
//! The anchors depend only on the feature map size and are computed here; "+1" IoU is plain IoU
//! of boxes whose far corners move by 1, so core NonMaxSuppression does the suppression, scored
//! by rank so that it visits boxes in MXNet's order.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use super::detection::{bin, coord, floats, known};
use crate::error::Result;
use ferry_ir::ops::{BinaryOp, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[("_contrib_Proposal", proposal), ("_contrib_MultiProposal", proposal)];

struct Params {
    pre: u64,
    post: u64,
    /// At most this many boxes survive NMS (post, but not above pre).
    post_limit: u64,
    threshold: f32,
    min_size: f32,
    stride: f32,
    iou_loss: bool,
}

/// MXNet's anchor windows `[A, 4]`, ratios outer, scales inner (f32 as MXNet computes them).
fn base_anchors(stride: f32, ratios: &[f64], scales: &[f64]) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    let (w, h) = (stride, stride);
    let x_ctr = (0.5 * (w as f64 - 1.0)) as f32;
    let y_ctr = (0.5 * (h as f64 - 1.0)) as f32;
    for r in ratios {
        for s in scales {
            let (r, s) = (*r as f32, *s as f32);
            let size_ratios = (w * h / r).floor();
            let new_w = (size_ratios.sqrt() + 0.5).floor() * s;
            let new_h = (new_w / s * r + 0.5).floor() * s;
            out.push([
                x_ctr - 0.5 * (new_w - 1.0),
                y_ctr - 0.5 * (new_h - 1.0),
                x_ctr + 0.5 * (new_w - 1.0),
                y_ctr + 0.5 * (new_h - 1.0),
            ]);
        }
    }
    out
}

fn f32_const(c: &mut NodeCtx, shape: Vec<u64>, v: &[f32], hint: &str) -> ValueId {
    c.constant(Tensor::from_f32(shape, v).expect("length matches"), hint)
}

fn reshape(c: &mut NodeCtx, x: ValueId, shape: &[i64], hint: &str) -> ValueId {
    let s = c.const_i64s(shape, "shape");
    c.emit_temp(Op::Reshape { allowzero: false }, vec![x, s], hint)
}

fn slice(c: &mut NodeCtx, x: ValueId, axis: i64, start: i64, end: i64, hint: &str) -> ValueId {
    let (s, e, a) = (c.const_i64s(&[start], "start"), c.const_i64s(&[end], "end"), c.const_i64s(&[axis], "axis"));
    c.emit_temp(Op::Slice, vec![x, s, e, a], hint)
}

fn col(c: &mut NodeCtx, x: ValueId) -> ValueId {
    let ax = c.const_i64s(&[-1], "last");
    c.emit_temp(Op::Unsqueeze, vec![x, ax], "col")
}

fn proposal(c: &mut NodeCtx) -> Result<()> {
    let (cls, deltas, info) = (c.input(0)?, c.input(1)?, c.input(2)?);
    for i in 0..3 {
        if c.input_dtype(i)? != DType::F32 {
            return Err(c.error("supported for float32 inputs only"));
        }
    }
    let d = known(c, cls)?;
    let [b, two_a, h, w] = d[..] else { return Err(c.error("cls_prob must be [batch, 2 * anchors, height, width]")) };
    let multi = c.op_type == "_contrib_MultiProposal";
    if !multi && b != 1 {
        return Err(c.error("Proposal takes one image (MXNet: use MultiProposal for batches)"));
    }
    let scales = floats(c, "scales")?.unwrap_or(vec![4.0, 8.0, 16.0, 32.0]);
    let ratios = floats(c, "ratios")?.unwrap_or(vec![0.5, 1.0, 2.0]);
    let a = two_a / 2;
    if two_a % 2 != 0 || a != (scales.len() * ratios.len()) as u64 || a == 0 {
        return Err(c.error("cls_prob's channels must be 2 × len(ratios) × len(scales)"));
    }
    if known(c, deltas)? != [b, 4 * a, h, w] {
        return Err(c.error("bbox_pred must be [batch, 4 * anchors, height, width]"));
    }
    let count = a * h * w;
    let pre = c.int("rpn_pre_nms_top_n", 6000)?;
    let pre = if pre > 0 { (pre as u64).min(count) } else { count };
    let post = u64::try_from(c.int("rpn_post_nms_top_n", 300)?).map_err(|_| c.error("rpn_post_nms_top_n < 0"))?;
    let stride = c.int("feature_stride", 16)?;
    if stride <= 0 || post == 0 || count == 0 {
        return Err(c.error("feature_stride, rpn_post_nms_top_n and the feature map must be positive"));
    }
    let p = Params {
        pre,
        post,
        post_limit: post.min(pre),
        threshold: c.float("threshold", 0.7)? as f32,
        min_size: c.int("rpn_min_size", 16)? as f32,
        stride: stride as f32,
        iou_loss: c.bool("iou_loss", false)?,
    };
    // Shifted anchors, row (y * W + x) * A + a, and each row's feature position.
    let base = base_anchors(p.stride, &ratios, &scales);
    let (mut anchors, mut ys, mut xs) = (Vec::new(), Vec::new(), Vec::new());
    for y in 0..h {
        for x in 0..w {
            for an in &base {
                let (sx, sy) = (x as f32 * p.stride, y as f32 * p.stride);
                anchors.extend([an[0] + sx, an[1] + sy, an[2] + sx, an[3] + sy]);
                ys.push(y as f32);
                xs.push(x as f32);
            }
        }
    }
    let anchors = f32_const(c, vec![count, 4], &anchors, "anchors");
    let ys = f32_const(c, vec![count], &ys, "row_y");
    let xs = f32_const(c, vec![count], &xs, "row_x");
    let (mut rois, mut scores) = (Vec::new(), Vec::new());
    for img in 0..b {
        let (r, s) = one_image(c, &p, [cls, deltas, info], img as i64, [a, h, w], [anchors, ys, xs])?;
        rois.push(r);
        scores.push(s);
    }
    let (rois, scores) = if b == 1 {
        (rois[0], scores[0])
    } else {
        (
            c.emit_temp(Op::Concat { axis: 0 }, rois, "all_rois"),
            c.emit_temp(Op::Concat { axis: 0 }, scores, "all_scores"),
        )
    };
    c.emit_out(Op::Identity, vec![rois], 0);
    if c.output(1).is_some() {
        c.emit_out(Op::Identity, vec![scores], 1);
    }
    Ok(())
}

/// The `[post, 5]` rois (image index first) and `[post, 1]` scores of image `img`.
fn one_image(
    c: &mut NodeCtx,
    p: &Params,
    [cls, deltas, info]: [ValueId; 3],
    img: i64,
    [a, h, w]: [u64; 3],
    [anchors, ys, xs]: [ValueId; 3],
) -> Result<(ValueId, ValueId)> {
    let (ai, hi, wi) = (a as i64, h as i64, w as i64);
    let count = a * h * w;
    let f = |c: &mut NodeCtx, v: f64, hint: &str| c.scalar(DType::F32, v, hint);
    // Foreground scores [A, H, W] -> rows [H * W * A].
    let sc = slice(c, cls, 0, img, img + 1, "image_scores");
    let sc = slice(c, sc, 1, ai, 2 * ai, "foreground");
    let sc = reshape(c, sc, &[ai, hi, wi], "scores_ahw");
    let sc = c.emit_temp(Op::Transpose { perm: Some(vec![1, 2, 0]) }, vec![sc], "scores_hwa");
    let mut score = reshape(c, sc, &[count as i64], "scores");
    // Deltas [A * 4, H, W] -> rows [H * W * A, 4].
    let dl = slice(c, deltas, 0, img, img + 1, "image_deltas");
    let dl = reshape(c, dl, &[ai, 4, hi, wi], "deltas_a4hw");
    let dl = c.emit_temp(Op::Transpose { perm: Some(vec![2, 3, 0, 1]) }, vec![dl], "deltas_hwa4");
    let dl = reshape(c, dl, &[count as i64, 4], "deltas");
    // Image height, width, scale.
    let im = slice(c, info, 0, img, img + 1, "image_info");
    let im = reshape(c, im, &[-1], "info");
    let [im_h, im_w, im_s] = [0, 1, 2].map(|k| coord(c, im, k));
    let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|k| coord(c, anchors, k));
    let [dx, dy, dw, dh] = [0, 1, 2, 3].map(|k| coord(c, dl, k));
    let one = f(c, 1.0, "one")?;
    let half = f(c, 0.5, "half")?;
    let mut boxes = if p.iou_loss {
        [
            bin(c, BinaryOp::Add, x1, dx, "x1"),
            bin(c, BinaryOp::Add, y1, dy, "y1"),
            bin(c, BinaryOp::Add, x2, dw, "x2"),
            bin(c, BinaryOp::Add, y2, dh, "y2"),
        ]
    } else {
        let bw = bin(c, BinaryOp::Sub, x2, x1, "w0");
        let bw = bin(c, BinaryOp::Add, bw, one, "w");
        let bh = bin(c, BinaryOp::Sub, y2, y1, "h0");
        let bh = bin(c, BinaryOp::Add, bh, one, "h");
        let hw = bin(c, BinaryOp::Sub, bw, one, "w1");
        let hw = bin(c, BinaryOp::Mul, hw, half, "hw");
        let cx = bin(c, BinaryOp::Add, x1, hw, "cx");
        let hh = bin(c, BinaryOp::Sub, bh, one, "h1");
        let hh = bin(c, BinaryOp::Mul, hh, half, "hh");
        let cy = bin(c, BinaryOp::Add, y1, hh, "cy");
        let pcx = bin(c, BinaryOp::Mul, dx, bw, "dxw");
        let pcx = bin(c, BinaryOp::Add, pcx, cx, "pcx");
        let pcy = bin(c, BinaryOp::Mul, dy, bh, "dyh");
        let pcy = bin(c, BinaryOp::Add, pcy, cy, "pcy");
        let ew = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![dw], "exp_w");
        let pw = bin(c, BinaryOp::Mul, ew, bw, "pw");
        let eh = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![dh], "exp_h");
        let ph = bin(c, BinaryOp::Mul, eh, bh, "ph");
        let pw = bin(c, BinaryOp::Sub, pw, one, "pw1");
        let pw = bin(c, BinaryOp::Mul, pw, half, "half_pw");
        let ph = bin(c, BinaryOp::Sub, ph, one, "ph1");
        let ph = bin(c, BinaryOp::Mul, ph, half, "half_ph");
        [
            bin(c, BinaryOp::Sub, pcx, pw, "x1"),
            bin(c, BinaryOp::Sub, pcy, ph, "y1"),
            bin(c, BinaryOp::Add, pcx, pw, "x2"),
            bin(c, BinaryOp::Add, pcy, ph, "y2"),
        ]
    };
    // Clip to the image.
    let zero = f(c, 0.0, "zero")?;
    let max_x = bin(c, BinaryOp::Sub, im_w, one, "max_x");
    let max_y = bin(c, BinaryOp::Sub, im_h, one, "max_y");
    for (k, bx) in boxes.iter_mut().enumerate() {
        let hi = if k % 2 == 0 { max_x } else { max_y };
        let v = bin(c, BinaryOp::Min, *bx, hi, "clip_hi");
        *bx = bin(c, BinaryOp::Max, v, zero, "clipped");
    }
    // Positions beyond the image's own feature extent (padding) score -1.
    let m1 = f(c, -1.0, "minus_one")?;
    let stride = f(c, p.stride as f64, "stride")?;
    let real_h = bin(c, BinaryOp::Div, im_h, stride, "real_h");
    let real_h = c.emit_temp(Op::Unary(UnaryOp::Floor), vec![real_h], "real_h_int");
    let real_w = bin(c, BinaryOp::Div, im_w, stride, "real_w");
    let real_w = c.emit_temp(Op::Unary(UnaryOp::Floor), vec![real_w], "real_w_int");
    let out_h = bin(c, BinaryOp::GreaterOrEqual, ys, real_h, "beyond_h");
    let out_w = bin(c, BinaryOp::GreaterOrEqual, xs, real_w, "beyond_w");
    let padded = bin(c, BinaryOp::Or, out_h, out_w, "padded");
    score = c.emit_temp(Op::Where, vec![padded, m1, score], "score_unpadded");
    // Too small boxes: score -1, and they grow by min_size / 2 on every side.
    let ms = f(c, p.min_size as f64, "min_size")?;
    let ms = bin(c, BinaryOp::Mul, ms, im_s, "min_size_scaled");
    let iw = bin(c, BinaryOp::Sub, boxes[2], boxes[0], "iw0");
    let iw = bin(c, BinaryOp::Add, iw, one, "iw");
    let ih = bin(c, BinaryOp::Sub, boxes[3], boxes[1], "ih0");
    let ih = bin(c, BinaryOp::Add, ih, one, "ih");
    let sw = bin(c, BinaryOp::Less, iw, ms, "narrow");
    let sh = bin(c, BinaryOp::Less, ih, ms, "short");
    let small = bin(c, BinaryOp::Or, sw, sh, "small");
    let two = f(c, 2.0, "two")?;
    let grow = bin(c, BinaryOp::Div, ms, two, "grow");
    for (k, bx) in boxes.iter_mut().enumerate() {
        let op = if k < 2 { BinaryOp::Sub } else { BinaryOp::Add };
        let g = bin(c, op, *bx, grow, "grown");
        *bx = c.emit_temp(Op::Where, vec![small, g, *bx], "filtered");
    }
    score = c.emit_temp(Op::Where, vec![small, m1, score], "score_filtered");
    // The pre best rows, best first (stable).
    let mut fields: Vec<ValueId> = boxes.to_vec();
    fields.push(score);
    let fields: Vec<ValueId> = fields.into_iter().map(|v| col(c, v)).collect();
    let dets = c.emit_temp(Op::Concat { axis: -1 }, fields, "dets");
    let k = c.const_i64s(&[p.pre as i64], "pre_nms_top_n");
    let (top, order) = (c.temp("top_scores"), c.temp("top_order"));
    c.emit(Op::TopK { axis: 0, largest: true, sorted: true }, vec![Some(score), Some(k)], vec![Some(top), Some(order)]);
    let ordered = c.emit_temp(Op::Gather { axis: 0 }, vec![dets, order], "ordered");
    // Greedy NMS in that order, "+1" areas: far corners + 1.
    let corners = slice(c, ordered, 1, 0, 4, "corners");
    let plus: [f32; 4] = [0.0, 0.0, 1.0, 1.0];
    let plus = f32_const(c, vec![4], &plus, "far_corner_shift");
    let nb = bin(c, BinaryOp::Add, corners, plus, "nms_boxes");
    let ax0 = c.const_i64s(&[0], "axis0");
    let nb = c.emit_temp(Op::Unsqueeze, vec![nb, ax0], "nms_boxes3");
    let rank: Vec<f32> = (0..p.pre).map(|i| (p.pre - i) as f32).collect();
    let rank = f32_const(c, vec![1, 1, p.pre], &rank, "rank");
    let max_out = c.const_i64s(&[p.post_limit as i64], "post_nms_top_n");
    let iou = f32_const(c, vec![1], &[p.threshold], "iou_threshold");
    let sel = c.emit_temp(Op::NonMaxSuppression { center_point_box: false }, vec![nb, rank, max_out, iou], "selected");
    let two = c.const_i64s(&[2], "box_column");
    let keep = c.emit_temp(Op::Gather { axis: 1 }, vec![sel, two], "keep2");
    let keep = reshape(c, keep, &[-1], "keep");
    // Exactly post rows: the kept ones, repeated cyclically.
    let kn = c.emit_temp(Op::Shape { start: 0, end: None }, vec![keep], "kept_count");
    let rows: Vec<i64> = (0..p.post as i64).collect();
    let rows = c.const_i64s(&rows, "out_rows");
    let cyc = c.emit_temp(Op::Binary(BinaryOp::Mod), vec![rows, kn], "cyclic");
    let pick = c.emit_temp(Op::Gather { axis: 0 }, vec![keep, cyc], "picked");
    let out = c.emit_temp(Op::Gather { axis: 0 }, vec![ordered, pick], "out_dets");
    let boxes = slice(c, out, 1, 0, 4, "out_boxes");
    let scores = slice(c, out, 1, 4, 5, "out_scores");
    let idx = vec![img as f32; p.post as usize];
    let idx = f32_const(c, vec![p.post, 1], &idx, "image_index");
    let rois = c.emit_temp(Op::Concat { axis: 1 }, vec![idx, boxes], "rois");
    Ok((rois, scores))
}
