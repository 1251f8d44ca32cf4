//! Newer ONNX ops (opsets 18-28) that the spec defines as functions of older ops: each is
//! canonicalized into a composition of existing core ops, so exporting them to an older opset
//! falls out of the core ops' lowerings.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use ferry_ir::ops::{AutoPad, BinaryOp, Cast, Conv, PadMode, ReduceKind, Scan, ScatterReduction, UnaryOp};
use ferry_ir::{DType, Graph, Op, Tensor, ValueId, ValueType};
use std::collections::HashMap;

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("RMSNormalization", rms_norm),
    ("Gelu", gelu),
    ("Swish", swish),
    ("SwiGLU", swiglu),
    ("CumProd", cum_prod),
    ("CenterCropPad", center_crop_pad),
    ("CausalConvWithState", causal_conv_with_state),
    ("RotaryEmbedding", rotary_embedding),
    ("AffineGrid", affine_grid),
    ("TensorScatter", tensor_scatter),
    ("LinearAttention", linear_attention),
];

macro_rules! need {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Canon::KeepOpaque($why.into())),
        }
    };
}

fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![Some(a), Some(b)], hint)
}

fn un(c: &mut NodeCtx, op: UnaryOp, a: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Unary(op), vec![Some(a)], hint)
}

/// A scalar constant of a numeric dtype (callers check the dtype with [`float_dtype`] or
/// [`scalar`] first).
fn sc(c: &mut NodeCtx, dtype: DType, v: f64, hint: &str) -> ValueId {
    let t = scalar(dtype, v).expect("dtype checked by the caller");
    c.constant(t, hint)
}

fn cast_to(c: &mut NodeCtx, x: ValueId, to: DType, hint: &str) -> ValueId {
    c.emit_temp(Op::Cast(Cast { to, saturate: true, round_mode: "up".into() }), vec![Some(x)], hint)
}

fn float_dtype(d: Option<DType>) -> Option<DType> {
    d.filter(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16))
}

/// The statically known size of dimension `d` of a value.
fn dim_of(c: &NodeCtx, v: ValueId, d: usize) -> Option<u64> {
    c.value_type(v).shape()?.dims().get(d)?.known()
}

fn rank_of(c: &NodeCtx, v: ValueId) -> Option<usize> {
    c.value_type(v).shape().map(|s| s.rank())
}

/// `Shape(x)[start..end]`, a 1-D int64 tensor.
fn shape_part(c: &mut NodeCtx, x: ValueId, start: i64, end: i64, hint: &str) -> ValueId {
    c.emit_temp(Op::Shape { start, end: Some(end) }, vec![Some(x)], hint)
}

fn unsqueeze(c: &mut NodeCtx, x: ValueId, axes: &[i64], hint: &str) -> ValueId {
    if axes.is_empty() {
        return x;
    }
    let axes = c.const_i64s(axes, "axes");
    c.emit_temp(Op::Unsqueeze, vec![Some(x), Some(axes)], hint)
}

fn squeeze(c: &mut NodeCtx, x: ValueId, axes: &[i64], hint: &str) -> ValueId {
    let axes = c.const_i64s(axes, "axes");
    c.emit_temp(Op::Squeeze, vec![Some(x), Some(axes)], hint)
}

fn reshape(c: &mut NodeCtx, x: ValueId, shape: &[i64], hint: &str) -> ValueId {
    let shape = c.const_i64s(shape, "shape");
    c.emit_temp(Op::Reshape { allowzero: false }, vec![Some(x), Some(shape)], hint)
}

fn slice(c: &mut NodeCtx, x: ValueId, start: i64, end: i64, axis: i64, step: Option<i64>, hint: &str) -> ValueId {
    let s = c.const_i64s(&[start], "starts");
    let e = c.const_i64s(&[end], "ends");
    let a = c.const_i64s(&[axis], "axes");
    let st = step.map(|v| c.const_i64s(&[v], "steps"));
    c.emit_temp(Op::Slice, vec![Some(x), Some(s), Some(e), Some(a), st], hint)
}

fn concat(c: &mut NodeCtx, parts: &[ValueId], axis: i64, hint: &str) -> ValueId {
    c.emit_temp(Op::Concat { axis }, parts.iter().map(|p| Some(*p)).collect(), hint)
}

/// `[0, n)` as a 1-D int64 tensor, `n` a 1-element 1-D int64 tensor.
fn range_of(c: &mut NodeCtx, n: ValueId, hint: &str) -> ValueId {
    let n = squeeze(c, n, &[0], "count");
    let zero = c.constant(Tensor::from_i64(vec![], &[0]).expect("scalar"), "zero");
    let one = c.constant(Tensor::from_i64(vec![], &[1]).expect("scalar"), "one");
    c.emit_temp(Op::Range, vec![Some(zero), Some(n), Some(one)], hint)
}

