//! 2-D max and average pooling, and global average pooling, image by image.

use super::Fused;
use super::conv::pads_for;
use crate::exec::Ctx;
use crate::lower::Cx;
use crate::steps::Kind;
use ferry_ir::ValueId;
use ferry_ir::ops::{Pool, PoolKind};
use ferry_kernels::Pool2dShape;

#[derive(Debug)]
pub(crate) struct PoolStep {
    shape: Pool2dShape,
    /// None: max; Some(count_include_pad): average.
    avg: Option<bool>,
    x: ValueId,
    y: ValueId,
    batch: usize,
    in_len: usize,
    out_len: usize,
}

#[derive(Debug)]
pub(crate) struct GlobalAvgStep {
    x: ValueId,
    y: ValueId,
    channels: usize,
    hw: usize,
}

pub(crate) fn pool(cx: &Cx, n: usize, p: &Pool) -> Option<Fused> {
    let node = &cx.g.nodes[n];
    // MaxPool's indices output is the reference kernel's business.
    if node.outputs.iter().skip(1).any(Option::is_some) {
        return None;
    }
    let (x, y) = (cx.input(node, 0)?, cx.output(node, 0)?);
    let xs = cx.arena_f32(x)?;
    let ys = cx.arena_f32(y)?;
    let avg = match p.kind {
        PoolKind::Max => None,
        PoolKind::Avg => Some(p.count_include_pad),
        PoolKind::Lp(_) => return None,
    };
    if xs.len() != 4 || p.kernel_shape.len() != 2 {
        return None;
    }
    let pos = |v: &Vec<u64>, k: usize| v.get(k).map_or(Some(1), |s| (*s > 0).then_some(*s as usize));
    let (kh, kw) = (p.kernel_shape[0] as usize, p.kernel_shape[1] as usize);
    let stride = [pos(&p.strides, 0)?, pos(&p.strides, 1)?];
    let dilation = [pos(&p.dilations, 0)?, pos(&p.dilations, 1)?];
    let (t, b) = pads_for(&p.pads, 0, 2, xs[2], kh, stride[0], dilation[0])?;
    let (l, r) = pads_for(&p.pads, 1, 2, xs[3], kw, stride[1], dilation[1])?;
    let shape = Pool2dShape {
        c: xs[1],
        h: xs[2],
        w: xs[3],
        kh,
        kw,
        stride,
        pads: [t, l, b, r],
        dilation,
        ceil_mode: p.ceil_mode,
    };
    shape.validate().ok()?;
    let (oh, ow) = shape.out_hw();
    if ys != [xs[0], xs[1], oh, ow] || oh * ow == 0 {
        return None;
    }
    let step = PoolStep { shape, avg, x, y, batch: xs[0], in_len: xs[1] * xs[2] * xs[3], out_len: xs[1] * oh * ow };
    Some(Fused { kind: Kind::Pool(step), reads: vec![x], out: y, nodes: vec![n], scratch: 0 })
}

pub(crate) fn global(cx: &Cx, n: usize, kind: PoolKind) -> Option<Fused> {
    let node = &cx.g.nodes[n];
    let (x, y) = (cx.input(node, 0)?, cx.output(node, 0)?);
    let xs = cx.arena_f32(x)?;
    let ys = cx.arena_f32(y)?;
    if kind != PoolKind::Avg || xs.len() < 3 || ys.len() != xs.len() || ys[..2] != xs[..2] {
        return None;
    }
    let hw: usize = xs[2..].iter().product();
    if hw == 0 || ys[2..].iter().any(|d| *d != 1) {
        return None;
    }
    let step = GlobalAvgStep { x, y, channels: xs[0] * xs[1], hw };
    Some(Fused { kind: Kind::GlobalAvg(step), reads: vec![x], out: y, nodes: vec![n], scratch: 0 })
}

pub(crate) fn run_pool(ctx: &mut Ctx, s: &PoolStep) {
    let (x, y) = (ctx.f32s(s.x), ctx.f32s_mut(s.y));
    for i in 0..s.batch {
        let input = &x[i * s.in_len..(i + 1) * s.in_len];
        let out = &mut y[i * s.out_len..(i + 1) * s.out_len];
        match s.avg {
            None => ferry_kernels::max_pool2d(ctx.pool, &s.shape, input, out),
            Some(include_pad) => ferry_kernels::avg_pool2d(ctx.pool, &s.shape, include_pad, input, out),
        }
    }
}

pub(crate) fn run_global_avg(ctx: &mut Ctx, s: &GlobalAvgStep) {
    let (x, y) = (ctx.f32s(s.x), ctx.f32s_mut(s.y));
    ferry_kernels::global_avg_pool(ctx.pool, s.channels, s.hw, x, y);
}
