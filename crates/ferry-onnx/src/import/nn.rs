//! Convolution-like and spatial neural-network ops: convolutions, pooling, LRN, Resize/Upsample,
//! (de)quantization, NonMaxSuppression and the recurrent ops.
//!
//! Carried opaquely (no canonicalizer here): ConvInteger, MaxUnpool, RoiAlign, GridSample,
//! Col2Im, AffineGrid, DeformConv — the core set has no op for them yet.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use ferry_ir::ops::{AutoPad, Conv, ConvTranspose, Pool, PoolKind, Resize, Rnn, RnnDirection, RnnKind};
use ferry_ir::{Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Conv", conv),
    ("ConvTranspose", conv_transpose),
    ("MaxPool", |c| pool(c, PoolKind::Max)),
    ("AveragePool", |c| pool(c, PoolKind::Avg)),
    ("LpPool", lp_pool),
    ("GlobalAveragePool", |c| global_pool(c, Some(PoolKind::Avg))),
    ("GlobalMaxPool", |c| global_pool(c, Some(PoolKind::Max))),
    ("GlobalLpPool", |c| global_pool(c, None)),
    ("LRN", lrn),
    ("Resize", resize),
    ("Upsample", upsample),
    ("QuantizeLinear", quantize_linear),
    ("DequantizeLinear", dequantize_linear),
    ("NonMaxSuppression", non_max_suppression),
    ("RNN", |c| rnn(c, RnnKind::Rnn)),
    ("GRU", |c| rnn(c, RnnKind::Gru)),
    ("LSTM", |c| rnn(c, RnnKind::Lstm)),
];

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

/// `auto_pad` + `pads` as one value. `pads` is ignored unless auto_pad is NOTSET (as ONNX says).
fn auto_pad(c: &NodeCtx) -> Result<AutoPad> {
    let mode = c.attr_s("auto_pad", "NOTSET")?;
    Ok(match mode.as_str() {
        "NOTSET" | "" => AutoPad::Explicit(c.attr_sizes("pads")?.unwrap_or_default()),
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        "VALID" => AutoPad::Valid,
        other => return Err(c.error(format!("unknown auto_pad '{other}'"))),
    })
}

pub(crate) fn conv_attrs(c: &NodeCtx) -> Result<Conv> {
    Ok(Conv {
        kernel_shape: c.attr_sizes("kernel_shape")?,
        strides: c.attr_sizes("strides")?.unwrap_or_default(),
        dilations: c.attr_sizes("dilations")?.unwrap_or_default(),
        pads: auto_pad(c)?,
        group: u64::try_from(c.attr_i("group", 1)?).map_err(|_| c.error("group must be positive"))?,
    })
}

fn conv(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let w = c.required_input(1)?;
    let attrs = conv_attrs(c)?;
    let b = c.input(2);
    c.emit_to_output(Op::Conv(attrs), vec![Some(x), Some(w), b], 0);
    Ok(Canon::Done)
}

fn conv_transpose(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let w = c.required_input(1)?;
    let op = ConvTranspose {
        conv: conv_attrs(c)?,
        output_padding: c.attr_sizes("output_padding")?.unwrap_or_default(),
        output_shape: c.attr_sizes("output_shape")?,
    };
    let b = c.input(2);
    c.emit_to_output(Op::ConvTranspose(op), vec![Some(x), Some(w), b], 0);
    Ok(Canon::Done)
}

/// Emits a pool writing the node's outputs (MaxPool's optional second output included).
fn emit_pool(c: &mut NodeCtx, mut p: Pool) -> Result<Canon> {
    let x = c.required_input(0)?;
    if c.version < 22 && p.ceil_mode {
        match ceil_mode_as_pads(&p, spatial_dims(c.value_type(x)), false) {
            None => {
                return Ok(Canon::KeepOpaque(
                    "ceil_mode before version 22 over unknown sizes (or counting padding)".into(),
                ));
            }
            Some(None) => {}
            Some(Some(pads)) => {
                p.ceil_mode = false;
                p.pads = AutoPad::Explicit(pads);
            }
        }
    }
    let y = c.output(0).unwrap_or_else(|| c.temp("unused"));
    let mut outputs = vec![Some(y)];
    if let Some(idx) = c.output(1) {
        outputs.push(Some(idx));
    }
    c.emit(Op::Pool(p), vec![Some(x)], outputs);
    Ok(Canon::Done)
}