/// Axes `[axis, rank)` as the normalizations spell them (negative axis: counted from the end).
fn trailing_axes(c: &NodeCtx, axis: i64) -> Result<Option<Vec<i64>>> {
    let rank = c.input_rank(0).map(|r| r as i64);
    if axis < 0 {
        // Unknown rank: still bounded, so a hostile axis cannot ask for a huge list.
        if axis < -rank.unwrap_or(64) {
            return Err(c.error(format!("axis {axis} out of range for rank {}", rank.unwrap_or(64))));
        }
        return Ok(Some((axis..0).collect()));
    }
    let Some(rank) = rank else { return Ok(None) };
    if axis >= rank {
        return Err(c.error(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(Some((axis..rank).collect()))
}

/// Builds a nested graph (a control-flow body) with core nodes emitted through a `NodeCtx` of
/// its own. `inputs` declares the body's formal inputs (hint, type); `captures` are values of
/// the enclosing graph the body reads (by name). `f` gets the body's inputs then its captures and
/// returns the body's outputs.
fn subgraph(
    c: &mut NodeCtx,
    name: &str,
    inputs: &[(&str, ValueType)],
    captures: &[ValueId],
    f: impl FnOnce(&mut NodeCtx, &[ValueId], &[ValueId]) -> Result<Vec<ValueId>>,
) -> Result<Graph> {
    let mut body = Graph { name: name.to_string(), ..Default::default() };
    for v in captures {
        let outer = &c.graph.values[*v];
        let id = body.add_value(outer.name.clone(), outer.ty.clone());
        body.captures.push(id);
    }
    let caps = body.captures.clone();
    let mut consts = HashMap::new();
    let node_name = format!("{}/{name}", if c.node_name.is_empty() { c.op_type } else { &c.node_name });
    let outputs = {
        let mut b = NodeCtx {
            op_type: c.op_type,
            domain: c.domain,
            version: c.version,
            node_name,
            inputs: vec![],
            outputs: vec![],
            attrs: vec![],
            graph: &mut body,
            used_names: &mut *c.used_names,
            consts: &mut consts,
            emitted: 1,
        };
        let mut ins = Vec::new();
        for (hint, ty) in inputs {
            let v = b.temp(hint);
            b.graph.values[v].ty = ty.clone();
            ins.push(v);
        }
        let outs = f(&mut b, &ins, &caps)?;
        b.graph.inputs = ins;
        outs
    };
    // A body output must be produced inside the body: pass captures and inputs through Identity.
    let mut outs = Vec::new();
    for o in outputs {
        let produced = body.nodes.iter().any(|n| n.outputs.contains(&Some(o)));
        if produced {
            outs.push(o);
        } else {
            let name = format!("{}_out", body.values[o].name);
            c.used_names.insert(name.clone());
            let ty = body.values[o].ty.clone();
            let id = body.add_value(name, ty);
            body.nodes.push(ferry_ir::Node {
                name: String::new(),
                op: Op::Identity,
                inputs: vec![Some(o)],
                outputs: vec![Some(id)],
                doc_string: String::new(),
            });
            outs.push(id);
        }
    }
    body.outputs = outs;
    Ok(body)
}

/// RMSNormalization-23: `X / sqrt(mean(X^2 over [axis, rank)) + epsilon) * scale`, the statistics
/// computed in `stash_type`.
fn rms_norm(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let scale = c.required_input(1)?;
    let axis = c.attr_i("axis", -1)?;
    let eps = c.attr_f("epsilon", 1e-5)?;
    let stash = c.attr_dtype("stash_type")?.unwrap_or(DType::F32);
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    need!(float_dtype(Some(stash)), "stash_type is not a floating type");
    let axes = need!(trailing_axes(c, axis)?, "input rank unknown");
    let xs = if stash != dtype { cast_to(c, x, stash, "x_stash") } else { x };
    let sq = bin(c, BinaryOp::Mul, xs, xs, "squared");
    let axes = c.const_i64s(&axes, "axes");
    let mean = c.emit_temp(
        Op::Reduce { kind: ReduceKind::Mean, keepdims: true, noop_with_empty_axes: false },
        vec![Some(sq), Some(axes)],
        "mean_square",
    );
    let eps = sc(c, stash, eps as f64, "epsilon");
    let mean_eps = bin(c, BinaryOp::Add, mean, eps, "mean_square_eps");
    let rms = un(c, UnaryOp::Sqrt, mean_eps, "rms");
    let normalized = bin(c, BinaryOp::Div, xs, rms, "normalized");
    let normalized = if stash != dtype { cast_to(c, normalized, dtype, "normalized_t") } else { normalized };
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(normalized), Some(scale)], 0);
    Ok(Canon::Done)
}

/// Gelu-20: `0.5 x (1 + erf(x / sqrt 2))`, or with approximate="tanh"
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
fn gelu(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let approximate = c.attr_s("approximate", "none")?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let inner = match approximate.as_str() {
        "none" => {
            let sqrt2 = sc(c, dtype, std::f64::consts::SQRT_2, "sqrt2");
            let xs = bin(c, BinaryOp::Div, x, sqrt2, "x_over_sqrt2");
            un(c, UnaryOp::Erf, xs, "erf")
        }
        "tanh" => {
            let k = sc(c, dtype, (2.0 / std::f64::consts::PI).sqrt(), "sqrt_2_over_pi");
            let c0 = sc(c, dtype, 0.044715, "c0");
            let x2 = bin(c, BinaryOp::Mul, x, x, "x_squared");
            let x3 = bin(c, BinaryOp::Mul, x2, x, "x_cubed");
            let x3c = bin(c, BinaryOp::Mul, c0, x3, "x_cubed_scaled");
            let s = bin(c, BinaryOp::Add, x, x3c, "cubic");
            let t = bin(c, BinaryOp::Mul, k, s, "tanh_input");
            un(c, UnaryOp::Tanh, t, "tanh")
        }
        other => return Err(c.error(format!("approximate must be 'none' or 'tanh', not '{other}'"))),
    };
    let one = sc(c, dtype, 1.0, "one");
    let half = sc(c, dtype, 0.5, "half");
    let phi = bin(c, BinaryOp::Add, one, inner, "phi");
    let hx = bin(c, BinaryOp::Mul, half, x, "half_x");
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(hx), Some(phi)], 0);
    Ok(Canon::Done)
}

