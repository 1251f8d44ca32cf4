//! Neural-network layers: convolution, normalization, pooling, dense, activations, softmax.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use crate::error::Result;
use ferry_ir::ops::{AutoPad, BinaryOp, Conv, ConvTranspose, Pool, PoolKind, ReduceKind, UnaryOp};
use ferry_ir::{Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Convolution", |c| conv(c, false)),
    ("Deconvolution", |c| conv(c, true)),
    ("BatchNorm", batch_norm),
    ("Pooling", pooling),
    ("FullyConnected", fully_connected),
    ("Activation", activation),
    ("LeakyReLU", leaky_relu),
    ("softmax", |c| softmax(c, false)),
    ("log_softmax", |c| softmax(c, true)),
    ("SoftmaxActivation", softmax_activation),
    ("SoftmaxOutput", softmax_output),
    ("Softmax", softmax_output),
    ("LogisticRegressionOutput", |c| unary_first(c, UnaryOp::Sigmoid)),
    ("LinearRegressionOutput", |c| identity_first(c)),
    ("MAERegressionOutput", |c| identity_first(c)),
    ("Dropout", identity_first),
    ("LRN", lrn),
    ("L2Normalization", l2_normalization),
    ("LayerNorm", layer_norm),
    ("InstanceNorm", instance_norm),
    ("_contrib_interleaved_matmul_selfatt_qk", selfatt_qk),
    ("_contrib_interleaved_matmul_selfatt_valatt", selfatt_valatt),
];

pub fn identity_first(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Identity, vec![x], 0);
    Ok(())
}

fn unary_first(c: &mut NodeCtx, op: UnaryOp) -> Result<()> {
    let x = c.input(0)?;
    c.emit_out(Op::Unary(op), vec![x], 0);
    Ok(())
}

fn check_layout(c: &NodeCtx, spatial: usize) -> Result<()> {
    let want = ["NCW", "NCHW", "NCDHW"].get(spatial.wrapping_sub(1)).copied().unwrap_or("");
    match c.attr("layout") {
        None => Ok(()),
        Some(l) if l == want => Ok(()),
        Some(l) => Err(c.error(format!("layout {l} is not supported (only {want})"))),
    }
}

fn per_axis(c: &NodeCtx, name: &str, n: usize, default: u64) -> Result<Vec<u64>> {
    match c.sizes(name)? {
        Some(v) if v.is_empty() => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(v) => Err(c.error(format!("attribute '{name}' has {} entries, the kernel {n}", v.len()))),
        None => Ok(vec![default; n]),
    }
}

fn conv(c: &mut NodeCtx, transpose: bool) -> Result<()> {
    let kernel = c.sizes("kernel")?.ok_or_else(|| c.error("attribute 'kernel' is required"))?;
    let n = kernel.len();
    check_layout(c, n)?;
    let strides = per_axis(c, "stride", n, 1)?;
    let dilations = per_axis(c, "dilate", n, 1)?;
    let pad = per_axis(c, "pad", n, 0)?;
    let group = c.int("num_group", 1)?.max(1) as u64;
    let no_bias = c.bool("no_bias", transpose)?;
    let (x, w) = (c.input(0)?, c.input(1)?);
    let mut inputs = vec![Some(x), Some(w)];
    if !no_bias {
        inputs.push(Some(c.input(2)?));
    }
    let pads = AutoPad::Explicit(pad.iter().chain(pad.iter()).copied().collect());
    let conv = Conv { kernel_shape: Some(kernel), strides, dilations, pads, group };
    let op = if transpose {
        if c.attr("target_shape").is_some_and(|t| t.trim() != "()" && t.trim() != "[]") {
            return Err(c.error("Deconvolution with target_shape is not supported yet"));
        }
        let adj = per_axis(c, "adj", n, 0)?;
        Op::ConvTranspose(ConvTranspose { conv, output_padding: adj, output_shape: None })
    } else {
        Op::Conv(conv)
    };
    let out = c.output(0).unwrap_or_else(|| c.temp("unused"));
    c.emit(op, inputs, vec![Some(out)]);
    Ok(())
}

