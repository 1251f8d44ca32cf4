//! Identity elimination: nodes that return their input unchanged go, and readers of their output
//! read the input. Identity; Cast to the input's own type; Transpose with the identity
//! permutation; Reshape/Flatten/Expand/Squeeze whose output type (inferred) is the input's;
//! `x + 0`, `x - 0`, `x * 1`, `x / 1` with a constant whose broadcast changes neither shape nor
//! type; Concat of one input. Slice and Pad are left: the same shape does not mean the same
//! elements there (reversed slices, pads that crop one side and pad the other).

use crate::editor::Editor;
use ferry_ir::ops::BinaryOp;
use ferry_ir::{Dim, Op, Shape, ValueId, ValueType};

pub fn eliminate_identities(ed: &mut Editor) -> usize {
    let mut removed = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] {
            continue;
        }
        let node = &ed.g.nodes[n];
        if node.outputs.len() != 1 {
            continue;
        }
        let Some(out) = node.outputs[0] else { continue };
        let Some(x) = passthrough_input(ed, n) else { continue };
        if same_type(ed.ty(x), ed.ty(out)) && ed.replace_output(n, out, x) {
            removed += 1;
        }
    }
    removed
}

/// The input that node `n` returns unchanged, if it does.
fn passthrough_input(ed: &Editor, n: usize) -> Option<ValueId> {
    let node = &ed.g.nodes[n];
    let first = node.inputs.first().copied().flatten();
    let out = node.outputs[0]?;
    match &node.op {
        Op::Identity => first,
        Op::Concat { .. } if node.inputs.len() == 1 => first,
        Op::Cast(c) => first.filter(|x| ed.ty(*x).dtype() == Some(c.to)),
        Op::Transpose { perm } => {
            let x = first?;
            let rank = ed.ty(x).shape()?.rank();
            let identity = match perm {
                Some(p) => p.iter().enumerate().all(|(i, a)| i == *a),
                None => rank <= 1,
            };
            identity.then_some(x)
        }
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Expand | Op::Squeeze => {
            first.filter(|x| same_type(ed.ty(*x), ed.ty(out)))
        }
        Op::Binary(b) => {
            let (a, c) = (first?, node.inputs.get(1).copied().flatten()?);
            let neutral = |k: ValueId, v: f64| ed.constant(k).is_some_and(|t| all_equal(t, v));
            let keeps = |x: ValueId, k: ValueId| broadcast_keeps_shape(ed.ty(x), ed.ty(k));
            let pick = match b {
                BinaryOp::Add if neutral(c, 0.0) => Some((a, c)),
                BinaryOp::Add if neutral(a, 0.0) => Some((c, a)),
                BinaryOp::Sub if neutral(c, 0.0) => Some((a, c)),
                BinaryOp::Mul if neutral(c, 1.0) => Some((a, c)),
                BinaryOp::Mul if neutral(a, 1.0) => Some((c, a)),
                BinaryOp::Div if neutral(c, 1.0) => Some((a, c)),
                _ => None,
            };
            pick.filter(|(x, k)| keeps(*x, *k) && ed.ty(*x).dtype().is_some() && ed.ty(*x).dtype() == ed.ty(*k).dtype())
                .map(|(x, _)| x)
        }
        _ => None,
    }
}

fn all_equal(t: &ferry_ir::Tensor, v: f64) -> bool {
    t.numel() <= 1 << 16 && t.to_f64_vec().is_ok_and(|xs| !xs.is_empty() && xs.iter().all(|x| *x == v))
}

/// Whether broadcasting `x` with a constant of type `k` leaves `x`'s shape as it is.
fn broadcast_keeps_shape(x: &ValueType, k: &ValueType) -> bool {
    let Some(ks) = k.shape().and_then(Shape::to_known) else { return false };
    if ks.is_empty() {
        return true;
    }
    let Some(xs) = x.shape() else { return false };
    if ks.len() > xs.rank() {
        return false;
    }
    let off = xs.rank() - ks.len();
    ks.iter().enumerate().all(|(i, d)| *d == 1 || xs.dims()[off + i] == Dim::Known(*d))
}

/// Both types fully known to be the same: dtype, and every dim equal (a named dim equals
/// itself; an unknown dim equals nothing).
pub fn same_type(a: &ValueType, b: &ValueType) -> bool {
    let (Some(da), Some(db)) = (a.dtype(), b.dtype()) else { return false };
    let (Some(sa), Some(sb)) = (a.shape(), b.shape()) else { return false };
    da == db && sa.rank() == sb.rank() && sa.dims().iter().zip(sb.dims()).all(|(x, y)| x == y && *x != Dim::Unknown)
}