/// `x * sigmoid(alpha * x)`, into a fresh value.
fn swish_of(c: &mut NodeCtx, x: ValueId, alpha: f32, dtype: DType) -> ValueId {
    let ax = if alpha == 1.0 {
        x
    } else {
        let a = sc(c, dtype, alpha as f64, "alpha");
        bin(c, BinaryOp::Mul, a, x, "scaled")
    };
    let s = un(c, UnaryOp::Sigmoid, ax, "sigmoid");
    bin(c, BinaryOp::Mul, x, s, "swish")
}

/// Swish-24: `x * sigmoid(alpha * x)`.
fn swish(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let ax = if alpha == 1.0 {
        x
    } else {
        let a = sc(c, dtype, alpha as f64, "alpha");
        bin(c, BinaryOp::Mul, a, x, "scaled")
    };
    let s = un(c, UnaryOp::Sigmoid, ax, "sigmoid");
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(x), Some(s)], 0);
    Ok(Canon::Done)
}

/// SwiGLU-28: `Swish_alpha(A) * B`.
fn swiglu(c: &mut NodeCtx) -> Result<Canon> {
    let a = c.required_input(0)?;
    let b = c.required_input(1)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let g = swish_of(c, a, alpha, dtype);
    c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(g), Some(b)], 0);
    Ok(Canon::Done)
}

/// CumProd-26 as a masked product: `y[.., i, ..] = prod_j (mask[i, j] ? x[.., j, ..] : 1)` with
/// `mask[i, j] = j <= i` (`<` exclusive; `>=`/`>` reversed), reduced over a new axis. An axis
/// known only at run time selects among the per-axis forms with a chain of Ifs.
fn cum_prod(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let axis_in = c.required_input(1)?;
    let rank = need!(c.input_rank(0), "input rank unknown");
    let dtype = need!(c.input_dtype(0), "input dtype unknown");
    need!(scalar(dtype, 1.0), "input dtype has no numeric scalar");
    if rank == 0 {
        return Err(c.error("input must have rank >= 1"));
    }
    let flags = (c.attr_i("exclusive", 0)? != 0, c.attr_i("reverse", 0)? != 0);
    let axis = match c.const_input(1).map(|t| t.to_i64_vec()) {
        Some(Ok(v)) if v.len() == 1 => Some(v[0]),
        Some(_) => return Err(c.error("axis must hold one integer")),
        None if rank == 1 => Some(0),
        None => None,
    };
    let out = c.output(0).unwrap_or_else(|| c.temp("unused"));
    match axis {
        Some(axis) => {
            let a = ferry_ir::shape::normalize_axis(axis, rank).map_err(|e| c.error(e))?;
            cum_prod_along(c, x, a, rank, dtype, flags, out);
        }
        None => {
            let axis = match c.input_dtype(1) {
                Some(DType::I64) => axis_in,
                Some(DType::I32) => cast_to(c, axis_in, DType::I64, "axis_i64"),
                _ => return Ok(Canon::KeepOpaque("axis dtype unknown".into())),
            };
            let r = c.constant(Tensor::from_i64(vec![], &[rank as i64]).expect("scalar"), "rank");
            let a = bin(c, BinaryOp::Mod, axis, r, "axis_normalized");
            cum_prod_chain(c, x, a, 0, rank, dtype, flags, out)?;
        }
    }
    Ok(Canon::Done)
}

/// `If a == k: cumprod along k, else (a == k + 1 ...)`, the last axis unconditionally.
#[allow(clippy::too_many_arguments)]
fn cum_prod_chain(
    c: &mut NodeCtx,
    x: ValueId,
    a: ValueId,
    k: usize,
    rank: usize,
    dtype: DType,
    flags: (bool, bool),
    out: ValueId,
) -> Result<()> {
    if k + 1 == rank {
        cum_prod_along(c, x, k, rank, dtype, flags, out);
        return Ok(());
    }
    let kv = c.constant(Tensor::from_i64(vec![], &[k as i64]).expect("scalar"), "axis_candidate");
    let cond = bin(c, BinaryOp::Equal, a, kv, "is_axis");
    let then_branch = subgraph(c, &format!("axis{k}"), &[], &[x], |b, _, caps| {
        let o = b.temp("y");
        cum_prod_along(b, caps[0], k, rank, dtype, flags, o);
        Ok(vec![o])
    })?;
    let else_branch = subgraph(c, &format!("axis_after{k}"), &[], &[x, a], |b, _, caps| {
        let o = b.temp("y");
        cum_prod_chain(b, caps[0], caps[1], k + 1, rank, dtype, flags, o)?;
        Ok(vec![o])
    })?;
    c.emit(
        Op::If { then_branch: Box::new(then_branch), else_branch: Box::new(else_branch) },
        vec![Some(cond)],
        vec![Some(out)],
    );
    Ok(())
}

