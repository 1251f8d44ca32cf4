//! Core `Rnn` (one layer) -> MXNet's fused `RNN`: the weights, recurrent weights and biases are
//! packed into MXNet's flat parameter vector with MXNet ops (so computed weights work too), gates
//! put back in MXNet's order (LSTM i, f, g, o; GRU r, z, n), and the output reshaped from
//! `[T, B, D*H]` to the core `[T, D, B, H]`.

use super::lower::R;
use super::{Cx, Ent, bool_attr, tuple};
use ferry_ir::ops::{Rnn, RnnDirection, RnnKind};
use ferry_ir::{Node, Tensor};

fn no(why: &str) -> R {
    Err(why.to_string())
}

/// Rows of `v` (`[G*x]` blocks along `axis` after reshaping to `shape`) put in MXNet gate order.
fn mx_gates(c: &mut Cx, n: &Node, v: Ent, shape: &[i64], axis: usize, order: Ent) -> Ent {
    let r = c.tmp(n, "Reshape", "gate_blocks", vec![("shape", tuple(shape))], &[v]);
    let t = c.tmp(n, "take", "mx_gates", vec![("axis", axis.to_string())], &[r, order]);
    c.tmp(n, "Reshape", "flat", vec![("shape", "(-1,)".into())], &[t])
}

fn direction(c: &mut Cx, n: &Node, v: Ent, d: usize) -> Ent {
    let attrs = vec![("axis", "0".into()), ("begin", d.to_string()), ("end", (d + 1).to_string())];
    c.tmp(n, "slice_axis", "direction", attrs, &[v])
}

pub(crate) fn rnn(c: &mut Cx, n: &Node, r: &Rnn) -> R {
    let (mode, gates, order, acts): (&str, i64, &[i64], &[&str]) = match r.kind {
        RnnKind::Rnn if r.activations.iter().all(|a| a == "Relu") => ("rnn_relu", 1, &[0], &["Relu"]),
        RnnKind::Rnn => ("rnn_tanh", 1, &[0], &["Tanh"]),
        RnnKind::Lstm => ("lstm", 4, &[0, 2, 3, 1], &["Sigmoid", "Tanh", "Tanh"]),
        RnnKind::Gru => ("gru", 3, &[1, 0, 2], &["Sigmoid", "Tanh"]),
    };
    let d: usize = match r.direction {
        RnnDirection::Forward => 1,
        RnnDirection::Bidirectional => 2,
        RnnDirection::Reverse => return no("MXNet's RNN has no reverse-only direction"),
    };
    let default_acts = r.activations.is_empty()
        || r.activations.iter().map(String::as_str).eq(acts.iter().copied().cycle().take(acts.len() * d));
    if !default_acts || !r.activation_alpha.is_empty() || !r.activation_beta.is_empty() {
        return no("MXNet's RNN has fixed activations");
    }
    if r.clip.is_some() || r.input_forget || r.batch_first {
        return no("MXNet's RNN has no clip, coupled input-forget gate or batch-first layout");
    }
    if r.kind == RnnKind::Gru && !r.linear_before_reset {
        return no("MXNet's GRU applies the reset gate after the recurrent product (linear_before_reset=1)");
    }
    let present = |i: usize| n.inputs.get(i).copied().flatten().is_some();
    if present(4) || present(7) {
        return no("sequence lengths and LSTM peepholes are not lowered");
    }
    if c.in_dtype(n, 0) != Some(ferry_ir::DType::F32) {
        return no("RNN is lowered for float32 data only");
    }
    let xs = c.in_shape(n, 0).ok_or("the data shape is unknown")?;
    let (batch, h) = (xs[1], r.hidden_size);
    let (x, w, rw) = (c.input(n, 0)?, c.input(n, 1)?, c.input(n, 2)?);
    let order_t = Tensor::from_i64(vec![gates as u64], order).expect("length matches");
    let order = c.param(&format!("{}_gate_order", c.out_name(n, 0)), &order_t);
    let mut weights = Vec::new();
    let mut biases = Vec::new();
    let gh = gates * h as i64;
    for k in 0..d {
        let wk = direction(c, n, w, k);
        weights.push(mx_gates(c, n, wk, &[gates, -1], 0, order));
        let rk = direction(c, n, rw, k);
        weights.push(mx_gates(c, n, rk, &[gates, -1], 0, order));
        if present(3) {
            let b = c.input(n, 3)?;
            let bk = direction(c, n, b, k);
            biases.push(mx_gates(c, n, bk, &[2, gates, -1], 1, order));
        }
    }
    if biases.is_empty() {
        let zeros = Tensor::from_f32(vec![(d as i64 * 2 * gh) as u64], &vec![0.0; d * 2 * gh as usize]).expect("zeros");
        biases.push(c.param(&format!("{}_bias", c.out_name(n, 0)), &zeros));
    }
    weights.extend(biases);
    let k = weights.len();
    let attrs = vec![("dim", "0".to_string()), ("num_args", k.to_string())];
    let params = c.tmp(n, "Concat", "parameters", attrs, &weights);
    let state = |c: &mut Cx, i: usize, hint: &str| -> Result<Ent, String> {
        if present(i) {
            return c.input(n, i);
        }
        let z = vec![0.0; d * (batch * h) as usize];
        let t = Tensor::from_f32(vec![d as u64, batch, h], &z).expect("zeros");
        Ok(c.param(&format!("{}_{hint}", c.out_name(n, 0)), &t))
    };
    let mut ins = vec![x, params, state(c, 5, "begin_state")?];
    if r.kind == RnnKind::Lstm {
        ins.push(state(c, 6, "begin_cell")?);
    }
    let n_out = if r.kind == RnnKind::Lstm { 3 } else { 2 };
    let attrs = vec![
        ("mode", mode.to_string()),
        ("state_size", h.to_string()),
        ("num_layers", "1".into()),
        ("bidirectional", bool_attr(d == 2)),
        ("state_outputs", "True".into()),
    ];
    let name = format!("{}_rnn", c.out_name(n, 0));
    let id = c.push("RNN", &name, attrs, &ins, n_out);
    if n.outputs.first().copied().flatten().is_some() {
        let shape = tuple(&[0, 0, d as i64, h as i64]);
        let y = c.tmp(n, "Reshape", "directions", vec![("shape", shape)], &[(id, 0)]);
        c.out(n, "transpose", vec![("axes", tuple(&[0, 2, 1, 3]))], &[y]);
    }
    for i in 1..n_out {
        c.bind(n, i, (id, i));
    }
    Ok(())
}