fn pool(c: &mut NodeCtx, kind: PoolKind) -> Result<Canon> {
    let kernel_shape = c.attr_sizes("kernel_shape")?.ok_or_else(|| c.error("attribute 'kernel_shape' is required"))?;
    let is_max = kind == PoolKind::Max;
    // Attributes each version knows (older versions simply lack them).
    let has_ceil = c.version >= 10;
    let has_dilations = if is_max { c.version >= 10 } else { c.version >= 19 };
    let p = Pool {
        kind,
        kernel_shape,
        strides: c.attr_sizes("strides")?.unwrap_or_default(),
        dilations: if has_dilations { c.attr_sizes("dilations")?.unwrap_or_default() } else { vec![] },
        pads: auto_pad(c)?,
        ceil_mode: has_ceil && c.attr_i("ceil_mode", 0)? != 0,
        count_include_pad: !is_max && c.version >= 7 && c.attr_i("count_include_pad", 0)? != 0,
        column_major_indices: is_max && c.version >= 8 && c.attr_i("storage_order", 0)? != 0,
    };
    emit_pool(c, p)
}

/// LpPool-1 / GlobalLpPool-1 spell p as a float; later versions as an int.
fn lp_p(c: &NodeCtx) -> Result<std::result::Result<u32, String>> {
    if c.version == 1 {
        let p = c.attr_f("p", 2.0)?;
        if p.fract() != 0.0 || !(1.0..=u32::MAX as f32).contains(&p) {
            return Ok(Err(format!("non-integer p={p}")));
        }
        return Ok(Ok(p as u32));
    }
    let p = c.attr_i("p", 2)?;
    u32::try_from(p).ok().filter(|p| *p > 0).map(Ok).ok_or_else(|| c.error(format!("p must be positive, got {p}")))
}

fn lp_pool(c: &mut NodeCtx) -> Result<Canon> {
    let p = match lp_p(c)? {
        Ok(p) => p,
        Err(why) => return Ok(Canon::KeepOpaque(why)),
    };
    let kernel_shape = c.attr_sizes("kernel_shape")?.ok_or_else(|| c.error("attribute 'kernel_shape' is required"))?;
    let new = c.version >= 18;
    let pool = Pool {
        kind: PoolKind::Lp(p),
        kernel_shape,
        strides: c.attr_sizes("strides")?.unwrap_or_default(),
        dilations: if new { c.attr_sizes("dilations")?.unwrap_or_default() } else { vec![] },
        pads: auto_pad(c)?,
        ceil_mode: new && c.attr_i("ceil_mode", 0)? != 0,
        count_include_pad: false,
        column_major_indices: false,
    };
    emit_pool(c, pool)
}

