//! Resizing and detection ops: AdaptiveAvgPooling2D, BilinearResize2D, UpSampling (bilinear),
//! box_iou, box_decode, MultiBoxPrior — compositions of core ops.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use crate::error::Result;
use ferry_ir::ops::AutoPad;
use ferry_ir::ops::{BinaryOp, Conv, ConvTranspose, Resize, UnaryOp};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("_contrib_AdaptiveAvgPooling2D", adaptive_avg_pool),
    ("_contrib_BilinearResize2D", bilinear_resize),
    ("_contrib_box_iou", box_iou),
    ("_contrib_box_decode", box_decode),
    ("_contrib_MultiBoxPrior", multibox_prior),
    ("_contrib_box_nms", box_nms),
    ("box_nms", box_nms),
];

pub(super) fn known(c: &NodeCtx, v: ValueId) -> Result<Vec<u64>> {
    c.dims_of(v)
        .and_then(|d| d.into_iter().collect::<Option<Vec<u64>>>())
        .ok_or_else(|| c.error("the input shape must be known (give input shapes with --input-shape)"))
}

/// A tuple of floats like "(0.5, 0.25)" or "1".
pub(super) fn floats(c: &NodeCtx, name: &str) -> Result<Option<Vec<f64>>> {
    let Some(v) = c.attr(name) else { return Ok(None) };
    let inner = v.trim().trim_start_matches(['(', '[']).trim_end_matches([')', ']']);
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().map_err(|_| c.error(format!("attribute '{name}' = '{v}' is not a tuple of numbers"))))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

pub(super) fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![a, b], hint)
}

/// `[n_out, n_in]` averaging weights of adaptive pooling along one axis (PyTorch/MXNet bins:
/// `floor(i*n/o) .. ceil((i+1)*n/o)`).
fn adaptive_matrix(n_in: u64, n_out: u64) -> Vec<f32> {
    let mut m = vec![0f32; (n_in * n_out) as usize];
    for i in 0..n_out {
        let s = (i * n_in) / n_out;
        let e = ((i + 1) * n_in).div_ceil(n_out);
        for j in s..e {
            m[(i * n_in + j) as usize] = 1.0 / (e - s) as f32;
        }
    }
    m
}

/// Mean over each output cell's rectangle = row weights · x · column weightsᵀ.
fn adaptive_avg_pool(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let d = known(c, x)?;
    if d.len() != 4 {
        return Err(c.error("AdaptiveAvgPooling2D needs NCHW data"));
    }
    let size = c.ints("output_size")?.unwrap_or_default();
    let (oh, ow) = match size.as_slice() {
        [] => (1, 1),
        [s] => (*s as u64, *s as u64),
        [h, w] => (*h as u64, *w as u64),
        _ => return Err(c.error("output_size has more than two entries")),
    };
    if oh == 0 || ow == 0 {
        return Err(c.error("output_size must be positive"));
    }
    let dt = c.input_dtype(0)?;
    if dt != DType::F32 {
        return Err(c.error("AdaptiveAvgPooling2D is supported for float32 data only"));
    }
    let (h, w) = (d[2], d[3]);
    let rows = Tensor::from_f32(vec![oh, h], &adaptive_matrix(h, oh)).expect("length matches");
    let mut cols_t = vec![0f32; (w * ow) as usize];
    let cols = adaptive_matrix(w, ow);
    for i in 0..ow {
        for j in 0..w {
            cols_t[(j * ow + i) as usize] = cols[(i * w + j) as usize];
        }
    }
    let cols = Tensor::from_f32(vec![w, ow], &cols_t).expect("length matches");
    let rows = c.constant(rows, "row_weights");
    let cols = c.constant(cols, "col_weights");
    let y = c.emit_temp(Op::MatMul, vec![rows, x], "rows_pooled");
    c.emit_out(Op::MatMul, vec![y, cols], 0);
    Ok(())
}

fn linear_resize(c: &mut NodeCtx, x: ValueId, out: [u64; 4], align_corners: bool) {
    let r = Resize {
        mode: "linear".into(),
        coordinate_transformation_mode: if align_corners { "align_corners" } else { "pytorch_half_pixel" }.into(),
        nearest_mode: "round_prefer_floor".into(),
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        keep_aspect_ratio_policy: "stretch".into(),
        axes: None,
    };
    let sizes: Vec<i64> = out.iter().map(|d| *d as i64).collect();
    let s = c.const_i64s(&sizes, "sizes");
    let o = c.output(0).unwrap_or_else(|| c.temp("unused"));
    c.emit(Op::Resize(r), vec![Some(x), None, None, Some(s)], vec![Some(o)]);
}

