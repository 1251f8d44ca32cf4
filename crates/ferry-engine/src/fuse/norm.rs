//! Row normalizations over the last axis: Softmax, and LayerNorm written out as ReduceMean, Sub,
//! Mul/Pow, ReduceMean, Add eps, Sqrt, Div/Reciprocal+Mul, then optional Mul gamma and Add beta
//! (ferry's own LayerNormalization import and torch's older exports).

use super::{Fused, sole_reader};
use crate::exec::Ctx;
use crate::lower::Cx;
use crate::steps::Kind;
use ferry_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use ferry_ir::{Node, Op, ValueId};

#[derive(Debug)]
pub(crate) struct LayerNormStep {
    x: ValueId,
    y: ValueId,
    row: usize,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    eps: f32,
}

#[derive(Debug)]
pub(crate) struct SoftmaxStep {
    pub x: ValueId,
    y: ValueId,
    row: usize,
}

pub(crate) fn softmax(cx: &Cx, n: usize, axis: i64) -> Option<Fused> {
    let node = &cx.g.nodes[n];
    let (x, y) = (cx.input(node, 0)?, cx.output(node, 0)?);
    let xs = cx.arena_f32(x)?;
    let r = xs.len() as i64;
    if cx.arena_f32(y)? != xs || r == 0 || !(axis == -1 || axis == r - 1) {
        return None;
    }
    let row = *xs.last()?;
    Some(Fused { kind: Kind::Softmax(SoftmaxStep { x, y, row }), reads: vec![x], out: y, nodes: vec![n], scratch: 0 })
}

pub(crate) fn run_softmax(ctx: &mut Ctx, s: &SoftmaxStep) {
    let out = ctx.f32s_mut(s.y);
    if ctx.offset(s.x) != ctx.offset(s.y) {
        out.copy_from_slice(ctx.f32s(s.x));
    }
    ferry_kernels::softmax_rows(ctx.pool, out, s.row);
}

/// Whether `node` is a keepdims ReduceMean of `x` over its last axis only.
fn mean_last_axis(cx: &Cx, node: &Node, x: ValueId, rank: usize) -> bool {
    let Op::Reduce { kind: ReduceKind::Mean, keepdims: true, .. } = node.op else { return false };
    if cx.input(node, 0) != Some(x) {
        return false;
    }
    let axes = cx.input(node, 1).and_then(|a| cx.facts[a].konst()).and_then(|t| t.to_i64_vec().ok());
    matches!(axes.as_deref(), Some([a]) if *a == -1 || *a == rank as i64 - 1)
}

fn scalar(cx: &Cx, v: ValueId) -> Option<f32> {
    let c = cx.f32_const(v)?;
    (c.len() == 1).then(|| c[0])
}

/// The other input of a binary node, given one of them.
fn other(cx: &Cx, node: &Node, v: ValueId) -> Option<ValueId> {
    let (a, b) = (cx.input(node, 0)?, cx.input(node, 1)?);
    if a == v {
        Some(b)
    } else if b == v {
        Some(a)
    } else {
        None
    }
}

fn is_binary(node: &Node, op: BinaryOp) -> bool {
    node.op == Op::Binary(op)
}

