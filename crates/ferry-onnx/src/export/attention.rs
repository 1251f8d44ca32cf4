//! Attention: written as ONNX Attention from opset 23 (Attention-24 when nonpad_kv_seqlen is
//! used, Attention-25 for the window bounds); below 23 as its decomposition.

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_i};
use ferry_ir::ops::{Attention, QkMatmulOutputMode};

pub fn attention(c: &mut LowerCtx, a: &Attention) -> LowerResult {
    match c.op_version("Attention") {
        Some(version) => native(c, a, version),
        None => Err(c.problem("Attention needs opset 23", Some(23))),
    }
}

fn native(c: &mut LowerCtx, a: &Attention, version: u32) -> LowerResult {
    if c.has_input(6) && version < 24 {
        return Err(c.problem("Attention with nonpad_kv_seqlen needs opset 24", Some(24)));
    }
    if (a.left_window_size.is_some() || a.right_window_size.is_some()) && version < 25 {
        return Err(c.problem("Attention with a sliding window (left/right_window_size) needs opset 25", Some(25)));
    }
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
