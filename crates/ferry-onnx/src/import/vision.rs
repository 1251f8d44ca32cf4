//! Sampling, region (RoiAlign, MaxRoiPool), unpooling and linear-algebra ops (GridSample, Col2Im, RoiAlign, MaxUnpool,
//! DeformConv, Det, BitCast), and the quantized ops that are exact compositions of core ops
//! (DynamicQuantizeLinear, QLinearMatMul, ConvInteger, QLinearConv) plus Shrink.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use ferry_ir::ops::{AutoPad, BinaryOp, Cast, GridSampleMode, GridSamplePadding, ReduceKind, UnaryOp};
use ferry_ir::{DType, Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("GridSample", grid_sample),
    ("Col2Im", col2im),
    ("RoiAlign", roi_align),
    ("MaxRoiPool", max_roi_pool),
    ("MaxUnpool", max_unpool),
    ("DeformConv", deform_conv),
    ("Det", det),
    ("BitCast", bit_cast),
    ("Shrink", shrink),
    ("DynamicQuantizeLinear", dynamic_quantize_linear),
    ("QLinearMatMul", qlinear_matmul),
    ("ConvInteger", conv_integer),
    ("QLinearConv", qlinear_conv),
];

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

fn sizes_or(c: &NodeCtx, name: &str) -> Result<Vec<u64>> {
    Ok(c.attr_sizes(name)?.unwrap_or_default())
}

fn grid_sample(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let grid = c.required_input(1)?;
    let default_mode = if c.version >= 20 { "linear" } else { "bilinear" };
    let mode = match c.attr_s("mode", default_mode)?.as_str() {
        "linear" | "bilinear" => GridSampleMode::Linear,
        "nearest" => GridSampleMode::Nearest,
        "cubic" | "bicubic" => GridSampleMode::Cubic,
        other => return Err(c.error(format!("unknown mode '{other}'"))),
    };
    let padding = match c.attr_s("padding_mode", "zeros")?.as_str() {
        "zeros" => GridSamplePadding::Zeros,
        "border" => GridSamplePadding::Border,
        "reflection" => GridSamplePadding::Reflection,
        other => return Err(c.error(format!("unknown padding_mode '{other}'"))),
    };
    let align_corners = c.attr_i("align_corners", 0)? != 0;
    c.emit_to_output(Op::GridSample { mode, padding, align_corners }, vec![Some(x), Some(grid)], 0);
    Ok(Canon::Done)
}

