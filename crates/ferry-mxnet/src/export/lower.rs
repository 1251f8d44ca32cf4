//! One exhaustive match over the core ops: each is lowered into MXNet 1.9 ops or refused with
//! the reason.

use super::{Cx, Ent, bool_attr, dtype_name, float_attr, tuple};
use ferry_ir::ops::{AutoPad, BinaryOp, PadMode, PoolKind, ReduceKind, UnaryOp};
use ferry_ir::{DType, Node, Op};

type R = std::result::Result<(), String>;

fn no(why: &str) -> R {
    Err(why.to_string())
}

pub(crate) fn lower(c: &mut Cx, n: &Node) -> R {
    match &n.op {
        // Constants become parameters when an op reads them as data.
        Op::Constant(_) => Ok(()),
        Op::ConstantOfShape(v) => constant_of_shape(c, n, v),
        Op::Identity => {
            let x = c.input(n, 0)?;
            if c.n_out[x.0] > 1 {
                // An output of a multi-output op (topk, SliceChannel) keeps its own name.
                c.bind(n, 0, x);
                return Ok(());
            }
            c.out(n, "_copy", vec![], &[x]);
            Ok(())
        }
        Op::Unary(u) => unary(c, n, *u),
        Op::Binary(b) => binary(c, n, *b),
        Op::Cast(cast) => {
            let x = c.input(n, 0)?;
            let name = dtype_name(cast.to).ok_or_else(|| format!("MXNet's Cast has no {}", cast.to))?;
            // topk writes its indices in any type: fold a cast of indices nobody else reads.
            let iv = n.inputs[0].unwrap();
            let indices_out = c.nodes[x.0].attrs.iter().any(|(k, v)| k == "ret_typ" && v == "indices") || x.1 == 1;
            if c.nodes[x.0].op == "topk" && indices_out && c.uses.get(&iv) == Some(&1) {
                for a in &mut c.nodes[x.0].attrs {
                    if a.0 == "dtype" {
                        a.1 = name.into();
                    }
                }
                c.bind(n, 0, x);
                return Ok(());
            }
            if cast.to == DType::Bool {
                // MXNet 1.9's operators reject bool arrays; truth values stay 0/1 numbers, as
                // MXNet's own comparison and logical ops give them.
                c.out(n, "_not_equal_scalar", vec![("scalar", "0.0".into())], &[x]);
                return Ok(());
            }
            c.out(n, "Cast", vec![("dtype", name.into())], &[x]);
            Ok(())
        }
        Op::Where => where_(c, n),
        Op::Reshape { allowzero } => reshape(c, n, *allowzero),
        Op::Flatten { axis } => {
            let x = c.input(n, 0)?;
            if *axis == 1 {
                c.out(n, "Flatten", vec![], &[x]);
                return Ok(());
            }
            let s = c.out_shape(n, 0).ok_or("Flatten on an axis other than 1 needs the output shape")?;
            c.out(n, "Reshape", vec![("shape", tuple(&s))], &[x]);
            Ok(())
        }
        Op::Transpose { perm } => {
            let x = c.input(n, 0)?;
            let perm = match perm {
                Some(p) => p.clone(),
                None => {
                    let r = c.in_rank(n, 0).ok_or("the input rank is unknown")?;
                    (0..r).rev().collect()
                }
            };
            c.out(n, "transpose", vec![("axes", tuple(&perm))], &[x]);
            Ok(())
        }
        Op::Unsqueeze => unsqueeze(c, n),
        Op::Squeeze => {
            if n.outputs.first().copied().flatten().is_some_and(|o| c.entries.contains_key(&o)) {
                // Written by the SliceChannel (squeeze_axis) its Split became.
                return Ok(());
            }
            let x = c.input(n, 0)?;
            let mut attrs = vec![];
            if n.inputs.get(1).copied().flatten().is_some() {
                let axes = c.const_ints(n, 1).ok_or("the axes are not constant")?;
                let r = c.in_rank(n, 0).ok_or("the input rank is unknown")? as i64;
                let mut axes: Vec<i64> = axes.iter().map(|a| if *a < 0 { a + r } else { *a }).collect();
                axes.sort();
                attrs.push(("axis", tuple(&axes)));
            }
            c.out(n, "squeeze", attrs, &[x]);
            Ok(())
        }
        Op::Expand => expand(c, n),
        Op::Concat { axis } => {
            let mut ins = Vec::new();
            for i in 0..n.inputs.len() {
                ins.push(c.input(n, i)?);
            }
            let axis = norm_axis(*axis, c.out_rank(n, 0))?;
            c.out(n, "Concat", vec![("dim", axis.to_string()), ("num_args", ins.len().to_string())], &ins);
            Ok(())
        }
        Op::Split { axis, .. } => split(c, n, *axis),
        Op::Slice => slice(c, n),
        Op::Pad { mode } => pad(c, n, *mode),
        Op::Tile => {
            let x = c.input(n, 0)?;
            let reps = c.const_ints(n, 1).ok_or("the repeats are not constant")?;
            c.out(n, "tile", vec![("reps", tuple(&reps))], &[x]);
            Ok(())
        }
        Op::Gather { axis } => {
            let (x, i) = (c.input(n, 0)?, c.input(n, 1)?);
            let axis = norm_axis(*axis, c.in_rank(n, 0))?;
            // "wrap" reads negative indices from the end, as ONNX does.
            let attrs = vec![("axis", axis.to_string()), ("mode", "wrap".into())];
            if c.in_rank(n, 1) == Some(0) {
                // A 0-d index is stored as shape (1,): take keeps that axis, squeeze drops it.
                let t = c.tmp(n, "take", "take", attrs, &[x, i]);
                c.out(n, "squeeze", vec![("axis", tuple(&[axis]))], &[t]);
            } else {
                c.out(n, "take", attrs, &[x, i]);
            }
            Ok(())
        }
        Op::GatherNd { batch_dims } => {
            if *batch_dims != 0 {
                return no("gather_nd has no batch dimensions");
            }
            let (x, i) = (c.input(n, 0)?, c.input(n, 1)?);
            let r = c.in_rank(n, 1).ok_or("the rank of the indices is unknown")?;
            // MXNet indexes with the first axis of `indices`, ONNX with the last.
            let perm: Vec<usize> = [r - 1].into_iter().chain(0..r - 1).collect();
            let it = c.tmp(n, "transpose", "indices_first", vec![("axes", tuple(&perm))], &[i]);
            c.out(n, "gather_nd", vec![], &[x, it]);
            Ok(())
        }
        Op::OneHot { axis } => one_hot(c, n, *axis),
        Op::DepthToSpace { blocksize, column_row_depth } => {
            if *column_row_depth {
                return no("MXNet's depth_to_space has only the DCR order");
            }
            let x = c.input(n, 0)?;
            c.out(n, "depth_to_space", vec![("block_size", blocksize.to_string())], &[x]);
            Ok(())
        }
        Op::SpaceToDepth { blocksize, column_row_depth } => {
            if *column_row_depth {
                return no("MXNet's space_to_depth has only the DCR order");
            }
            let x = c.input(n, 0)?;
            c.out(n, "space_to_depth", vec![("block_size", blocksize.to_string())], &[x]);
            Ok(())
        }
        Op::ReverseSequence { batch_axis, time_axis } => reverse_sequence(c, n, *batch_axis, *time_axis),
        Op::Shape { start, end } => shape(c, n, *start, *end),
        Op::Size => {
            let x = c.input(n, 0)?;
            if c.out_rank(n, 0) == Some(0) && is_graph_output(c, n) {
                return no("MXNet 1.x has no 0-d arrays (size_array gives shape (1,))");
            }
            c.out(n, "size_array", vec![], &[x]);
            Ok(())
        }
        Op::Reduce { kind, keepdims, noop_with_empty_axes } => reduce(c, n, *kind, *keepdims, *noop_with_empty_axes),
        Op::ArgReduce { max, axis, keepdims, select_last_index } => {
            if *select_last_index {
                return no("MXNet's argmax/argmin return the first index");
            }
            let x = c.input(n, 0)?;
            let axis = norm_axis(*axis, c.in_rank(n, 0))?;
            let op = if *max { "argmax" } else { "argmin" };
            let a = c.tmp(n, op, "float", vec![("axis", axis.to_string()), ("keepdims", bool_attr(*keepdims))], &[x]);
            c.out(n, "Cast", vec![("dtype", "int64".into())], &[a]);
            Ok(())
        }
        Op::TopK { axis, largest, .. } => topk(c, n, *axis, *largest),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let x = c.input(n, 0)?;
            let op = if matches!(n.op, Op::Softmax { .. }) { "softmax" } else { "log_softmax" };
            let axis = norm_axis(*axis, c.in_rank(n, 0))?;
            c.out(n, op, vec![("axis", axis.to_string())], &[x]);
            Ok(())
        }
        Op::MatMul => matmul(c, n),
        Op::Conv(conv) => {
            let (x, w) = (c.input(n, 0)?, c.input(n, 1)?);
            let ws = c.in_shape(n, 1).ok_or("the weight shape is unknown")?;
            let k = ws[2..].to_vec();
            let nsp = k.len();
            let pads = sym_pads(c, n, &conv.pads, &k, &conv.strides, &conv.dilations, nsp)?;
            let bias = n.inputs.get(2).copied().flatten().is_some();
            let mut ins = vec![x, w];
            if bias {
                ins.push(c.input(n, 2)?);
            }
            let attrs = vec![
                ("kernel", tuple(&k)),
                ("stride", tuple(&ones_if_empty(&conv.strides, nsp))),
                ("dilate", tuple(&ones_if_empty(&conv.dilations, nsp))),
                ("pad", tuple(&pads)),
                ("num_filter", ws[0].to_string()),
                ("num_group", conv.group.to_string()),
                ("no_bias", bool_attr(!bias)),
            ];
            c.out(n, "Convolution", attrs, &ins);
            Ok(())
        }
        Op::ConvTranspose(ct) => {
            if ct.output_shape.is_some() {
                return no("an explicit output_shape is not lowered (MXNet's target_shape differs)");
            }
            let conv = &ct.conv;
            let (x, w) = (c.input(n, 0)?, c.input(n, 1)?);
            let ws = c.in_shape(n, 1).ok_or("the weight shape is unknown")?;
            let k = ws[2..].to_vec();
            let nsp = k.len();
            let pads = match &conv.pads {
                AutoPad::Explicit(p) if p.is_empty() => vec![0; nsp],
                AutoPad::Explicit(p) if p[..nsp] == p[nsp..] => p[..nsp].to_vec(),
                AutoPad::Explicit(_) => return no("MXNet pads both sides of each axis equally"),
                AutoPad::Valid => vec![0; nsp],
                _ => return no("SAME auto-padding is not lowered for Deconvolution"),
            };
            let bias = n.inputs.get(2).copied().flatten().is_some();
            let mut ins = vec![x, w];
            if bias {
                ins.push(c.input(n, 2)?);
            }
            let adj = if ct.output_padding.is_empty() { vec![0; nsp] } else { ct.output_padding.clone() };
            let attrs = vec![
                ("kernel", tuple(&k)),
                ("stride", tuple(&ones_if_empty(&conv.strides, nsp))),
                ("dilate", tuple(&ones_if_empty(&conv.dilations, nsp))),
                ("pad", tuple(&pads)),
                ("adj", tuple(&adj)),
                ("num_filter", (ws[1] * conv.group).to_string()),
                ("num_group", conv.group.to_string()),
                ("no_bias", bool_attr(!bias)),
            ];
            c.out(n, "Deconvolution", attrs, &ins);
            Ok(())
        }
        Op::Pool(p) => {
            if n.outputs.get(1).copied().flatten().is_some() {
                return no("MXNet's Pooling has no indices output");
            }
            if p.dilations.iter().any(|d| *d != 1) {
                return no("MXNet's Pooling has no dilation");
            }
            let x = c.input(n, 0)?;
            let nsp = p.kernel_shape.len();
            let pads = sym_pads(c, n, &p.pads, &p.kernel_shape, &p.strides, &[], nsp)?;
            let mut attrs = vec![
                ("kernel", tuple(&p.kernel_shape)),
                ("stride", tuple(&ones_if_empty(&p.strides, nsp))),
                ("pad", tuple(&pads)),
                ("pooling_convention", if p.ceil_mode { "full" } else { "valid" }.into()),
            ];
            match p.kind {
                PoolKind::Max => attrs.push(("pool_type", "max".into())),
                PoolKind::Avg => {
                    attrs.push(("pool_type", "avg".into()));
                    attrs.push(("count_include_pad", bool_attr(p.count_include_pad)));
                }
                PoolKind::Lp(k) => {
                    attrs.push(("pool_type", "lp".into()));
                    attrs.push(("p_value", k.to_string()));
                }
            }
            c.out(n, "Pooling", attrs, &[x]);
            Ok(())
        }
        Op::GlobalPool { kind } => {
            let x = c.input(n, 0)?;
            let r = c.in_rank(n, 0).ok_or("the input rank is unknown")?;
            let t = match kind {
                PoolKind::Max => "max",
                PoolKind::Avg => "avg",
                PoolKind::Lp(_) => return no("global Lp pooling is not lowered"),
            };
            let attrs = vec![
                ("global_pool", "True".into()),
                ("kernel", tuple(&vec![1; r.saturating_sub(2)])),
                ("pool_type", t.into()),
            ];
            c.out(n, "Pooling", attrs, &[x]);
            Ok(())
        }
        Op::Lrn { alpha, beta, bias, size } => {
            let x = c.input(n, 0)?;
            let attrs = vec![
                ("alpha", float_attr(*alpha as f64)),
                ("beta", float_attr(*beta as f64)),
                ("knorm", float_attr(*bias as f64)),
                ("nsize", size.to_string()),
            ];
            c.out(n, "LRN", attrs, &[x]);
            Ok(())
        }
        Op::Range => no("Range is not lowered"),
        Op::EyeLike { .. } => no("MXNet has no EyeLike"),
        Op::RandomNormal { .. } | Op::RandomUniform { .. } => no("random ops are not lowered"),
        Op::IsInf { .. } => no("MXNet 1.x has no isinf"),
        Op::GatherElements { .. } => no("GatherElements is not lowered (pick covers only one index per row)"),
        Op::ScatterElements { .. } | Op::ScatterNd { .. } => no("scatter ops are not lowered"),
        Op::Trilu { .. } => no("Trilu is not lowered"),
        Op::Compress { .. } | Op::NonZero | Op::Unique { .. } => no("data-dependent output shapes"),
        Op::Resize(r) => resize(c, n, r),
        Op::CumSum { .. } => no("MXNet 1.x has no cumsum outside the numpy namespace"),
        Op::MatMulInteger | Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => {
            no("quantized ops are not lowered")
        }
        Op::Einsum { .. } => no("MXNet 1.x has no einsum outside the numpy namespace"),
        Op::Rnn(_) => no("RNN is not lowered (MXNet's fused RNN packs its weights differently)"),
        Op::NonMaxSuppression { .. } => no("NonMaxSuppression is not lowered"),
        Op::Attention(_) => no("Attention is not lowered"),
        Op::StringConcat
        | Op::RegexFullMatch { .. }
        | Op::StringSplit { .. }
        | Op::StringNormalizer(_)
        | Op::TfIdfVectorizer(_) => no("MXNet has no string tensors"),
        Op::LabelEncoder { .. } | Op::TreeEnsemble(_) => no("MXNet has no counterpart for this ai.onnx.ml op"),
        Op::GridSample { .. } => no("GridSample is not lowered (MXNet's BilinearSampler differs in padding and modes)"),
        Op::RoiAlign { output_height, output_width, sampling_ratio, spatial_scale, max_mode, half_pixel } => {
            if *max_mode {
                return no("MXNet's ROIAlign only averages (no max mode)");
            }
            let (x, rois, batch) = (c.input(n, 0)?, c.input(n, 1)?, c.input(n, 2)?);
            // MXNet reads the batch index as the first column of each roi row.
            let b = c.tmp(n, "Cast", "batch_float", vec![("dtype", "float32".into())], &[batch]);
            let b = c.tmp(n, "expand_dims", "batch_column", vec![("axis", "1".into())], &[b]);
            let attrs = vec![("dim", "1".to_string()), ("num_args", "2".to_string())];
            let rows = c.tmp(n, "Concat", "rois", attrs, &[b, rois]);
            let ratio = if *sampling_ratio == 0 { -1 } else { *sampling_ratio as i64 };
            let attrs = vec![
                ("pooled_size", tuple(&[*output_height, *output_width])),
                ("spatial_scale", float_attr(*spatial_scale as f64)),
                ("sample_ratio", ratio.to_string()),
                ("aligned", bool_attr(*half_pixel)),
            ];
            c.out(n, "_contrib_ROIAlign", attrs, &[x, rows]);
            Ok(())
        }
        Op::MaxRoiPool { pooled_shape, spatial_scale } => {
            let (x, rois) = (c.input(n, 0)?, c.input(n, 1)?);
            let attrs =
                vec![("pooled_size", tuple(pooled_shape)), ("spatial_scale", float_attr(*spatial_scale as f64))];
            c.out(n, "ROIPooling", attrs, &[x, rois]);
            Ok(())
        }
        Op::DeformConv { .. } => no("DeformConv is not lowered"),
        Op::Col2Im { .. } | Op::MaxUnpool { .. } | Op::Det | Op::BitCast { .. } => {
            no("this op has no MXNet 1.9 counterpart ferry lowers to")
        }
        Op::Dft { .. } | Op::Stft { .. } | Op::MelWeightMatrix { .. } => no("signal ops are not lowered"),
        Op::If { .. } | Op::Loop { .. } | Op::Scan(_) => no("control flow is not lowered"),
        Op::SequenceConstruct
        | Op::SequenceEmpty { .. }
        | Op::SequenceAt
        | Op::SequenceInsert
        | Op::SequenceErase
        | Op::SequenceLength
        | Op::SplitToSequence { .. }
        | Op::ConcatFromSequence { .. }
        | Op::OptionalConstruct { .. }
        | Op::OptionalHasElement
        | Op::OptionalGetElement => no("MXNet has no sequences or optionals"),
        Op::Opaque(o) => Err(format!("opaque op {} has no MXNet form", o.op_type)),
    }
}