fn cum_prod_along(
    c: &mut NodeCtx,
    x: ValueId,
    a: usize,
    rank: usize,
    dtype: DType,
    (exclusive, reverse): (bool, bool),
    out: ValueId,
) {
    let a = a as i64;
    let n = shape_part(c, x, a, a + 1, "length");
    let idx = range_of(c, n, "positions");
    let i_col = unsqueeze(c, idx, &[1], "out_positions");
    let j_row = unsqueeze(c, idx, &[0], "in_positions");
    let cmp = match (reverse, exclusive) {
        (false, false) => BinaryOp::LessOrEqual,
        (false, true) => BinaryOp::Less,
        (true, false) => BinaryOp::GreaterOrEqual,
        (true, true) => BinaryOp::Greater,
    };
    let mask = bin(c, cmp, j_row, i_col, "mask");
    let trailing: Vec<i64> = (2..2 + (rank as i64 - 1 - a)).collect();
    let mask = unsqueeze(c, mask, &trailing, "mask_b");
    let xu = unsqueeze(c, x, &[a], "x_rows");
    let one = sc(c, dtype, 1.0, "one");
    let factors = c.emit_temp(Op::Where, vec![Some(mask), Some(xu), Some(one)], "factors");
    let axes = c.const_i64s(&[a + 1], "axes");
    c.emit(
        Op::Reduce { kind: ReduceKind::Prod, keepdims: false, noop_with_empty_axes: false },
        vec![Some(factors), Some(axes)],
        vec![Some(out)],
    );
}

/// CenterCropPad-18: pad each listed axis to at least the target size (extra pixel on the right),
/// then slice the centred window (start rounded down).
fn center_crop_pad(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let target = c.required_input(1)?;
    let rank = need!(c.input_rank(0), "input rank unknown");
    let axes: Vec<i64> = match c.attr_ints("axes")? {
        Some(a) => a
            .iter()
            .map(|a| ferry_ir::shape::normalize_axis(*a, rank).map(|a| a as i64))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| c.error(e))?,
        None => (0..rank as i64).collect(),
    };
    let target = match c.input_dtype(1) {
        Some(DType::I64) => target,
        Some(DType::I32) => cast_to(c, target, DType::I64, "shape_i64"),
        _ => return Ok(Canon::KeepOpaque("shape dtype unknown".into())),
    };
    let axes_v = c.const_i64s(&axes, "axes");
    let x_shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(x)], "x_shape");
    let sizes = c.emit_temp(Op::Gather { axis: 0 }, vec![Some(x_shape), Some(axes_v)], "sizes");
    let padded_sizes = bin(c, BinaryOp::Max, sizes, target, "padded_sizes");
    let pad = bin(c, BinaryOp::Sub, padded_sizes, sizes, "pad");
    let two = c.const_i64s(&[2], "two");
    let left = bin(c, BinaryOp::Div, pad, two, "pad_left");
    let right = bin(c, BinaryOp::Sub, pad, left, "pad_right");
    let pads = concat(c, &[left, right], 0, "pads");
    let padded =
        c.emit_temp(Op::Pad { mode: PadMode::Constant }, vec![Some(x), Some(pads), None, Some(axes_v)], "padded");
    let diff = bin(c, BinaryOp::Sub, padded_sizes, target, "excess");
    let starts = bin(c, BinaryOp::Div, diff, two, "starts");
    let ends = bin(c, BinaryOp::Add, starts, target, "ends");
    c.emit_to_output(Op::Slice, vec![Some(padded), Some(starts), Some(ends), Some(axes_v)], 0);
    Ok(Canon::Done)
}