fn bilinear_resize(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let d = known(c, x)?;
    if d.len() != 4 {
        return Err(c.error("BilinearResize2D needs NCHW data"));
    }
    let align = c.bool("align_corners", true)?;
    let mode = c.string("mode", "size");
    let (h, w) = (d[2], d[3]);
    let (oh, ow) = match mode.as_str() {
        "like" => {
            let l = c.input(1)?;
            let dl = known(c, l)?;
            (dl[dl.len() - 2], dl[dl.len() - 1])
        }
        "size" => {
            let (sh, sw) = (c.float_opt("scale_height")?, c.float_opt("scale_width")?);
            match (sh, sw) {
                (Some(sh), Some(sw)) => (((h as f64) * sh) as u64, ((w as f64) * sw) as u64),
                (None, None) => (c.int("height", 1)? as u64, c.int("width", 1)? as u64),
                _ => return Err(c.error("give both scale_height and scale_width")),
            }
        }
        other => return Err(c.error(format!("BilinearResize2D mode '{other}' is not supported yet"))),
    };
    linear_resize(c, x, [d[0], d[1], oh, ow], align);
    Ok(())
}

/// UpSampling with sample_type=bilinear: MXNet runs a grouped Deconvolution with the stored
/// (bilinear-initialized) weight.
pub fn upsampling_bilinear(c: &mut NodeCtx) -> Result<()> {
    let s = c.int("scale", 1)?;
    let s = u64::try_from(s).ok().filter(|s| *s > 0).ok_or_else(|| c.error("scale must be positive"))?;
    let f = c.int("num_filter", 0)?;
    let f = u64::try_from(f).ok().filter(|f| *f > 0).ok_or_else(|| c.error("num_filter must be positive"))?;
    let (x, w) = (c.input(0)?, c.input(1)?);
    let k = 2 * s - s % 2;
    let p = (s - 1).div_ceil(2);
    let conv = Conv {
        kernel_shape: Some(vec![k, k]),
        strides: vec![s, s],
        dilations: vec![1, 1],
        pads: AutoPad::Explicit(vec![p, p, p, p]),
        group: f,
    };
    let op = Op::ConvTranspose(ConvTranspose { conv, output_padding: vec![0, 0], output_shape: None });
    c.emit_out(op, vec![x, w], 0);
    Ok(())
}

/// Coordinate `k` of boxes `[..., 4]`: `[...]`.
pub(super) fn coord(c: &mut NodeCtx, b: ValueId, k: i64) -> ValueId {
    let i = c.constant(Tensor::from_i64(vec![], &[k]).expect("scalar"), "coord");
    c.emit_temp(Op::Gather { axis: -1 }, vec![b, i], "coord")
}

/// (x1, y1, x2, y2) of boxes in `format` ("corner" or "center").
fn corners(c: &mut NodeCtx, b: ValueId, format: &str, dt: DType) -> Result<[ValueId; 4]> {
    let v = [coord(c, b, 0), coord(c, b, 1), coord(c, b, 2), coord(c, b, 3)];
    match format {
        "corner" => Ok(v),
        "center" => {
            let half = c.scalar(dt, 0.5, "half")?;
            let hw = bin(c, BinaryOp::Mul, v[2], half, "half_w");
            let hh = bin(c, BinaryOp::Mul, v[3], half, "half_h");
            Ok([
                bin(c, BinaryOp::Sub, v[0], hw, "x1"),
                bin(c, BinaryOp::Sub, v[1], hh, "y1"),
                bin(c, BinaryOp::Add, v[0], hw, "x2"),
                bin(c, BinaryOp::Add, v[1], hh, "y2"),
            ])
        }
        other => Err(c.error(format!("unknown box format '{other}'"))),
    }
}

