//! Depthwise convolution (one filter per channel) as a direct loop: a GEMM of one row per channel
//! would be all overhead.
//!
//! Each channel's input is first copied into a zero-padded plane split by column phase (column x of
//! the padded row goes to phase `x % stride_w`, position `x / stride_w`), so every tap reads a
//! contiguous run of inputs for consecutive outputs, whatever the stride, and needs no bounds tests.
//! Outputs are then computed 16 at a time in a small array the compiler keeps in vector registers.

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
    let per_task = pool.chunk_for(s.c_out, (crate::pool::PAR_MIN_ELEMS / 4 / ohw.max(1)).max(1));
    let isa = isa();
    // Where tap column kx starts within a phased row (phase offset plus position).
    let padded_w = s.w + s.pads[1] + s.pads[3];
    let pw = padded_w.div_ceil(s.stride[1]);
    let tap_starts: Vec<usize> =
        (0..s.kw).map(|kx| (kx * s.dilation[1] % s.stride[1]) * pw + kx * s.dilation[1] / s.stride[1]).collect();
    pool.for_each_chunk_mut(out, per_task * ohw, |t, chunk| {
        let mut phased = PLANE.with(|p| std::mem::take(&mut *p.borrow_mut()));
        // Zero once per task: channels overwrite the same interior positions, padding stays zero.
        phased.clear();
        phased.resize(s.h * s.stride[1] * pw, 0.0);
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
            };
            isa.run(&mut job, dst);
            apply_slice(act, dst);
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
}

impl Isa {
    fn run(self, job: &mut Channel, dst: &mut [f32]) {
        match self {
            // SAFETY: `isa()` returns a level only when the CPU has its features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { compute_avx2(job, dst) },
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