/// Whether output 0 of `n` is a graph output (0-d results must not be: MXNet gives (1,)).
fn is_graph_output(c: &Cx, n: &Node) -> bool {
    n.outputs.first().copied().flatten().is_some_and(|v| c.g.outputs.contains(&v))
}

fn norm_axis(axis: i64, rank: Option<usize>) -> std::result::Result<i64, String> {
    if axis >= 0 {
        return Ok(axis);
    }
    let r = rank.ok_or("a negative axis needs the rank")? as i64;
    Ok(axis + r)
}

fn ones_if_empty(v: &[u64], n: usize) -> Vec<u64> {
    if v.is_empty() { vec![1; n] } else { v.to_vec() }
}

/// Symmetric pads for Convolution/Pooling, or why there are none.
fn sym_pads(
    c: &Cx,
    n: &Node,
    pads: &AutoPad,
    k: &[u64],
    strides: &[u64],
    dilations: &[u64],
    nsp: usize,
) -> std::result::Result<Vec<u64>, String> {
    match pads {
        AutoPad::Explicit(p) if p.is_empty() => Ok(vec![0; nsp]),
        AutoPad::Explicit(p) if p.len() == 2 * nsp && p[..nsp] == p[nsp..] => Ok(p[..nsp].to_vec()),
        AutoPad::Explicit(_) => no("MXNet pads both sides of each axis equally").map(|_| vec![]),
        AutoPad::Valid => Ok(vec![0; nsp]),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let s = c.in_shape(n, 0).ok_or("SAME padding needs the input shape")?;
            let mut out = Vec::new();
            for i in 0..nsp {
                let (inp, st) = (s[2 + i], strides.get(i).copied().unwrap_or(1));
                let d = dilations.get(i).copied().unwrap_or(1);
                let want = (inp.div_ceil(st).saturating_sub(1)) * st + (k[i] - 1) * d + 1;
                let total = want.saturating_sub(inp);
                if total % 2 != 0 {
                    return Err("SAME padding here is uneven, and MXNet pads both sides equally".into());
                }
                out.push(total / 2);
            }
            Ok(out)
        }
    }
}

