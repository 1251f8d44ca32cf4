//! Region-of-interest ops: `_contrib_ROIAlign` (core RoiAlign) and `ROIPooling` (core MaxRoiPool).
//! MXNet's rois are `[R, 5]` rows of (batch index, x1, y1, x2, y2); a negative batch index gives
//! an output of zeros.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use super::detection::{bin, coord, last_slice};
use crate::error::Result;
use ferry_ir::ops::BinaryOp;
use ferry_ir::{DType, Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] =
    &[("_contrib_ROIAlign", roi_align), ("ROIPooling", roi_pooling), ("_npx_roi_pooling", roi_pooling)];

/// `pooled_size` as (height, width); both must be positive.
fn pooled_size(c: &NodeCtx) -> Result<(u64, u64)> {
    let p = c.sizes("pooled_size")?.ok_or_else(|| c.error("pooled_size is required"))?;
    let (h, w) = match p.as_slice() {
        [s] => (*s, *s),
        [h, w] => (*h, *w),
        _ => return Err(c.error("pooled_size must have one or two entries")),
    };
    if h == 0 || w == 0 {
        return Err(c.error("pooled_size must be positive"));
    }
    Ok((h, w))
}

/// The rois input as float32 `[R, 5]`, checked.
fn rois_input(c: &NodeCtx) -> Result<ValueId> {
    let rois = c.input(1)?;
    if c.input_dtype(0)? != DType::F32 || c.input_dtype(1)? != DType::F32 {
        return Err(c.error("supported for float32 data and rois only"));
    }
    if let Some(d) = c.dims_of(rois) {
        if d.len() != 2 || d[1].is_some_and(|w| w != 5) {
            return Err(c.error("rois must be [num_rois, 5] (batch index, x1, y1, x2, y2)"));
        }
    }
    Ok(rois)
}

/// Zeroes the rows of `y` (`[R, C, PH, PW]`) whose roi has a negative batch index, as MXNet does.
fn zero_ignored_rois(c: &mut NodeCtx, y: ValueId, batch: ValueId) {
    let zero = c.scalar(DType::F32, 0.0, "zero").expect("f32 scalar");
    let neg = bin(c, BinaryOp::Less, batch, zero, "ignored");
    let axes = c.const_i64s(&[1, 2, 3], "axes");
    let neg = c.emit_temp(Op::Unsqueeze, vec![neg, axes], "ignored4");
    c.emit_out(Op::Where, vec![neg, zero, y], 0);
}

/// ROIAlign = core RoiAlign on (x1, y1, x2, y2) with the batch column as int64 indices; a negative
/// index reads image 0 and the result is then zeroed. `aligned` is ONNX's "half_pixel" mode;
/// `sample_ratio` <= 0 is the adaptive grid (core sampling_ratio 0).
fn roi_align(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rois = rois_input(c)?;
    if c.bool("position_sensitive", false)? {
        return Err(c.error("position_sensitive ROIAlign is not supported"));
    }
    let (ph, pw) = pooled_size(c)?;
    let scale = c.float_opt("spatial_scale")?.ok_or_else(|| c.error("spatial_scale is required"))?;
    let ratio = c.int("sample_ratio", -1)?;
    let aligned = c.bool("aligned", false)?;
    let batch = coord(c, rois, 0);
    let zero = c.scalar(DType::F32, 0.0, "zero")?;
    let clamped = bin(c, BinaryOp::Max, batch, zero, "batch_clamped");
    let idx = c.emit_temp(super::elementwise::cast_op(DType::I64), vec![clamped], "batch_indices");
    let boxes = last_slice(c, rois, 1, 4);
    let op = Op::RoiAlign {
        output_height: ph,
        output_width: pw,
        sampling_ratio: u64::try_from(ratio).unwrap_or(0),
        spatial_scale: scale as f32,
        max_mode: false,
        half_pixel: aligned,
    };
    let y = c.emit_temp(op, vec![x, boxes, idx], "aligned");
    zero_ignored_rois(c, y, batch);
    Ok(())
}

/// ROIPooling = core MaxRoiPool (the Fast R-CNN max pooling over rounded roi bins).
fn roi_pooling(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let rois = rois_input(c)?;
    let (ph, pw) = pooled_size(c)?;
    let scale = c.float_opt("spatial_scale")?.ok_or_else(|| c.error("spatial_scale is required"))?;
    let op = Op::MaxRoiPool { pooled_shape: [ph, pw], spatial_scale: scale as f32 };
    c.emit_out(op, vec![x, rois], 0);
    Ok(())
}