/// Reshapes a per-channel vector to broadcast against a rank-`rank` tensor at `axis`.
fn channel_vector(c: &mut NodeCtx, v: ValueId, rank: usize, axis: usize, hint: &str) -> ValueId {
    let trailing = rank - axis - 1;
    if trailing == 0 {
        return v;
    }
    let axes: Vec<i64> = (1..=trailing as i64).collect();
    let axes = c.const_i64s(&axes, "axes");
    c.emit_temp(Op::Unsqueeze, vec![v, axes], hint)
}

fn norm_axis(c: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(c.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

fn bin(c: &mut NodeCtx, op: BinaryOp, a: ValueId, b: ValueId, hint: &str) -> ValueId {
    c.emit_temp(Op::Binary(op), vec![a, b], hint)
}

/// Inference BatchNorm: `(x - mean) / sqrt(var + eps) * gamma + beta`, gamma = 1 when fix_gamma.
fn batch_norm(c: &mut NodeCtx) -> Result<()> {
    if c.output(1).is_some() || c.output(2).is_some() {
        return Err(c.error("BatchNorm's mean/var outputs are only defined in training"));
    }
    let eps = c.float("eps", 1e-3)?;
    let fix_gamma = c.bool("fix_gamma", true)?;
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", 1)?, rank)?;
    let dt = c.input_dtype(0)?;
    let (x, gamma, beta, mean, var) = (c.input(0)?, c.input(1)?, c.input(2)?, c.input(3)?, c.input(4)?);
    let eps = c.scalar(dt, eps, "eps")?;
    let ve = bin(c, BinaryOp::Add, var, eps, "var_eps");
    let sd = c.emit_temp(Op::Unary(UnaryOp::Sqrt), vec![ve], "std");
    let inv = c.emit_temp(Op::Unary(UnaryOp::Reciprocal), vec![sd], "inv_std");
    let scale = if fix_gamma { inv } else { bin(c, BinaryOp::Mul, inv, gamma, "scale") };
    let scale = channel_vector(c, scale, rank, axis, "scale_b");
    let mean = channel_vector(c, mean, rank, axis, "mean_b");
    let beta = channel_vector(c, beta, rank, axis, "beta_b");
    let centered = bin(c, BinaryOp::Sub, x, mean, "centered");
    let scaled = bin(c, BinaryOp::Mul, centered, scale, "scaled");
    c.emit_out(Op::Binary(BinaryOp::Add), vec![scaled, beta], 0);
    Ok(())
}

fn pooling(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let pool_type = c.string("pool_type", "max");
    let kind = match pool_type.as_str() {
        "max" => PoolKind::Max,
        "avg" | "sum" => PoolKind::Avg,
        "lp" => {
            let p = c.int("p_value", 2)?;
            PoolKind::Lp(u32::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| c.error("p_value must be positive"))?)
        }
        other => return Err(c.error(format!("unknown pool_type '{other}'"))),
    };
    if c.bool("global_pool", false)? {
        let rank = c.input_rank(0)?;
        check_layout(c, rank - 2)?;
        if pool_type == "sum" {
            let axes: Vec<i64> = (2..rank as i64).collect();
            let axes = c.const_i64s(&axes, "axes");
            let op = Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: false };
            c.emit_out(op, vec![x, axes], 0);
        } else {
            c.emit_out(Op::GlobalPool { kind }, vec![x], 0);
        }
        return Ok(());
    }
    let kernel = c.sizes("kernel")?.ok_or_else(|| c.error("attribute 'kernel' is required"))?;
    let n = kernel.len();
    check_layout(c, n)?;
    let strides = per_axis(c, "stride", n, 1)?;
    let pad = per_axis(c, "pad", n, 0)?;
    let convention = c.string("pooling_convention", "valid");
    let (pads, ceil_mode) = match convention.as_str() {
        "valid" => (AutoPad::Explicit(pad.iter().chain(pad.iter()).copied().collect()), false),
        "full" => (AutoPad::Explicit(pad.iter().chain(pad.iter()).copied().collect()), true),
        "same" => (AutoPad::SameUpper, false),
        other => return Err(c.error(format!("unknown pooling_convention '{other}'"))),
    };
    let count_include_pad = c.bool("count_include_pad", true)? || pool_type == "sum";
    let area: u64 = kernel.iter().product();
    let pool = Pool {
        kind,
        kernel_shape: kernel,
        strides,
        dilations: vec![],
        pads,
        ceil_mode,
        count_include_pad: kind == PoolKind::Avg && count_include_pad,
        column_major_indices: false,
    };
    if pool_type == "sum" {
        let dt = c.input_dtype(0)?;
        let avg = c.emit_temp(Op::Pool(pool), vec![x], "avg");
        let k = c.scalar(dt, area as f64, "area")?;
        c.emit_out(Op::Binary(BinaryOp::Mul), vec![avg, k], 0);
    } else {
        let out = c.output(0).unwrap_or_else(|| c.temp("unused"));
        c.emit(Op::Pool(pool), vec![Some(x)], vec![Some(out)]);
    }
    Ok(())
}

