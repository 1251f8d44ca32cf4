//! GridSample, Col2Im, RoiAlign, MaxUnpool, DeformConv, Det and BitCast -> ONNX.

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_i, attr_ints, attr_s, sizes};
use ferry_ir::DType;
use ferry_ir::ops::{Conv, GridSampleMode, GridSamplePadding};

/// GridSample-20 names the modes linear/nearest/cubic and takes any rank; GridSample-16 spells
/// them bilinear/nearest/bicubic and samples 4-D inputs only.
pub fn grid_sample(
    c: &mut LowerCtx,
    mode: GridSampleMode,
    padding: GridSamplePadding,
    align_corners: bool,
) -> LowerResult {
    c.require_op("GridSample")?;
    let rank = c.input_type(0).and_then(|t| t.shape()).map(|s| s.rank());
    let old = c.opset < 20;
    if old && rank != Some(4) {
        return Err(c.problem("GridSample over other than 4-D inputs (or of unknown rank) needs opset 20", Some(20)));
    }
    let mode = match (mode, old) {
        (GridSampleMode::Linear, false) => "linear",
        (GridSampleMode::Linear, true) => "bilinear",
        (GridSampleMode::Nearest, _) => "nearest",
        (GridSampleMode::Cubic, false) => "cubic",
        (GridSampleMode::Cubic, true) => "bicubic",
    };
    let padding = match padding {
        GridSamplePadding::Zeros => "zeros",
        GridSamplePadding::Border => "border",
        GridSamplePadding::Reflection => "reflection",
    };
    let attrs =
        vec![attr_s("mode", mode), attr_s("padding_mode", padding), attr_i("align_corners", align_corners as i64)];
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("GridSample", inputs, vec![out], attrs);
    Ok(())
}

fn push_sizes(attrs: &mut Vec<crate::proto::AttributeProto>, name: &str, v: &[u64]) {
    if !v.is_empty() {
        attrs.push(attr_ints(name, &sizes(v)));
    }
}

pub fn col2im(c: &mut LowerCtx, dilations: &[u64], pads: &[u64], strides: &[u64]) -> LowerResult {
    c.require_op("Col2Im")?;
    let mut attrs = Vec::new();
    push_sizes(&mut attrs, "dilations", dilations);
    push_sizes(&mut attrs, "pads", pads);
    push_sizes(&mut attrs, "strides", strides);
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("Col2Im", inputs, vec![out], attrs);
    Ok(())
}

/// RoiAlign-10 always shifts by half a pixel on the output side ("output_half_pixel"); the
/// "half_pixel" mode exists from RoiAlign-16.
#[allow(clippy::too_many_arguments)]
pub fn roi_align(
    c: &mut LowerCtx,
    output_height: u64,
    output_width: u64,
    sampling_ratio: u64,
    spatial_scale: f32,
    max_mode: bool,
    half_pixel: bool,
) -> LowerResult {
    c.require_op("RoiAlign")?;
    let mut attrs = vec![
        attr_s("mode", if max_mode { "max" } else { "avg" }),
        attr_i("output_height", output_height as i64),
        attr_i("output_width", output_width as i64),
        attr_i("sampling_ratio", sampling_ratio as i64),
        attr_f("spatial_scale", spatial_scale),
    ];
    if c.opset >= 16 {
        attrs.push(attr_s(
            "coordinate_transformation_mode",
            if half_pixel { "half_pixel" } else { "output_half_pixel" },
        ));
    } else if half_pixel {
        return Err(c.problem("RoiAlign with half_pixel coordinates needs opset 16", Some(16)));
    }
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("RoiAlign", inputs, vec![out], attrs);
    Ok(())
}

pub fn max_unpool(c: &mut LowerCtx, kernel_shape: &[u64], strides: &[u64], pads: &[u64]) -> LowerResult {
    c.require_op("MaxUnpool")?;
    let mut attrs = vec![attr_ints("kernel_shape", &sizes(kernel_shape))];
    push_sizes(&mut attrs, "strides", strides);
    push_sizes(&mut attrs, "pads", pads);
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("MaxUnpool", inputs, vec![out], attrs);
    Ok(())
}

pub fn deform_conv(c: &mut LowerCtx, conv: &Conv, offset_group: u64) -> LowerResult {
    c.require_op("DeformConv")?;
    let mut attrs = super::nn::conv_attrs(conv);
    if offset_group != 1 {
        attrs.push(attr_i("offset_group", offset_group as i64));
    }
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("DeformConv", inputs, vec![out], attrs);
    Ok(())
}

pub fn det(c: &mut LowerCtx) -> LowerResult {
    c.require_op("Det")?;
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("Det", inputs, vec![out], vec![]);
    Ok(())
}

pub fn bit_cast(c: &mut LowerCtx, to: DType) -> LowerResult {
    c.require_op("BitCast")?;
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("BitCast", inputs, vec![out], vec![attr_i("to", to.onnx_code() as i64)]);
    Ok(())
}

/// MaxRoiPool-1 has exactly the core semantics (the Fast R-CNN rounding and bins).
pub fn max_roi_pool(c: &mut LowerCtx, pooled_shape: [u64; 2], spatial_scale: f32) -> LowerResult {
    c.require_op("MaxRoiPool")?;
    let attrs = vec![
        attr_ints("pooled_shape", &[pooled_shape[0] as i64, pooled_shape[1] as i64]),
        attr_f("spatial_scale", spatial_scale),
    ];
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("MaxRoiPool", inputs, vec![out], attrs);
    Ok(())
}