/// CausalConvWithState-27: depthwise Conv over `concat(past_state or zeros, input)`; the new
/// state is the last `k - 1` positions of that concatenation.
fn causal_conv_with_state(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let w = c.required_input(1)?;
    let (bias, past) = (c.input(2), c.input(3));
    let dtype = need!(float_dtype(c.input_dtype(0)), "input dtype unknown or not floating");
    let activation = c.attr_s("activation", "none")?;
    let silu = match activation.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        other => return Err(c.error(format!("unknown activation '{other}'"))),
    };
    let channels = need!(dim_of(c, x, 1).or_else(|| dim_of(c, w, 0)), "channel count unknown");
    if rank_of(c, x).is_some_and(|r| r != 3) {
        return Err(c.error("input must be rank 3 (batch, channels, length)"));
    }
    let one = c.const_i64s(&[1], "one");
    let k = shape_part(c, w, 2, 3, "kernel_size");
    let km1 = bin(c, BinaryOp::Sub, k, one, "kernel_size_minus_1");
    let padded = match past {
        Some(p) => concat(c, &[p, x], 2, "padded_input"),
        None => {
            let zeros = c.const_i64s(&[0, 0], "zeros");
            let zeros3 = c.const_i64s(&[0, 0, 0], "zeros");
            let pads = concat(c, &[zeros, km1, zeros3], 0, "pads");
            c.emit_temp(Op::Pad { mode: PadMode::Constant }, vec![Some(x), Some(pads)], "padded_input")
        }
    };
    let conv = Op::Conv(Conv {
        kernel_shape: None,
        strides: vec![],
        dilations: vec![],
        pads: AutoPad::Explicit(vec![]),
        group: channels,
    });
    if silu {
        let y = c.emit_temp(conv, vec![Some(padded), Some(w), bias], "conv");
        let yf = if dtype != DType::F32 { cast_to(c, y, DType::F32, "conv_f32") } else { y };
        let s = un(c, UnaryOp::Sigmoid, yf, "sigmoid");
        if dtype != DType::F32 {
            let act = bin(c, BinaryOp::Mul, yf, s, "silu");
            c.emit_to_output(Op::Cast(Cast { to: dtype, saturate: true, round_mode: "up".into() }), vec![Some(act)], 0);
        } else {
            c.emit_to_output(Op::Binary(BinaryOp::Mul), vec![Some(yf), Some(s)], 0);
        }
    } else {
        c.emit_to_output(conv, vec![Some(padded), Some(w), bias], 0);
    }
    if c.output(1).is_some() {
        let len = shape_part(c, padded, 2, 3, "padded_length");
        let start = bin(c, BinaryOp::Sub, len, km1, "state_start");
        let axes = c.const_i64s(&[2], "axes");
        c.emit_to_output(Op::Slice, vec![Some(padded), Some(start), Some(len), Some(axes)], 1);
    }
    Ok(Canon::Done)
}

/// RotaryEmbedding-23, as its function body: rotate the first `rotary_embedding_dim` features of
/// each head by the (gathered) cos/sin caches, halves split or interleaved.
fn rotary_embedding(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let (cos, sin) = (c.required_input(1)?, c.required_input(2)?);
    let pos = c.input(3);
    let interleaved = c.attr_i("interleaved", 0)? != 0;
    let rd = c.attr_i("rotary_embedding_dim", 0)?;
    let num_heads = c.attr_i("num_heads", 0)?;
    let rank = need!(c.input_rank(0), "input rank unknown");
    let xin = match rank {
        4 => c.emit_temp(Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, vec![Some(x)], "x_bshd"),
        3 if num_heads > 0 => reshape(c, x, &[0, 0, num_heads, -1], "x_bshd"),
        3 => return Err(c.error("num_heads is required for rank-3 input")),
        r => return Err(c.error(format!("input must be rank 3 or 4, not {r}"))),
    };
    let (xr, rest) = if rd > 0 {
        let xr = slice(c, xin, 0, rd, 3, None, "x_rotate");
        let rest = slice(c, xin, rd, i64::MAX, 3, None, "x_keep");
        (xr, Some(rest))
    } else {
        (xin, None)
    };
    let (cos, sin) = match pos {
        Some(p) => (
            c.emit_temp(Op::Gather { axis: 0 }, vec![Some(cos), Some(p)], "cos_gathered"),
            c.emit_temp(Op::Gather { axis: 0 }, vec![Some(sin), Some(p)], "sin_gathered"),
        ),
        None => (cos, sin),
    };
    let half = if rd > 0 {
        c.const_i64s(&[rd / 2], "half")
    } else {
        let head = shape_part(c, xin, 3, 4, "head_size");
        let two = c.const_i64s(&[2], "two");
        bin(c, BinaryOp::Div, head, two, "half")
    };
    let zero = c.const_i64s(&[0], "zero");
    let axis2 = c.const_i64s(&[2], "axis2");
    let cache = |c: &mut NodeCtx, t: ValueId, hint: &str| {
        let s = c.emit_temp(Op::Slice, vec![Some(t), Some(zero), Some(half), Some(axis2)], hint);
        c.emit_temp(Op::Unsqueeze, vec![Some(s), Some(axis2)], hint)
    };
    let cos = cache(c, cos, "cos");
    let sin = cache(c, sin, "sin");
    let (x1, x2) = if interleaved {
        (slice(c, xr, 0, i64::MAX, 3, Some(2), "x_even"), slice(c, xr, 1, i64::MAX, 3, Some(2), "x_odd"))
    } else {
        let (a, b) = (c.temp("x_first_half"), c.temp("x_second_half"));
        c.emit(Op::Split { axis: -1, num_outputs: Some(2) }, vec![Some(xr)], vec![Some(a), Some(b)]);
        (a, b)
    };
    let cx1 = bin(c, BinaryOp::Mul, cos, x1, "cos_x1");
    let sx2 = bin(c, BinaryOp::Mul, sin, x2, "sin_x2");
    let real = bin(c, BinaryOp::Sub, cx1, sx2, "real");
    let sx1 = bin(c, BinaryOp::Mul, sin, x1, "sin_x1");
    let cx2 = bin(c, BinaryOp::Mul, cos, x2, "cos_x2");
    let imag = bin(c, BinaryOp::Add, sx1, cx2, "imaginary");
    let rotated = if interleaved {
        let r = unsqueeze(c, real, &[-1], "real_u");
        let i = unsqueeze(c, imag, &[-1], "imaginary_u");
        let pairs = concat(c, &[r, i], -1, "pairs");
        let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(xr)], "rotate_shape");
        c.emit_temp(Op::Reshape { allowzero: false }, vec![Some(pairs), Some(shape)], "rotated")
    } else {
        concat(c, &[real, imag], -1, "rotated")
    };
    let y = match rest {
        Some(rest) => concat(c, &[rotated, rest], -1, "joined"),
        None => rotated,
    };
    if rank == 4 {
        c.emit_to_output(Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, vec![Some(y)], 0);
    } else {
        let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(x)], "x_shape");
        c.emit_to_output(Op::Reshape { allowzero: false }, vec![Some(y), Some(shape)], 0);
    }
    Ok(Canon::Done)
}

