//! Convolution-like and spatial core ops -> ONNX, choosing each op's form in the target opset.

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_floats, attr_i, attr_ints, attr_s, attr_strings, sizes};
use crate::proto::AttributeProto;
use ferry_ir::ops::{AutoPad, Conv, ConvTranspose, Pool, PoolKind, Resize, Rnn, RnnDirection, RnnKind};
use ferry_ir::{DType, Tensor};

fn dtype(c: &LowerCtx, i: usize) -> Option<DType> {
    c.input_type(i).and_then(|t| t.dtype())
}

/// bfloat16 inputs are accepted by the conv/pool/RNN family only from opset 22 (LRN: 13).
fn require_bf16(c: &LowerCtx, op_type: &str, min: u32) -> LowerResult {
    if dtype(c, 0) == Some(DType::BF16) {
        c.require_opset(min, &format!("{op_type} on bfloat16"))?;
    }
    Ok(())
}

fn pad_attrs(pads: &AutoPad, attrs: &mut Vec<AttributeProto>) {
    match pads {
        AutoPad::Explicit(p) if p.is_empty() => {}
        AutoPad::Explicit(p) => attrs.push(attr_ints("pads", &sizes(p))),
        AutoPad::SameUpper => attrs.push(attr_s("auto_pad", "SAME_UPPER")),
        AutoPad::SameLower => attrs.push(attr_s("auto_pad", "SAME_LOWER")),
        AutoPad::Valid => attrs.push(attr_s("auto_pad", "VALID")),
    }
}

pub(super) fn conv_attrs(conv: &Conv) -> Vec<AttributeProto> {
    let mut attrs = Vec::new();
    if let Some(k) = &conv.kernel_shape {
        attrs.push(attr_ints("kernel_shape", &sizes(k)));
    }
    if !conv.strides.is_empty() {
        attrs.push(attr_ints("strides", &sizes(&conv.strides)));
    }
    if !conv.dilations.is_empty() {
        attrs.push(attr_ints("dilations", &sizes(&conv.dilations)));
    }
    pad_attrs(&conv.pads, &mut attrs);
    if conv.group != 1 {
        attrs.push(attr_i("group", conv.group as i64));
    }
    attrs
}

pub fn conv(c: &mut LowerCtx, conv: &Conv) -> LowerResult {
    c.require_op("Conv")?;
    require_bf16(c, "Conv", 22)?;
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("Conv", inputs, vec![o], conv_attrs(conv));
    Ok(())
}

pub fn conv_transpose(c: &mut LowerCtx, ct: &ConvTranspose) -> LowerResult {
    c.require_op("ConvTranspose")?;
    require_bf16(c, "ConvTranspose", 22)?;
    let mut attrs = conv_attrs(&ct.conv);
    if !ct.output_padding.is_empty() {
        attrs.push(attr_ints("output_padding", &sizes(&ct.output_padding)));
    }
    if let Some(s) = &ct.output_shape {
        attrs.push(attr_ints("output_shape", &sizes(s)));
    }
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("ConvTranspose", inputs, vec![o], attrs);
    Ok(())
}