/// IoU of every lhs box with every rhs box: `lhs.shape[:-1] + rhs.shape[:-1]`.
fn box_iou(c: &mut NodeCtx) -> Result<()> {
    let (l, r) = (c.input(0)?, c.input(1)?);
    let dt = c.input_dtype(0)?;
    let rr = c.input_rank(1)?;
    let format = c.string("format", "corner");
    let a = corners(c, l, &format, dt)?;
    let b = corners(c, r, &format, dt)?;
    // lhs coords get rank(rhs)-1 trailing unit axes so they broadcast against rhs coords.
    let lr = c.input_rank(0)?;
    let axes: Vec<i64> = (0..rr as i64 - 1).map(|k| (lr as i64 - 1) + k).collect();
    let a = if axes.is_empty() {
        a
    } else {
        let ax = c.const_i64s(&axes, "axes");
        a.map(|v| c.emit_temp(Op::Unsqueeze, vec![v, ax], "lhs_b"))
    };
    let zero = c.scalar(dt, 0.0, "zero")?;
    let ix1 = bin(c, BinaryOp::Max, a[0], b[0], "ix1");
    let iy1 = bin(c, BinaryOp::Max, a[1], b[1], "iy1");
    let ix2 = bin(c, BinaryOp::Min, a[2], b[2], "ix2");
    let iy2 = bin(c, BinaryOp::Min, a[3], b[3], "iy2");
    let iw = bin(c, BinaryOp::Sub, ix2, ix1, "iw");
    let iw = bin(c, BinaryOp::Max, iw, zero, "iw0");
    let ih = bin(c, BinaryOp::Sub, iy2, iy1, "ih");
    let ih = bin(c, BinaryOp::Max, ih, zero, "ih0");
    let inter = bin(c, BinaryOp::Mul, iw, ih, "inter");
    let area = |c: &mut NodeCtx, v: &[ValueId; 4]| {
        let w = bin(c, BinaryOp::Sub, v[2], v[0], "w");
        let h = bin(c, BinaryOp::Sub, v[3], v[1], "h");
        bin(c, BinaryOp::Mul, w, h, "area")
    };
    let aa = area(c, &a);
    let ab = area(c, &b);
    let u = bin(c, BinaryOp::Add, aa, ab, "area_sum");
    let u = bin(c, BinaryOp::Sub, u, inter, "union");
    c.emit_out(Op::Binary(BinaryOp::Div), vec![inter, u], 0);
    Ok(())
}

/// Center-offset deltas `[B, N, 4]` applied to anchors `[1, N, 4]`: corner boxes.
fn box_decode(c: &mut NodeCtx) -> Result<()> {
    let (x, anchors) = (c.input(0)?, c.input(1)?);
    let dt = c.input_dtype(0)?;
    let std = [c.float("std0", 1.0)?, c.float("std1", 1.0)?, c.float("std2", 1.0)?, c.float("std3", 1.0)?];
    let clip = c.float("clip", -1.0)?;
    let format = c.string("format", "center");
    let half = c.scalar(dt, 0.5, "half")?;
    let [ax, ay, aw, ah] = match format.as_str() {
        "center" => [coord(c, anchors, 0), coord(c, anchors, 1), coord(c, anchors, 2), coord(c, anchors, 3)],
        _ => {
            let v = corners(c, anchors, &format, dt)?;
            let w = bin(c, BinaryOp::Sub, v[2], v[0], "aw");
            let h = bin(c, BinaryOp::Sub, v[3], v[1], "ah");
            let hw = bin(c, BinaryOp::Mul, w, half, "half_aw");
            let hh = bin(c, BinaryOp::Mul, h, half, "half_ah");
            [bin(c, BinaryOp::Add, v[0], hw, "ax"), bin(c, BinaryOp::Add, v[1], hh, "ay"), w, h]
        }
    };
    let mut d = Vec::new();
    for (k, s) in std.iter().enumerate() {
        let v = coord(c, x, k as i64);
        let s = c.scalar(dt, *s, "std")?;
        d.push(bin(c, BinaryOp::Mul, v, s, "scaled"));
    }
    if clip > 0.0 {
        let cl = c.scalar(dt, clip, "clip")?;
        d[2] = bin(c, BinaryOp::Min, d[2], cl, "dw_clipped");
        d[3] = bin(c, BinaryOp::Min, d[3], cl, "dh_clipped");
    }
    let ox = bin(c, BinaryOp::Mul, d[0], aw, "dx_w");
    let ox = bin(c, BinaryOp::Add, ox, ax, "ox");
    let oy = bin(c, BinaryOp::Mul, d[1], ah, "dy_h");
    let oy = bin(c, BinaryOp::Add, oy, ay, "oy");
    let ew = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![d[2]], "exp_w");
    let ow = bin(c, BinaryOp::Mul, ew, aw, "ow");
    let ow = bin(c, BinaryOp::Mul, ow, half, "half_ow");
    let eh = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![d[3]], "exp_h");
    let oh = bin(c, BinaryOp::Mul, eh, ah, "oh");
    let oh = bin(c, BinaryOp::Mul, oh, half, "half_oh");
    let parts = [
        bin(c, BinaryOp::Sub, ox, ow, "x1"),
        bin(c, BinaryOp::Sub, oy, oh, "y1"),
        bin(c, BinaryOp::Add, ox, ow, "x2"),
        bin(c, BinaryOp::Add, oy, oh, "y2"),
    ];
    let ax = c.const_i64s(&[-1], "last");
    let parts: Vec<ValueId> = parts.iter().map(|p| c.emit_temp(Op::Unsqueeze, vec![*p, ax], "part")).collect();
    c.emit_out(Op::Concat { axis: -1 }, parts, 0);
    Ok(())
}

