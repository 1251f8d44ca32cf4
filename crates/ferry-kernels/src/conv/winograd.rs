//! 3x3 stride-1 convolution by Winograd's F(2x2, 3x3): each 2x2 output tile costs 16 multiplies per
//! (input, output) channel pair instead of 36. The transforms use only 0, +-1 and +-1/2, so the
//! result stays within a few f32 roundings of the direct sum.
//!
//! Per tile, with input patch d (4x4) and filter g (3x3): `Y = A^T [(G g G^T) .* (B^T d B)] A`.
//! The 16 element-wise products over channels are 16 GEMMs, computed transposed
//! (`M_xi^T [tiles x c_out] = V_xi^T [tiles x c_in] x U_xi^T [c_in x c_out]`) so that tiles, which
//! are plentiful, run along the micro-kernel's rows and the weights are the prepacked operand.

use super::Conv2dShape;
use crate::act::{Act, apply_slice};
use crate::gemm::{Epilogue, Lhs, PackedB, Rhs, gemm_lhs};
use crate::isa::multiversion;
use crate::pool::Pool;

/// Transformed weights: for each of the 16 tile positions, `U^T` (`c_in x c_out`) packed.
#[derive(Clone, Debug)]
pub(super) struct Winograd {
    u: Vec<PackedB>,
}

impl Winograd {
    /// Whether F(2x2, 3x3) applies to `s` and is worth it: the transforms cost per channel while the
    /// GEMM saves per channel pair, so it needs enough channels (measured on Zen 4, CPU time against
    /// the direct GEMM: 64 channels on 56x56 3.0 -> 2.0 ms, 128 on 28x28 2.7 -> 1.4, 256 on 14x14
    /// 2.7 -> 1.3, 512 on 7x7 3.1 -> 2.6).
    pub(super) fn suits(s: &Conv2dShape) -> bool {
        s.kh == 3
            && s.kw == 3
            && s.stride == [1, 1]
            && s.dilation == [1, 1]
            && s.group == 1
            && s.c_in >= 64
            && s.c_out >= 64
    }

    pub(super) fn new(s: &Conv2dShape, w: &[f32]) -> Winograd {
        let (ci_n, co_n) = (s.c_in, s.c_out);
        let mut ut = vec![vec![0.0f32; ci_n * co_n]; 16];
        for co in 0..co_n {
            for ci in 0..ci_n {
                let g = &w[(co * ci_n + ci) * 9..(co * ci_n + ci + 1) * 9];
                let u = transform_filter(g);
                for (xi, v) in u.iter().enumerate() {
                    ut[xi][ci * co_n + co] = *v;
                }
            }
        }
        Winograd { u: ut.iter().map(|m| PackedB::new(ci_n, co_n, m, co_n as isize, 1)).collect() }
    }

    fn tiles(s: &Conv2dShape) -> (usize, usize) {
        let (oh, ow) = s.out_hw();
        (oh.div_ceil(2), ow.div_ceil(2))
    }