fn fully_connected(c: &mut NodeCtx) -> Result<()> {
    let flatten = c.bool("flatten", true)?;
    let no_bias = c.bool("no_bias", false)?;
    let (x, w) = (c.input(0)?, c.input(1)?);
    let x = if flatten { c.emit_temp(Op::Flatten { axis: 1 }, vec![x], "flat") } else { x };
    let wt = c.emit_temp(Op::Transpose { perm: Some(vec![1, 0]) }, vec![w], "weight_t");
    if no_bias {
        c.emit_out(Op::MatMul, vec![x, wt], 0);
    } else {
        let b = c.input(2)?;
        let y = c.emit_temp(Op::MatMul, vec![x, wt], "matmul");
        c.emit_out(Op::Binary(BinaryOp::Add), vec![y, b], 0);
    }
    Ok(())
}

pub fn softsign(c: &mut NodeCtx, x: ValueId) -> Result<()> {
    let dt = c.input_dtype(0)?;
    let one = c.scalar(dt, 1.0, "one")?;
    let a = c.emit_temp(Op::Unary(UnaryOp::Abs), vec![x], "abs");
    let d = bin(c, BinaryOp::Add, a, one, "denominator");
    c.emit_out(Op::Binary(BinaryOp::Div), vec![x, d], 0);
    Ok(())
}

fn activation(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let act = c.string("act_type", "");
    let op = match act.as_str() {
        "relu" => UnaryOp::Relu,
        "sigmoid" => UnaryOp::Sigmoid,
        "tanh" => UnaryOp::Tanh,
        "softrelu" => UnaryOp::Softplus,
        "softsign" => return softsign(c, x),
        other => return Err(c.error(format!("unknown act_type '{other}'"))),
    };
    c.emit_out(Op::Unary(op), vec![x], 0);
    Ok(())
}

fn leaky_relu(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let act = c.string("act_type", "leaky");
    let zero = c.scalar(dt, 0.0, "zero")?;
    match act.as_str() {
        "leaky" | "rrelu" | "prelu" => {
            let slope = match act.as_str() {
                "leaky" => c.scalar(dt, c.float("slope", 0.25)?, "slope")?,
                "rrelu" => {
                    let (lo, hi) = (c.float("lower_bound", 0.125)?, c.float("upper_bound", 0.334)?);
                    c.scalar(dt, (lo + hi) / 2.0, "slope")?
                }
                _ => {
                    let g = c.input(1)?;
                    let rank = c.input_rank(0)?;
                    let grank = c.rank_of(g).unwrap_or(1);
                    if rank >= 2 && grank == 1 { channel_vector(c, g, rank, 1, "slope") } else { g }
                }
            };
            let neg = bin(c, BinaryOp::Less, x, zero, "is_negative");
            let scaled = bin(c, BinaryOp::Mul, x, slope, "scaled");
            c.emit_out(Op::Where, vec![neg, scaled, x], 0);
        }
        "elu" | "selu" => {
            let (alpha, gamma) = if act == "elu" {
                (c.float("slope", 0.25)?, None)
            } else {
                (1.673_263_242_354_377_3, Some(1.050_700_987_355_480_5))
            };
            let one = c.scalar(dt, 1.0, "one")?;
            let a = c.scalar(dt, alpha, "alpha")?;
            let neg = bin(c, BinaryOp::Less, x, zero, "is_negative");
            let e = c.emit_temp(Op::Unary(UnaryOp::Exp), vec![x], "exp");
            let em1 = bin(c, BinaryOp::Sub, e, one, "expm1");
            let scaled = bin(c, BinaryOp::Mul, em1, a, "scaled");
            match gamma {
                None => c.emit_out(Op::Where, vec![neg, scaled, x], 0),
                Some(g) => {
                    let g = c.scalar(dt, g, "gamma")?;
                    let sel = c.emit_temp(Op::Where, vec![neg, scaled, x], "selected");
                    c.emit_out(Op::Binary(BinaryOp::Mul), vec![sel, g], 0);
                }
            }
        }
        "gelu" => {
            // 0.5 * x * (1 + erf(x / sqrt(2)))
            let half = c.scalar(dt, 0.5, "half")?;
            let one = c.scalar(dt, 1.0, "one")?;
            let r2 = c.scalar(dt, std::f64::consts::SQRT_2, "sqrt2")?;
            let xs = bin(c, BinaryOp::Div, x, r2, "x_sqrt2");
            let e = c.emit_temp(Op::Unary(UnaryOp::Erf), vec![xs], "erf");
            let e1 = bin(c, BinaryOp::Add, e, one, "erf1");
            let xh = bin(c, BinaryOp::Mul, x, half, "half_x");
            c.emit_out(Op::Binary(BinaryOp::Mul), vec![xh, e1], 0);
        }
        other => return Err(c.error(format!("unknown act_type '{other}'"))),
    }
    Ok(())
}

