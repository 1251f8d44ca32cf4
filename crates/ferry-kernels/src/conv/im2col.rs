//! Unrolling convolution windows into GEMM columns.

use super::Conv2dShape;
use crate::isa::multiversion;
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

multiversion! {
/// Fills one im2col row: the values tap (ky, kx) reads from `plane` for every output position.
fn unroll_tap / unroll_tap_with(s: &Conv2dShape, plane: &[f32], ky: usize, kx: usize, oh: usize, ow: usize, dst: &mut [f32]) {
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
        } else if sx == 2 {
            crate::gather::copy_even(&mut out[lo..hi], &src[first..]);
        } else {
            for (o, v) in out[lo..hi].iter_mut().zip(src[first..].iter().step_by(sx)) {
                *o = *v;
            }
        }
    }
}
}

/// The output positions `o` in `[lo, hi)` (with `hi <= out_len`) for which `o * stride + offset` is in
/// `[0, len)`.
pub(crate) fn valid_range(offset: isize, stride: usize, len: usize, out_len: usize) -> (usize, usize) {
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

/// The im2col matrix of one group as a self-packing GEMM operand: panels are filled straight from
/// the image, so the `[c*kh*kw, oh*ow]` matrix is never materialized.
pub(super) struct Windows<'a> {
    s: &'a Conv2dShape,
    /// The group's input, `[c_in/group, h, w]`.
    x: &'a [f32],
    oh: usize,
    ow: usize,
    /// Per kx: the output columns whose input column is inside the row.
    ranges: Vec<(usize, usize)>,
}

impl<'a> Windows<'a> {
    pub(super) fn new(s: &'a Conv2dShape, x: &'a [f32]) -> Windows<'a> {
        let (oh, ow) = s.out_hw();
        assert!(x.len() >= s.c_in_g() * s.h * s.w, "group input too short");
        let ranges = (0..s.kw)
            .map(|kx| valid_range((kx * s.dilation[1]) as isize - s.pads[1] as isize, s.stride[1], s.w, ow))
            .collect();
        Windows { s, x, oh, ow, ranges }
    }
}

impl crate::gemm::PackB for Windows<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, nr: usize, dst: &mut [f32]) {
        pack_windows(self, p0, kc, j0, cols, nr, dst)
    }
}

multiversion! {
    /// Fills panels of `nr` output positions for im2col rows `p0..p0 + kc`: each panel's positions
    /// split into runs within one output row, and each run is one (clipped) copy from an input row.
    fn pack_windows / pack_windows_with(
        win: &Windows,
        p0: usize,
        kc: usize,
        j0: usize,
        cols: usize,
        nr: usize,
        dst: &mut [f32],
    ) {
        let s = win.s;
        let (ow, taps) = (win.ow, s.kh * s.kw);
        debug_assert!(j0 + cols <= win.oh * ow);
        let (sx, plane_len) = (s.stride[1], s.h * s.w);
        for jb in 0..cols.div_ceil(nr) {
            let panel = &mut dst[jb * kc * nr..(jb + 1) * kc * nr];
            let j = j0 + jb * nr;
            let live = nr.min(cols - jb * nr);
            // Runs (oy, first ox, length, offset in the panel row); at most nr of them.
            let mut runs = [(0usize, 0usize, 0usize, 0usize); 32];
            let mut count = 0;
            let mut pos = j;
            while pos < j + live && count < runs.len() {
                let (oy, ox) = (pos / ow, pos % ow);
                let len = (ow - ox).min(j + live - pos);
                runs[count] = (oy, ox, len, pos - j);
                count += 1;
                pos += len;
            }
            assert!(pos == j + live, "a panel wider than 32 columns");
            let (mut c, mut ky, mut kx) = (p0 / taps, p0 % taps / s.kw, p0 % s.kw);
            for p in 0..kc {
                let row = &mut panel[p * nr..(p + 1) * nr];
                row[live..].fill(0.0);
                let plane = &win.x[c * plane_len..(c + 1) * plane_len];
                let (lo, hi) = win.ranges[kx];
                let off_x = (kx * s.dilation[1]) as isize - s.pads[1] as isize;
                for &(oy, ox0, len, at) in &runs[..count] {
                    let out = &mut row[at..at + len];
                    let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                    if iy < 0 || iy as usize >= s.h {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    // Valid outputs within this run: [a, b).
                    let a = lo.clamp(ox0, ox0 + len);
                    let b = hi.clamp(a, ox0 + len);
                    out[..a - ox0].fill(0.0);
                    out[b - ox0..].fill(0.0);
                    if a < b {
                        let first = (a as isize * sx as isize + off_x) as usize;
                        let out = &mut out[a - ox0..b - ox0];
                        if sx == 1 {
                            out.copy_from_slice(&src[first..first + (b - a)]);
                        } else if sx == 2 {
                            crate::gather::copy_even(out, &src[first..]);
                        } else {
                            for (o, v) in out.iter_mut().zip(src[first..].iter().step_by(sx)) {
                                *o = *v;
                            }
                        }
                    }
                }
                kx += 1;
                if kx == s.kw {
                    kx = 0;
                    ky += 1;
                    if ky == s.kh {
                        ky = 0;
                        c += 1;
                    }
                }
            }
        }
    }
}