fn global_pool(c: &mut NodeCtx, kind: Option<PoolKind>) -> Result<Canon> {
    let kind = match kind {
        Some(k) => k,
        None => match lp_p(c)? {
            Ok(p) => PoolKind::Lp(p),
            Err(why) => return Ok(Canon::KeepOpaque(why)),
        },
    };
    let x = c.required_input(0)?;
    c.emit_to_output(Op::GlobalPool { kind }, vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn lrn(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let size = c.attr_i_opt("size")?.ok_or_else(|| c.error("attribute 'size' is required"))?;
    let size = u64::try_from(size).map_err(|_| c.error("size must be positive"))?;
    let op =
        Op::Lrn { alpha: c.attr_f("alpha", 1e-4)?, beta: c.attr_f("beta", 0.75)?, bias: c.attr_f("bias", 1.0)?, size };
    c.emit_to_output(op, vec![Some(x)], 0);
    Ok(Canon::Done)
}

/// Resize-10 and Upsample: `floor(in * scale)` outputs, asymmetric coordinates, nearest rounds down
/// (what the ONNX version converter maps Resize-10 to).
fn legacy_resize(mode: &str) -> Resize {
    Resize {
        mode: mode.to_string(),
        coordinate_transformation_mode: "asymmetric".into(),
        nearest_mode: "floor".into(),
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        keep_aspect_ratio_policy: "stretch".into(),
        axes: None,
    }
}

/// An input that must be an "absent" placeholder when it is an empty tensor (Resize-11 had to
/// give roi and scales even when unused).
fn non_empty_input(c: &NodeCtx, i: usize) -> Option<ValueId> {
    let v = c.input(i)?;
    match c.const_input(i) {
        Some(t) if t.numel() == 0 => None,
        _ => match c.value_type(v).shape() {
            Some(s) if s.0.contains(&ferry_ir::Dim::Known(0)) => None,
            _ => Some(v),
        },
    }
}

fn resize(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    if c.version == 10 {
        let mode = c.attr_s("mode", "nearest")?;
        if mode != "nearest" && mode != "linear" {
            return Err(c.error(format!("unknown mode '{mode}'")));
        }
        let scales = c.required_input(1)?;
        c.emit_to_output(Op::Resize(legacy_resize(&mode)), vec![Some(x), None, Some(scales), None], 0);
        return Ok(Canon::Done);
    }
    let r = Resize {
        mode: c.attr_s("mode", "nearest")?,
        coordinate_transformation_mode: c.attr_s("coordinate_transformation_mode", "half_pixel")?,
        nearest_mode: c.attr_s("nearest_mode", "round_prefer_floor")?,
        cubic_coeff_a: c.attr_f("cubic_coeff_a", -0.75)?,
        exclude_outside: c.attr_i("exclude_outside", 0)? != 0,
        extrapolation_value: c.attr_f("extrapolation_value", 0.0)?,
        antialias: c.version >= 18 && c.attr_i("antialias", 0)? != 0,
        keep_aspect_ratio_policy: if c.version >= 18 {
            c.attr_s("keep_aspect_ratio_policy", "stretch")?
        } else {
            "stretch".into()
        },
        axes: if c.version >= 18 { c.attr_ints("axes")? } else { None },
    };
    // roi only matters for tf_crop_and_resize; an empty roi/scales is the "not given" spelling.
    let roi = non_empty_input(c, 1);
    let scales = non_empty_input(c, 2);
    let sizes = non_empty_input(c, 3);
    match (scales, sizes) {
        (None, None) => return Err(c.error("one of scales and sizes must be given")),
        (Some(_), Some(_)) => {
            return Ok(Canon::KeepOpaque("cannot tell which of scales and sizes is empty".into()));
        }
        _ => {}
    }
    c.emit_to_output(Op::Resize(r), vec![Some(x), roi, scales, sizes], 0);
    Ok(Canon::Done)
}

fn upsample(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let mode = c.attr_s("mode", "nearest")?;
    let (mode, scales) = match c.version {
        1 => {
            // Upsample-1 (experimental): NCHW only, height/width scales, modes NN / BILINEAR.
            let mode = match mode.as_str() {
                "NN" | "nearest" => "nearest",
                "BILINEAR" | "bilinear" | "linear" => "linear",
                other => return Err(c.error(format!("unknown mode '{other}'"))),
            };
            let h = c.attr_f_opt("height_scale")?.ok_or_else(|| c.error("attribute 'height_scale' is required"))?;
            let w = c.attr_f_opt("width_scale")?.ok_or_else(|| c.error("attribute 'width_scale' is required"))?;
            let t = Tensor::from_f32(vec![4], &[1.0, 1.0, h, w]).expect("length matches");
            (mode.to_string(), c.constant(t, "scales"))
        }
        7 => {
            let s = c.attr_floats("scales")?.ok_or_else(|| c.error("attribute 'scales' is required"))?;
            let t = Tensor::from_f32(vec![s.len() as u64], &s).expect("length matches");
            let mode = if mode == "bilinear" { "linear".to_string() } else { mode };
            (mode, c.constant(t, "scales"))
        }
        _ => (mode, c.required_input(1)?),
    };
    if mode != "nearest" && mode != "linear" {
        return Err(c.error(format!("unknown mode '{mode}'")));
    }
    c.emit_to_output(Op::Resize(legacy_resize(&mode)), vec![Some(x), None, Some(scales), None], 0);
    Ok(Canon::Done)
}

fn quantize_linear(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let scale = c.required_input(1)?;
    if c.version >= 23 && c.has_attr("precision") {
        // The division's precision has no core attribute yet.
        let precision = c.attr_i("precision", 0)?;
        if precision != 0 && Some(precision as i32) != c.input_dtype(1).map(|d| d.onnx_code()) {
            return Ok(Canon::KeepOpaque("QuantizeLinear with a precision attribute".into()));
        }
    }
    let op = Op::QuantizeLinear {
        axis: if c.version >= 13 { c.attr_i("axis", 1)? } else { 1 },
        saturate: c.version < 19 || c.attr_i("saturate", 1)? != 0,
        block_size: if c.version >= 21 { c.attr_i("block_size", 0)?.max(0) as u64 } else { 0 },
        output_dtype: if c.version >= 21 { c.attr_dtype("output_dtype")?.filter(|d| d.onnx_code() != 0) } else { None },
    };
    let zp = c.input(2);
    c.emit_to_output(op, vec![Some(x), Some(scale), zp], 0);
    Ok(Canon::Done)
}

fn dequantize_linear(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let scale = c.required_input(1)?;
    if c.version >= 23
        && let Some(d) = c.attr_dtype("output_dtype")?
        && c.input_dtype(1) != Some(d)
    {
        return Ok(Canon::KeepOpaque("DequantizeLinear with an output_dtype other than the scale's".into()));
    }
    let op = Op::DequantizeLinear {
        axis: if c.version >= 13 { c.attr_i("axis", 1)? } else { 1 },
        block_size: if c.version >= 21 { c.attr_i("block_size", 0)?.max(0) as u64 } else { 0 },
    };
    let zp = c.input(2);
    c.emit_to_output(op, vec![Some(x), Some(scale), zp], 0);
    Ok(Canon::Done)
}

fn non_max_suppression(c: &mut NodeCtx) -> Result<Canon> {
    let op = Op::NonMaxSuppression { center_point_box: c.attr_i("center_point_box", 0)? != 0 };
    let inputs = c.inputs.clone();
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

/// ONNX's default activations for one direction of each recurrent op.
pub fn default_activations(kind: RnnKind) -> &'static [&'static str] {
    match kind {
        RnnKind::Rnn => &["Tanh"],
        RnnKind::Gru => &["Sigmoid", "Tanh"],
        RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
    }
}

fn rnn(c: &mut NodeCtx, kind: RnnKind) -> Result<Canon> {
    let direction = match c.attr_s("direction", "forward")?.as_str() {
        "forward" => RnnDirection::Forward,
        "reverse" => RnnDirection::Reverse,
        "bidirectional" => RnnDirection::Bidirectional,
        other => return Err(c.error(format!("unknown direction '{other}'"))),
    };
    let hidden_size = match c.attr_i_opt("hidden_size")? {
        Some(h) => u64::try_from(h).map_err(|_| c.error("hidden_size must be positive"))?,
        // R is [num_directions, gates*hidden, hidden].
        None => need!(
            c.input(2).and_then(|r| c.value_type(r).shape().and_then(|s| s.0.get(2).and_then(|d| d.known()))),
            "hidden_size not given and R's shape unknown"
        ),
    };
    let dirs = if direction == RnnDirection::Bidirectional { 2 } else { 1 };
    let activations = match c.attr_strings("activations")? {
        Some(a) if !a.is_empty() => a,
        _ => default_activations(kind)
            .iter()
            .cycle()
            .take(default_activations(kind).len() * dirs)
            .map(|s| s.to_string())
            .collect(),
    };
    let op = Rnn {
        kind,
        direction,
        hidden_size,
        activations,
        activation_alpha: c.attr_floats("activation_alpha")?.unwrap_or_default(),
        activation_beta: c.attr_floats("activation_beta")?.unwrap_or_default(),
        clip: c.attr_f_opt("clip")?,
        batch_first: c.version >= 14 && c.attr_i("layout", 0)? != 0,
        linear_before_reset: kind == RnnKind::Gru && c.version >= 3 && c.attr_i("linear_before_reset", 0)? != 0,
        input_forget: kind == RnnKind::Lstm && c.attr_i("input_forget", 0)? != 0,
    };
    // Version 1's output_sequence only says whether Y may be omitted; the outputs say it too.
    let inputs = c.inputs.clone();
    let mut outputs = c.outputs.clone();
    if outputs.iter().all(Option::is_none) {
        outputs = vec![Some(c.temp("unused"))];
    }
    c.emit(Op::Rnn(op), inputs, outputs);
    Ok(Canon::Done)
}

/// Pools before version 22 (MaxPool, AveragePool, LpPool) keep a ceil_mode window that starts in
/// the right padding; from 22 (and in the core op) it is dropped. Rewrites a ceil_mode pool over
/// known spatial sizes as an equivalent floor-mode pool with a longer end padding, producing the
/// output size of the old rule (`drop_padded_start == false`) or of the new one.
///
/// `None`: not decidable (unknown sizes) or not expressible; `Some(None)`: both rules agree, keep
/// the pool as it is; `Some(Some(pads))`: use these explicit pads with ceil_mode off.
pub(crate) fn ceil_mode_as_pads(
    p: &Pool,
    spatial: Option<Vec<Option<u64>>>,
    drop_padded_start: bool,
) -> Option<Option<Vec<u64>>> {
    if !p.ceil_mode {
        return Some(None);
    }
    let n = p.kernel_shape.len();
    let pads = match &p.pads {
        AutoPad::SameUpper | AutoPad::SameLower => return Some(None),
        AutoPad::Valid => vec![0; 2 * n],
        AutoPad::Explicit(v) if v.is_empty() => vec![0; 2 * n],
        AutoPad::Explicit(v) if v.len() == 2 * n => v.clone(),
        AutoPad::Explicit(_) => return None,
    };
    let spatial = spatial?;
    if spatial.len() != n {
        return None;
    }
    let mut differs = false;
    let mut new_pads = pads.clone();
    for i in 0..n {
        let input = spatial[i]?;
        let k = p.kernel_shape[i];
        let s = p.strides.get(i).copied().unwrap_or(1).max(1);
        let d = p.dilations.get(i).copied().unwrap_or(1).max(1);
        let (pb, pe) = (pads[i], pads[n + i]);
        let ek = k.checked_sub(1)? * d + 1;
        let span = (input + pb + pe).checked_sub(ek)?;
        let out_old = span.div_ceil(s) + 1;
        let out_new = if (out_old - 1) * s >= input + pb { out_old - 1 } else { out_old };
        differs |= out_old != out_new;
        let target = if drop_padded_start { out_new } else { out_old };
        new_pads[n + i] = ((target - 1) * s + ek).checked_sub(input + pb)?;
    }
    if !differs {
        return Some(None);
    }
    // Extra end padding is neutral for max (-inf), Lp (0) and averages that skip padding.
    if p.kind == PoolKind::Avg && p.count_include_pad && new_pads != pads {
        return None;
    }
    Some(Some(new_pads))
}

/// Spatial sizes (dims 2..) of a value, when its rank is known.
pub(crate) fn spatial_dims(ty: &ferry_ir::ValueType) -> Option<Vec<Option<u64>>> {
    ty.shape().map(|s| s.0.iter().skip(2).map(|d| d.known()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_ir::{DType, Node, Shape, ValueType};

    fn ceil_pool(kind: PoolKind) -> Pool {
        Pool {
            kind,
            kernel_shape: vec![1, 1],
            strides: vec![2, 2],
            dilations: vec![],
            pads: AutoPad::Explicit(vec![1, 1, 1, 1]),
            ceil_mode: true,
            count_include_pad: false,
            column_major_indices: false,
        }
    }

    #[test]
    fn ceil_mode_rule_change_at_22() {
        // onnx shape inference for a 2x2 input, kernel 1, stride 2, pads 1, ceil_mode: 3x3 up to
        // MaxPool-21, 2x2 from MaxPool-22.
        let p = ceil_pool(PoolKind::Max);
        let dims = Some(vec![Some(2), Some(2)]);
        assert_eq!(ceil_mode_as_pads(&p, dims.clone(), false), Some(Some(vec![1, 1, 2, 2])));
        assert_eq!(ceil_mode_as_pads(&p, dims.clone(), true), Some(Some(vec![1, 1, 0, 0])));
        // Unknown sizes: undecidable; SAME padding: both rules agree.
        assert_eq!(ceil_mode_as_pads(&p, Some(vec![None, Some(2)]), true), None);
        let same = Pool { pads: AutoPad::SameUpper, ..p.clone() };
        assert_eq!(ceil_mode_as_pads(&same, dims.clone(), true), Some(None));
        // Averages that count padding cannot take the longer end padding.
        let avg = Pool { count_include_pad: true, ..ceil_pool(PoolKind::Avg) };
        assert_eq!(ceil_mode_as_pads(&avg, dims, true), None);
    }

    #[test]
    fn conv_transpose_shape() {
        // node test test_convtranspose: X [1,1,3,3], W [1,2,3,3] -> Y [1,2,5,5];
        // test_convtranspose_pads: strides 3,2, pads 1,2,1,2 -> Y [1,2,7,3].
        let infer = |ct: ConvTranspose| {
            let node = Node {
                name: String::new(),
                op: Op::ConvTranspose(ct),
                inputs: vec![Some(0), Some(1)],
                outputs: vec![Some(2)],
                doc_string: String::new(),
            };
            let x = ValueType::tensor(DType::F32, Shape::known(&[1, 1, 3, 3]));
            let w = ValueType::tensor(DType::F32, Shape::known(&[1, 2, 3, 3]));
            ferry_ir::infer::infer_node(&node, &[x, w], &[None, None]).unwrap().remove(0)
        };
        let conv =
            Conv { kernel_shape: None, strides: vec![], dilations: vec![], pads: AutoPad::Explicit(vec![]), group: 1 };
        let plain = ConvTranspose { conv: conv.clone(), output_padding: vec![], output_shape: None };
        assert_eq!(infer(plain), ValueType::tensor(DType::F32, Shape::known(&[1, 2, 5, 5])));
        let padded = ConvTranspose {
            conv: Conv { strides: vec![3, 2], pads: AutoPad::Explicit(vec![1, 2, 1, 2]), ..conv },
            output_padding: vec![],
            output_shape: None,
        };
        assert_eq!(infer(padded), ValueType::tensor(DType::F32, Shape::known(&[1, 2, 7, 3])));
    }
}
