//! Local pattern fusion: a contraction (Conv, MatMul with constant weights) with the per-channel
//! affine ops after it (bias, folded BatchNorm) and its activation; LayerNorm and Softmax rows;
//! 2-D pooling. Each returns the step and the nodes it consumed; a group is only fused when its
//! intermediate values have no reader outside it.

pub(crate) mod conv;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod pool;

use crate::lower::Cx;
use crate::steps::Kind;
use ferry_ir::ops::BinaryOp;
use ferry_ir::{Op, ValueId};

/// A fused group: its step, what it reads and writes at run time, and the nodes it covers.
pub(crate) struct Fused {
    pub kind: Kind,
    pub reads: Vec<ValueId>,
    pub out: ValueId,
    pub nodes: Vec<usize>,
    pub scratch: usize,
}

/// Tries every pattern that starts at node `n`.
pub(crate) fn fuse_at(cx: &Cx, n: usize, taken: &[bool]) -> Option<Fused> {
    match &cx.g.nodes[n].op {
        Op::Conv(c) => conv::lower(cx, n, c, taken),
        Op::MatMul => matmul::lower(cx, n, taken),
        Op::Reduce { .. } => norm::layer_norm(cx, n, taken),
        Op::Softmax { axis } => norm::softmax(cx, n, *axis),
        Op::Pool(p) => pool::pool(cx, n, p),
        Op::GlobalPool { kind } => pool::global(cx, n, *kind),
        _ => None,
    }
}

/// `y = y_raw * scale + shift` per channel, for the affine ops that follow `y` alone.
pub(crate) struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub out: ValueId,
    pub nodes: Vec<usize>,
}

/// The only reader of `v`, when `v` is not a graph output and that reader is not taken.
pub(crate) fn sole_reader(cx: &Cx, v: ValueId, taken: &[bool]) -> Option<usize> {
    match cx.readers[v].as_slice() {
        [r] if !cx.is_output[v] && !taken[*r] => Some(*r),
        _ => None,
    }
}

/// Follows `y` through Add/Sub/Mul/Div by constants that vary only along `axis` (of the output's
/// rank) with `channels` entries, composing them into one per-channel affine map.
pub(crate) fn absorb_affine(cx: &Cx, y: ValueId, axis: usize, channels: usize, taken: &[bool]) -> Affine {
    let shape = cx.arena_f32(y).map(|s| s.to_vec()).unwrap_or_default();
    let mut a = Affine { scale: vec![1.0; channels], shift: vec![0.0; channels], out: y, nodes: vec![] };
    while let Some(r) = sole_reader(cx, a.out, taken) {
        let node = &cx.g.nodes[r];
        let Op::Binary(op) = node.op else { break };
        let (Some(x0), Some(x1), Some(out)) = (cx.input(node, 0), cx.input(node, 1), cx.output(node, 0)) else {
            break;
        };
        if cx.arena_f32(out) != Some(shape.as_slice()) {
            break;
        }
        let (c, const_first) = if x0 == a.out { (x1, false) } else { (x0, true) };
        let Some(v) = per_channel(cx, c, shape.len(), axis, channels) else { break };
        let ok = match (op, const_first) {
            (BinaryOp::Add, _) => {
                a.shift.iter_mut().zip(&v).for_each(|(t, c)| *t += c);
                true
            }
            (BinaryOp::Sub, false) => {
                a.shift.iter_mut().zip(&v).for_each(|(t, c)| *t -= c);
                true
            }
            (BinaryOp::Sub, true) => {
                a.scale.iter_mut().for_each(|s| *s = -*s);
                a.shift.iter_mut().zip(&v).for_each(|(t, c)| *t = c - *t);
                true
            }
            (BinaryOp::Mul, _) => {
                a.scale.iter_mut().zip(&v).for_each(|(s, c)| *s *= c);
                a.shift.iter_mut().zip(&v).for_each(|(t, c)| *t *= c);
                true
            }
            (BinaryOp::Div, false) => {
                a.scale.iter_mut().zip(&v).for_each(|(s, c)| *s /= c);
                a.shift.iter_mut().zip(&v).for_each(|(t, c)| *t /= c);
                true
            }
            _ => false,
        };
        if !ok {
            break;
        }
        a.nodes.push(r);
        a.out = out;
    }
    a
}

/// A constant f32 operand as one value per channel, when it varies only along `axis`.
fn per_channel(cx: &Cx, c: ValueId, rank: usize, axis: usize, channels: usize) -> Option<Vec<f32>> {
    let values = cx.f32_const(c)?;
    let shape: Vec<usize> = cx.facts[c].konst()?.shape.iter().map(|d| *d as usize).collect();
    if shape.len() > rank {
        return None;
    }
    let pad = rank - shape.len();
    for (k, d) in shape.iter().enumerate() {
        let at = k + pad;
        if *d != 1 && !(at == axis && *d == channels) {
            return None;
        }
    }
    Some(if values.len() == 1 { vec![values[0]; channels] } else { values })
}
