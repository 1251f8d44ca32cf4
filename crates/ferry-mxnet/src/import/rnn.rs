//! MXNet's fused `RNN` op (rnn_relu, rnn_tanh, lstm, gru; stacked layers, bidirectional, state
//! outputs) as one core `Op::Rnn` (ONNX RNN/GRU/LSTM semantics) per layer.
//!
//! MXNet packs every weight into one flat `parameters` vector (the order Gluon's
//! `_rnn_param_concat` builds): first all weight matrices — for each layer, for each direction
//! (left, right): `i2h_weight [G*H, I_l]`, `h2h_weight [G*H, H]` — then all biases in the same
//! order: `i2h_bias [G*H]`, `h2h_bias [G*H]`. `I_0` is the data's feature size, later layers read
//! `D*H`. Gates are stacked as LSTM (i, f, g, o) and GRU (r, z, n), while ONNX wants LSTM
//! (i, o, f, c) and GRU (z, r, h); MXNet's GRU applies the reset gate after the recurrent linear
//! map (ONNX `linear_before_reset=1`). The vector is cut with `Slice` at run time so that a
//! parameter vector computed in the graph (a `_rnn_param_concat`) works as well as a stored one.

use super::Canonicalizer;
use super::ctx::NodeCtx;
use crate::error::Result;
use ferry_ir::ops::{Rnn, RnnDirection, RnnKind};
use ferry_ir::{Op, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[("RNN", rnn)];

/// `v[start..start+len]` of the flat parameter vector, with MXNet's gate blocks (the first axis
/// of `[G, rest...]`) put in ONNX order and reshaped to `shape`.
fn gates(c: &mut NodeCtx, v: ValueId, start: u64, gate_count: u64, rest: u64, perm: &[i64], shape: &[i64]) -> ValueId {
    let len = gate_count * rest;
    let s = c.const_i64s(&[start as i64], "start");
    let e = c.const_i64s(&[(start + len) as i64], "end");
    let a = c.const_i64s(&[0], "axis");
    let part = c.emit_temp(Op::Slice, vec![v, s, e, a], "part");
    let part = if perm.len() > 1 {
        let gshape = c.const_i64s(&[gate_count as i64, rest as i64], "gate_shape");
        let g = c.emit_temp(Op::Reshape { allowzero: false }, vec![part, gshape], "gate_blocks");
        let idx = c.const_i64s(perm, "gate_order");
        let g = c.emit_temp(Op::Gather { axis: 0 }, vec![g, idx], "onnx_gates");
        let flat = c.const_i64s(&[-1], "flat");
        c.emit_temp(Op::Reshape { allowzero: false }, vec![g, flat], "flat_gates")
    } else {
        part
    };
    let shape = c.const_i64s(shape, "shape");
    c.emit_temp(Op::Reshape { allowzero: false }, vec![part, shape], "param")
}

/// A begin state as `[L*D, batch, H]`: states made by `_zeros` with an unknown (0) batch size
/// have size 1 there and are broadcast to the data's batch.
fn full_state(c: &mut NodeCtx, s: ValueId, x: ValueId, batch: Option<u64>, ld: u64, h: u64) -> ValueId {
    if let (Some(b), Some(dims)) = (batch, c.dims_of(s)) {
        if dims == [Some(ld), Some(b), Some(h)] {
            return s;
        }
    }
    let xb = c.emit_temp(Op::Shape { start: 1, end: Some(2) }, vec![x], "batch");
    let l = c.const_i64s(&[ld as i64], "layers");
    let hs = c.const_i64s(&[h as i64], "hidden");
    let shape = c.emit_temp(Op::Concat { axis: 0 }, vec![l, xb, hs], "state_shape");
    c.emit_temp(Op::Expand, vec![s, shape], "state")
}

const MAX_LAYERS: u64 = 1024;

/// The length of MXNet's flat RNN parameter vector: all weights, then all biases.
fn parameter_count(layers: u64, d: u64, g: u64, h: u64, input_size: u64) -> Option<u64> {
    let mut total = 0u64;
    for l in 0..layers {
        let il = if l == 0 { input_size } else { d.checked_mul(h)? };
        let weights = g.checked_mul(h)?.checked_mul(il.checked_add(h)?)?;
        let biases = g.checked_mul(h)?.checked_mul(2)?;
        total = total.checked_add(d.checked_mul(weights.checked_add(biases)?)?)?;
    }
    Some(total)
}

fn rnn(c: &mut NodeCtx) -> Result<()> {
    let mode = c.string("mode", "");
    let (kind, g, perm, acts): (RnnKind, u64, &[i64], &[&str]) = match mode.as_str() {
        "rnn_relu" => (RnnKind::Rnn, 1, &[0], &["Relu"]),
        "rnn_tanh" => (RnnKind::Rnn, 1, &[0], &["Tanh"]),
        "lstm" => (RnnKind::Lstm, 4, &[0, 3, 1, 2], &["Sigmoid", "Tanh", "Tanh"]),
        "gru" => (RnnKind::Gru, 3, &[1, 0, 2], &["Sigmoid", "Tanh"]),
        other => return Err(c.error(format!("unknown mode '{other}'"))),
    };
    if c.int_opt("projection_size")?.is_some() {
        return Err(c.error("RNN with projection_size (LSTMP) is not supported yet"));
    }
    if c.bool("use_sequence_length", false)? {
        return Err(c.error("RNN with use_sequence_length is not supported yet"));
    }
    if c.float_opt("lstm_state_clip_min")?.is_some() || c.float_opt("lstm_state_clip_max")?.is_some() {
        return Err(c.error("RNN with lstm_state_clip_min/max is not supported yet"));
    }
    let h = c.int("state_size", 0)?;
    let h = u64::try_from(h).ok().filter(|h| *h > 0).ok_or_else(|| c.error("state_size must be positive"))?;
    let layers = c.int("num_layers", 1)?;
    let layers = u64::try_from(layers).ok().filter(|l| *l > 0).ok_or_else(|| c.error("num_layers must be positive"))?;
    // Each layer becomes its own nodes: a count no real network has would only exhaust memory.
    if layers > MAX_LAYERS {
        return Err(c.error(format!("num_layers {layers} is more than ferry accepts ({MAX_LAYERS})")));
    }
    let bidir = c.bool("bidirectional", false)?;
    let d: u64 = if bidir { 2 } else { 1 };
    let lstm = kind == RnnKind::Lstm;
    let x = c.input(0)?;
    let params = c.input(1)?;
    let dims = c.dims_of(x).ok_or_else(|| c.error("the rank of the data is unknown (give --input-shape)"))?;
    if dims.len() != 3 {
        return Err(c.error(format!("data must be [seq, batch, feature], not rank {}", dims.len())));
    }
    let state = c.input(2)?;
    let state = full_state(c, state, x, dims[1], layers * d, h);
    let cell = if lstm {
        let cv = c.input(3)?;
        Some(full_state(c, cv, x, dims[1], layers * d, h))
    } else {
        None
    };
    let input_size = dims[2].ok_or_else(|| c.error("the data's feature size must be known (give --input-shape)"))?;
    // Checked once here, the size bounds every offset computed below.
    let want = parameter_count(layers, d, g, h, input_size)
        .ok_or_else(|| c.error("the RNN's parameter count overflows (state_size or the feature size is absurd)"))?;
    if let Some(Some(n)) = c.dims_of(params).map(|p| p.first().copied().flatten()) {
        if n != want {
            return Err(c.error(format!("the parameter vector has {n} values, this configuration needs {want}")));
        }
    }
    // Offsets of each (layer, direction)'s weights, then biases.
    let mut w_off = Vec::new();
    let mut off = 0;
    for l in 0..layers {
        let il = if l == 0 { input_size } else { d * h };
        for _ in 0..d {
            w_off.push((off, il));
            off += g * h * (il + h);
        }
    }
    let mut b_off = Vec::new();
    for _ in 0..layers * d {
        b_off.push(off);
        off += 2 * g * h;
    }
    let activations: Vec<String> = (0..d).flat_map(|_| acts.iter().map(|s| s.to_string())).collect();
    let op = Op::Rnn(Rnn {
        kind,
        direction: if bidir { RnnDirection::Bidirectional } else { RnnDirection::Forward },
        hidden_size: h,
        activations,
        activation_alpha: vec![],
        activation_beta: vec![],
        clip: None,
        batch_first: false,
        linear_before_reset: kind == RnnKind::Gru,
        input_forget: false,
    });
    let (gh, hi) = ((g * h) as i64, h as i64);
    let mut layer_in = x;
    let mut hs = Vec::new();
    let mut cs = Vec::new();
    let axis0 = c.const_i64s(&[0], "axis0");
    for l in 0..layers {
        let mut ws = Vec::new();
        let mut rs = Vec::new();
        let mut bs = Vec::new();
        for k in 0..d {
            let idx = (l * d + k) as usize;
            let (wo, il) = w_off[idx];
            ws.push(gates(c, params, wo, g, h * il, perm, &[1, gh, il as i64]));
            rs.push(gates(c, params, wo + g * h * il, g, h * h, perm, &[1, gh, hi]));
            let bx = gates(c, params, b_off[idx], g, h, perm, &[1, gh]);
            let bh = gates(c, params, b_off[idx] + g * h, g, h, perm, &[1, gh]);
            bs.push(c.emit_temp(Op::Concat { axis: 1 }, vec![bx, bh], "bias"));
        }
        let cat0 = |c: &mut NodeCtx, v: Vec<ValueId>, hint: &str| {
            if v.len() == 1 { v[0] } else { c.emit_temp(Op::Concat { axis: 0 }, v, hint) }
        };
        let w = cat0(c, ws, "W");
        let r = cat0(c, rs, "R");
        let b = cat0(c, bs, "B");
        let states = |c: &mut NodeCtx, s: ValueId, hint: &str| {
            if layers == 1 {
                return s;
            }
            let st = c.const_i64s(&[(l * d) as i64], "start");
            let en = c.const_i64s(&[((l + 1) * d) as i64], "end");
            c.emit_temp(Op::Slice, vec![s, st, en, axis0], hint)
        };
        let h0 = states(c, state, "initial_h");
        let c0 = cell.map(|cv| states(c, cv, "initial_c"));
        let y = c.temp("Y");
        let yh = c.temp("Y_h");
        let yc = if lstm { Some(c.temp("Y_c")) } else { None };
        let mut outs = vec![Some(y), Some(yh)];
        if let Some(yc) = yc {
            outs.push(Some(yc));
        }
        let mut ins = vec![Some(layer_in), Some(w), Some(r), Some(b), None, Some(h0)];
        if let Some(c0) = c0 {
            ins.push(Some(c0));
        }
        c.emit(op.clone(), ins, outs);
        // [seq, D, batch, H] -> [seq, batch, D*H]
        let t = c.emit_temp(Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, vec![y], "y_t");
        let shape = c.const_i64s(&[0, 0, -1], "y_shape");
        let last = l + 1 == layers;
        if last {
            c.emit_out(Op::Reshape { allowzero: false }, vec![t, shape], 0);
        } else {
            layer_in = c.emit_temp(Op::Reshape { allowzero: false }, vec![t, shape], "layer_out");
        }
        hs.push(yh);
        if let Some(yc) = yc {
            cs.push(yc);
        }
    }
    for (i, v) in [(1, hs), (2, cs)] {
        if c.output(i).is_none() || v.is_empty() {
            continue;
        }
        if v.len() == 1 {
            c.emit_out(Op::Identity, v, i);
        } else {
            c.emit_out(Op::Concat { axis: 0 }, v, i);
        }
    }
    Ok(())
}