fn constant_of_shape(c: &mut Cx, n: &Node, v: &ferry_ir::Tensor) -> R {
    if c.out_shape(n, 0).is_none() {
        if let Some(y) = shape_source(c, n, 0) {
            let val = v.to_f64_vec().map_err(|e| e.to_string())?[0];
            if c.dtype_of(y) != Some(v.dtype) {
                return no("the fill type differs from the shaped value's type");
            }
            let y = c.ent(y)?;
            if val == 0.0 {
                c.out(n, "zeros_like", vec![], &[y]);
            } else if val == 1.0 {
                c.out(n, "ones_like", vec![], &[y]);
            } else {
                let z = c.tmp(n, "zeros_like", "zeros", vec![], &[y]);
                c.out(n, "_plus_scalar", vec![("scalar", float_attr(val))], &[z]);
            }
            return Ok(());
        }
    }
    let s = c.out_shape(n, 0).ok_or("the output shape is unknown")?;
    let raw = v.raw().ok_or("string values")?;
    let numel: u64 = s.iter().product();
    let mut bytes = Vec::with_capacity(raw.len() * numel as usize);
    for _ in 0..numel {
        bytes.extend_from_slice(raw);
    }
    let t = ferry_ir::Tensor::from_raw(v.dtype, s, bytes::Bytes::from(bytes)).map_err(|e| e.to_string())?;
    if ferry_ir::DType::F32 != t.dtype && super::dtype_flag(t.dtype).is_none() {
        return no("MXNet has no arrays of this type");
    }
    let name = c.out_name(n, 0);
    let e = c.param(&name, &t);
    c.bind(n, 0, e);
    Ok(())
}