fn softmax(c: &mut NodeCtx, log: bool) -> Result<()> {
    let x = c.input(0)?;
    let axis = c.int("axis", -1)?;
    let length_mask = if c.bool("use_length", false)? { Some(length_mask(c, x, axis)?) } else { None };
    let mut x = x;
    if let Some(t) = c.float_opt("temperature")? {
        if t != 1.0 {
            let dt = c.input_dtype(0)?;
            let t = c.scalar(dt, t, "temperature")?;
            x = bin(c, BinaryOp::Div, x, t, "tempered");
        }
    }
    let op = if log { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
    if let Some(mask) = length_mask {
        // Positions at or past the length take no part and come out as 0.
        let dt = c.dtype_of(x).ok_or_else(|| c.error("the element type of the data is unknown"))?;
        let ninf = c.scalar(dt, f64::NEG_INFINITY, "minus_inf")?;
        let zero = c.scalar(dt, 0.0, "zero")?;
        let xm = c.emit_temp(Op::Where, vec![mask, x, ninf], "masked");
        let y = c.emit_temp(op, vec![xm], "softmax");
        let y = match c.attr("dtype") {
            Some(d) => {
                let to = super::elementwise::dtype_by_name(c, d)?;
                let z = c.emit_temp(super::elementwise::cast_op(to), vec![zero], "zero_t");
                let y = c.emit_temp(super::elementwise::cast_op(to), vec![y], "cast");
                c.emit_out(Op::Where, vec![mask, y, z], 0);
                return Ok(());
            }
            None => y,
        };
        c.emit_out(Op::Where, vec![mask, y, zero], 0);
        return Ok(());
    }
    match c.attr("dtype") {
        Some(d) => {
            let to = super::elementwise::dtype_by_name(c, d)?;
            let y = c.emit_temp(op, vec![x], "softmax");
            c.emit_out(super::elementwise::cast_op(to), vec![y], 0);
        }
        None => c.emit_out(op, vec![x], 0),
    }
    Ok(())
}

fn softmax_activation(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let axis = if c.string("mode", "instance") == "channel" { 1 } else { -1 };
    if axis == -1 {
        let flat = c.emit_temp(Op::Flatten { axis: 1 }, vec![x], "flat");
        let y = c.emit_temp(Op::Softmax { axis: 1 }, vec![flat], "softmax");
        let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![x], "shape");
        c.emit_out(Op::Reshape { allowzero: false }, vec![y, shape], 0);
    } else {
        c.emit_out(Op::Softmax { axis }, vec![x], 0);
    }
    Ok(())
}

/// SoftmaxOutput at inference: the softmax of its data (the label is ignored).
fn softmax_output(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    if c.bool("multi_output", false)? {
        c.emit_out(Op::Softmax { axis: 1 }, vec![x], 0);
    } else if c.bool("preserve_shape", false)? {
        c.emit_out(Op::Softmax { axis: -1 }, vec![x], 0);
    } else {
        let flat = c.emit_temp(Op::Flatten { axis: 1 }, vec![x], "flat");
        let y = c.emit_temp(Op::Softmax { axis: 1 }, vec![flat], "softmax");
        let shape = c.emit_temp(Op::Shape { start: 0, end: None }, vec![x], "shape");
        c.emit_out(Op::Reshape { allowzero: false }, vec![y, shape], 0);
    }
    Ok(())
}

