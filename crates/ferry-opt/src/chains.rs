//! Layout chains: `Transpose(Transpose(x))` becomes one Transpose (the identity pass removes it
//! when the permutations cancel), `Reshape(Reshape(x))` and `Reshape(Flatten(x))` read `x`
//! directly, and `Squeeze`/`Unsqueeze` pairs over the same axes cancel. The inner node stays for
//! its other readers, if any; dead-code elimination removes it otherwise.

use crate::editor::Editor;
use ferry_ir::shape::normalize_axis;
use ferry_ir::{Dim, Op, ValueId};

pub fn merge_chains(ed: &mut Editor) -> usize {
    let mut merged = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] {
            continue;
        }
        let changed = match ed.g.nodes[n].op.clone() {
            Op::Transpose { perm } => merge_transposes(ed, n, perm),
            Op::Reshape { allowzero } => skip_inner_reshape(ed, n, allowzero),
            Op::Squeeze => cancel_squeeze_of_unsqueeze(ed, n),
            Op::Unsqueeze => cancel_unsqueeze_of_squeeze(ed, n),
            _ => false,
        };
        merged += usize::from(changed);
    }
    merged
}

fn input(ed: &Editor, n: usize, slot: usize) -> Option<ValueId> {
    ed.g.nodes[n].inputs.get(slot).copied().flatten()
}

/// The live producer of node `n`'s first input, with that producer's op.
fn inner(ed: &Editor, n: usize) -> Option<(usize, Op)> {
    let p = ed.producer(input(ed, n, 0)?)?;
    Some((p, ed.g.nodes[p].op.clone()))
}

fn explicit_perm(perm: Option<Vec<usize>>, rank: Option<usize>) -> Option<Vec<usize>> {
    perm.or_else(|| rank.map(|r| (0..r).rev().collect()))
}

fn merge_transposes(ed: &mut Editor, n: usize, outer: Option<Vec<usize>>) -> bool {
    let Some((p, Op::Transpose { perm: inner_perm })) = inner(ed, n) else { return false };
    let Some(x) = input(ed, p, 0) else { return false };
    let rank = ed.ty(x).shape().map(|s| s.rank());
    let (Some(p1), Some(p2)) = (explicit_perm(inner_perm, rank), explicit_perm(outer, rank)) else { return false };
    if p1.len() != p2.len() || p2.iter().any(|a| *a >= p1.len()) {
        return false;
    }
    // Output axis i is the inner result's axis p2[i], which is x's axis p1[p2[i]].
    let combined: Vec<usize> = p2.iter().map(|a| p1[*a]).collect();
    ed.g.nodes[n].op = Op::Transpose { perm: Some(combined) };
    ed.set_input(n, 0, Some(x));
    true
}

/// `Reshape(Reshape(x, s1), s2)` = `Reshape(x, s2)` when s2 does not copy dims (0 without
/// allowzero) from the intermediate shape; likewise for an inner Flatten.
fn skip_inner_reshape(ed: &mut Editor, n: usize, allowzero: bool) -> bool {
    let Some((p, Op::Reshape { .. } | Op::Flatten { .. })) = inner(ed, n) else { return false };
    let Some(target) = input(ed, n, 1).and_then(|s| ed.constant(s)).and_then(|t| t.to_i64_vec().ok()) else {
        return false;
    };
    if !allowzero && target.contains(&0) {
        return false;
    }
    let Some(x) = input(ed, p, 0) else { return false };
    ed.set_input(n, 0, Some(x));
    true
}

fn const_axes(ed: &Editor, n: usize) -> Option<Vec<i64>> {
    input(ed, n, 1).and_then(|a| ed.constant(a)).and_then(|t| t.to_i64_vec().ok())
}

fn normalized(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let mut v: Vec<usize> = axes.iter().map(|a| normalize_axis(*a, rank).ok()).collect::<Option<_>>()?;
    v.sort_unstable();
    let len = v.len();
    v.dedup();
    (v.len() == len).then_some(v)
}

/// `Squeeze(Unsqueeze(x, a), a)` = `x`.
fn cancel_squeeze_of_unsqueeze(ed: &mut Editor, n: usize) -> bool {
    let Some((p, Op::Unsqueeze)) = inner(ed, n) else { return false };
    let (Some(x), Some(out)) = (input(ed, p, 0), ed.g.nodes[n].outputs[0]) else { return false };
    let Some(rank) = ed.ty(x).shape().map(|s| s.rank()) else { return false };
    let (Some(a1), Some(a2)) = (const_axes(ed, p), const_axes(ed, n)) else { return false };
    let mid = rank + a1.len();
    if normalized(&a1, mid).is_none() || normalized(&a1, mid) != normalized(&a2, mid) {
        return false;
    }
    ed.replace_output(n, out, x)
}

/// `Unsqueeze(Squeeze(x, a), a)` = `x` when the squeezed dims are known to be 1 (otherwise the
/// Squeeze fails at run time, and must still).
fn cancel_unsqueeze_of_squeeze(ed: &mut Editor, n: usize) -> bool {
    let Some((p, Op::Squeeze)) = inner(ed, n) else { return false };
    let (Some(x), Some(out)) = (input(ed, p, 0), ed.g.nodes[n].outputs[0]) else { return false };
    let Some(shape) = ed.ty(x).shape().cloned() else { return false };
    let (Some(a1), Some(a2)) = (const_axes(ed, p), const_axes(ed, n)) else { return false };
    let Some(axes) = normalized(&a1, shape.rank()) else { return false };
    if normalized(&a2, shape.rank()) != Some(axes.clone()) || axes.iter().any(|a| shape.dims()[*a] != Dim::Known(1)) {
        return false;
    }
    ed.replace_output(n, out, x)
}