/// AffineGrid-20: the homogeneous base grid `(x, y[, z], 1)` over `size`'s spatial dims (points
/// in [-1, 1]), times `theta` transposed.
fn affine_grid(c: &mut NodeCtx) -> Result<Canon> {
    let theta = c.required_input(0)?;
    let size = c.required_input(1)?;
    let align = c.attr_i("align_corners", 0)? != 0;
    let dtype = need!(float_dtype(c.input_dtype(0)), "theta dtype unknown or not floating");
    let len = need!(dim_of(c, size, 0), "the length of size is unknown");
    if len != 4 && len != 5 {
        return Err(c.error(format!("size must have 4 or 5 elements, not {len}")));
    }
    let n = len as i64 - 2;
    let spatial = slice(c, size, 2, len as i64, 0, None, "spatial_shape");
    let one = sc(c, dtype, 1.0, "one");
    let two = sc(c, dtype, 2.0, "two");
    let mut coords = Vec::new();
    for j in 0..n {
        let l = slice(c, size, 2 + j, 3 + j, 0, None, "extent");
        let steps = range_of(c, l, "steps");
        let steps = cast_to(c, steps, dtype, "steps_f");
        let lf = cast_to(c, l, dtype, "extent_f");
        let lin = if align {
            // -1 + i * 2 / (L - 1); a single point sits at -1.
            let lm1 = bin(c, BinaryOp::Sub, lf, one, "extent_minus_1");
            let lm1 = bin(c, BinaryOp::Max, lm1, one, "intervals");
            let step = bin(c, BinaryOp::Div, two, lm1, "step");
            let scaled = bin(c, BinaryOp::Mul, steps, step, "offsets");
            bin(c, BinaryOp::Sub, scaled, one, "linspace")
        } else {
            // -1 + (i + 0.5) * 2 / L
            let step = bin(c, BinaryOp::Div, two, lf, "step");
            let half = sc(c, dtype, 0.5, "half");
            let mid = bin(c, BinaryOp::Add, steps, half, "centres");
            let scaled = bin(c, BinaryOp::Mul, mid, step, "offsets");
            bin(c, BinaryOp::Sub, scaled, one, "linspace")
        };
        let others: Vec<i64> = (0..n).filter(|k| *k != j).collect();
        let lin = unsqueeze(c, lin, &others, "linspace_b");
        coords.push(c.emit_temp(Op::Expand, vec![Some(lin), Some(spatial)], "coordinate"));
    }
    let ones = c.emit_temp(Op::Expand, vec![Some(one), Some(spatial)], "ones");
    // Components in (x, y[, z]) order: the last spatial axis first.
    let mut parts: Vec<ValueId> = coords.into_iter().rev().collect();
    parts.push(ones);
    let parts: Vec<ValueId> = parts.into_iter().map(|p| unsqueeze(c, p, &[-1], "component")).collect();
    let grid = concat(c, &parts, -1, "base_grid");
    let flat = reshape(c, grid, &[-1, n + 1], "base_points");
    let theta_t = c.emit_temp(Op::Transpose { perm: Some(vec![0, 2, 1]) }, vec![Some(theta)], "theta_t");
    let moved = c.emit_temp(Op::MatMul, vec![Some(flat), Some(theta_t)], "points");
    let batch = slice(c, size, 0, 1, 0, None, "batch");
    let last = c.const_i64s(&[n], "components");
    let out_shape = concat(c, &[batch, spatial, last], 0, "grid_shape");
    c.emit_to_output(Op::Reshape { allowzero: false }, vec![Some(moved), Some(out_shape)], 0);
    Ok(Canon::Done)
}