fn unary(c: &mut Cx, n: &Node, u: UnaryOp) -> R {
    let x = c.input(n, 0)?;
    let op = match u {
        UnaryOp::Abs => "abs",
        UnaryOp::Neg => "negative",
        UnaryOp::Floor => "floor",
        UnaryOp::Ceil => "ceil",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Reciprocal => "reciprocal",
        UnaryOp::Exp => "exp",
        UnaryOp::Log => "log",
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Tan => "tan",
        UnaryOp::Asin => "arcsin",
        UnaryOp::Acos => "arccos",
        UnaryOp::Atan => "arctan",
        UnaryOp::Sinh => "sinh",
        UnaryOp::Cosh => "cosh",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Asinh => "arcsinh",
        UnaryOp::Acosh => "arccosh",
        UnaryOp::Atanh => "arctanh",
        UnaryOp::Sigmoid => "sigmoid",
        UnaryOp::Erf => "erf",
        UnaryOp::Sign => "sign",
        UnaryOp::Not => "logical_not",
        UnaryOp::Relu => "relu",
        UnaryOp::Softplus => {
            c.out(n, "Activation", vec![("act_type", "softrelu".into())], &[x]);
            return Ok(());
        }
        UnaryOp::Round => return no("MXNet's round/rint do not round half to even"),
        UnaryOp::BitwiseNot => return no("MXNet 1.x has no bitwise ops"),
        UnaryOp::IsNaN => return no("MXNet 1.x has no isnan"),
    };
    c.out(n, op, vec![], &[x]);
    Ok(())
}

/// The scalar value of a one-element constant input, if it broadcasts without changing the
/// other operand's shape.
fn scalar_operand(c: &Cx, n: &Node, i: usize, other: usize) -> Option<String> {
    let t = c.const_of(n, i)?;
    if t.numel() != 1 || t.dtype == DType::Bool {
        return None;
    }
    let other_rank = c.in_rank(n, other)?;
    if t.shape.len() > other_rank || c.out_shape(n, 0)? != c.in_shape(n, other)? {
        return None;
    }
    let v = t.to_f64_vec().ok()?[0];
    Some(if t.dtype.is_float() { float_attr(v) } else { format!("{v:?}") })
}