pub fn pool(c: &mut LowerCtx, p: &Pool) -> LowerResult {
    // Before opset 22 a ceil_mode window starting in the right padding was kept.
    let rewritten;
    let p = if p.ceil_mode && c.opset < 22 {
        let spatial = c.input_type(0).and_then(crate::import::nn::spatial_dims);
        match crate::import::nn::ceil_mode_as_pads(p, spatial, true) {
            None => {
                return Err(c.problem(
                    "ceil_mode pooling over unknown sizes (or counting padding) has its opset-22 meaning only from opset 22",
                    Some(22),
                ));
            }
            Some(None) => p,
            Some(Some(pads)) => {
                rewritten = Pool { ceil_mode: false, pads: AutoPad::Explicit(pads), ..p.clone() };
                &rewritten
            }
        }
    } else {
        p
    };
    let (op_type, dilations_from, ceil_from) = match p.kind {
        PoolKind::Max => ("MaxPool", 10, 10),
        PoolKind::Avg => ("AveragePool", 19, 10),
        PoolKind::Lp(_) => ("LpPool", 18, 18),
    };
    let version = c.require_op(op_type)?;
    require_bf16(c, op_type, 22)?;
    if p.kind == PoolKind::Max && matches!(dtype(c, 0), Some(DType::I8 | DType::U8)) {
        c.require_opset(12, "MaxPool on 8-bit integers")?;
    }
    let mut attrs = vec![attr_ints("kernel_shape", &sizes(&p.kernel_shape))];
    if !p.strides.is_empty() {
        attrs.push(attr_ints("strides", &sizes(&p.strides)));
    }
    if p.dilations.iter().any(|d| *d != 1) {
        c.require_opset(dilations_from, &format!("{op_type} with dilations"))?;
    }
    if !p.dilations.is_empty() && version >= dilations_from {
        attrs.push(attr_ints("dilations", &sizes(&p.dilations)));
    }
    pad_attrs(&p.pads, &mut attrs);
    if p.ceil_mode {
        c.require_opset(ceil_from, &format!("{op_type} with ceil_mode"))?;
        attrs.push(attr_i("ceil_mode", 1));
    }
    if p.count_include_pad {
        if p.kind != PoolKind::Avg {
            return Err(c.problem("count_include_pad applies to average pooling only", None));
        }
        c.require_opset(7, "AveragePool with count_include_pad")?;
        attrs.push(attr_i("count_include_pad", 1));
    }
    let with_indices = c.node.outputs.get(1).copied().flatten().is_some();
    if with_indices {
        if p.kind != PoolKind::Max {
            return Err(c.problem("only max pooling has an indices output", None));
        }
        c.require_opset(8, "MaxPool with an indices output")?;
    }
    if p.column_major_indices && version >= 8 {
        attrs.push(attr_i("storage_order", 1));
    }
    if let PoolKind::Lp(pv) = p.kind {
        attrs.push(if version == 1 { attr_f("p", pv as f32) } else { attr_i("p", pv as i64) });
    }
    let (i, mut outputs) = (c.input(0), c.outputs());
    if !with_indices {
        outputs.truncate(1);
    }
    c.emit(op_type, vec![i], outputs, attrs);
    Ok(())
}

pub fn global_pool(c: &mut LowerCtx, kind: PoolKind) -> LowerResult {
    let op_type = match kind {
        PoolKind::Max => "GlobalMaxPool",
        PoolKind::Avg => "GlobalAveragePool",
        PoolKind::Lp(_) => "GlobalLpPool",
    };
    let version = c.require_op(op_type)?;
    require_bf16(c, op_type, 22)?;
    let mut attrs = Vec::new();
    if let PoolKind::Lp(pv) = kind {
        attrs.push(if version == 1 { attr_f("p", pv as f32) } else { attr_i("p", pv as i64) });
    }
    let (i, o) = (c.input(0), c.output(0));
    c.emit(op_type, vec![i], vec![o], attrs);
    Ok(())
}

pub fn lrn(c: &mut LowerCtx, alpha: f32, beta: f32, bias: f32, size: u64) -> LowerResult {
    c.require_op("LRN")?;
    require_bf16(c, "LRN", 13)?;
    let attrs = vec![attr_f("alpha", alpha), attr_f("beta", beta), attr_f("bias", bias), attr_i("size", size as i64)];
    let (i, o) = (c.input(0), c.output(0));
    c.emit("LRN", vec![i], vec![o], attrs);
    Ok(())
}

/// The first opset whose Resize can state `r` (ignoring inputs).
fn resize_min_opset(r: &Resize) -> u32 {
    let mut min = 11;
    if r.antialias || r.axes.is_some() || r.keep_aspect_ratio_policy != "stretch" {
        min = 18;
    }
    if r.coordinate_transformation_mode == "half_pixel_symmetric" {
        min = 19;
    }
    min
}

