//! Register-tile micro-kernels and the run-time choice between them.
//!
//! A micro-kernel multiplies a packed `MR x kc` panel of A (for each p, MR values of column p) by a
//! packed `kc x NR` panel of B (for each p, NR values of row p) and stores or adds the `MR x NR`
//! result to C at row stride `rs_c`. One kernel is chosen per process from the CPU's features, so the
//! packed layouts (which depend on MR and NR) stay consistent.

use crate::isa::{Isa, isa};
use std::sync::OnceLock;

/// `kernel(kc, a_panel, b_panel, c, rs_c, add, ep)`:
/// `c[i*rs_c + j] = clamp((c if add) + sum_p a[p*MR + i] * b[p*NR + j] + bias_row[i] + bias_col[j])`
/// (bias and clamp only with `ep`).
///
/// # Safety
/// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` reads, and `c` for reads and writes of
/// `MR` rows of `NR` elements at stride `rs_c`; a non-null `ep.bias_row` for `MR` reads and
/// `ep.bias_col` for `NR`; the CPU must support the kernel's features.
pub(crate) type MicroKernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool, Option<&TileEp>);

/// The part of an epilogue a micro-kernel applies in registers, before its single store: biases
/// (null when absent) and a clamp to `[lo, hi]` (which covers no activation, Relu and Clip). NaN
/// passes through the clamp.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileEp {
    pub bias_row: *const f32,
    pub bias_col: *const f32,
    pub lo: f32,
    pub hi: f32,
}

#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    pub mr: usize,
    pub nr: usize,
    pub run: MicroKernel,
    pub name: &'static str,
}

/// The fastest kernel this CPU supports (decided once).
pub(crate) fn kernel() -> Kernel {
    static CHOICE: OnceLock<Kernel> = OnceLock::new();
    *CHOICE.get_or_init(detect)
}

fn detect() -> Kernel {
    for_isa(isa())
}

fn for_isa(level: Isa) -> Kernel {
    match level {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Kernel { mr: 6, nr: 32, run: x86::kernel_6x32_avx512, name: "avx512 6x32" },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kernel { mr: 6, nr: 16, run: x86::kernel_6x16_avx2, name: "avx2+fma 6x16" },
        _ => Kernel { mr: 4, nr: 8, run: kernel_4x8_generic, name: "generic 4x8" },
    }
}

/// Every kernel this CPU can run (the chosen one first), so tests can cover the fallbacks too.
#[cfg(test)]
pub(crate) fn available() -> Vec<Kernel> {
    crate::isa::available().into_iter().map(for_isa).collect()
}

/// The name of the chosen kernel (for benchmarks and logs).
pub fn kernel_name() -> &'static str {
    kernel().name
}