/// Anchor boxes for every pixel of the feature map, computed at import (they depend only on its
/// height and width): `[1, H*W*(sizes+ratios-1), 4]`.
fn multibox_prior(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let d = known(c, x)?;
    if d.len() != 4 {
        return Err(c.error("MultiBoxPrior needs NCHW data"));
    }
    let (h, w) = (d[2], d[3]);
    let sizes = floats(c, "sizes")?.unwrap_or(vec![1.0]);
    let ratios = floats(c, "ratios")?.unwrap_or(vec![1.0]);
    let steps = floats(c, "steps")?.unwrap_or(vec![-1.0, -1.0]);
    let offsets = floats(c, "offsets")?.unwrap_or(vec![0.5, 0.5]);
    let clip = c.bool("clip", false)?;
    if sizes.is_empty() || ratios.is_empty() || steps.len() != 2 || offsets.len() != 2 {
        return Err(c.error("sizes/ratios must be non-empty, steps/offsets two numbers"));
    }
    let (hf, wf) = (h as f32, w as f32);
    let step_y = if steps[0] > 0.0 { steps[0] as f32 } else { 1.0 / hf };
    let step_x = if steps[1] > 0.0 { steps[1] as f32 } else { 1.0 / wf };
    let mut out: Vec<f32> = Vec::new();
    for r in 0..h {
        let cy = (r as f32 + offsets[0] as f32) * step_y;
        for col in 0..w {
            let cx = (col as f32 + offsets[1] as f32) * step_x;
            let mut push = |size: f32, ratio: f32| {
                let bw = size * hf / wf * ratio / 2.0;
                let bh = size / ratio / 2.0;
                for v in [cx - bw, cy - bh, cx + bw, cy + bh] {
                    out.push(if clip { v.clamp(0.0, 1.0) } else { v });
                }
            };
            let r0 = (ratios[0] as f32).sqrt();
            for s in &sizes {
                push(*s as f32, r0);
            }
            for ra in &ratios[1..] {
                push(sizes[0] as f32, (*ra as f32).sqrt());
            }
        }
    }
    let n = (out.len() / 4) as u64;
    let t = Tensor::from_f32(vec![1, n, 4], &out).expect("length matches");
    let dt = c.input_dtype(0)?;
    if dt == DType::F32 {
        c.emit_out(Op::Constant(t), vec![], 0);
    } else {
        let a = c.constant(t, "anchors");
        c.emit_out(super::elementwise::cast_op(dt), vec![a], 0);
    }
    Ok(())
}

/// `x[..., start:start+len]` along the last axis.
pub(super) fn last_slice(c: &mut NodeCtx, x: ValueId, start: i64, len: i64) -> ValueId {
    let s = c.const_i64s(&[start], "start");
    let e = c.const_i64s(&[start + len], "end");
    let a = c.const_i64s(&[-1], "axis");
    c.emit_temp(Op::Slice, vec![x, s, e, a], "cols")
}