    pub(super) fn scratch_len(s: &Conv2dShape) -> usize {
        let (th, tw) = Self::tiles(s);
        16 * th * tw * (s.c_in + s.c_out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        pool: &Pool,
        s: &Conv2dShape,
        bias: Option<&[f32]>,
        act: Act,
        input: &[f32],
        out: &mut [f32],
        scratch: &mut [f32],
        accumulate: bool,
    ) {
        let (oh, ow) = s.out_hw();
        let (th, tw) = Self::tiles(s);
        let t_n = th * tw;
        let (v, rest) = scratch.split_at_mut(16 * s.c_in * t_n);
        let m = &mut rest[..16 * t_n * s.c_out];
        // Input transform, one input channel per task: v[(xi * c_in + ci) * tiles + t].
        {
            let v_ptr = SharedOut(v.as_mut_ptr());
            pool.for_each(s.c_in, |ci| {
                let plane = &input[ci * s.h * s.w..(ci + 1) * s.h * s.w];
                let mut rows = vec![0.0f32; 4 * (2 * tw + 2)];
                let mut t = vec![0.0f32; 4 * (2 * tw + 2)];
                for ty in 0..th {
                    // SAFETY: the 16 destination runs (xi, ci, tile row ty) are inside v and are
                    // written only by this task (channel ci).
                    let dst: [&mut [f32]; 16] = std::array::from_fn(|xi| unsafe {
                        std::slice::from_raw_parts_mut(v_ptr.at((xi * s.c_in + ci) * t_n + ty * tw), tw)
                    });
                    input_tile_row(s, plane, ty, tw, &mut rows, &mut t, dst);
                }
            });
        }
        // The 16 products, m[(xi * tiles + t) * c_out + co].
        for xi in 0..16 {
            let lhs = Lhs::Strided { data: &v[xi * s.c_in * t_n..(xi + 1) * s.c_in * t_n], rs: 1, cs: t_n as isize };
            let dst = &mut m[xi * t_n * s.c_out..(xi + 1) * t_n * s.c_out];
            gemm_lhs(pool, t_n, s.c_out, s.c_in, lhs, Rhs::Packed(&self.u[xi]), dst, s.c_out, &Epilogue::default());
        }
        // Output transform, a row of tiles per task; the inner loop runs along output channels, which
        // are contiguous in m. Then bias, residual and activation per output plane.
        let ohw = oh * ow;
        let out = &mut out[..s.c_out * ohw];
        let m = &*m;
        {
            let out_ptr = SharedOut(out.as_mut_ptr());
            pool.for_each(th, |ty| {
                let mut y = vec![[0.0f32; 4]; s.c_out];
                for tx in 0..tw {
                    let t = ty * tw + tx;
                    output_tile(m, t, t_n, s.c_out, &mut y);
                    for i in 0..2 {
                        let oy = 2 * ty + i;
                        for j in 0..2 {
                            let ox = 2 * tx + j;
                            if oy >= oh || ox >= ow {
                                continue;
                            }
                            for (co, yc) in y.iter().enumerate() {
                                // SAFETY: (co, oy, ox) is inside the c_out x oh x ow output, and
                                // only the task for tile row ty writes output rows 2ty and 2ty+1.
                                unsafe {
                                    let o = out_ptr.at((co * oh + oy) * ow + ox);
                                    *o = if accumulate { *o + yc[i * 2 + j] } else { yc[i * 2 + j] };
                                }
                            }
                        }
                    }
                }
            });
        }
        pool.for_each_chunk_mut(out, ohw.max(1), |co, plane| {
            if let Some(b) = bias {
                plane.iter_mut().for_each(|v| *v += b[co]);
            }
            apply_slice(act, plane);
        });
    }
}

multiversion! {
    /// `A^T M A` for tile t and every output channel: y[co] = the tile's 2x2 outputs, row-major.
    /// The loop runs along channels, contiguous in each of the 16 rows of m, so it vectorizes.
    fn output_tile / output_tile_with(m: &[f32], t: usize, t_n: usize, c_out: usize, y: &mut [[f32; 4]]) {
        let row = |xi: usize| &m[(xi * t_n + t) * c_out..(xi * t_n + t + 1) * c_out];
        let (m00, m01, m02, m03) = (row(0), row(1), row(2), row(3));
        let (m10, m11, m12, m13) = (row(4), row(5), row(6), row(7));
        let (m20, m21, m22, m23) = (row(8), row(9), row(10), row(11));
        let (m30, m31, m32, m33) = (row(12), row(13), row(14), row(15));
        for (co, yc) in y[..c_out].iter_mut().enumerate() {
            // A^T applied down the columns, then across.
            let s00 = m00[co] + m10[co] + m20[co];
            let s01 = m01[co] + m11[co] + m21[co];
            let s02 = m02[co] + m12[co] + m22[co];
            let s03 = m03[co] + m13[co] + m23[co];
            let s10 = m10[co] - m20[co] - m30[co];
            let s11 = m11[co] - m21[co] - m31[co];
            let s12 = m12[co] - m22[co] - m32[co];
            let s13 = m13[co] - m23[co] - m33[co];
            *yc = [s00 + s01 + s02, s01 - s02 - s03, s10 + s11 + s12, s11 - s12 - s13];
        }
    }
}

multiversion! {
    /// Transforms the tiles of tile row `ty`: copies the 4 input rows it covers into zero-padded
    /// buffers, applies `B^T` down the rows for the whole width at once, then `B` across each tile.
    fn input_tile_row / input_tile_row_with(
        s: &Conv2dShape,
        plane: &[f32],
        ty: usize,
        tw: usize,
        rows: &mut [f32],
        t: &mut [f32],
        dst: [&mut [f32]; 16],
    ) {
        let width = 2 * tw + 2;
        rows.fill(0.0);
        for r in 0..4 {
            let iy = (2 * ty + r) as isize - s.pads[0] as isize;
            if iy < 0 || iy as usize >= s.h {
                continue;
            }
            let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
            // Padded column x holds input column x - pad_left; columns past the width stay zero.
            let start = s.pads[1].min(width);
            let n = s.w.min(width - start);
            rows[r * width + start..r * width + start + n].copy_from_slice(&src[..n]);
        }
        let (r0, rest) = rows.split_at(width);
        let (r1, rest) = rest.split_at(width);
        let (r2, r3) = rest.split_at(width);
        let (t0, rest) = t.split_at_mut(width);
        let (t1, rest) = rest.split_at_mut(width);
        let (t2, t3) = rest.split_at_mut(width);
        for x in 0..width {
            t0[x] = r0[x] - r2[x];
            t1[x] = r1[x] + r2[x];
            t2[x] = r2[x] - r1[x];
            t3[x] = r1[x] - r3[x];
        }
        let mut dst = dst;
        for (r, tr) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
            let (a, rest) = dst[r * 4..r * 4 + 4].split_at_mut(1);
            let (b, rest) = rest.split_at_mut(1);
            let (c, d) = rest.split_at_mut(1);
            for tx in 0..tw {
                let q = &tr[2 * tx..2 * tx + 4];
                a[0][tx] = q[0] - q[2];
                b[0][tx] = q[1] + q[2];
                c[0][tx] = q[2] - q[1];
                d[0][tx] = q[1] - q[3];
            }
        }
    }
}