fn binary(c: &mut Cx, n: &Node, b: BinaryOp) -> R {
    use BinaryOp::*;
    let (bcast, scalar, rscalar): (&str, Option<&str>, Option<&str>) = match b {
        Add => ("broadcast_add", Some("_plus_scalar"), Some("_plus_scalar")),
        Sub => ("broadcast_sub", Some("_minus_scalar"), Some("_rminus_scalar")),
        Mul => ("broadcast_mul", Some("_mul_scalar"), Some("_mul_scalar")),
        Div => ("broadcast_div", Some("_div_scalar"), Some("_rdiv_scalar")),
        Pow => ("broadcast_power", Some("_power_scalar"), Some("_rpower_scalar")),
        Max => ("broadcast_maximum", Some("_maximum_scalar"), Some("_maximum_scalar")),
        Min => ("broadcast_minimum", Some("_minimum_scalar"), Some("_minimum_scalar")),
        Mod => ("broadcast_mod", Some("_mod_scalar"), None),
        Equal => ("broadcast_equal", Some("_equal_scalar"), Some("_equal_scalar")),
        Less => ("broadcast_lesser", Some("_lesser_scalar"), Some("_greater_scalar")),
        LessOrEqual => ("broadcast_lesser_equal", Some("_lesser_equal_scalar"), Some("_greater_equal_scalar")),
        Greater => ("broadcast_greater", Some("_greater_scalar"), Some("_lesser_scalar")),
        GreaterOrEqual => ("broadcast_greater_equal", Some("_greater_equal_scalar"), Some("_lesser_equal_scalar")),
        And => ("broadcast_logical_and", None, None),
        Or => ("broadcast_logical_or", None, None),
        Xor => ("broadcast_logical_xor", None, None),
        Fmod => return no("MXNet's mod takes the divisor's sign; it has no fmod"),
        BitAnd | BitOr | BitXor | ShiftLeft | ShiftRight => return no("MXNet 1.x has no bitwise ops"),
    };
    let float_ok = c.in_dtype(n, 0).is_some_and(|d| d.is_float());
    let form = if let (Some(op), Some(s), true) = (scalar, scalar_operand(c, n, 1, 0), float_ok) {
        Some((op, s, 0))
    } else if let (Some(op), Some(s), true) = (rscalar, scalar_operand(c, n, 0, 1), float_ok) {
        Some((op, s, 1))
    } else {
        None
    };
    match form {
        Some((op, s, keep)) => {
            let x = c.input(n, keep)?;
            // A comparison's truth values stay 0/1 in the operand type: MXNet 1.9's operators
            // reject bool arrays.
            c.out(n, op, vec![("scalar", s)], &[x]);
        }
        None => {
            let (x, y) = (c.input(n, 0)?, c.input(n, 1)?);
            // MXNet's comparisons give 0/1 in the operands' type, which stands for bool here.
            c.out(n, bcast, vec![], &[x, y]);
        }
    }
    Ok(())
}

/// `x` (of shape `from`) broadcast to `to` with reshape + broadcast_to where needed.
fn broadcast(c: &mut Cx, n: &Node, x: Ent, from: &[u64], to: &[u64], hint: &str) -> Ent {
    if from == to {
        return x;
    }
    let mut x = x;
    let mut from = from.to_vec();
    if from.len() < to.len() {
        let mut padded = vec![1; to.len() - from.len()];
        padded.extend(&from);
        x = c.tmp(n, "Reshape", &format!("{hint}_rank"), vec![("shape", tuple(&padded))], &[x]);
        from = padded;
    }
    if from == to {
        return x;
    }
    c.tmp(n, "broadcast_to", hint, vec![("shape", tuple(to))], &[x])
}

fn where_(c: &mut Cx, n: &Node) -> R {
    let out = c.out_shape(n, 0).ok_or("the output shape is unknown")?;
    let dt = c.out_dtype(n, 0).and_then(dtype_name).ok_or("the output type has no MXNet form")?;
    let mut ins = Vec::new();
    for (i, hint) in [(0, "cond"), (1, "x"), (2, "y")] {
        let e = c.input(n, i)?;
        let s = c.in_shape(n, i).ok_or("an input shape is unknown")?;
        let e = if i == 0 { c.tmp(n, "Cast", "cond_cast", vec![("dtype", dt.into())], &[e]) } else { e };
        ins.push(broadcast(c, n, e, &s, &out, hint));
    }
    c.out(n, "where", vec![], &ins);
    Ok(())
}

/// `y` when input `i` of `n` is the whole `Shape(y)`.
fn shape_source(c: &Cx, n: &Node, i: usize) -> Option<ferry_ir::ValueId> {
    let v = n.inputs.get(i).copied().flatten()?;
    let p = c.producer.get(&v)?;
    match p.op {
        Op::Shape { start: 0, end: None } => p.inputs[0],
        _ => None,
    }
}

fn reshape(c: &mut Cx, n: &Node, allowzero: bool) -> R {
    let x = c.input(n, 0)?;
    if c.out_shape(n, 0).is_none() && c.const_of(n, 1).is_none() {
        if let Some(y) = shape_source(c, n, 1) {
            let y = c.ent(y)?;
            c.out(n, "reshape_like", vec![], &[x, y]);
            return Ok(());
        }
    }
    let shape: Vec<i64> = match c.out_shape(n, 0) {
        Some(s) => s.iter().map(|d| *d as i64).collect(),
        None => {
            let s = c.const_ints(n, 1).ok_or("the shape is neither constant nor inferred")?;
            if allowzero && s.contains(&0) {
                return no("a literal 0 dimension (allowzero) has no MXNet form");
            }
            s
        }
    };
    if shape.is_empty() || shape.contains(&0) && c.out_shape(n, 0).is_some() {
        return no("MXNet 1.x has no 0-d or empty arrays");
    }
    c.out(n, "Reshape", vec![("shape", tuple(&shape))], &[x]);
    Ok(())
}