/// Boxes `[..., 4]` of class `ids` (`[...]`) moved apart so that boxes of different classes never
/// overlap: class k shifts by k * (2 max|coord| + 1) on the position coordinates (x, y only for
/// center boxes). One class-agnostic NonMaxSuppression is then class-aware.
pub(super) fn class_shifted(c: &mut NodeCtx, boxes: ValueId, ids: ValueId, center: bool, dt: DType) -> Result<ValueId> {
    let ab = c.emit_temp(Op::Unary(UnaryOp::Abs), vec![boxes], "abs");
    let op = Op::Reduce { kind: ferry_ir::ops::ReduceKind::Max, keepdims: false, noop_with_empty_axes: false };
    let m = c.emit_temp(op, vec![ab], "extent");
    let two = c.scalar(dt, 2.0, "two")?;
    let one = c.scalar(dt, 1.0, "one")?;
    let m = bin(c, BinaryOp::Mul, m, two, "extent2");
    let m = bin(c, BinaryOp::Add, m, one, "stride");
    let off = bin(c, BinaryOp::Mul, ids, m, "offset");
    let ax = c.const_i64s(&[-1], "last");
    let off = c.emit_temp(Op::Unsqueeze, vec![off, ax], "offset_b");
    let which: &[f32] = if center { &[1.0, 1.0, 0.0, 0.0] } else { &[1.0, 1.0, 1.0, 1.0] };
    let which = c.constant(Tensor::from_f32(vec![4], which).expect("length matches"), "shifted");
    let off = bin(c, BinaryOp::Mul, off, which, "offset4");
    Ok(bin(c, BinaryOp::Add, boxes, off, "class_boxes"))
}

/// `[B, N]` booleans: true at (b, i) for every row (b, 0, i) NonMaxSuppression selected (`sel`);
/// `like` is any `[B, N, ...]` value giving B and N.
pub(super) fn selected_mask(c: &mut NodeCtx, sel: ValueId, like: ValueId) -> ValueId {
    let cols = c.const_i64s(&[0, 2], "batch_box");
    let idx = c.emit_temp(Op::Gather { axis: 1 }, vec![sel, cols], "sel_idx");
    let k = c.emit_temp(Op::Shape { start: 0, end: Some(1) }, vec![sel], "num_selected");
    let ones = c.emit_temp(Op::ConstantOfShape(Tensor::from_f32(vec![1], &[1.0]).expect("one")), vec![k], "ones");
    let bn = c.emit_temp(Op::Shape { start: 0, end: Some(2) }, vec![like], "bn");
    let zeros = c.emit_temp(Op::ConstantOfShape(Tensor::from_f32(vec![1], &[0.0]).expect("one")), vec![bn], "zeros");
    let op = Op::ScatterNd { reduction: ferry_ir::ops::ScatterReduction::None };
    let keep = c.emit_temp(op, vec![zeros, idx, ones], "keep");
    let zero = c.scalar(DType::F32, 0.0, "zero").expect("f32 scalar");
    c.emit_temp(Op::Binary(BinaryOp::Greater), vec![keep, zero], "kept")
}

