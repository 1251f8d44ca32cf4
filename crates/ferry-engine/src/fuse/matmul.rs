//! MatMul. With a constant 2-D right-hand side: one GEMM over all rows of the left operand, the
//! weights packed once, per-column affine ops after it (bias, scales) folded into the packed
//! weights and the epilogue's bias, and the activation (GELU included) fused into the epilogue.
//! Otherwise (attention's Q·Kᵀ, ·V): a GEMM per broadcast batch entry on strided operands.

use super::{Fused, absorb_affine};
use crate::actmatch;
use crate::exec::Ctx;
use crate::lower::Cx;
use crate::steps::{F32Operand, Kind};
use ferry_ir::ValueId;
use ferry_kernels::{Act, Epilogue, PackedB, Rhs};

#[derive(Debug)]
pub(crate) struct DenseStep {
    b: PackedB,
    bias: Option<Vec<f32>>,
    act: Act,
    a: ValueId,
    y: ValueId,
    m: usize,
    n: usize,
    k: usize,
}

#[derive(Debug)]
pub(crate) struct BatchedStep {
    a: F32Operand,
    b: F32Operand,
    y: ValueId,
    m: usize,
    n: usize,
    k: usize,
    /// Element offsets of A's and B's matrices for each output matrix.
    offsets: Vec<(usize, usize)>,
}

pub(crate) fn lower(cx: &Cx, n: usize, taken: &[bool]) -> Option<Fused> {
    let node = &cx.g.nodes[n];
    let (a, b, y) = (cx.input(node, 0)?, cx.input(node, 1)?, cx.output(node, 0)?);
    let ys = cx.arena_f32(y)?.to_vec();
    let a_shape = cx.facts[a].dtype_shape()?.1;
    let b_shape = cx.facts[b].dtype_shape()?.1;
    if a_shape.len() < 2 || b_shape.len() < 2 {
        return None;
    }
    let (m, k) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    let (kb, nn) = (b_shape[b_shape.len() - 2], b_shape[b_shape.len() - 1]);
    if k != kb || ys.len() < 2 || ys[ys.len() - 1] != nn || ys[ys.len() - 2] != m || m * k * nn == 0 {
        return None;
    }
    if b_shape.len() == 2 && cx.arena_f32(a).is_some() && cx.f32_const(b).is_some() {
        return dense(cx, n, a, b, y, &ys, k, nn, taken);
    }
    batched(cx, n, a, b, y, &a_shape, &b_shape, &ys)
}

#[allow(clippy::too_many_arguments)]
fn dense(
    cx: &Cx,
    n: usize,
    a: ValueId,
    b: ValueId,
    y: ValueId,
    ys: &[usize],
    k: usize,
    nn: usize,
    taken: &[bool],
) -> Option<Fused> {
    let m: usize = ys[..ys.len() - 1].iter().product();
    let affine = absorb_affine(cx, y, ys.len() - 1, nn, taken);
    let mut nodes = vec![n];
    nodes.extend(&affine.nodes);
    let mut taken_now = taken.to_vec();
    nodes.iter().for_each(|x| taken_now[*x] = true);
    let last = *nodes.iter().max().expect("not empty");
    let act = actmatch::activation_after(cx, affine.out, last, &taken_now);
    let (act_kind, out) = match &act {
        Some(mt) => {
            nodes.extend(&mt.nodes);
            (mt.act, mt.out)
        }
        None => (Act::None, affine.out),
    };
    let mut weights = cx.f32_const(b)?;
    for row in weights.chunks_mut(nn.max(1)) {
        row.iter_mut().zip(&affine.scale).for_each(|(v, s)| *v *= s);
    }
    let packed = PackedB::new(k, nn, &weights, nn as isize, 1);
    let bias = affine.shift.iter().any(|t| *t != 0.0).then_some(affine.shift);
    let step = DenseStep { b: packed, bias, act: act_kind, a, y: out, m, n: nn, k };
    Some(Fused { kind: Kind::Dense(Box::new(step)), reads: vec![a], out, nodes, scratch: 0 })
}