fn unsqueeze(c: &mut Cx, n: &Node) -> R {
    let mut x = c.input(n, 0)?;
    let axes = c.const_ints(n, 1).ok_or("the axes are not constant")?;
    let r = c.out_rank(n, 0).ok_or("the output rank is unknown")? as i64;
    let mut axes: Vec<i64> = axes.iter().map(|a| if *a < 0 { a + r } else { *a }).collect();
    axes.sort();
    for (k, a) in axes.iter().enumerate() {
        if k + 1 == axes.len() {
            c.out(n, "expand_dims", vec![("axis", a.to_string())], &[x]);
        } else {
            x = c.tmp(n, "expand_dims", &format!("expand{k}"), vec![("axis", a.to_string())], &[x]);
        }
    }
    Ok(())
}

fn expand(c: &mut Cx, n: &Node) -> R {
    let x = c.input(n, 0)?;
    if c.out_shape(n, 0).is_none() {
        if let Some(y) = shape_source(c, n, 1) {
            if c.in_rank(n, 0).is_some() && c.in_rank(n, 0) == c.rank_of(y) {
                let y = c.ent(y)?;
                c.out(n, "broadcast_like", vec![], &[x, y]);
                return Ok(());
            }
        }
    }
    let from = c.in_shape(n, 0).ok_or("the input shape is unknown")?;
    let to = c.out_shape(n, 0).ok_or("the output shape is unknown")?;
    let e = broadcast(c, n, x, &from, &to, "broadcast");
    c.out(n, "_copy", vec![], &[e]);
    Ok(())
}

fn split(c: &mut Cx, n: &Node, axis: i64) -> R {
    let x = c.input(n, 0)?;
    let axis = norm_axis(axis, c.in_rank(n, 0))?;
    let k = n.outputs.len();
    let sizes: Vec<u64> = (0..k)
        .map(|i| c.out_shape(n, i).map(|s| s[axis as usize]))
        .collect::<Option<_>>()
        .ok_or("output shapes are unknown")?;
    let name = c.out_name(n, 0);
    if sizes.iter().all(|s| *s == 1) {
        if let Some(squeezes) = squeezed_outputs(c, n, axis) {
            // Split into unit slices, each squeezed: one SliceChannel with squeeze_axis, named
            // (and listing its outputs) as the squeezed values are.
            let name = c.out_name(squeezes[0], 0);
            let attrs =
                vec![("axis", axis.to_string()), ("num_outputs", k.to_string()), ("squeeze_axis", "True".into())];
            let id = c.push("SliceChannel", &name, attrs, &[x], k);
            for (i, sq) in squeezes.iter().enumerate() {
                c.bind(sq, 0, (id, i));
            }
            return Ok(());
        }
    }
    let id = if sizes.iter().all(|s| *s == sizes[0]) {
        let attrs = vec![("axis", axis.to_string()), ("num_outputs", k.to_string())];
        c.push("SliceChannel", &name, attrs, &[x], k)
    } else {
        let mut idx = vec![0u64];
        for s in &sizes[..k - 1] {
            idx.push(idx.last().unwrap() + s);
        }
        let attrs = vec![("axis", axis.to_string()), ("indices", tuple(&idx)), ("squeeze_axis", "False".into())];
        c.push("_split_v2", &name, attrs, &[x], k)
    };
    for i in 0..k {
        c.bind(n, i, (id, i));
    }
    Ok(())
}

/// The Squeeze nodes reading each output of `split`, when every output is read by exactly one
/// node and that node squeezes exactly `axis`.
fn squeezed_outputs<'a>(c: &Cx<'a>, split: &Node, axis: i64) -> Option<Vec<&'a Node>> {
    let rank = c.in_rank(split, 0)? as i64;
    let mut out = Vec::new();
    for o in &split.outputs {
        let o = (*o)?;
        if c.uses.get(&o) != Some(&1) {
            return None;
        }
        let reader = c.g.nodes.iter().find(|m| m.inputs.first() == Some(&Some(o)))?;
        if !matches!(reader.op, Op::Squeeze) {
            return None;
        }
        let axes = c.const_ints(reader, 1)?;
        if axes.len() != 1 || (axes[0] + rank) % rank != axis {
            return None;
        }
        out.push(reader);
    }
    Some(out)
}

/// 4-D resizes over height and width: nearest with whole-number scales (asymmetric, floor) is
/// UpSampling; linear with align_corners or (pytorch_)half_pixel is BilinearResize2D.
fn resize(c: &mut Cx, n: &Node, r: &ferry_ir::ops::Resize) -> R {
    let x = c.input(n, 0)?;
    let (i, o) = (c.in_shape(n, 0), c.out_shape(n, 0));
    let (Some(i), Some(o)) = (i, o) else { return no("the input and output shapes must be known") };
    if i.len() != 4 || o.len() != 4 || i[0] != o[0] || i[1] != o[1] {
        return no("MXNet resizes only the height and width of NCHW data");
    }
    if r.antialias || r.axes.as_ref().is_some_and(|a| a.iter().any(|a| !matches!(a, 2 | 3 | -1 | -2))) {
        return no("antialiased resizes are not lowered");
    }
    match r.mode.as_str() {
        "nearest" => {
            let whole = i[2] > 0 && o[2] % i[2] == 0 && i[3] > 0 && o[3] % i[3] == 0;
            let s = if whole { o[2] / i[2] } else { 0 };
            if s == 0 || o[3] / i[3] != s {
                return no("nearest resizing to MXNet needs one whole-number scale for height and width");
            }
            if r.coordinate_transformation_mode != "asymmetric" || (s > 1 && r.nearest_mode != "floor") {
                return no("MXNet's nearest UpSampling repeats pixels (asymmetric coordinates, floor)");
            }
            let attrs = vec![("sample_type", "nearest".into()), ("scale", s.to_string()), ("num_args", "1".into())];
            c.out(n, "UpSampling", attrs, &[x]);
            Ok(())
        }
        "linear" => {
            let align = match r.coordinate_transformation_mode.as_str() {
                "align_corners" => true,
                "pytorch_half_pixel" => false,
                "half_pixel" if o[2] > 1 && o[3] > 1 => false,
                other => return no(&format!("MXNet's BilinearResize2D has no '{other}' coordinates")),
            };
            let attrs =
                vec![("height", o[2].to_string()), ("width", o[3].to_string()), ("align_corners", bool_attr(align))];
            c.out(n, "_contrib_BilinearResize2D", attrs, &[x]);
            Ok(())
        }
        other => no(&format!("MXNet has no '{other}' resize")),
    }
}