fn col2im(c: &mut NodeCtx) -> Result<Canon> {
    let inputs = vec![Some(c.required_input(0)?), Some(c.required_input(1)?), Some(c.required_input(2)?)];
    let op = Op::Col2Im {
        dilations: sizes_or(c, "dilations")?,
        pads: sizes_or(c, "pads")?,
        strides: sizes_or(c, "strides")?,
    };
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

fn roi_align(c: &mut NodeCtx) -> Result<Canon> {
    let inputs = vec![Some(c.required_input(0)?), Some(c.required_input(1)?), Some(c.required_input(2)?)];
    let size = |c: &NodeCtx, name: &str| -> Result<u64> {
        u64::try_from(c.attr_i(name, if name == "sampling_ratio" { 0 } else { 1 })?)
            .map_err(|_| c.error(format!("{name} must not be negative")))
    };
    let max_mode = match c.attr_s("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        other => return Err(c.error(format!("unknown mode '{other}'"))),
    };
    // RoiAlign-10 has no coordinate_transformation_mode: it behaves as "output_half_pixel".
    let half_pixel = if c.version >= 16 {
        match c.attr_s("coordinate_transformation_mode", "half_pixel")?.as_str() {
            "half_pixel" => true,
            "output_half_pixel" => false,
            other => return Err(c.error(format!("unknown coordinate_transformation_mode '{other}'"))),
        }
    } else {
        false
    };
    let op = Op::RoiAlign {
        output_height: size(c, "output_height")?,
        output_width: size(c, "output_width")?,
        sampling_ratio: size(c, "sampling_ratio")?,
        spatial_scale: c.attr_f("spatial_scale", 1.0)?,
        max_mode,
        half_pixel,
    };
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

fn max_roi_pool(c: &mut NodeCtx) -> Result<Canon> {
    let inputs = vec![Some(c.required_input(0)?), Some(c.required_input(1)?)];
    let pooled = c.attr_sizes("pooled_shape")?.ok_or_else(|| c.error("pooled_shape is required"))?;
    let [h, w] = pooled[..] else { return Err(c.error("pooled_shape must have two entries")) };
    if h == 0 || w == 0 {
        return Err(c.error("pooled_shape must be positive"));
    }
    let op = Op::MaxRoiPool { pooled_shape: [h, w], spatial_scale: c.attr_f("spatial_scale", 1.0)? };
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

fn max_unpool(c: &mut NodeCtx) -> Result<Canon> {
    let inputs = vec![Some(c.required_input(0)?), Some(c.required_input(1)?), c.input(2)];
    let kernel_shape = c.attr_sizes("kernel_shape")?.ok_or_else(|| c.error("kernel_shape is required"))?;
    let op = Op::MaxUnpool { kernel_shape, strides: sizes_or(c, "strides")?, pads: sizes_or(c, "pads")? };
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

fn deform_conv(c: &mut NodeCtx) -> Result<Canon> {
    let inputs = vec![
        Some(c.required_input(0)?),
        Some(c.required_input(1)?),
        Some(c.required_input(2)?),
        c.input(3),
        c.input(4),
    ];
    let mut conv = super::nn::conv_attrs(c)?;
    conv.pads = AutoPad::Explicit(sizes_or(c, "pads")?);
    let offset_group = u64::try_from(c.attr_i("offset_group", 1)?)
        .ok()
        .filter(|g| *g > 0)
        .ok_or_else(|| c.error("offset_group must be positive"))?;
    c.emit_to_output(Op::DeformConv { conv, offset_group }, inputs, 0);
    Ok(Canon::Done)
}

fn det(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    c.emit_to_output(Op::Det, vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn bit_cast(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let to = c.attr_dtype("to")?.ok_or_else(|| c.error("attribute 'to' is required"))?;
    c.emit_to_output(Op::BitCast { to }, vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn konst(c: &mut NodeCtx, dtype: DType, v: f64, hint: &str) -> ValueId {
    let t = scalar(dtype, v).expect("dtype checked by the caller");
    c.constant(t, hint)
}

fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![Some(a), Some(b)], hint)
}

fn cast(c: &mut NodeCtx, x: ValueId, to: DType, hint: &str) -> ValueId {
    c.emit_temp(Op::Cast(Cast { to, saturate: true, round_mode: "up".into() }), vec![Some(x)], hint)
}

/// `x < -lambd ? x + bias : x > lambd ? x - bias : 0`.
fn shrink(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let lambd = c.attr_f("lambd", 0.5)? as f64;
    let bias = c.attr_f("bias", 0.0)? as f64;
    let dtype = need!(c.input_dtype(0).filter(|d| scalar(*d, 0.0).is_some()), "input dtype unknown");
    if !dtype.is_float() && (dtype.is_unsigned_int() || lambd.fract() != 0.0 || bias.fract() != 0.0) {
        return Ok(Canon::KeepOpaque("fractional lambd/bias (or unsigned) on integers".into()));
    }
    let neg_l = konst(c, dtype, -lambd, "neg_lambd");
    let l = konst(c, dtype, lambd, "lambd");
    let b = konst(c, dtype, bias, "bias");
    let zero = konst(c, dtype, 0.0, "zero");
    let below = bin(c, BinaryOp::Less, x, neg_l, "below");
    let above = bin(c, BinaryOp::Greater, x, l, "above");
    let plus = bin(c, BinaryOp::Add, x, b, "plus_bias");
    let minus = bin(c, BinaryOp::Sub, x, b, "minus_bias");
    let upper = c.emit_temp(Op::Where, vec![Some(above), Some(minus), Some(zero)], "upper");
    c.emit_to_output(Op::Where, vec![Some(below), Some(plus), Some(upper)], 0);
    Ok(Canon::Done)
}

/// The function body of DynamicQuantizeLinear-11 (uint8): scale `(max(x, 0) - min(x, 0)) / 255`,
/// zero point `cast(round(clip(-min(x, 0) / scale, 0, 255)))`, then QuantizeLinear.
fn dynamic_quantize_linear(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let dtype = need!(c.input_dtype(0).filter(|d| *d == DType::F32), "input dtype unknown or not float");
    let reduce = |kind| Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
    let zero = konst(c, dtype, 0.0, "zero");
    let qmax = konst(c, dtype, 255.0, "q_max");
    let lo = c.emit_temp(reduce(ReduceKind::Min), vec![Some(x)], "x_min");
    let lo = bin(c, BinaryOp::Min, lo, zero, "x_min_adjusted");
    let hi = c.emit_temp(reduce(ReduceKind::Max), vec![Some(x)], "x_max");
    let hi = bin(c, BinaryOp::Max, hi, zero, "x_max_adjusted");
    let range = bin(c, BinaryOp::Sub, hi, lo, "x_range");
    let scale = match c.output(1) {
        Some(o) => {
            c.emit(Op::Binary(BinaryOp::Div), vec![Some(range), Some(qmax)], vec![Some(o)]);
            o
        }
        None => bin(c, BinaryOp::Div, range, qmax, "scale"),
    };
    let min_scaled = bin(c, BinaryOp::Div, lo, scale, "min_scaled");
    let zp = bin(c, BinaryOp::Sub, zero, min_scaled, "initial_zero_point");
    let zp = bin(c, BinaryOp::Max, zp, zero, "clipped_low");
    let zp = bin(c, BinaryOp::Min, zp, qmax, "clipped");
    let zp = c.emit_temp(Op::Unary(UnaryOp::Round), vec![Some(zp)], "rounded_zero_point");
    let cast_op = Op::Cast(Cast { to: DType::U8, saturate: true, round_mode: "up".into() });
    let zp = match c.output(2) {
        Some(o) => {
            c.emit(cast_op, vec![Some(zp)], vec![Some(o)]);
            o
        }
        None => c.emit_temp(cast_op, vec![Some(zp)], "zero_point"),
    };
    let q = Op::QuantizeLinear { axis: 1, saturate: true, block_size: 0, output_dtype: None };
    c.emit_to_output(q, vec![Some(x), Some(scale), Some(zp)], 0);
    Ok(Canon::Done)
}

fn is_scalar_like(c: &NodeCtx, v: ValueId) -> bool {
    c.value_type(v).shape().and_then(|s| s.numel().known()) == Some(1)
}

fn int8ish(d: Option<DType>) -> Option<DType> {
    d.filter(|d| matches!(d, DType::I8 | DType::U8))
}

/// Ends a quantized op: `y = cast(clip(round(acc * s + zp), qmin, qmax))` with `acc` a float64
/// integer accumulator and `s` the requantization scale (computed in the scales' type, then
/// widened, as the ONNX reference does).
fn requantize(c: &mut NodeCtx, acc: ValueId, s: ValueId, y_zp: Option<ValueId>, qtype: DType) -> Result<()> {
    let s = cast(c, s, DType::F64, "scale_f64");
    let mut r = bin(c, BinaryOp::Mul, acc, s, "rescaled");
    if let Some(zp) = y_zp {
        let zp = cast(c, zp, DType::F64, "y_zero_point_f64");
        r = bin(c, BinaryOp::Add, r, zp, "shifted");
    }
    let r = c.emit_temp(Op::Unary(UnaryOp::Round), vec![Some(r)], "rounded");
    let (lo, hi) = if qtype == DType::I8 { (-128.0, 127.0) } else { (0.0, 255.0) };
    let lo = konst(c, DType::F64, lo, "q_min");
    let hi = konst(c, DType::F64, hi, "q_max");
    let r = bin(c, BinaryOp::Max, r, lo, "clipped_low");
    let r = bin(c, BinaryOp::Min, r, hi, "clipped");
    c.emit_to_output(Op::Cast(Cast { to: qtype, saturate: true, round_mode: "up".into() }), vec![Some(r)], 0);
    Ok(())
}

/// `MatMulInteger(a, b, a_zp, b_zp)` (exact int32), then requantized with
/// `a_scale * b_scale / y_scale`. Per-tensor scales and zero points only.
fn qlinear_matmul(c: &mut NodeCtx) -> Result<Canon> {
    let mut v = Vec::with_capacity(8);
    for i in 0..8 {
        v.push(c.required_input(i)?);
    }
    let [a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp] = v[..] else { unreachable!("eight inputs") };
    need!(int8ish(c.input_dtype(0)).and(int8ish(c.input_dtype(3))), "operand types unknown or not 8-bit integers");
    let qtype = need!(int8ish(c.input_dtype(7)), "output type unknown or not an 8-bit integer");
    if ![a_scale, a_zp, b_scale, b_zp, y_scale, y_zp].iter().all(|v| is_scalar_like(c, *v)) {
        return Ok(Canon::KeepOpaque("per-row/per-column scales or zero points".into()));
    }
    let acc = c.emit_temp(Op::MatMulInteger, vec![Some(a), Some(b), Some(a_zp), Some(b_zp)], "accumulated");
    let acc = cast(c, acc, DType::F64, "accumulated_f64");
    let s = bin(c, BinaryOp::Mul, a_scale, b_scale, "ab_scale");
    let s = bin(c, BinaryOp::Div, s, y_scale, "requant_scale");
    requantize(c, acc, s, Some(y_zp), qtype)?;
    Ok(Canon::Done)
}

/// `(cast(x) - x_zp)` and `(cast(w) - w_zp)` in float64 (a 1-D w_zp is per output channel), so a
/// float64 Conv of them is the exact integer convolution.
fn centered_operands(
    c: &mut NodeCtx,
    x: ValueId,
    x_zp: Option<ValueId>,
    w: ValueId,
    w_zp: Option<ValueId>,
    w_rank: usize,
) -> (ValueId, ValueId) {
    let mut xd = cast(c, x, DType::F64, "x_f64");
    if let Some(zp) = x_zp {
        let zp = cast(c, zp, DType::F64, "x_zero_point_f64");
        xd = bin(c, BinaryOp::Sub, xd, zp, "x_centered");
    }
    let mut wd = cast(c, w, DType::F64, "w_f64");
    if let Some(zp) = w_zp {
        let mut zp = cast(c, zp, DType::F64, "w_zero_point_f64");
        if c.value_type(zp).shape().map(|s| s.rank()) == Some(1) && w_rank > 1 {
            let axes: Vec<i64> = (1..w_rank as i64).collect();
            let axes = c.const_i64s(&axes, "channel_axes");
            zp = c.emit_temp(Op::Unsqueeze, vec![Some(zp), Some(axes)], "w_zero_point_per_channel");
        }
        wd = bin(c, BinaryOp::Sub, wd, zp, "w_centered");
    }
    (xd, wd)
}

fn conv_integer(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let w = c.required_input(1)?;
    need!(int8ish(c.input_dtype(0)).and(int8ish(c.input_dtype(1))), "operand types unknown or not 8-bit integers");
    let w_rank = need!(c.input_rank(1), "weight rank unknown");
    let conv = super::nn::conv_attrs(c)?;
    let (xd, wd) = centered_operands(c, x, c.input(2), w, c.input(3), w_rank);
    let y = c.emit_temp(Op::Conv(conv), vec![Some(xd), Some(wd)], "accumulated");
    c.emit_to_output(Op::Cast(Cast { to: DType::I32, saturate: true, round_mode: "up".into() }), vec![Some(y)], 0);
    Ok(Canon::Done)
}

/// The exact integer convolution (with the int32 bias), requantized with
/// `x_scale * w_scale / y_scale` (a 1-D w_scale is per output channel).
fn qlinear_conv(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let x_scale = c.required_input(1)?;
    let w = c.required_input(3)?;
    let w_scale = c.required_input(4)?;
    let y_scale = c.required_input(6)?;
    let (x_zp, w_zp, y_zp, bias) = (c.input(2), c.input(5), c.input(7), c.input(8));
    let xtype = need!(int8ish(c.input_dtype(0)), "input type unknown or not an 8-bit integer");
    need!(int8ish(c.input_dtype(3)), "weight type unknown or not an 8-bit integer");
    let qtype = match y_zp {
        Some(_) => need!(int8ish(c.input_dtype(7)), "output type unknown or not an 8-bit integer"),
        None => xtype,
    };
    let w_rank = need!(c.input_rank(3), "weight rank unknown");
    let ws_rank = need!(c.value_type(w_scale).shape().map(|s| s.rank()), "w_scale rank unknown");
    let conv = super::nn::conv_attrs(c)?;
    let (xd, wd) = centered_operands(c, x, x_zp, w, w_zp, w_rank);
    let bias = bias.map(|b| cast(c, b, DType::F64, "bias_f64"));
    let acc = c.emit_temp(Op::Conv(conv), vec![Some(xd), Some(wd), bias], "accumulated");
    let w_scale = if ws_rank == 1 && w_rank > 2 {
        let mut axes = vec![0i64];
        axes.extend(2..w_rank as i64);
        let axes = c.const_i64s(&axes, "scale_axes");
        c.emit_temp(Op::Unsqueeze, vec![Some(w_scale), Some(axes)], "w_scale_per_channel")
    } else {
        w_scale
    };
    let s = bin(c, BinaryOp::Mul, x_scale, w_scale, "xw_scale");
    let s = bin(c, BinaryOp::Div, s, y_scale, "requant_scale");
    requantize(c, acc, s, y_zp, qtype)?;
    Ok(Canon::Done)
}
