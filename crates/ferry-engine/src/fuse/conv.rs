//! Conv (2-D, or 1-D as height 1) with constant weights, followed by per-channel affine ops
//! (bias, a decomposed BatchNorm) folded into the weights and bias, and an activation, as one
//! `ferry_kernels::Conv2d` that runs image by image.

use super::{Fused, absorb_affine};
use crate::actmatch;
use crate::exec::Ctx;
use crate::lower::Cx;
use crate::steps::Kind;
use ferry_ir::ops::{AutoPad, Conv};
use ferry_ir::{DType, ValueId};
use ferry_kernels::{Act, Conv2d, Conv2dShape};

#[derive(Debug)]
pub(crate) struct ConvStep {
    conv: Conv2d,
    x: ValueId,
    y: ValueId,
    batch: usize,
    in_len: usize,
    out_len: usize,
}

/// Begin and end padding of one spatial axis.
pub(crate) fn pads_for(
    auto: &AutoPad,
    axis: usize,
    rank: usize,
    size: usize,
    k: usize,
    s: usize,
    d: usize,
) -> Option<(usize, usize)> {
    Some(match auto {
        AutoPad::Explicit(p) if p.is_empty() => (0, 0),
        AutoPad::Explicit(p) if p.len() == 2 * rank => (p[axis] as usize, p[rank + axis] as usize),
        AutoPad::Explicit(_) => return None,
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = size.div_ceil(s);
            let need = ((out.max(1) - 1) * s + (k - 1) * d + 1).saturating_sub(size);
            let small = need / 2;
            if matches!(auto, AutoPad::SameUpper) { (small, need - small) } else { (need - small, small) }
        }
    })
}

pub(crate) fn lower(cx: &Cx, n: usize, c: &Conv, taken: &[bool]) -> Option<Fused> {
    let node = &cx.g.nodes[n];
    let (x, w, y) = (cx.input(node, 0)?, cx.input(node, 1)?, cx.output(node, 0)?);
    let xs = cx.arena_f32(x)?.to_vec();
    let ys = cx.arena_f32(y)?.to_vec();
    let wt = cx.facts[w].konst()?;
    if wt.dtype != DType::F32 || !(xs.len() == 3 || xs.len() == 4) || wt.shape.len() != xs.len() {
        return None;
    }
    let bias = match cx.input(node, 2) {
        Some(b) => Some(cx.f32_const(b)?),
        None => None,
    };
    let spatial = xs.len() - 2;
    let (n_img, c_in) = (xs[0], xs[1]);
    let (h, wd) = if spatial == 2 { (xs[2], xs[3]) } else { (1, xs[2]) };
    let ws: Vec<usize> = wt.shape.iter().map(|d| *d as usize).collect();
    let (kh, kw) = if spatial == 2 { (ws[2], ws[3]) } else { (1, ws[2]) };
    let c_out = ws[0];
    let attr = |v: &Vec<u64>, k: usize| v.get(k).map_or(Some(1), |s| (*s > 0).then_some(*s as usize));
    let (stride, dilation) = if spatial == 2 {
        ([attr(&c.strides, 0)?, attr(&c.strides, 1)?], [attr(&c.dilations, 0)?, attr(&c.dilations, 1)?])
    } else {
        ([1, attr(&c.strides, 0)?], [1, attr(&c.dilations, 0)?])
    };
    let pads = if spatial == 2 {
        let (t, b) = pads_for(&c.pads, 0, 2, h, kh, stride[0], dilation[0])?;
        let (l, r) = pads_for(&c.pads, 1, 2, wd, kw, stride[1], dilation[1])?;
        [t, l, b, r]
    } else {
        let (l, r) = pads_for(&c.pads, 0, 1, wd, kw, stride[1], dilation[1])?;
        [0, l, 0, r]
    };
    let shape = Conv2dShape { c_in, h, w: wd, c_out, kh, kw, stride, pads, dilation, group: c.group as usize };
    shape.validate().ok()?;
    let (oh, ow) = shape.out_hw();
    let want: Vec<usize> = if spatial == 2 { vec![n_img, c_out, oh, ow] } else { vec![n_img, c_out, ow] };
    if want != ys || bias.as_ref().is_some_and(|b| b.len() != c_out) {
        return None;
    }
    // Fold the affine ops after the convolution into its weights and bias.
    let affine = absorb_affine(cx, y, 1, c_out, taken);
    let mut nodes = vec![n];
    nodes.extend(&affine.nodes);
    let mut taken_now = taken.to_vec();
    nodes.iter().for_each(|k| taken_now[*k] = true);
    let last = *nodes.iter().max().expect("not empty");
    let act = actmatch::activation_after(cx, affine.out, last, &taken_now);
    let (act_kind, out) = match &act {
        Some(m) => {
            nodes.extend(&m.nodes);
            (m.act, m.out)
        }
        None => (Act::None, affine.out),
    };
    let mut weights = cx.f32_const(w)?;
    let per_out = weights.len() / c_out.max(1);
    for (o, chunk) in weights.chunks_mut(per_out.max(1)).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= affine.scale[o]);
    }
    let folded_bias: Vec<f32> =
        (0..c_out).map(|o| bias.as_ref().map_or(0.0, |b| b[o]) * affine.scale[o] + affine.shift[o]).collect();
    let any_bias = bias.is_some() || affine.shift.iter().any(|t| *t != 0.0);
    let conv = Conv2d::new(shape, &weights, any_bias.then_some(folded_bias.as_slice()), act_kind).ok()?;
    let scratch = conv.scratch_len();
    let step = ConvStep { conv, x, y: out, batch: n_img, in_len: c_in * h * wd, out_len: c_out * oh * ow };
    Some(Fused { kind: Kind::Conv(Box::new(step)), reads: vec![x], out, nodes, scratch })
}

pub(crate) fn run(ctx: &mut Ctx, s: &ConvStep) {
    let (x, y) = (ctx.f32s(s.x), ctx.f32s_mut(s.y));
    for i in 0..s.batch {
        let input = &x[i * s.in_len..(i + 1) * s.in_len];
        let out = &mut y[i * s.out_len..(i + 1) * s.out_len];
        s.conv.run(ctx.pool, input, out, ctx.scratch);
    }
}