pub(crate) fn layer_norm(cx: &Cx, n: usize, taken: &[bool]) -> Option<Fused> {
    let g = cx.g;
    let head = &g.nodes[n];
    let x = cx.input(head, 0)?;
    let xs = cx.arena_f32(x)?.to_vec();
    let rank = xs.len();
    if rank == 0 || !mean_last_axis(cx, head, x, rank) {
        return None;
    }
    let row = xs[rank - 1];
    let mean = cx.output(head, 0)?;
    // d = x - mean
    let n_sub = sole_reader(cx, mean, taken)?;
    let sub = &g.nodes[n_sub];
    if !is_binary(sub, BinaryOp::Sub) || cx.input(sub, 0) != Some(x) || cx.input(sub, 1) != Some(mean) {
        return None;
    }
    let d = cx.output(sub, 0)?;
    // d is read by the square and by the normalization.
    let readers = &cx.readers[d];
    if readers.len() != 2 || cx.is_output[d] || readers.iter().any(|r| taken[*r]) {
        return None;
    }
    let is_square = |k: usize| {
        let nd = &g.nodes[k];
        (is_binary(nd, BinaryOp::Mul) && cx.input(nd, 0) == Some(d) && cx.input(nd, 1) == Some(d))
            || (is_binary(nd, BinaryOp::Pow)
                && cx.input(nd, 0) == Some(d)
                && cx.input(nd, 1).and_then(|e| scalar(cx, e)) == Some(2.0))
    };
    let (n_sq, n_norm) = if is_square(readers[0]) { (readers[0], readers[1]) } else { (readers[1], readers[0]) };
    if !is_square(n_sq) {
        return None;
    }
    let sq = cx.output(&g.nodes[n_sq], 0)?;
    let n_var = sole_reader(cx, sq, taken)?;
    if !mean_last_axis(cx, &g.nodes[n_var], sq, rank) {
        return None;
    }
    let var = cx.output(&g.nodes[n_var], 0)?;
    let n_eps = sole_reader(cx, var, taken)?;
    let eps_node = &g.nodes[n_eps];
    let eps = if is_binary(eps_node, BinaryOp::Add) { scalar(cx, other(cx, eps_node, var)?)? } else { return None };
    let ve = cx.output(eps_node, 0)?;
    let n_sqrt = sole_reader(cx, ve, taken)?;
    if g.nodes[n_sqrt].op != Op::Unary(UnaryOp::Sqrt) {
        return None;
    }
    let std = cx.output(&g.nodes[n_sqrt], 0)?;
    let mut nodes = vec![n, n_sub, n_sq, n_var, n_eps, n_sqrt];
    // normalized = d / std, or d * (1 / std)
    let norm_node = &g.nodes[n_norm];
    let normalized = if is_binary(norm_node, BinaryOp::Div) {
        (cx.input(norm_node, 0) == Some(d) && cx.input(norm_node, 1) == Some(std)).then_some(())?;
        nodes.push(n_norm);
        cx.output(norm_node, 0)?
    } else if is_binary(norm_node, BinaryOp::Mul) {
        let n_rec = sole_reader(cx, std, taken)?;
        if g.nodes[n_rec].op != Op::Unary(UnaryOp::Reciprocal) {
            return None;
        }
        let inv = cx.output(&g.nodes[n_rec], 0)?;
        (other(cx, norm_node, d)? == inv && sole_reader(cx, inv, taken) == Some(n_norm)).then_some(())?;
        nodes.extend([n_rec, n_norm]);
        cx.output(norm_node, 0)?
    } else {
        return None;
    };
    if cx.arena_f32(normalized)? != xs.as_slice() {
        return None;
    }
    // Optional gamma and beta (per last-axis element, or scalars).
    let per_row = |v: ValueId| -> Option<Vec<f32>> {
        let c = cx.f32_const(v)?;
        let shape = &cx.facts[v].konst()?.shape;
        let only_last = shape.iter().rev().skip(1).all(|d| *d == 1) && shape.len() <= rank;
        match c.len() {
            1 => Some(vec![c[0]; row]),
            l if l == row && only_last => Some(c),
            _ => None,
        }
    };
    let mut out = normalized;
    let mut gamma = None;
    let mut beta = None;
    if let Some(r) = sole_reader(cx, out, taken) {
        let nd = &g.nodes[r];
        if is_binary(nd, BinaryOp::Mul) && cx.arena_f32(cx.output(nd, 0)?) == Some(xs.as_slice()) {
            if let Some(gv) = per_row(other(cx, nd, out)?) {
                gamma = Some(gv);
                nodes.push(r);
                out = cx.output(nd, 0)?;
            }
        }
    }
    if let Some(r) = sole_reader(cx, out, taken) {
        let nd = &g.nodes[r];
        if is_binary(nd, BinaryOp::Add) && cx.arena_f32(cx.output(nd, 0)?) == Some(xs.as_slice()) {
            if let Some(bv) = per_row(other(cx, nd, out)?) {
                beta = Some(bv);
                nodes.push(r);
                out = cx.output(nd, 0)?;
            }
        }
    }
    let step = LayerNormStep { x, y: out, row, gamma, beta, eps };
    Some(Fused { kind: Kind::LayerNorm(step), reads: vec![x], out, nodes, scratch: 0 })
}

pub(crate) fn run_layer_norm(ctx: &mut Ctx, s: &LayerNormStep) {
    let (x, y) = (ctx.f32s(s.x), ctx.f32s_mut(s.y));
    ferry_kernels::layer_norm_rows(ctx.pool, x, y, s.row, s.gamma.as_deref(), s.beta.as_deref(), s.eps);
}
