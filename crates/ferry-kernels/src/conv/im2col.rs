//! Unrolling convolution windows into GEMM columns.

use super::Conv2dShape;
use crate::pool::Pool;

/// Unrolls one group's input (`[c, h, w]`) into `cols` = `[c*kh*kw, oh*ow]`: row (c, ky, kx) holds,
/// for every output position, the input value that tap reads (zero where it reads padding).
pub(super) fn im2col(pool: &Pool, s: &Conv2dShape, x: &[f32], cols: &mut [f32]) {
    let (oh, ow) = s.out_hw();
    let ohw = oh * ow;
    let taps = s.kh * s.kw;
    let rows = s.c_in_g() * taps;
    let per_task = pool.chunk_for(rows, (crate::pool::PAR_MIN_ELEMS / ohw.max(1)).max(1));
    pool.for_each_chunk_mut(&mut cols[..rows * ohw], per_task * ohw, |t, chunk| {
        for (r, dst) in chunk.chunks_exact_mut(ohw).enumerate() {
            let row = t * per_task + r;
            let (c, tap) = (row / taps, row % taps);
            let plane = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
            unroll_tap(s, plane, tap / s.kw, tap % s.kw, oh, ow, dst);
        }
    });
}

/// Fills one im2col row: the values tap (ky, kx) reads from `plane` for every output position.
fn unroll_tap(s: &Conv2dShape, plane: &[f32], ky: usize, kx: usize, oh: usize, ow: usize, dst: &mut [f32]) {
    let (sy, sx) = (s.stride[0], s.stride[1]);
    let off_x = (kx * s.dilation[1]) as isize - s.pads[1] as isize;
    // Output columns whose input column is inside the plane: ox in [lo, hi).
    let (lo, hi) = valid_range(off_x, sx, s.w, ow);
    for oy in 0..oh {
        let out = &mut dst[oy * ow..(oy + 1) * ow];
        let iy = (oy * sy + ky * s.dilation[0]) as isize - s.pads[0] as isize;
        if iy < 0 || iy as usize >= s.h || lo >= hi {
            out.fill(0.0);
            continue;
        }
        let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        let first = (lo as isize * sx as isize + off_x) as usize;
        if sx == 1 {
            out[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
        } else {
            for (o, v) in out[lo..hi].iter_mut().zip(src[first..].iter().step_by(sx)) {
                *o = *v;
            }
        }
    }
}

/// The output positions `o` in `[lo, hi)` (with `hi <= out_len`) for which `o * stride + offset` is in
/// `[0, len)`.
pub(super) fn valid_range(offset: isize, stride: usize, len: usize, out_len: usize) -> (usize, usize) {
    let stride = stride as isize;
    // Smallest o with o*stride + offset >= 0.
    let lo = if offset >= 0 { 0 } else { (-offset + stride - 1) / stride };
    // Largest o with o*stride + offset <= len - 1, plus one.
    let last = len as isize - 1 - offset;
    let hi = if last < 0 { 0 } else { last / stride + 1 };
    let hi = (hi.max(0) as usize).min(out_len);
    let lo = (lo as usize).min(hi);
    (lo, hi)
}