/// TensorScatter-24: ScatterElements along `axis` at `write_indices[batch] + position`
/// (modulo the cache length in circular mode).
fn tensor_scatter(c: &mut NodeCtx) -> Result<Canon> {
    let past = c.required_input(0)?;
    let update = c.required_input(1)?;
    let write = c.input(2);
    let mode = c.attr_s("mode", "linear")?;
    let circular = match mode.as_str() {
        "linear" => false,
        "circular" => true,
        other => return Err(c.error(format!("mode must be 'linear' or 'circular', not '{other}'"))),
    };
    let rank = need!(c.input_rank(0).or_else(|| c.input_rank(1)), "cache rank unknown");
    let a = ferry_ir::shape::normalize_axis(c.attr_i("axis", -2)?, rank).map_err(|e| c.error(e))? as i64;
    if a == 0 {
        return Err(c.error("axis must not be the batch axis"));
    }
    let seq = shape_part(c, update, a, a + 1, "update_length");
    let pos = range_of(c, seq, "positions");
    let others: Vec<i64> = (0..rank as i64).filter(|k| *k != a).collect();
    let mut idx = unsqueeze(c, pos, &others, "positions_b");
    if let Some(w) = write {
        let rest: Vec<i64> = (1..rank as i64).collect();
        let w = unsqueeze(c, w, &rest, "write_indices_b");
        idx = bin(c, BinaryOp::Add, w, idx, "cache_positions");
    }
    if circular {
        let max = shape_part(c, past, a, a + 1, "cache_length");
        idx = bin(c, BinaryOp::Mod, idx, max, "wrapped_positions");
    }
    let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![Some(update)], "update_shape");
    let idx = c.emit_temp(Op::Expand, vec![Some(idx), Some(shape)], "indices");
    c.emit_to_output(
        Op::ScatterElements { axis: a, reduction: ScatterReduction::None },
        vec![Some(past), Some(idx), Some(update)],
        0,
    );
    Ok(Canon::Done)
}