/// Whether `r` is the Resize-10 / Upsample behaviour.
fn is_legacy_resize(r: &Resize) -> bool {
    r.coordinate_transformation_mode == "asymmetric"
        && (r.mode == "linear" || (r.mode == "nearest" && r.nearest_mode == "floor"))
        && !r.antialias
        && r.axes.is_none()
        && r.keep_aspect_ratio_policy == "stretch"
}

pub fn resize(c: &mut LowerCtx, r: &Resize) -> LowerResult {
    let (x, o) = (c.input(0), c.output(0));
    if c.opset < 11 {
        // Resize-10 (opset 10) or Upsample (opsets 7..9): scales only, asymmetric coordinates.
        if !is_legacy_resize(r) || c.has_input(3) || !c.has_input(2) {
            let min = resize_min_opset(r);
            return Err(c.problem(format!("this Resize needs opset {min}"), Some(min)));
        }
        let scales = c.input(2);
        if c.opset >= 10 {
            c.emit("Resize", vec![x, scales], vec![o], vec![attr_s("mode", &r.mode)]);
        } else if c.opset >= 9 {
            c.emit("Upsample", vec![x, scales], vec![o], vec![attr_s("mode", &r.mode)]);
        } else if c.opset >= 7 {
            let Some(values) = c.const_input(2).and_then(|t| t.to_f64_vec().ok()) else {
                return Err(c.problem("Upsample-7 needs constant scales", Some(9)));
            };
            let values: Vec<f32> = values.iter().map(|v| *v as f32).collect();
            c.emit("Upsample", vec![x], vec![o], vec![attr_s("mode", &r.mode), attr_floats("scales", &values)]);
        } else {
            return Err(c.problem("Upsample before opset 7 was experimental; needs opset 7", Some(7)));
        }
        return Ok(());
    }
    let min = resize_min_opset(r);
    c.require_opset(min, "this Resize")?;
    let version = c.require_op("Resize")?;
    if dtype(c, 0) == Some(DType::BF16) {
        c.require_opset(13, "Resize on bfloat16")?;
    }
    let mut attrs = Vec::new();
    if r.mode != "nearest" {
        attrs.push(attr_s("mode", &r.mode));
    }
    if r.coordinate_transformation_mode != "half_pixel" {
        attrs.push(attr_s("coordinate_transformation_mode", &r.coordinate_transformation_mode));
    }
    if r.nearest_mode != "round_prefer_floor" {
        attrs.push(attr_s("nearest_mode", &r.nearest_mode));
    }
    if r.cubic_coeff_a != -0.75 {
        attrs.push(attr_f("cubic_coeff_a", r.cubic_coeff_a));
    }
    if r.exclude_outside {
        attrs.push(attr_i("exclude_outside", 1));
    }
    if r.extrapolation_value != 0.0 {
        attrs.push(attr_f("extrapolation_value", r.extrapolation_value));
    }
    if r.antialias {
        attrs.push(attr_i("antialias", 1));
    }
    if r.keep_aspect_ratio_policy != "stretch" {
        attrs.push(attr_s("keep_aspect_ratio_policy", &r.keep_aspect_ratio_policy));
    }
    if let Some(axes) = &r.axes {
        attrs.push(attr_ints("axes", axes));
    }
    let (mut roi, mut scales, sizes_in) = (c.input(1), c.input(2), c.input(3));
    if version < 13 {
        // Resize-11 requires roi and scales; empty tensors say "not given".
        let empty = Tensor::from_f32(vec![0], &[]).expect("empty");
        if roi.is_empty() {
            roi = c.constant(&empty, "roi");
        }
        if scales.is_empty() {
            scales = c.constant(&empty, "scales");
        }
    }
    c.emit("Resize", vec![x, roi, scales, sizes_in], vec![o], attrs);
    Ok(())
}