/// Portable fallback; plain loops that the compiler vectorizes for the baseline ISA.
///
/// # Safety
/// See [`MicroKernel`].
unsafe fn kernel_4x8_generic(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    add: bool,
    ep: Option<&TileEp>,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the caller guarantees kc*MR reads from a and kc*NR reads from b.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
    for p in 0..kc {
        let (ap, bp) = (&a[p * MR..p * MR + MR], &b[p * NR..p * NR + NR]);
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += ap[i] * bp[j];
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            // SAFETY: the caller guarantees MR rows of NR elements at stride rs_c.
            let dst = unsafe { &mut *c.add(i * rs_c + j) };
            let mut v = if add { *dst + acc[i][j] } else { acc[i][j] };
            if let Some(e) = ep {
                // SAFETY: non-null biases hold MR and NR values (the caller guarantees).
                unsafe {
                    if !e.bias_row.is_null() {
                        v += *e.bias_row.add(i);
                    }
                    if !e.bias_col.is_null() {
                        v += *e.bias_col.add(j);
                    }
                }
                v = if v < e.lo { e.lo } else { v };
                v = if v > e.hi { e.hi } else { v };
            }
            *dst = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 6 rows x 32 columns in 12 zmm accumulators: per step 2 loads of B, 6 broadcasts of A.
    ///
    /// # Safety
    /// See [`super::MicroKernel`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_6x32_avx512(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        add: bool,
        ep: Option<&super::TileEp>,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; 6];
        // SAFETY (whole body): every read of a is below kc*6 and of b below kc*32, every access of c
        // is in the 6 x 32 tile at stride rs_c, as the caller guarantees.
        unsafe {
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(p * 32));
                let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
                let ap = a.add(p * 6);
                for i in 0..6 {
                    let ai = _mm512_set1_ps(*ap.add(i));
                    acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                }
            }
            let cols = ep.map(|e| {
                let bias = |h: usize| {
                    if e.bias_col.is_null() { _mm512_setzero_ps() } else { _mm512_loadu_ps(e.bias_col.add(h * 16)) }
                };
                [bias(0), bias(1)]
            });
            for i in 0..6 {
                let row = c.add(i * rs_c);
                for h in 0..2 {
                    let dst = row.add(h * 16);
                    let mut v = if add { _mm512_add_ps(_mm512_loadu_ps(dst), acc[i][h]) } else { acc[i][h] };
                    if let (Some(e), Some(cols)) = (ep, cols) {
                        if !e.bias_row.is_null() {
                            v = _mm512_add_ps(v, _mm512_set1_ps(*e.bias_row.add(i)));
                        }
                        v = _mm512_add_ps(v, cols[h]);
                        // max/min return their second operand when either is NaN: NaN survives.
                        v = _mm512_min_ps(_mm512_set1_ps(e.hi), _mm512_max_ps(_mm512_set1_ps(e.lo), v));
                    }
                    _mm512_storeu_ps(dst, v);
                }
            }
        }
    }

    /// 6 rows x 16 columns in 12 ymm accumulators: per step 2 loads of B, 6 broadcasts of A.
    ///
    /// # Safety
    /// See [`super::MicroKernel`]; the CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16_avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        add: bool,
        ep: Option<&super::TileEp>,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        // SAFETY (whole body): as for the AVX-512 kernel, with 16 columns.
        unsafe {
            for p in 0..kc {
                let b0 = _mm256_loadu_ps(b.add(p * 16));
                let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
                let ap = a.add(p * 6);
                for i in 0..6 {
                    let ai = _mm256_broadcast_ss(&*ap.add(i));
                    acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
                }
            }
            let cols = ep.map(|e| {
                let bias = |h: usize| {
                    if e.bias_col.is_null() { _mm256_setzero_ps() } else { _mm256_loadu_ps(e.bias_col.add(h * 8)) }
                };
                [bias(0), bias(1)]
            });
            for i in 0..6 {
                let row = c.add(i * rs_c);
                for h in 0..2 {
                    let dst = row.add(h * 8);
                    let mut v = if add { _mm256_add_ps(_mm256_loadu_ps(dst), acc[i][h]) } else { acc[i][h] };
                    if let (Some(e), Some(cols)) = (ep, cols) {
                        if !e.bias_row.is_null() {
                            v = _mm256_add_ps(v, _mm256_set1_ps(*e.bias_row.add(i)));
                        }
                        v = _mm256_add_ps(v, cols[h]);
                        // max/min return their second operand when either is NaN: NaN survives.
                        v = _mm256_min_ps(_mm256_set1_ps(e.hi), _mm256_max_ps(_mm256_set1_ps(e.lo), v));
                    }
                    _mm256_storeu_ps(dst, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::available;

    #[test]
    fn every_available_micro_kernel_matches_a_naive_product() {
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for kern in available() {
            let (mr, nr) = (kern.mr, kern.nr);
            for kc in [1, 2, 7, 64, 300] {
                let a: Vec<f32> = (0..kc * mr).map(|_| next()).collect();
                let b: Vec<f32> = (0..kc * nr).map(|_| next()).collect();
                for add in [false, true] {
                    // A row stride wider than the tile, with sentinels that must survive.
                    let rs = nr + 3;
                    let c0: Vec<f32> = (0..mr * rs).map(|_| next()).collect();
                    let mut c = c0.clone();
                    // SAFETY: the panels hold kc*mr and kc*nr values, c holds mr rows at stride rs;
                    // `available` lists only kernels this CPU supports.
                    unsafe { (kern.run)(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), rs, add, None) };
                    for i in 0..mr {
                        for j in 0..rs {
                            let got = c[i * rs + j];
                            if j >= nr {
                                assert_eq!(got, c0[i * rs + j], "{} wrote outside the tile", kern.name);
                                continue;
                            }
                            let mut want = if add { c0[i * rs + j] as f64 } else { 0.0 };
                            let mut mag = want.abs();
                            for p in 0..kc {
                                want += a[p * mr + i] as f64 * b[p * nr + j] as f64;
                                mag += (a[p * mr + i] as f64 * b[p * nr + j] as f64).abs();
                            }
                            assert!(
                                (got as f64 - want).abs() <= 1e-5 * mag.max(1e-6),
                                "{} kc={kc}: {got} vs {want}",
                                kern.name
                            );
                        }
                    }
                }
            }
        }
    }
}