fn slice(c: &mut Cx, n: &Node) -> R {
    let x = c.input(n, 0)?;
    let dims = c.in_shape(n, 0).ok_or("the input shape is unknown")?;
    let r = dims.len();
    let starts = c.const_ints(n, 1).ok_or("starts are not constant")?;
    let ends = c.const_ints(n, 2).ok_or("ends are not constant")?;
    let axes = match n.inputs.get(3).copied().flatten() {
        Some(_) => c.const_ints(n, 3).ok_or("axes are not constant")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match n.inputs.get(4).copied().flatten() {
        Some(_) => c.const_ints(n, 4).ok_or("steps are not constant")?,
        None => vec![1; starts.len()],
    };
    let mut begin: Vec<String> = vec!["None".into(); r];
    let mut end: Vec<String> = vec!["None".into(); r];
    let mut step: Vec<String> = vec!["None".into(); r];
    let mut last = 0;
    for i in 0..starts.len() {
        let a = norm_axis(axes[i], Some(r))? as usize;
        let d = dims[a] as i64;
        let (s, e, st) = (starts[i], ends[i], steps[i]);
        let fix = |v: i64| if v < 0 { v + d } else { v };
        if st > 0 {
            let b = fix(s).clamp(0, d);
            let e = fix(e).clamp(0, d);
            begin[a] = b.to_string();
            end[a] = e.max(b).to_string();
        } else {
            let b = fix(s).clamp(-1, d - 1);
            let e = fix(e).clamp(-1, d - 1);
            if b < 0 {
                return no("an empty slice has no MXNet form");
            }
            begin[a] = b.to_string();
            end[a] = if e < 0 { "None".into() } else { e.to_string() };
        }
        step[a] = st.to_string();
        last = last.max(a + 1);
    }
    let t = |v: &[String]| tuple(v);
    let attrs = vec![("begin", t(&begin[..last])), ("end", t(&end[..last])), ("step", t(&step[..last]))];
    if c.out_shape(n, 0).is_some_and(|s| s.contains(&0)) {
        return no("an empty slice has no MXNet form");
    }
    c.out(n, "slice", attrs, &[x]);
    Ok(())
}

fn pad(c: &mut Cx, n: &Node, mode: PadMode) -> R {
    let x = c.input(n, 0)?;
    let r = c.in_rank(n, 0).ok_or("the input rank is unknown")?;
    let pads = c.const_ints(n, 1).ok_or("the pads are not constant")?;
    let axes: Vec<usize> = match n.inputs.get(3).copied().flatten() {
        Some(_) => c
            .const_ints(n, 3)
            .ok_or("the axes are not constant")?
            .iter()
            .map(|a| norm_axis(*a, Some(r)).map(|a| a as usize))
            .collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let mut width = vec![0i64; 2 * r];
    for (k, a) in axes.iter().enumerate() {
        width[2 * a] = pads[k];
        width[2 * a + 1] = pads[k + axes.len()];
    }
    if !(r == 4 || r == 5) || width[..4].iter().any(|p| *p != 0) || width.iter().any(|p| *p < 0) {
        return no("MXNet's Pad takes 4-D/5-D inputs padded only on spatial axes");
    }
    let m = match mode {
        PadMode::Constant => "constant",
        PadMode::Edge => "edge",
        PadMode::Reflect => "reflect",
        PadMode::Wrap => return no("MXNet's Pad has no wrap mode"),
    };
    let mut attrs = vec![("mode", m.to_string()), ("pad_width", tuple(&width))];
    if mode == PadMode::Constant {
        let v = match n.inputs.get(2).copied().flatten() {
            Some(_) => {
                c.const_of(n, 2).ok_or("the pad value is not constant")?.to_f64_vec().map_err(|e| e.to_string())?[0]
            }
            None => 0.0,
        };
        attrs.push(("constant_value", float_attr(v)));
    }
    c.out(n, "Pad", attrs, &[x]);
    Ok(())
}

fn one_hot(c: &mut Cx, n: &Node, axis: i64) -> R {
    let r = c.out_rank(n, 0).ok_or("the output rank is unknown")? as i64;
    if axis != -1 && axis != r - 1 {
        return no("MXNet's one_hot adds its axis last");
    }
    let i = c.input(n, 0)?;
    let depth = c.const_of(n, 1).ok_or("the depth is not constant")?.to_f64_vec().map_err(|e| e.to_string())?[0];
    let vals = c.const_of(n, 2).ok_or("the values are not constant")?;
    let dt = dtype_name(vals.dtype).ok_or("the value type has no MXNet form")?;
    let v = vals.to_f64_vec().map_err(|e| e.to_string())?;
    let attrs = vec![
        ("depth", (depth as i64).to_string()),
        ("off_value", float_attr(v[0])),
        ("on_value", float_attr(v[1])),
        ("dtype", dt.into()),
    ];
    c.out(n, "one_hot", attrs, &[i]);
    Ok(())
}

fn reverse_sequence(c: &mut Cx, n: &Node, batch_axis: u64, time_axis: u64) -> R {
    let (x, l) = (c.input(n, 0)?, c.input(n, 1)?);
    let dt = c.in_dtype(n, 0).and_then(dtype_name).ok_or("the input type has no MXNet form")?;
    let r = c.in_rank(n, 0).ok_or("the input rank is unknown")?;
    let lens = c.tmp(n, "Cast", "lengths", vec![("dtype", dt.into())], &[l]);
    let attrs = vec![("use_sequence_length", "True".to_string())];
    match (time_axis, batch_axis) {
        (0, 1) => c.out(n, "SequenceReverse", attrs, &[x, lens]),
        (1, 0) => {
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(0, 1);
            let t = c.tmp(n, "transpose", "time_major", vec![("axes", tuple(&perm))], &[x]);
            let y = c.tmp(n, "SequenceReverse", "reversed", attrs, &[t, lens]);
            c.out(n, "transpose", vec![("axes", tuple(&perm))], &[y]);
        }
        _ => return no("unsupported batch/time axes"),
    }
    Ok(())
}

fn shape(c: &mut Cx, n: &Node, start: i64, end: Option<i64>) -> R {
    let x = c.input(n, 0)?;
    let r = c.in_rank(n, 0).ok_or("the input rank is unknown")? as i64;
    let fix = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
    let (s, e) = (fix(start), fix(end.unwrap_or(r)));
    if s >= e {
        return no("an empty shape slice has no MXNet form");
    }
    if s == 0 && e == r {
        c.out(n, "shape_array", vec![], &[x]);
    } else {
        let sh = c.tmp(n, "shape_array", "shape", vec![], &[x]);
        c.out(n, "slice_axis", vec![("axis", "0".into()), ("begin", s.to_string()), ("end", e.to_string())], &[sh]);
    }
    Ok(())
}

fn reduce(c: &mut Cx, n: &Node, kind: ReduceKind, keepdims: bool, noop: bool) -> R {
    let x = c.input(n, 0)?;
    let axes = match n.inputs.get(1).copied().flatten() {
        Some(_) => c.const_ints(n, 1).ok_or("the axes are not constant")?,
        None => vec![],
    };
    if axes.is_empty() && noop {
        c.out(n, "_copy", vec![], &[x]);
        return Ok(());
    }
    let r = c.in_rank(n, 0);
    let mut axes: Vec<i64> = axes.iter().map(|a| norm_axis(*a, r)).collect::<Result<_, _>>()?;
    axes.sort();
    if !keepdims && (axes.is_empty() || r == Some(axes.len())) && is_graph_output(c, n) {
        return no("MXNet 1.x has no 0-d arrays (a full reduction gives shape (1,))");
    }
    let mut attrs = vec![("keepdims", bool_attr(keepdims))];
    if !axes.is_empty() {
        attrs.push(("axis", tuple(&axes)));
    }
    match kind {
        ReduceKind::Sum => c.out(n, "sum", attrs, &[x]),
        ReduceKind::Mean => c.out(n, "mean", attrs, &[x]),
        ReduceKind::Max => c.out(n, "max", attrs, &[x]),
        ReduceKind::Min => c.out(n, "min", attrs, &[x]),
        ReduceKind::Prod => c.out(n, "prod", attrs, &[x]),
        ReduceKind::L1 | ReduceKind::L2 => {
            if axes.len() > 2 || (axes.is_empty() && keepdims) {
                return no("MXNet's norm reduces over one or two axes");
            }
            attrs.push(("ord", if kind == ReduceKind::L1 { "1" } else { "2" }.into()));
            c.out(n, "norm", attrs, &[x]);
        }
        ReduceKind::SumSquare => {
            let sq = c.tmp(n, "square", "square", vec![], &[x]);
            c.out(n, "sum", attrs, &[sq]);
        }
        ReduceKind::LogSum => {
            let s = c.tmp(n, "sum", "sum", attrs, &[x]);
            c.out(n, "log", vec![], &[s]);
        }
        ReduceKind::LogSumExp => {
            let e = c.tmp(n, "exp", "exp", vec![], &[x]);
            let s = c.tmp(n, "sum", "sum", attrs, &[e]);
            c.out(n, "log", vec![], &[s]);
        }
    }
    Ok(())
}

fn topk(c: &mut Cx, n: &Node, axis: i64, largest: bool) -> R {
    let x = c.input(n, 0)?;
    let k = c.const_ints(n, 1).ok_or("k is not constant")?[0];
    let axis = norm_axis(axis, c.in_rank(n, 0))?;
    let values_read = n.outputs[0].is_some_and(|v| c.uses.get(&v).copied().unwrap_or(0) > 0);
    let attrs = vec![
        ("axis", axis.to_string()),
        ("k", k.to_string()),
        ("ret_typ", if values_read { "both" } else { "indices" }.into()),
        ("is_ascend", bool_attr(!largest)),
        ("dtype", "int64".into()),
    ];
    let name = c.out_name(n, 0);
    if values_read {
        let id = c.push("topk", &name, attrs, &[x], 2);
        c.bind(n, 0, (id, 0));
        c.bind(n, 1, (id, 1));
    } else {
        let name = c.out_name(n, 1);
        let id = c.push("topk", &name, attrs, &[x], 1);
        c.bind(n, 1, (id, 0));
    }
    Ok(())
}

fn matmul(c: &mut Cx, n: &Node) -> R {
    let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
    let (sa, sb) = (c.in_shape(n, 0), c.in_shape(n, 1));
    let (ra, rb) =
        (c.in_rank(n, 0).ok_or("input ranks are unknown")?, c.in_rank(n, 1).ok_or("input ranks are unknown")?);
    if !c.in_dtype(n, 0).is_some_and(|d| d.is_float()) {
        return no("MXNet's dot and linalg_gemm2 take floating-point inputs");
    }
    // dot contracts a's last axis with b's first: numpy matmul whenever b is 1-D or 2-D.
    if rb <= 2 && ra >= 1 && !(ra == 1 && rb == 1) {
        c.out(n, "dot", vec![], &[a, b]);
        return Ok(());
    }
    let (sa, sb) = (sa.ok_or("input shapes are unknown")?, sb.ok_or("input shapes are unknown")?);
    let out = c.out_shape(n, 0).ok_or("the output shape is unknown")?;
    if ra < 2 || rb < 2 {
        return no("a 1-D operand against a batched one is not lowered");
    }
    let r = out.len();
    let batch = &out[..r - 2];
    let mut ta: Vec<u64> = batch.to_vec();
    ta.extend(&sa[ra - 2..]);
    let mut tb: Vec<u64> = batch.to_vec();
    tb.extend(&sb[rb - 2..]);
    let a = broadcast(c, n, a, &sa, &ta, "a");
    let b = broadcast(c, n, b, &sb, &tb, "b");
    if r == 3 {
        c.out(n, "batch_dot", vec![], &[a, b]);
    } else {
        c.out(n, "_linalg_gemm2", vec![], &[a, b]);
    }
    Ok(())
}