/// The first QuantizeLinear/DequantizeLinear version that accepts this quantized type.
fn quantized_type_from(d: DType) -> Option<u32> {
    use DType::*;
    Some(match d {
        I8 | U8 => 10,
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ => 19,
        I16 | U16 | I4 | U4 => 21,
        F4E2M1 => 23,
        I2 | U2 => 25,
        F6E2M3 | F6E3M2 => 28,
        _ => return None,
    })
}

/// Before opset 13 (de)quantization is per-tensor only: the scale must be one element.
fn require_per_tensor(c: &LowerCtx, what: &str) -> LowerResult {
    if c.opset >= 13 {
        return Ok(());
    }
    let one = c.input_type(1).and_then(|t| t.shape()).and_then(|s| s.numel().known()) == Some(1);
    if one { Ok(()) } else { Err(c.problem(format!("per-axis {what} (or an unknown scale shape)"), Some(13))) }
}

pub fn quantize_linear(
    c: &mut LowerCtx,
    axis: i64,
    saturate: bool,
    block_size: u64,
    output_dtype: Option<DType>,
) -> LowerResult {
    let version = c.require_op("QuantizeLinear")?;
    let zp_dtype = if c.has_input(2) { dtype(c, 2) } else { None };
    let out = output_dtype.or(zp_dtype).unwrap_or(DType::U8);
    let from =
        quantized_type_from(out).ok_or_else(|| c.problem(format!("QuantizeLinear cannot produce {out}"), None))?;
    c.require_opset(from, &format!("QuantizeLinear to {out}"))?;
    match dtype(c, 0) {
        Some(DType::F16 | DType::BF16) => c.require_opset(19, "QuantizeLinear of 16-bit floats")?,
        Some(DType::F32 | DType::I32) | None => {}
        Some(d) => return Err(c.problem(format!("QuantizeLinear of {d}"), None)),
    }
    if dtype(c, 1).is_some() && dtype(c, 0).is_some() && dtype(c, 1) != dtype(c, 0) {
        c.require_opset(23, "QuantizeLinear with a scale type other than the input's")?;
    }
    require_per_tensor(c, "QuantizeLinear")?;
    let mut attrs = Vec::new();
    if version >= 13 && axis != 1 {
        attrs.push(attr_i("axis", axis));
    }
    if !saturate && version >= 19 {
        attrs.push(attr_i("saturate", 0));
    }
    if block_size != 0 {
        c.require_opset(21, "blocked QuantizeLinear")?;
        attrs.push(attr_i("block_size", block_size as i64));
    }
    if let Some(d) = output_dtype {
        if version >= 21 {
            attrs.push(attr_i("output_dtype", d.onnx_code() as i64));
        } else if zp_dtype != Some(d) && d != DType::U8 {
            return Err(c.problem("QuantizeLinear with output_dtype and no zero point", Some(21)));
        }
    }
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("QuantizeLinear", inputs, vec![o], attrs);
    Ok(())
}

pub fn dequantize_linear(c: &mut LowerCtx, axis: i64, block_size: u64) -> LowerResult {
    let version = c.require_op("DequantizeLinear")?;
    if let Some(d) = dtype(c, 0) {
        let from = if d == DType::I32 { Some(10) } else { quantized_type_from(d) };
        let from = from.ok_or_else(|| c.problem(format!("DequantizeLinear of {d}"), None))?;
        c.require_opset(from, &format!("DequantizeLinear of {d}"))?;
    }
    match dtype(c, 1) {
        Some(DType::F16 | DType::BF16) => c.require_opset(19, "DequantizeLinear to 16-bit floats")?,
        Some(DType::F8E8M0) => c.require_opset(24, "DequantizeLinear with float8e8m0 scales")?,
        _ => {}
    }
    require_per_tensor(c, "DequantizeLinear")?;
    let mut attrs = Vec::new();
    if version >= 13 && axis != 1 {
        attrs.push(attr_i("axis", axis));
    }
    if block_size != 0 {
        c.require_opset(21, "blocked DequantizeLinear")?;
        attrs.push(attr_i("block_size", block_size as i64));
    }
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("DequantizeLinear", inputs, vec![o], attrs);
    Ok(())
}

