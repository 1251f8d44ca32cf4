//! Attention (23, 24, 25): one core op, [`ferry_ir::ops::Attention`], whose attributes mirror
//! ONNX's; inputs and outputs keep ONNX's positions.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use ferry_ir::Op;
use ferry_ir::ops::{Attention, QkMatmulOutputMode};

pub const OPS: &[(&str, Canonicalizer)] = &[("Attention", attention)];

fn attention(c: &mut NodeCtx) -> Result<Canon> {
    c.required_input(0)?;
    c.required_input(1)?;
    c.required_input(2)?;
    if c.input(4).is_some() != c.input(5).is_some() {
        return Err(c.error("past_key and past_value must be given together"));
    }
    if c.input(6).is_some() && c.input(4).is_some() {
        return Err(c.error("nonpad_kv_seqlen cannot be combined with past_key/past_value"));
    }
    let heads = |c: &NodeCtx, name: &str| -> Result<Option<u64>> {
        c.attr_i_opt(name)?
            .map(|h| {
                u64::try_from(h).ok().filter(|h| *h > 0).ok_or_else(|| c.error(format!("{name} must be positive")))
            })
            .transpose()
    };
    let window = |c: &NodeCtx, name: &str| -> Result<Option<u64>> {
        if c.version < 25 {
            return Ok(None);
        }
        match c.attr_i(name, -1)? {
            -1 => Ok(None),
            w => u64::try_from(w).map(Some).map_err(|_| c.error(format!("{name} must be -1 or non-negative"))),
        }
    };
    let qk_matmul_output_mode = match c.attr_i("qk_matmul_output_mode", 0)? {
        0 => QkMatmulOutputMode::Raw,
        1 => QkMatmulOutputMode::Softcapped,
        2 => QkMatmulOutputMode::Biased,
        3 => QkMatmulOutputMode::Softmax,
        m => return Err(c.error(format!("unknown qk_matmul_output_mode {m}"))),
    };
    let op = Attention {
        is_causal: c.attr_i("is_causal", 0)? != 0,
        q_num_heads: heads(c, "q_num_heads")?,
        kv_num_heads: heads(c, "kv_num_heads")?,
        qk_matmul_output_mode,
        scale: c.attr_f_opt("scale")?,
        softcap: c.attr_f("softcap", 0.0)?,
        softmax_precision: c.attr_dtype("softmax_precision")?,
        left_window_size: window(c, "left_window_size")?,
        right_window_size: window(c, "right_window_size")?,
    };
    let rank = c.input_rank(0);
    if rank == Some(3) && (op.q_num_heads.is_none() || op.kv_num_heads.is_none()) {
        return Err(c.error("3-D inputs need q_num_heads and kv_num_heads"));
    }
    let inputs = c.inputs.clone();
    let outputs = c.outputs.clone();
    c.emit(Op::Attention(op), inputs, outputs);
    Ok(Canon::Done)
}
