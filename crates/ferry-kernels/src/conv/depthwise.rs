//! Depthwise convolution (one filter per channel) as a direct loop: a GEMM of one row per channel
//! would be all overhead.
//!
//! Each channel's input is first copied into a zero-padded plane split by column phase (column x of
//! the padded row goes to phase `x % stride_w`, position `x / stride_w`), so every tap reads a
//! contiguous run of inputs for consecutive outputs, whatever the stride, and needs no bounds tests.
//! Outputs are then computed 16 at a time in a small array the compiler keeps in vector registers.
//!
//! With AVX-512, 3x3 undilated filters (MobileNet's) take a faster loop instead: it holds the
//! input rows an output row needs in registers and slides them down each 16-wide column block,
//! and reads stride-1 and stride-2 inputs in place (masked loads supply the padding; stride 2 keeps
//! the even lanes of two loads), with Relu/Clip fused.

use super::Conv2dShape;
use crate::act::{Act, apply_slice};
use crate::isa::{Isa, isa};
use crate::pool::Pool;
use std::cell::RefCell;

/// Outputs per inner block (one zmm, two ymm).
const LANES: usize = 16;

thread_local! {
    static PLANE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[c] = act(conv(input[c], w[c]) + bias[c] (+ out[c] if accumulate))` for every channel.
pub(super) fn run(
    pool: &Pool,
    s: &Conv2dShape,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    input: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (oh, ow) = s.out_hw();
    let ohw = oh * ow;
    let taps = s.kh * s.kw;
    // At least 64K outputs (~0.6M multiply-adds for 3x3) per task: the 3x3 loop does a 7x7 plane
    // in ~40 ns, so smaller tasks would cost more to hand out than to compute.
    let per_task = pool.chunk_for(s.c_out, (2 * crate::pool::PAR_MIN_ELEMS / ohw.max(1)).max(1));
    let isa = isa();
    // Where tap column kx starts within a phased row (phase offset plus position).
    let padded_w = s.w + s.pads[1] + s.pads[3];
    let pw = padded_w.div_ceil(s.stride[1]);
    let tap_starts: Vec<usize> =
        (0..s.kw).map(|kx| (kx * s.dilation[1] % s.stride[1]) * pw + kx * s.dilation[1] / s.stride[1]).collect();
    // 3x3 undilated (MobileNet's case) takes the AVX-512 loop that slides a window of input rows
    // held in registers down each 16-wide column block; with stride 1 or 2 it reads the input plane
    // in place (masked loads do the padding). Every other case reads a phased copy.
    let small = isa == Isa::Avx512 && s.kh == 3 && s.kw == 3 && s.dilation == [1, 1];
    let direct = small && s.stride[1] <= 2;
    // Relu and Clip are applied in registers by the AVX-512 loop; the rest in a pass over the plane.
    let fused = small && matches!(act, Act::None | Act::Relu | Act::Clip { .. });
    // Phased reads stay inside a phased row: every tap reads at most `tap + ow` values.
    assert!(direct || tap_starts.iter().all(|&t| t + ow <= s.stride[1] * pw));
    let lanes = lane_table(s, ow, direct, &tap_starts);
    pool.for_each_chunk_mut(out, per_task * ohw, |t, chunk| {
        let mut phased = PLANE.with(|p| std::mem::take(&mut *p.borrow_mut()));
        // Zero once per task: channels overwrite the same interior positions, padding stays zero.
        phased.clear();
        if !direct {
            phased.resize(s.h * s.stride[1] * pw, 0.0);
        }
        for (i, dst) in chunk.chunks_exact_mut(ohw).enumerate() {
            let c = t * per_task + i;
            let plane = &input[c * s.h * s.w..(c + 1) * s.h * s.w];
            let b = bias.map_or(0.0, |b| b[c]);
            let mut job = Channel {
                s,
                plane,
                phased: &mut phased,
                pw,
                tap_starts: &tap_starts,
                w: &w[c * taps..(c + 1) * taps],
                bias: b,
                oh,
                ow,
                accumulate,
                act,
                direct,
                small,
                lanes: &lanes,
            };
            isa.run(&mut job, dst);
            if !fused {
                apply_slice(act, dst);
            }
        }
        PLANE.with(|p| *p.borrow_mut() = phased);
    });
}

/// Copies `plane` into `dst` (zero-filled beforehand) padded left/right and split by column phase,
/// `len` values per phase row. Row `iy`, phase `r` starts at `(iy * stride_w + r) * len`. Only the
/// interior is written, so the zero padding survives from one channel to the next.
#[inline(always)]
fn phase_plane(s: &Conv2dShape, plane: &[f32], len: usize, dst: &mut [f32]) {
    let st = s.stride[1];
    for iy in 0..s.h {
        let src = &plane[iy * s.w..(iy + 1) * s.w];
        let rows = &mut dst[iy * st * len..(iy + 1) * st * len];
        if st == 1 {
            rows[s.pads[1]..s.pads[1] + s.w].copy_from_slice(src);
        } else {
            // Phase r holds padded columns r, r + st, ...: input columns ix0, ix0 + st, ... from
            // position (ix0 + pad) / st on.
            for r in 0..st {
                let ix0 = (r + st - s.pads[1] % st) % st;
                if ix0 >= s.w {
                    continue;
                }
                let phase = &mut rows[r * len + (ix0 + s.pads[1]) / st..(r + 1) * len];
                let src = &src[ix0..];
                if st == 2 {
                    // Pairs vectorize (a shuffle per vector); step_by does not.
                    let pairs = src.chunks_exact(2);
                    let last = pairs.remainder().first().copied();
                    let n = pairs.len();
                    for (d, pair) in phase.iter_mut().zip(pairs) {
                        *d = pair[0];
                    }
                    if let Some(v) = last {
                        phase[n] = v;
                    }
                } else {
                    for (d, v) in phase.iter_mut().zip(src.iter().step_by(st)) {
                        *d = *v;
                    }
                }
            }
        }
    }
}

/// Lanes `lo..hi` of 16 (clamped), as a bit mask.
fn lane_mask(lo: isize, hi: isize) -> u16 {
    lane_mask32(lo, hi.min(LANES as isize)) as u16
}

/// Lanes `lo..hi` of 32 (clamped), as a bit mask.
fn lane_mask32(lo: isize, hi: isize) -> u32 {
    let (lo, hi) = (lo.clamp(0, 32) as u32, hi.clamp(0, 32) as u32);
    if hi <= lo { 0 } else { (u32::MAX >> (32 - hi)) & !((1u64 << lo) - 1) as u32 }
}

/// Per (16-output chunk, kx): where the tap's first input lies within a source row, and which
/// lanes read real inputs (the others are zero padding or past the row's end). Direct: the source
/// row is the input row itself; stride 1 reads 16 lanes from there, stride 2 reads 32 (two
/// vectors, of which the even lanes are used), only those with 0 <= x < w. Phased: the source row
/// is a padded phased row (see `phase_plane`), every output lane is read.
fn lane_table(s: &Conv2dShape, ow: usize, direct: bool, tap_starts: &[usize]) -> Vec<(isize, u32)> {
    let chunks = ow.div_ceil(LANES);
    let mut lanes = Vec::with_capacity(chunks * s.kw);
    for c in 0..chunks {
        let ox = (c * LANES) as isize;
        let n = LANES.min(ow - c * LANES) as isize;
        for (kx, &tap) in tap_starts.iter().enumerate() {
            let st = s.stride[1] as isize;
            if direct {
                let x0 = ox * st + (kx * s.dilation[1]) as isize - s.pads[1] as isize;
                // The last input used is x0 + st*(n-1).
                lanes.push((x0, lane_mask32(-x0, (st * (n - 1) + 1).min(s.w as isize - x0))));
            } else {
                lanes.push((tap as isize + ox, lane_mask(0, n) as u32));
            }
        }
    }
    lanes
}

struct Channel<'a> {
    s: &'a Conv2dShape,
    /// This channel's input plane.
    plane: &'a [f32],
    /// Scratch for the phased copy of `plane`.
    phased: &'a mut [f32],
    /// Length of one phase row.
    pw: usize,
    /// Per kx, the offset of its first input within a phased row.
    tap_starts: &'a [usize],
    w: &'a [f32],
    bias: f32,
    oh: usize,
    ow: usize,
    accumulate: bool,
    /// Applied in registers by the AVX-512 loop when it is None, Relu or Clip.
    act: Act,
    /// Read `plane` in place (3x3, stride 1 or 2, AVX-512 only) instead of the phased copy.
    direct: bool,
    /// 3x3 undilated: `compute_avx512_3x3` (AVX-512 only).
    small: bool,
    /// `lane_table` (used by `compute_avx512_3x3`).
    lanes: &'a [(isize, u32)],
}

impl Isa {
    fn run(self, job: &mut Channel, dst: &mut [f32]) {
        match self {
            // SAFETY: `isa()` returns a level only when the CPU has its features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { compute_avx2(job, dst) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if job.small => unsafe { compute_avx512_3x3(job, dst) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { compute_avx512(job, dst) },
            _ => job.compute(dst),
        }
    }
}

/// The same loop compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn compute_avx2(job: &mut Channel, dst: &mut [f32]) {
    job.compute(dst)
}

/// The loop with explicit AVX-512: 16 outputs per zmm, masked loads and stores for the row tail.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn compute_avx512(job: &mut Channel, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    phase_plane(job.s, job.plane, job.pw, job.phased);
    let s = job.s;
    let (st, pw, ow) = (s.stride[1], job.pw, job.ow);
    assert!(dst.len() >= job.oh * ow && job.phased.len() >= s.h * st * pw);
    // Every tap reads at most `tap + ow` values into a phased row (see `phase_plane`).
    assert!(job.tap_starts.iter().all(|&t| t + ow <= st * pw));
    // Blocks of 16 outputs ("units", row oy from column ox), four at a time: four independent FMA
    // chains hide the FMA latency that one chain of kh*kw dependent FMAs would expose.
    let chunks = ow.div_ceil(LANES);
    let units = job.oh * chunks;
    let phased = job.phased.as_ptr();
    // The next unit, walked without dividing: row `next_oy`, chunk `next_chunk`.
    let (mut next_oy, mut next_chunk) = (0usize, 0usize);
    for first in (0..units).step_by(4) {
        let mut oy = [0usize; 4];
        let mut ox = [0usize; 4];
        let mut mask: [__mmask16; 4] = [0; 4];
        for u in 0..4 {
            if first + u < units {
                oy[u] = next_oy;
                ox[u] = next_chunk * LANES;
                mask[u] = ((1u32 << LANES.min(ow - ox[u])) - 1) as __mmask16;
                next_chunk += 1;
                if next_chunk == chunks {
                    next_chunk = 0;
                    next_oy += 1;
                }
            }
        }
        // SAFETY (this block): lanes under a unit's mask address out[oy*ow + ox..][..n] and
        // phased[iy*st*pw + tap + ox..][..n], inside the slices checked above; a unit with a zero
        // mask (past the end, or a tap row in the vertical padding) reads and writes nothing.
        unsafe {
            let mut acc = [_mm512_set1_ps(job.bias); 4];
            if job.accumulate {
                for u in 0..4 {
                    let old = _mm512_maskz_loadu_ps(mask[u], dst.as_ptr().add(oy[u] * ow + ox[u]));
                    acc[u] = _mm512_add_ps(acc[u], old);
                }
            }
            for ky in 0..s.kh {
                let mut rows = [phased; 4];
                let mut live = [0 as __mmask16; 4];
                for u in 0..4 {
                    let iy = (oy[u] * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                    if iy >= 0 && (iy as usize) < s.h {
                        rows[u] = phased.add(iy as usize * st * pw + ox[u]);
                        live[u] = mask[u];
                    }
                }
                for (kx, &tap) in job.tap_starts.iter().enumerate() {
                    let wv = _mm512_set1_ps(job.w[ky * s.kw + kx]);
                    for u in 0..4 {
                        let v = _mm512_maskz_loadu_ps(live[u], rows[u].add(tap));
                        acc[u] = _mm512_fmadd_ps(wv, v, acc[u]);
                    }
                }
            }
            for u in 0..4 {
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(oy[u] * ow + ox[u]), mask[u], acc[u]);
            }
        }
    }
}

/// 3x3 undilated, any stride: per 16-wide column block, the three input rows an output row needs
/// are held in registers as three shifted vectors each, and slide down (stride 1 loads one new
/// row per output row, stride 2 two): 3 (or 6) loads per 9 FMAs instead of 9. The activation is
/// applied in registers when it is None, Relu or Clip.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn compute_avx512_3x3(job: &mut Channel, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let s = job.s;
    let (st, pw, ow, oh) = (s.stride[1], job.pw, job.ow, job.oh);
    assert!(s.kh == 3 && s.kw == 3 && dst.len() >= oh * ow && job.w.len() >= 9);
    let chunks = ow.div_ceil(LANES);
    let (src, row_len): (&[f32], usize) = if job.direct {
        assert!(st <= 2 && job.plane.len() >= s.h * s.w);
        (job.plane, s.w)
    } else {
        phase_plane(s, job.plane, pw, job.phased);
        assert!(job.phased.len() >= s.h * st * pw);
        (&*job.phased, st * pw)
    };
    // The table's offsets and masks keep every read inside a source row (see `lane_table`).
    assert!(job.lanes.len() == chunks * 3);
    // Stride 2 read in place: inputs x0, x0 + 2, ... are the even lanes of two consecutive vectors.
    let pairs = job.direct && st == 2;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (lo, hi) = match job.act {
        Act::Relu => (_mm512_set1_ps(0.0), _mm512_set1_ps(f32::INFINITY)),
        Act::Clip { min, max } => (_mm512_set1_ps(min), _mm512_set1_ps(max)),
        _ => (_mm512_set1_ps(f32::NEG_INFINITY), _mm512_set1_ps(f32::INFINITY)),
    };
    let w: [__m512; 9] = std::array::from_fn(|i| _mm512_set1_ps(job.w[i]));
    let bias = _mm512_set1_ps(job.bias);
    let base = src.as_ptr();
    let (sy, top) = (s.stride[0] as isize, s.pads[0] as isize);
    for c in 0..chunks {
        let ox = c * LANES;
        let out_mask = lane_mask(0, (ow - ox).min(LANES) as isize) as __mmask16;
        let taps: [(isize, u32); 3] = job.lanes[c * 3..c * 3 + 3].try_into().expect("three taps");
        // SAFETY: a lane is read only under its tap mask, which admits exactly the positions
        // inside source row iy (direct: 0 <= x < w; phased: inside the padded row, checked in
        // `run`), and only for 0 <= iy < h; pointers are formed with wrapping arithmetic, so
        // masked-off lanes outside the slice are never dereferenced.
        let row = |iy: isize| -> [__m512; 3] {
            if iy < 0 || iy >= s.h as isize {
                return [_mm512_setzero_ps(); 3];
            }
            let r = base.wrapping_add(iy as usize * row_len);
            taps.map(|(off, m)| unsafe {
                let first = _mm512_maskz_loadu_ps(m as __mmask16, r.wrapping_offset(off));
                if pairs {
                    let second = _mm512_maskz_loadu_ps((m >> 16) as __mmask16, r.wrapping_offset(off + 16));
                    _mm512_permutex2var_ps(first, evens, second)
                } else {
                    first
                }
            })
        };
        let mut win = [row(-top), row(1 - top), row(2 - top)];
        for oy in 0..oh {
            let out = dst.as_mut_ptr().wrapping_add(oy * ow + ox);
            // Three chains (one per kernel row) that meet at the end.
            let mut acc = [bias, _mm512_setzero_ps(), _mm512_setzero_ps()];
            if job.accumulate {
                // SAFETY: out[oy*ow + ox..][..n] is inside `dst` (checked above) under the mask.
                acc[1] = unsafe { _mm512_maskz_loadu_ps(out_mask, out) };
            }
            for ky in 0..3 {
                for kx in 0..3 {
                    acc[ky] = _mm512_fmadd_ps(w[ky * 3 + kx], win[ky][kx], acc[ky]);
                }
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), acc[2]);
            // As `apply_inline` clamps: max then min (min > max gives max), and the sum as the
            // second operand, which these return when either is NaN, so NaN passes through.
            let v = _mm512_min_ps(hi, _mm512_max_ps(lo, sum));
            // SAFETY: as for the load above.
            unsafe { _mm512_mask_storeu_ps(out, out_mask, v) };
            let next = (oy as isize + 1) * sy - top;
            win = match sy {
                1 => [win[1], win[2], row(next + 2)],
                2 => [win[2], row(next + 1), row(next + 2)],
                _ => [row(next), row(next + 1), row(next + 2)],
            };
        }
    }
}

impl Channel<'_> {
    #[inline(always)]
    fn compute(&mut self, dst: &mut [f32]) {
        phase_plane(self.s, self.plane, self.pw, self.phased);
        let s = self.s;
        let (st, pw) = (s.stride[1], self.pw);
        for oy in 0..self.oh {
            let out = &mut dst[oy * self.ow..(oy + 1) * self.ow];
            let mut ox = 0;
            while ox < self.ow {
                let n = LANES.min(self.ow - ox);
                let mut acc = [self.bias; LANES];
                if self.accumulate {
                    for l in 0..n {
                        acc[l] += out[ox + l];
                    }
                }
                for ky in 0..s.kh {
                    let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                    if iy < 0 || iy as usize >= s.h {
                        continue;
                    }
                    let row = &self.phased[iy as usize * st * pw..(iy as usize + 1) * st * pw];
                    for (kx, &tap) in self.tap_starts.iter().enumerate() {
                        let start = tap + ox;
                        let wv = self.w[ky * s.kw + kx];
                        if n == LANES {
                            let src: &[f32; LANES] = row[start..start + LANES].try_into().expect("16 values");
                            for l in 0..LANES {
                                acc[l] += wv * src[l];
                            }
                        } else {
                            for l in 0..n {
                                acc[l] += wv * row[start + l];
                            }
                        }
                    }
                }
                out[ox..ox + n].copy_from_slice(&acc[..n]);
                ox += n;
            }
        }
    }
}