pub fn non_max_suppression(c: &mut LowerCtx, center_point_box: bool) -> LowerResult {
    c.require_op("NonMaxSuppression")?;
    let attrs = if center_point_box { vec![attr_i("center_point_box", 1)] } else { vec![] };
    let (inputs, o) = (c.inputs(), c.output(0));
    c.emit("NonMaxSuppression", inputs, vec![o], attrs);
    Ok(())
}

fn default_activations(kind: RnnKind, dirs: usize) -> Vec<String> {
    let one: &[&str] = match kind {
        RnnKind::Rnn => &["Tanh"],
        RnnKind::Gru => &["Sigmoid", "Tanh"],
        RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
    };
    one.iter().cycle().take(one.len() * dirs).map(|s| s.to_string()).collect()
}

pub fn rnn(c: &mut LowerCtx, r: &Rnn) -> LowerResult {
    let op_type = match r.kind {
        RnnKind::Rnn => "RNN",
        RnnKind::Gru => "GRU",
        RnnKind::Lstm => "LSTM",
    };
    let version = c.require_op(op_type)?;
    require_bf16(c, op_type, 22)?;
    let dirs = if r.direction == RnnDirection::Bidirectional { 2 } else { 1 };
    let mut attrs = Vec::new();
    match r.direction {
        RnnDirection::Forward => {}
        RnnDirection::Reverse => attrs.push(attr_s("direction", "reverse")),
        RnnDirection::Bidirectional => attrs.push(attr_s("direction", "bidirectional")),
    }
    attrs.push(attr_i("hidden_size", r.hidden_size as i64));
    if !r.activations.is_empty() && r.activations != default_activations(r.kind, dirs) {
        attrs.push(attr_strings("activations", &r.activations));
    }
    if !r.activation_alpha.is_empty() {
        attrs.push(attr_floats("activation_alpha", &r.activation_alpha));
    }
    if !r.activation_beta.is_empty() {
        attrs.push(attr_floats("activation_beta", &r.activation_beta));
    }
    if let Some(clip) = r.clip {
        attrs.push(attr_f("clip", clip));
    }
    if r.linear_before_reset {
        c.require_opset(3, "GRU with linear_before_reset")?;
        attrs.push(attr_i("linear_before_reset", 1));
    }
    if r.input_forget {
        attrs.push(attr_i("input_forget", 1));
    }
    if version == 1 && c.node.outputs.first().copied().flatten().is_some() {
        attrs.push(attr_i("output_sequence", 1));
    }
    let mut inputs = c.inputs();
    let mut outputs = c.outputs();
    // Batch-major layout before opset 14: transpose around a sequence-major op.
    let mut post: Vec<(String, String, Vec<i64>)> = Vec::new();
    if r.batch_first {
        if version >= 14 {
            attrs.push(attr_i("layout", 1));
        } else {
            let seq_major = [1, 0, 2];
            for i in [0usize, 5, 6] {
                if inputs.get(i).is_some_and(|s| !s.is_empty()) {
                    let t = c.emit_temp(
                        "Transpose",
                        vec![inputs[i].clone()],
                        vec![attr_ints("perm", &seq_major)],
                        "seq_major",
                    );
                    inputs[i] = t;
                }
            }
            for (k, out) in outputs.iter_mut().enumerate() {
                if out.is_empty() {
                    continue;
                }
                let perm = if k == 0 { vec![2, 0, 1, 3] } else { vec![1, 0, 2] };
                let t = c.temp("seq_major_out");
                post.push((t.clone(), std::mem::replace(out, t), perm));
            }
        }
    }
    while outputs.last().is_some_and(String::is_empty) {
        outputs.pop();
    }
    c.emit(op_type, inputs, outputs, attrs);
    for (from, to, perm) in post {
        c.emit("Transpose", vec![from], vec![to], vec![attr_ints("perm", &perm)]);
    }
    Ok(())
}