/// LinearAttention-27 as a Scan over the sequence axis carrying the float32 state
/// `[B, H_kv, d_k, d_v]`, one recurrence step per token as the spec's reference defines it.
fn linear_attention(c: &mut NodeCtx) -> Result<Canon> {
    let (q, k, v) = (c.required_input(0)?, c.required_input(1)?, c.required_input(2)?);
    let (past, decay, beta) = (c.input(3), c.input(4), c.input(5));
    let hq = c.attr_i_opt("q_num_heads")?.ok_or_else(|| c.error("attribute 'q_num_heads' is required"))?;
    let hkv = c.attr_i_opt("kv_num_heads")?.ok_or_else(|| c.error("attribute 'kv_num_heads' is required"))?;
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return Err(c.error(format!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}")));
    }
    let rule = c.attr_s("update_rule", "gated_delta")?;
    let (gating, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => return Err(c.error(format!("unknown update_rule '{other}'"))),
    };
    if gating != decay.is_some() {
        return Err(
            c.error(format!("update_rule '{rule}' {} the decay input", if gating { "needs" } else { "forbids" }))
        );
    }
    if delta != beta.is_some() {
        return Err(c.error(format!("update_rule '{rule}' {} the beta input", if delta { "needs" } else { "forbids" })));
    }
    let dtype = need!(float_dtype(c.input_dtype(0)), "query dtype unknown or not floating");
    let state_dtype = match past {
        Some(_) => need!(float_dtype(c.input_dtype(3)), "past_state dtype unknown or not floating"),
        None => dtype,
    };
    let mut scale = c.attr_f("scale", 0.0)? as f64;
    if scale == 0.0 {
        if let Some(dq) = dim_of(c, q, 2) {
            scale = 1.0 / ((dq / hq as u64) as f64).sqrt();
        }
    }
    let group = hq / hkv;

    // Per-token slices: [B, T, heads, d] made time-major, [T, B, heads, d], scanned along axis 0.
    let time_major = |c: &mut NodeCtx, x: ValueId, shape: &[i64], hint: &str| {
        let x4 = reshape(c, x, shape, hint);
        c.emit_temp(Op::Transpose { perm: Some(vec![1, 0, 2, 3]) }, vec![Some(x4)], hint)
    };
    let mut scanned = vec![
        time_major(c, q, &[0, 0, hq, -1], "query_steps"),
        time_major(c, k, &[0, 0, hkv, -1], "key_steps"),
        time_major(c, v, &[0, 0, hkv, -1], "value_steps"),
    ];
    if let Some(d) = decay {
        scanned.push(time_major(c, d, &[0, 0, hkv, -1], "decay_steps"));
    }
    if let Some(b) = beta {
        scanned.push(time_major(c, b, &[0, 0, -1, 1], "beta_steps"));
    }
    let state0 = match past {
        Some(p) if state_dtype != DType::F32 => cast_to(c, p, DType::F32, "past_state_f32"),
        Some(p) => p,
        None => {
            let b = shape_part(c, q, 0, 1, "batch");
            let heads = c.const_i64s(&[hkv], "kv_heads");
            let kd = shape_part(c, k, 2, 3, "key_width");
            let vd = shape_part(c, v, 2, 3, "value_width");
            let dk = bin(c, BinaryOp::Div, kd, heads, "d_k");
            let dv = bin(c, BinaryOp::Div, vd, heads, "d_v");
            let shape = concat(c, &[b, heads, dk, dv], 0, "state_shape");
            let zero = Tensor::from_f32(vec![1], &[0.0]).expect("one element");
            c.emit_temp(Op::ConstantOfShape(zero), vec![Some(shape)], "state0")
        }
    };

    let in_dtypes: Vec<DType> = (0..6).map(|i| c.input_dtype(i).unwrap_or(dtype)).collect();
    let any = |d: DType| ValueType::Tensor { dtype: Some(d), shape: None };
    let mut formal = vec![
        ("state_in", any(DType::F32)),
        ("q_t", any(dtype)),
        ("k_t", any(in_dtypes[1])),
        ("v_t", any(in_dtypes[2])),
    ];
    if decay.is_some() {
        formal.push(("decay_t", any(in_dtypes[4])));
    }
    if beta.is_some() {
        formal.push(("beta_t", any(in_dtypes[5])));
    }
    let (has_decay, has_beta) = (decay.is_some(), beta.is_some());
    let body = subgraph(c, "step", &formal, &[], |b, ins, _| {
        let (state_in, q_t, k_t, v_t) = (ins[0], ins[1], ins[2], ins[3]);
        let decay_t = has_decay.then(|| ins[4]);
        let beta_t = has_beta.then(|| ins[if has_decay { 5 } else { 4 }]);
        let to_f32 = |b: &mut NodeCtx, x: ValueId, hint: &str| {
            if b.value_type(x).dtype() == Some(DType::F32) { x } else { cast_to(b, x, DType::F32, hint) }
        };
        let q_f = to_f32(b, q_t, "q_f32");
        let k_f = to_f32(b, k_t, "k_f32");
        let v_f = to_f32(b, v_t, "v_f32");
        let mut s = state_in;
        if let Some(g) = decay_t {
            // S <- exp(g) * S, g per key feature [B, Hkv, dk] or per head [B, Hkv, 1].
            let g = to_f32(b, g, "decay_f32");
            let e = un(b, UnaryOp::Exp, g, "decay_factor");
            let e = unsqueeze(b, e, &[-1], "decay_factor_col");
            s = bin(b, BinaryOp::Mul, s, e, "decayed_state");
        }
        let k_col = unsqueeze(b, k_f, &[-1], "k_col");
        let write = match beta_t {
            Some(beta_t) => {
                // beta * (v - S^T k)
                let beta_f = to_f32(b, beta_t, "beta_f32");
                let s_t = b.emit_temp(Op::Transpose { perm: Some(vec![0, 1, 3, 2]) }, vec![Some(s)], "state_t");
                let got = b.emit_temp(Op::MatMul, vec![Some(s_t), Some(k_col)], "retrieved");
                let got = squeeze(b, got, &[-1], "retrieved_row");
                let diff = bin(b, BinaryOp::Sub, v_f, got, "innovation");
                bin(b, BinaryOp::Mul, beta_f, diff, "write")
            }
            None => v_f,
        };
        let w_row = unsqueeze(b, write, &[-2], "write_row");
        let outer = b.emit_temp(Op::MatMul, vec![Some(k_col), Some(w_row)], "outer");
        let state_out = bin(b, BinaryOp::Add, s, outer, "state_out");
        // Query head h reads KV head h / group: [B, Hq, dk] -> [B, Hkv, group, dk].
        let qg = reshape(b, q_f, &[0, hkv, group, -1], "q_grouped");
        let read = b.emit_temp(Op::MatMul, vec![Some(qg), Some(state_out)], "read");
        let read = reshape(b, read, &[0, hq, -1], "read_heads");
        let scale_v = if scale != 0.0 {
            sc(b, DType::F32, scale, "scale")
        } else {
            let dk = shape_part(b, q_t, 2, 3, "d_k");
            let dk = cast_to(b, dk, DType::F32, "d_k_f32");
            let root = un(b, UnaryOp::Sqrt, dk, "sqrt_d_k");
            un(b, UnaryOp::Reciprocal, root, "scale")
        };
        let out = bin(b, BinaryOp::Mul, scale_v, read, "out_f32");
        let out = if dtype != DType::F32 { cast_to(b, out, dtype, "out") } else { out };
        Ok(vec![state_out, out])
    })?;

    let m = scanned.len();
    let final_state = c.temp("final_state");
    let outs = c.temp("outputs_4d");
    let mut inputs = vec![Some(state0)];
    inputs.extend(scanned.into_iter().map(Some));
    c.emit(
        Op::Scan(Scan {
            body: Box::new(body),
            num_scan_inputs: m as u64,
            scan_input_axes: vec![0; m],
            scan_input_reverse: vec![false; m],
            scan_output_axes: vec![0],
            scan_output_reverse: vec![false],
        }),
        inputs,
        vec![Some(final_state), Some(outs)],
    );
    let outs = c.emit_temp(Op::Transpose { perm: Some(vec![1, 0, 2, 3]) }, vec![Some(outs)], "outputs_bthd");
    let o = c.output(0).unwrap_or_else(|| c.temp("unused"));
    let shape = c.const_i64s(&[0, 0, -1], "output_shape");
    c.emit(Op::Reshape { allowzero: false }, vec![Some(outs), Some(shape)], vec![Some(o)]);
    if state_dtype != DType::F32 {
        c.emit_to_output(
            Op::Cast(Cast { to: state_dtype, saturate: true, round_mode: "up".into() }),
            vec![Some(final_state)],
            1,
        );
    } else {
        c.emit_to_output(Op::Identity, vec![Some(final_state)], 1);
    }
    Ok(Canon::Done)
}