#[allow(clippy::too_many_arguments)]
fn batched(
    cx: &Cx,
    n: usize,
    a: ValueId,
    b: ValueId,
    y: ValueId,
    sa: &[usize],
    sb: &[usize],
    ys: &[usize],
) -> Option<Fused> {
    let operand = |v: ValueId| -> Option<F32Operand> {
        match cx.arena_f32(v) {
            Some(_) => Some(F32Operand::Val(v)),
            None => cx.f32_const(v).map(F32Operand::Const),
        }
    };
    let (oa, ob) = (operand(a)?, operand(b)?);
    let r = ys.len();
    let batch_out = &ys[..r - 2];
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, (r - 2).saturating_sub(s.len() - 2)).chain(s[..s.len() - 2].iter().copied()).collect()
    };
    let (ba, bb) = (pad(sa), pad(sb));
    if ba.len() != batch_out.len() || bb.len() != batch_out.len() {
        return None;
    }
    for k in 0..batch_out.len() {
        let ok = |d: usize| d == batch_out[k] || d == 1;
        if !ok(ba[k]) || !ok(bb[k]) {
            return None;
        }
    }
    let (m, k, nn) = (ys[r - 2], sa[sa.len() - 1], ys[r - 1]);
    let count: usize = batch_out.iter().product();
    let mut offsets = Vec::with_capacity(count);
    for flat in 0..count {
        let (mut rem, mut off_a, mut off_b, mut stride_a, mut stride_b) = (flat, 0, 0, m * k, k * nn);
        for d in (0..batch_out.len()).rev() {
            let i = rem % batch_out[d];
            rem /= batch_out[d];
            if ba[d] != 1 {
                off_a += i * stride_a;
            }
            if bb[d] != 1 {
                off_b += i * stride_b;
            }
            stride_a *= ba[d];
            stride_b *= bb[d];
        }
        offsets.push((off_a, off_b));
    }
    let reads = [a, b].into_iter().filter(|v| cx.arena_f32(*v).is_some()).collect();
    let step = BatchedStep { a: oa, b: ob, y, m, n: nn, k, offsets };
    Some(Fused { kind: Kind::Batched(Box::new(step)), reads, out: y, nodes: vec![n], scratch: 0 })
}

pub(crate) fn run_dense(ctx: &mut Ctx, s: &DenseStep) {
    let (a, c) = (ctx.f32s(s.a), ctx.f32s_mut(s.y));
    let ep = Epilogue { bias_col: s.bias.as_deref(), bias_row: None, act: s.act, accumulate: false };
    ferry_kernels::gemm(ctx.pool, s.m, s.n, s.k, a, s.k as isize, 1, Rhs::Packed(&s.b), c, s.n, &ep);
}

pub(crate) fn run_batched(ctx: &mut Ctx, s: &BatchedStep) {
    fn slice<'s>(ctx: &Ctx<'s>, o: &'s F32Operand) -> &'s [f32] {
        match o {
            F32Operand::Const(c) => c,
            F32Operand::Val(v) => ctx.f32s(*v),
        }
    }
    let (a, b) = (slice(ctx, &s.a), slice(ctx, &s.b));
    let c = ctx.f32s_mut(s.y);
    let ep = Epilogue::default();
    for (i, (oa, ob)) in s.offsets.iter().enumerate() {
        let rhs = Rhs::Strided { data: &b[*ob..*ob + s.k * s.n], rs: s.n as isize, cs: 1 };
        let out = &mut c[i * s.m * s.n..(i + 1) * s.m * s.n];
        ferry_kernels::gemm(ctx.pool, s.m, s.n, s.k, &a[*oa..*oa + s.m * s.k], s.k as isize, 1, rhs, out, s.n, &ep);
    }
}