fn lrn(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let size = c.int("nsize", 0)?;
    let size = u64::try_from(size).ok().filter(|s| *s > 0).ok_or_else(|| c.error("nsize must be positive"))?;
    let op = Op::Lrn {
        alpha: c.float("alpha", 1e-4)? as f32,
        beta: c.float("beta", 0.75)? as f32,
        bias: c.float("knorm", 2.0)? as f32,
        size,
    };
    c.emit_out(op, vec![x], 0);
    Ok(())
}

/// `x / sqrt(sum(x^2 over the mode's axes) + eps)`.
fn l2_normalization(c: &mut NodeCtx) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let rank = c.input_rank(0)?;
    let eps = c.float("eps", 1e-10)?;
    let axes: Vec<i64> = match c.string("mode", "instance").as_str() {
        "instance" => (1..rank as i64).collect(),
        "channel" => vec![1],
        "spatial" => (2..rank as i64).collect(),
        other => return Err(c.error(format!("unknown mode '{other}'"))),
    };
    let axes = c.const_i64s(&axes, "axes");
    let sq = bin(c, BinaryOp::Mul, x, x, "square");
    let s = c.emit_temp(
        Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: false },
        vec![sq, axes],
        "sum",
    );
    let e = c.scalar(dt, eps, "eps")?;
    let se = bin(c, BinaryOp::Add, s, e, "sum_eps");
    let n = c.emit_temp(Op::Unary(UnaryOp::Sqrt), vec![se], "norm");
    c.emit_out(Op::Binary(BinaryOp::Div), vec![x, n], 0);
    Ok(())
}

/// Normalizes over `axes` (mean/variance), then applies `gamma`/`beta` along `param_axis`.
fn normalize(c: &mut NodeCtx, axes: &[i64], eps: f64, param_axis: usize, rank: usize) -> Result<()> {
    let x = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let (gamma, beta) = (c.input(1)?, c.input(2)?);
    let axes = c.const_i64s(axes, "axes");
    let mean_op = Op::Reduce { kind: ReduceKind::Mean, keepdims: true, noop_with_empty_axes: false };
    let mean = c.emit_temp(mean_op.clone(), vec![x, axes], "mean");
    let centered = bin(c, BinaryOp::Sub, x, mean, "centered");
    let sq = bin(c, BinaryOp::Mul, centered, centered, "square");
    let var = c.emit_temp(mean_op, vec![sq, axes], "var");
    let e = c.scalar(dt, eps, "eps")?;
    let ve = bin(c, BinaryOp::Add, var, e, "var_eps");
    let sd = c.emit_temp(Op::Unary(UnaryOp::Sqrt), vec![ve], "std");
    let normed = bin(c, BinaryOp::Div, centered, sd, "normed");
    let g = channel_vector(c, gamma, rank, param_axis, "gamma_b");
    let b = channel_vector(c, beta, rank, param_axis, "beta_b");
    let scaled = bin(c, BinaryOp::Mul, normed, g, "scaled");
    c.emit_out(Op::Binary(BinaryOp::Add), vec![scaled, b], 0);
    Ok(())
}

fn layer_norm(c: &mut NodeCtx) -> Result<()> {
    if c.output(1).is_some() || c.output(2).is_some() {
        return Err(c.error("LayerNorm's mean/std outputs are not supported"));
    }
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, c.int("axis", -1)?, rank)?;
    let eps = c.float("eps", 1e-5)?;
    normalize(c, &[axis as i64], eps, axis, rank)
}

fn instance_norm(c: &mut NodeCtx) -> Result<()> {
    let rank = c.input_rank(0)?;
    let eps = c.float("eps", 1e-3)?;
    let axes: Vec<i64> = (2..rank as i64).collect();
    normalize(c, &axes, eps, 1, rank)
}

/// `index < length` along `axis` of `x` (length has x's shape without that axis).
fn length_mask(c: &mut NodeCtx, x: ValueId, axis: i64) -> Result<ValueId> {
    let len = c.input(1)?;
    let rank = c.input_rank(0)?;
    let axis = norm_axis(c, axis, rank)?;
    let n = c.dims_of(x).and_then(|d| d[axis]).ok_or_else(|| c.error("the softmax axis must have a known size"))?;
    let idx: Vec<i64> = (0..n as i64).collect();
    let mut shape = vec![1u64; rank];
    shape[axis] = n;
    let t = ferry_ir::Tensor::from_i64(shape, &idx).expect("length matches");
    let idx = c.constant(t, "positions");
    let l = c.emit_temp(super::elementwise::cast_op(ferry_ir::DType::I64), vec![len], "length");
    let ax = c.const_i64s(&[axis as i64], "axis");
    let l = c.emit_temp(Op::Unsqueeze, vec![l, ax], "length_b");
    Ok(bin(c, BinaryOp::Less, idx, l, "in_length"))
}