/// v's base pointer, written by disjoint tasks.
struct SharedOut(*mut f32);
// SAFETY: each task writes only the entries of its own input channel (see `run`), and `run` keeps
// the exclusive borrow of the buffer until all tasks are done.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element pointer (a method, so closures capture the whole wrapper, not the raw field).
    ///
    /// # Safety
    /// `i` must be inside the buffer.
    unsafe fn at(&self, i: usize) -> *mut f32 {
        // SAFETY: the caller keeps i inside the buffer.
        unsafe { self.0.add(i) }
    }
}

/// `G g G^T` with `G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]`, row-major 16 values.
fn transform_filter(g: &[f32]) -> [f32; 16] {
    let g = |r: usize, c: usize| g[r * 3 + c];
    // G g: 4 x 3.
    let mut t = [[0.0f32; 3]; 4];
    for c in 0..3 {
        t[0][c] = g(0, c);
        t[1][c] = 0.5 * (g(0, c) + g(1, c) + g(2, c));
        t[2][c] = 0.5 * (g(0, c) - g(1, c) + g(2, c));
        t[3][c] = g(2, c);
    }
    let mut u = [0.0f32; 16];
    for r in 0..4 {
        u[r * 4] = t[r][0];
        u[r * 4 + 1] = 0.5 * (t[r][0] + t[r][1] + t[r][2]);
        u[r * 4 + 2] = 0.5 * (t[r][0] - t[r][1] + t[r][2]);
        u[r * 4 + 3] = t[r][2];
    }
    u
}
