//! Attention: written as ONNX Attention from opset 23 (Attention-24 when nonpad_kv_seqlen is
//! used, Attention-25 for the window bounds); from opset 13 to 22 as its decomposition (the ONNX
//! function body's pattern: reshape to heads-major, concat the cache, repeat K/V heads for GQA,
//! scaled MatMul, softcap, additive bias, Softmax, fully-masked-row guard, MatMul).

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_i, attr_ints};
use crate::error::ExportProblem;
use bytes::Bytes;
use ferry_ir::ops::{Attention, QkMatmulOutputMode};
use ferry_ir::{DType, Dim, Tensor};

pub fn attention(c: &mut LowerCtx, a: &Attention) -> LowerResult {
    match c.op_version("Attention") {
        // Attention-23/24 lack nonpad_kv_seqlen (23) or the window bounds (< 25): decompose then.
        Some(version) if version >= native_min_opset(c, a) => native(c, a),
        _ => decomposed(c, a),
    }
}

fn native(c: &mut LowerCtx, a: &Attention) -> LowerResult {
    let mut attrs = Vec::new();
    if a.is_causal {
        attrs.push(attr_i("is_causal", 1));
    }
    if let Some(h) = a.q_num_heads {
        attrs.push(attr_i("q_num_heads", h as i64));
    }
    if let Some(h) = a.kv_num_heads {
        attrs.push(attr_i("kv_num_heads", h as i64));
    }
    let mode = match a.qk_matmul_output_mode {
        QkMatmulOutputMode::Raw => 0,
        QkMatmulOutputMode::Softcapped => 1,
        QkMatmulOutputMode::Biased => 2,
        QkMatmulOutputMode::Softmax => 3,
    };
    if mode != 0 {
        attrs.push(attr_i("qk_matmul_output_mode", mode));
    }
    if let Some(s) = a.scale {
        attrs.push(attr_f("scale", s));
    }
    if a.softcap != 0.0 {
        attrs.push(attr_f("softcap", a.softcap));
    }
    if let Some(p) = a.softmax_precision {
        attrs.push(attr_i("softmax_precision", p.onnx_code() as i64));
    }
    if let Some(w) = a.left_window_size {
        attrs.push(attr_i("left_window_size", w as i64));
    }
    if let Some(w) = a.right_window_size {
        attrs.push(attr_i("right_window_size", w as i64));
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit("Attention", inputs, outputs, attrs);
    Ok(())
}

/// The lowest opset whose Attention expresses this node as it is.
fn native_min_opset(c: &LowerCtx, a: &Attention) -> u32 {
    if a.left_window_size.is_some() || a.right_window_size.is_some() {
        25
    } else if c.has_input(6) {
        24
    } else {
        23
    }
}

fn refuse(c: &LowerCtx, a: &Attention, why: &str) -> ExportProblem {
    let min = native_min_opset(c, a);
    c.problem(format!("Attention before opset {min} is written as its decomposition, which needs {why}"), Some(min))
}

/// The largest causal/window mask the decomposition writes as a constant (sizes come from the
/// file and are untrusted).
const MAX_MASK_ELEMENTS: u64 = 1 << 24;

/// A tensor of float type `dt` holding `values`.
fn float_tensor(dt: DType, shape: Vec<u64>, values: &[f64]) -> Option<Tensor> {
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for v in values {
        match dt {
            DType::F32 => bytes.extend((*v as f32).to_le_bytes()),
            DType::F64 => bytes.extend(v.to_le_bytes()),
            DType::F16 => bytes.extend(half::f16::from_f64(*v).to_le_bytes()),
            DType::BF16 => bytes.extend(half::bf16::from_f64(*v).to_le_bytes()),
            _ => return None,
        }
    }
    Tensor::from_raw(dt, shape, Bytes::from(bytes)).ok()
}

/// Dimension `i` of input `input`, when known.
fn known_dim(c: &LowerCtx, input: usize, i: usize) -> Option<u64> {
    c.input_type(input)?.shape()?.0.get(i).and_then(Dim::known)
}

struct Builder<'a, 'b> {
    c: &'a mut LowerCtx<'b>,
    t1: DType,
}

impl Builder<'_, '_> {
    fn op(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<crate::proto::AttributeProto>,
        hint: &str,
    ) -> String {
        self.c.emit_temp(op_type, inputs, attrs, hint)
    }

    /// Writes `op_type` into `out` when that output is wanted, else into a temp.
    fn op_to(
        &mut self,
        out: String,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<crate::proto::AttributeProto>,
        hint: &str,
    ) -> String {
        if out.is_empty() {
            return self.op(op_type, inputs, attrs, hint);
        }
        self.c.emit(op_type, inputs, vec![out.clone()], attrs);
        out
    }

    fn scalar(&mut self, v: f64, hint: &str) -> String {
        let t = float_tensor(self.t1, vec![], &[v]).expect("t1 is a float type");
        self.c.constant(&t, hint)
    }

    /// `Where(cond, x, y)` over T1 values; bf16 goes through f32 where Where lacks it (< 16).
    fn select(&mut self, cond: String, x: String, y: String, hint: &str) -> String {
        if self.t1 != DType::BF16 || self.c.op_version("Where").is_some_and(|v| v >= 16) {
            return self.op("Where", vec![cond, x, y], vec![], hint);
        }
        let f32 = attr_i("to", DType::F32.onnx_code() as i64);
        let xf = self.op("Cast", vec![x], vec![f32.clone()], "as_f32");
        let yf = self.op("Cast", vec![y], vec![f32], "as_f32");
        let w = self.op("Where", vec![cond, xf, yf], vec![], hint);
        self.op("Cast", vec![w], vec![attr_i("to", DType::BF16.onnx_code() as i64)], hint)
    }

    fn i64s(&mut self, v: &[i64], hint: &str) -> String {
        self.c.const_i64s(v, hint)
    }

    fn unsqueeze(&mut self, x: String, axes: &[i64], hint: &str) -> String {
        let axes = self.i64s(axes, "axes");
        self.op("Unsqueeze", vec![x, axes], vec![], hint)
    }

    /// A 3-D `[batch, seq, heads*size]` input as `[batch, heads, seq, size]`.
    fn heads_major(&mut self, x: String, heads: u64, hint: &str) -> String {
        let shape = self.i64s(&[0, 0, heads as i64, -1], "split_heads");
        let r = self.op("Reshape", vec![x, shape], vec![], hint);
        self.op("Transpose", vec![r], vec![attr_ints("perm", &[0, 2, 1, 3])], hint)
    }

    /// `[batch, kv_heads, seq, size]` with each head repeated `rep` times (h0, h0, h1, h1, ...).
    fn repeat_heads(&mut self, x: String, rep: u64, q_heads: u64, size: u64, hint: &str) -> String {
        if rep == 1 {
            return x;
        }
        let u = self.unsqueeze(x, &[2], hint);
        let reps = self.i64s(&[1, 1, rep as i64, 1, 1], "repeats");
        let e = self.op("Expand", vec![u, reps], vec![], hint);
        let shape = self.i64s(&[0, q_heads as i64, -1, size as i64], "grouped_shape");
        self.op("Reshape", vec![e, shape], vec![], hint)
    }
}

fn decomposed(c: &mut LowerCtx, a: &Attention) -> LowerResult {
    if c.opset < 13 {
        return Err(
            c.problem("Attention is written as its decomposition before opset 23, which needs opset 13", Some(13))
        );
    }
    let t1 = match c.input_type(0).and_then(|t| t.dtype()) {
        Some(d @ (DType::F32 | DType::F64 | DType::F16 | DType::BF16)) => d,
        _ => return Err(refuse(c, a, "Q's element type (a float type) to be known")),
    };
    let rank = match c.input_type(0).and_then(|t| t.shape()).map(|s| s.rank()) {
        Some(r @ (3 | 4)) => r,
        _ => return Err(refuse(c, a, "Q's rank to be known")),
    };
    // Heads-major sizes: [batch, heads, seq, size].
    let (q_heads, kv_heads, q_seq, qk_size, v_size, kv_seq) = if rank == 3 {
        let (Some(qh), Some(kvh)) = (a.q_num_heads, a.kv_num_heads) else {
            return Err(refuse(c, a, "q_num_heads and kv_num_heads for 3-D inputs"));
        };
        (
            Some(qh),
            Some(kvh),
            known_dim(c, 0, 1),
            known_dim(c, 0, 2).map(|h| h / qh),
            known_dim(c, 2, 2).map(|h| h / kvh),
            known_dim(c, 1, 1),
        )
    } else {
        (
            known_dim(c, 0, 1),
            known_dim(c, 1, 1),
            known_dim(c, 0, 2),
            known_dim(c, 0, 3),
            known_dim(c, 2, 3),
            known_dim(c, 1, 2),
        )
    };
    let past_seq = if c.has_input(4) { known_dim(c, 4, 2) } else { Some(0) };
    let total_kv = kv_seq.zip(past_seq).map(|(k, p)| k + p);
    let (Some(q_heads), Some(kv_heads)) = (q_heads, kv_heads) else {
        return Err(refuse(c, a, "the head counts of Q and K/V to be known"));
    };
    if kv_heads == 0 || q_heads % kv_heads != 0 {
        return Err(c.problem(format!("Q's {q_heads} heads are not a multiple of K/V's {kv_heads}"), None));
    }
    let rep = q_heads / kv_heads;
    let (Some(qk_size), Some(v_size)) = (qk_size, v_size) else {
        return Err(refuse(c, a, "the head sizes of Q, K and V to be known"));
    };
    let has_mask = c.has_input(3);
    let masked_positions = a.is_causal || a.left_window_size.is_some() || a.right_window_size.is_some();
    if (masked_positions || c.has_input(6) || has_mask) && (q_seq.is_none() || total_kv.is_none()) {
        return Err(refuse(c, a, "known query and key sequence lengths for its masks"));
    }
    let mask_type = if has_mask { c.input_type(3).and_then(|t| t.dtype()) } else { None };
    let mask_last = if has_mask {
        c.input_type(3).and_then(|t| t.shape()).and_then(|s| s.0.last().map(|d| (d.known(), s.rank())))
    } else {
        None
    };
    if has_mask && (mask_type.is_none() || mask_last.is_none_or(|(d, _)| d.is_none())) {
        return Err(refuse(c, a, "attn_mask's type and last dimension to be known"));
    }
    let reduce_max_axes_input = c.op_version("ReduceMax").is_some_and(|v| v >= 18);
    let (q, k, v) = (c.input(0), c.input(1), c.input(2));
    let (past_k, past_v, mask, nonpad) = (c.input(4), c.input(5), c.input(3), c.input(6));
    let outs = c.outputs();
    let out = |i: usize| outs.get(i).cloned().unwrap_or_default();
    let mut b = Builder { c, t1 };

    // Heads-major Q, K, V and the cache.
    let (q4, k4, v4) = if rank == 3 {
        (
            b.heads_major(q, q_heads, "q_heads"),
            b.heads_major(k, kv_heads, "k_heads"),
            b.heads_major(v, kv_heads, "v_heads"),
        )
    } else {
        (q, k, v)
    };
    let (present_k, present_v) = if past_k.is_empty() {
        for (i, x) in [(1, &k4), (2, &v4)] {
            if !out(i).is_empty() {
                b.c.emit("Identity", vec![x.clone()], vec![out(i)], vec![]);
            }
        }
        (k4, v4)
    } else {
        (
            b.op_to(out(1), "Concat", vec![past_k, k4], vec![attr_i("axis", 2)], "present_key"),
            b.op_to(out(2), "Concat", vec![past_v, v4], vec![attr_i("axis", 2)], "present_value"),
        )
    };
    let k_rep = b.repeat_heads(present_k, rep, q_heads, qk_size, "k_grouped");
    let v_rep = b.repeat_heads(present_v, rep, q_heads, v_size, "v_grouped");

    // Scores: (Q·√scale)·(Kᵀ·√scale), softcap.
    let scale = a.scale.map_or(1.0 / (qk_size as f64).sqrt(), f64::from).sqrt();
    let s = b.scalar(scale, "sqrt_scale");
    let qs = b.op("Mul", vec![q4, s.clone()], vec![], "q_scaled");
    let kt = b.op("Transpose", vec![k_rep], vec![attr_ints("perm", &[0, 1, 3, 2])], "k_transposed");
    let ks = b.op("Mul", vec![kt, s], vec![], "k_scaled");
    let raw = b.op("MatMul", vec![qs, ks], vec![], "scores");
    let capped = if a.softcap > 0.0 {
        let cap = b.scalar(a.softcap as f64, "softcap");
        let d = b.op("Div", vec![raw.clone(), cap.clone()], vec![], "scores_div_cap");
        let t = b.op("Tanh", vec![d], vec![], "scores_tanh");
        b.op("Mul", vec![t, cap], vec![], "scores_capped")
    } else {
        raw.clone()
    };
    match a.qk_matmul_output_mode {
        QkMatmulOutputMode::Raw if !out(3).is_empty() => b.c.emit("Identity", vec![raw], vec![out(3)], vec![]),
        QkMatmulOutputMode::Softcapped if !out(3).is_empty() => {
            b.c.emit("Identity", vec![capped.clone()], vec![out(3)], vec![])
        }
        _ => {}
    }

    // The additive bias: attn_mask, then causal/window/padding masks.
    let neg_inf = b.scalar(f64::NEG_INFINITY, "neg_inf");
    let zero = b.scalar(0.0, "zero");
    let mut bias_parts = Vec::new();
    if let (Some(md), Some((Some(last), mrank))) = (mask_type, mask_last) {
        let total = total_kv.expect("checked above");
        let mut m = if md == DType::Bool {
            b.select(mask, zero.clone(), neg_inf.clone(), "mask_bias")
        } else if md != t1 {
            b.op("Cast", vec![mask], vec![attr_i("to", t1.onnx_code() as i64)], "mask_bias")
        } else {
            mask
        };
        if last < total {
            // A short mask is padded with masked-out keys.
            let mut pads = vec![0i64; 2 * mrank];
            pads[2 * mrank - 1] = (total - last) as i64;
            let pads = b.i64s(&pads, "mask_pads");
            m = b.op("Pad", vec![m, pads, neg_inf.clone()], vec![], "mask_padded");
        }
        bias_parts.push(m);
    }
    let (q_seq, total_kv) = (q_seq.unwrap_or(0), total_kv.unwrap_or(0));
    let windows = (a.left_window_size.map(|w| w as i64), a.right_window_size.map(|w| w as i64));
    if nonpad.is_empty() {
        if masked_positions {
            // Offset = past length: one constant [q_seq, total_kv] bias.
            let offset = past_seq.expect("checked above") as i64;
            if q_seq.checked_mul(total_kv).is_none_or(|n| n > MAX_MASK_ELEMENTS) {
                let why = format!("a [{q_seq}, {total_kv}] mask constant, over the {MAX_MASK_ELEMENTS}-element limit");
                return Err(refuse(b.c, a, &why));
            }
            let mut vals = Vec::with_capacity((q_seq * total_kv) as usize);
            for i in 0..q_seq as i64 {
                for j in 0..total_kv as i64 {
                    let d = i + offset - j;
                    let ok = (!a.is_causal || d >= 0)
                        && windows.0.is_none_or(|l| d <= l)
                        && windows.1.is_none_or(|r| -d <= r);
                    vals.push(if ok { 0.0 } else { f64::NEG_INFINITY });
                }
            }
            let t = float_tensor(t1, vec![q_seq, total_kv], &vals).expect("t1 is a float type");
            bias_parts.push(b.c.constant(&t, "causal_bias"));
        }
    } else {
        // Per-batch offset nonpad[b] - q_seq. With e[i][j] = j - i + q_seq, the distance
        // i + offset - j is nonpad[b] - e[i][j].
        let n3 = {
            let shape = b.i64s(&[-1, 1, 1], "nonpad_shape");
            b.op("Reshape", vec![nonpad, shape], vec![], "nonpad_3d")
        };
        let e_plus = |add: i64| -> Vec<i64> {
            let mut e = Vec::with_capacity((q_seq * total_kv) as usize);
            for i in 0..q_seq as i64 {
                for j in 0..total_kv as i64 {
                    e.push(j - i + q_seq as i64 + add);
                }
            }
            e
        };
        let shape = vec![q_seq, total_kv];
        let const2d = |b: &mut Builder, vals: Vec<i64>, hint: &str| {
            let t = Tensor::from_i64(shape.clone(), &vals).expect("sizes match");
            b.c.constant(&t, hint)
        };
        // Keys past nonpad[b] are padding.
        let j: Vec<i64> = (0..total_kv as i64).collect();
        let jt = Tensor::from_i64(vec![1, total_kv], &j).expect("sizes match");
        let jc = b.c.constant(&jt, "key_index");
        let mut allowed = b.op("Less", vec![jc, n3.clone()], vec![], "key_is_real");
        let mut conds = Vec::new();
        if a.is_causal {
            // distance >= 0  <=>  e <= nonpad
            let e = const2d(&mut b, e_plus(0), "causal_frontier");
            conds.push(b.op("LessOrEqual", vec![e, n3.clone()], vec![], "causal_ok"));
        }
        if let Some(l) = windows.0 {
            // distance <= l  <=>  nonpad <= e + l
            let e = const2d(&mut b, e_plus(l), "left_window");
            conds.push(b.op("LessOrEqual", vec![n3.clone(), e], vec![], "left_ok"));
        }
        if let Some(r) = windows.1 {
            // -distance <= r  <=>  e - r <= nonpad
            let e = const2d(&mut b, e_plus(-r), "right_window");
            conds.push(b.op("LessOrEqual", vec![e, n3.clone()], vec![], "right_ok"));
        }
        for cond in conds {
            allowed = b.op("And", vec![allowed, cond], vec![], "allowed");
        }
        let bias3 = b.select(allowed, zero.clone(), neg_inf.clone(), "cache_bias");
        bias_parts.push(b.unsqueeze(bias3, &[1], "cache_bias_4d"));
    }
    let bias = bias_parts.into_iter().reduce(|x, y| b.op("Add", vec![x, y], vec![], "bias"));
    let biased = match &bias {
        Some(bias) => b.op("Add", vec![capped, bias.clone()], vec![], "scores_biased"),
        None => capped,
    };
    if a.qk_matmul_output_mode == QkMatmulOutputMode::Biased && !out(3).is_empty() {
        b.c.emit("Identity", vec![biased.clone()], vec![out(3)], vec![]);
    }

    // Softmax (in softmax_precision), then zero the rows whose keys are all masked.
    let precision = a.softmax_precision.filter(|p| *p != t1);
    let mut probs = match precision {
        Some(p) => {
            let x = b.op("Cast", vec![biased], vec![attr_i("to", p.onnx_code() as i64)], "scores_softmax_type");
            let sm = b.op("Softmax", vec![x], vec![attr_i("axis", -1)], "probs_softmax_type");
            b.op("Cast", vec![sm], vec![attr_i("to", t1.onnx_code() as i64)], "probs")
        }
        None => b.op("Softmax", vec![biased], vec![attr_i("axis", -1)], "probs"),
    };
    if let Some(bias) = bias {
        let row_max = if reduce_max_axes_input {
            let axes = b.i64s(&[-1], "axes");
            b.op("ReduceMax", vec![bias, axes], vec![attr_i("keepdims", 1)], "bias_row_max")
        } else {
            b.op("ReduceMax", vec![bias], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)], "bias_row_max")
        };
        let all_masked = b.op("Equal", vec![row_max, neg_inf], vec![], "row_all_masked");
        probs = b.select(all_masked, zero, probs, "probs_guarded");
    }
    if a.qk_matmul_output_mode == QkMatmulOutputMode::Softmax && !out(3).is_empty() {
        b.c.emit("Identity", vec![probs.clone()], vec![out(3)], vec![]);
    }

    // Y.
    if rank == 3 {
        let y4 = b.op("MatMul", vec![probs, v_rep], vec![], "y_heads");
        let t = b.op("Transpose", vec![y4], vec![attr_ints("perm", &[0, 2, 1, 3])], "y_seq_major");
        let shape = b.i64s(&[0, 0, -1], "merge_heads");
        b.c.emit("Reshape", vec![t, shape], vec![out(0)], vec![]);
    } else {
        b.c.emit("MatMul", vec![probs, v_rep], vec![out(0)], vec![]);
    }
    Ok(())
}