/// Known dims of a value, or an error asking for input shapes.
fn known(c: &NodeCtx, v: ValueId) -> Result<Vec<u64>> {
    c.dims_of(v)
        .and_then(|d| d.into_iter().collect::<Option<Vec<u64>>>())
        .ok_or_else(|| c.error("the input shape must be known (give input shapes with --input-shape)"))
}

/// One of q (0), k (1), v (2) from `[seq, batch, heads * 3 * head_dim]` (per head: q, k, v) as
/// `[batch * heads, seq, head_dim]`.
fn interleaved_part(c: &mut NodeCtx, qkv: ValueId, which: i64) -> Result<(ValueId, [u64; 4])> {
    let d = known(c, qkv)?;
    let heads = c.int("heads", 1)?;
    let heads = u64::try_from(heads).ok().filter(|h| *h > 0).ok_or_else(|| c.error("heads must be positive"))?;
    if d.len() != 3 || d[2] % (3 * heads) != 0 {
        return Err(c.error(format!("input shape {d:?} is not [seq, batch, heads*3*head_dim]")));
    }
    let (seq, batch, hd) = (d[0], d[1], d[2] / (3 * heads));
    let s = c.const_i64s(&[seq as i64, batch as i64, heads as i64, 3, hd as i64], "split_shape");
    let x = c.emit_temp(Op::Reshape { allowzero: false }, vec![qkv, s], "heads");
    let i = c.constant(ferry_ir::Tensor::from_i64(vec![], &[which]).expect("scalar"), "which");
    let p = c.emit_temp(Op::Gather { axis: 3 }, vec![x, i], "part");
    let t = c.emit_temp(Op::Transpose { perm: Some(vec![1, 2, 0, 3]) }, vec![p], "part_t");
    let s = c.const_i64s(&[(batch * heads) as i64, seq as i64, hd as i64], "bh_shape");
    let r = c.emit_temp(Op::Reshape { allowzero: false }, vec![t, s], "per_head");
    Ok((r, [seq, batch, heads, hd]))
}

/// `q / sqrt(head_dim) @ kᵀ` per (batch, head): `[batch * heads, seq, seq]`.
fn selfatt_qk(c: &mut NodeCtx) -> Result<()> {
    let qkv = c.input(0)?;
    let dt = c.input_dtype(0)?;
    let (q, [.., hd]) = interleaved_part(c, qkv, 0)?;
    let (k, _) = interleaved_part(c, qkv, 1)?;
    let scale = c.scalar(dt, 1.0 / (hd as f64).sqrt(), "scale")?;
    let q = bin(c, BinaryOp::Mul, q, scale, "q_scaled");
    let kt = c.emit_temp(Op::Transpose { perm: Some(vec![0, 2, 1]) }, vec![k], "k_t");
    c.emit_out(Op::MatMul, vec![q, kt], 0);
    Ok(())
}

/// `attention @ v` per (batch, head), back to `[seq, batch, heads * head_dim]`.
fn selfatt_valatt(c: &mut NodeCtx) -> Result<()> {
    let (qkv, att) = (c.input(0)?, c.input(1)?);
    let (v, [seq, batch, heads, hd]) = interleaved_part(c, qkv, 2)?;
    let o = c.emit_temp(Op::MatMul, vec![att, v], "context");
    let s = c.const_i64s(&[batch as i64, heads as i64, seq as i64, hd as i64], "bhsd");
    let o = c.emit_temp(Op::Reshape { allowzero: false }, vec![o, s], "context_4d");
    let t = c.emit_temp(Op::Transpose { perm: Some(vec![2, 0, 1, 3]) }, vec![o], "context_t");
    let s = c.const_i64s(&[seq as i64, batch as i64, (heads * hd) as i64], "out_shape");
    c.emit_out(Op::Reshape { allowzero: false }, vec![t, s], 0);
    Ok(())
}