/// box_nms on `[B, N, W]` rows: rows that are invalid (score <= valid_thresh, a negative class
/// id or the background id), beyond the `topk` best, or suppressed by a better row of the same
/// class (any class with force_suppress or without id_index) become -1; the rest come first,
/// best score first. Greedy suppression is ONNX NonMaxSuppression over all rows at once; class
/// awareness shifts each class's boxes far apart so that boxes of different classes never overlap.
fn box_nms(c: &mut NodeCtx) -> Result<()> {
    if c.output(1).is_some() {
        return Err(c.error("box_nms's second output (the kept-index record) is not supported"));
    }
    let x = c.input(0)?;
    let d = known(c, x)?;
    let dt = c.input_dtype(0)?;
    if dt != DType::F32 {
        return Err(c.error("box_nms is supported for float32 data only"));
    }
    let (x, batched) = match d.len() {
        3 => (x, true),
        2 => {
            let ax = c.const_i64s(&[0], "axis0");
            (c.emit_temp(Op::Unsqueeze, vec![x, ax], "batched"), false)
        }
        _ => return Err(c.error("box_nms needs [batch, boxes, width] or [boxes, width] data")),
    };
    let (n, width) = (d[d.len() - 2] as i64, d[d.len() - 1] as i64);
    let thresh = c.float("overlap_thresh", 0.5)?;
    let valid = c.float("valid_thresh", 0.0)?;
    let topk = c.int("topk", -1)?;
    let cs = c.int("coord_start", 2)?;
    let si = c.int("score_index", 1)?;
    let id = c.int("id_index", -1)?;
    let bg = c.int("background_id", -1)?;
    let force = c.bool("force_suppress", false)?;
    let in_format = c.string("in_format", "corner");
    if c.string("out_format", &in_format) != in_format {
        return Err(c.error("box_nms with out_format different from in_format is not supported yet"));
    }
    if cs < 0 || cs + 4 > width || si < 0 || si >= width || id >= width {
        return Err(c.error("coord_start/score_index/id_index lie outside the rows"));
    }
    let center = match in_format.as_str() {
        "corner" => false,
        "center" => true,
        other => return Err(c.error(format!("unknown in_format '{other}'"))),
    };
    let ninf = c.scalar(dt, f64::NEG_INFINITY, "minus_inf")?;
    let zero = c.scalar(dt, 0.0, "zero")?;
    let mut score = coord(c, x, si);
    let mut boxes = last_slice(c, x, cs, 4);
    if id >= 0 {
        let ids = coord(c, x, id);
        let neg = bin(c, BinaryOp::Less, ids, zero, "no_class");
        score = c.emit_temp(Op::Where, vec![neg, ninf, score], "score");
        if bg >= 0 {
            let b = c.scalar(dt, bg as f64, "background")?;
            let is_bg = bin(c, BinaryOp::Equal, ids, b, "is_background");
            score = c.emit_temp(Op::Where, vec![is_bg, ninf, score], "score");
        }
        if !force {
            boxes = class_shifted(c, boxes, ids, center, dt)?;
        }
    }
    if topk > 0 && topk < n {
        // Only the topk best rows take part.
        let kv = c.const_i64s(&[topk], "k");
        let (v, i) = (c.temp("top_scores"), c.temp("top_idx"));
        let op = Op::TopK { axis: -1, largest: true, sorted: true };
        c.emit(op, vec![Some(score), Some(kv)], vec![Some(v), Some(i)]);
        let kth = last_slice(c, v, topk - 1, 1);
        let ge = bin(c, BinaryOp::Less, score, kth, "below_topk");
        score = c.emit_temp(Op::Where, vec![ge, ninf, score], "score_topk");
    }
    let ax1 = c.const_i64s(&[1], "axis1");
    let scores3 = c.emit_temp(Op::Unsqueeze, vec![score, ax1], "scores");
    let maxo = c.const_i64s(&[n], "max_out");
    let iou = c.constant(Tensor::from_f32(vec![1], &[thresh as f32]).expect("one"), "iou_threshold");
    let st = c.constant(Tensor::from_f32(vec![1], &[valid as f32]).expect("one"), "score_threshold");
    let sel = c.emit_temp(
        Op::NonMaxSuppression { center_point_box: center },
        vec![boxes, scores3, maxo, iou, st],
        "selected",
    );
    let kept = selected_mask(c, sel, x);
    // Kept rows first, best score first.
    let key = c.emit_temp(Op::Where, vec![kept, score, ninf], "order_key");
    let kv = c.const_i64s(&[n], "n");
    let order = c.temp("order");
    let sorted = c.temp("sorted_key");
    c.emit(
        Op::TopK { axis: 1, largest: true, sorted: true },
        vec![Some(key), Some(kv)],
        vec![Some(sorted), Some(order)],
    );
    let lastax = c.const_i64s(&[-1], "last");
    let o3 = c.emit_temp(Op::Unsqueeze, vec![order, lastax], "order3");
    let shape3 = c.emit_temp(Op::Shape { start: 0, end: None }, vec![x], "shape");
    let o3 = c.emit_temp(Op::Expand, vec![o3, shape3], "order_rows");
    let rows = c.emit_temp(Op::GatherElements { axis: 1 }, vec![x, o3], "rows");
    let ks = c.emit_temp(Op::GatherElements { axis: 1 }, vec![kept, order], "kept_sorted");
    let ks = c.emit_temp(Op::Unsqueeze, vec![ks, lastax], "kept_rows");
    let m1 = c.scalar(dt, -1.0, "minus_one")?;
    if batched {
        c.emit_out(Op::Where, vec![ks, rows, m1], 0);
    } else {
        let y = c.emit_temp(Op::Where, vec![ks, rows, m1], "out");
        let ax0 = c.const_i64s(&[0], "axis0");
        c.emit_out(Op::Squeeze, vec![y, ax0], 0);
    }
    Ok(())
}
