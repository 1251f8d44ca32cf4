//! Stride-2 copies (`dst[i] = src[2 i]`), which stride-2 convolutions need for every window row.
//! The compiler leaves this loop scalar; with AVX-512 one permute picks 16 even elements out of
//! two vectors.

#[cfg(target_arch = "x86_64")]
use crate::isa::{Isa, isa};

/// `dst[i] = src[2 * i]` for every i; `src` must hold at least `2 * dst.len() - 1` values.
pub(crate) fn copy_even(dst: &mut [f32], src: &[f32]) {
    if dst.is_empty() {
        return;
    }
    assert!(src.len() > 2 * (dst.len() - 1), "stride-2 copy reads past its source");
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        // SAFETY: isa() reports AVX-512 only when the CPU has it; lengths checked above.
        unsafe { copy_even_avx512(dst, src) };
        return;
    }
    for (d, pair) in dst.iter_mut().zip(src.chunks(2)) {
        *d = pair[0];
    }
}

/// # Safety
/// The CPU must support AVX-512F; `src.len() > 2 * (dst.len() - 1)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_even_avx512(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mask = |n: usize| -> __mmask16 { if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 } };
    let mut i = 0;
    while i < dst.len() {
        let n = (dst.len() - i).min(16);
        let base = 2 * i;
        let avail = src.len() - base;
        // SAFETY: the masks limit the loads to src[base..src.len()] and the store to
        // dst[i..i + n]; both are inside the slices.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(mask(avail), src.as_ptr().add(base));
            let hi = if avail > 16 {
                _mm512_maskz_loadu_ps(mask(avail - 16), src.as_ptr().add(base + 16))
            } else {
                _mm512_setzero_ps()
            };
            let picked = _mm512_permutex2var_ps(lo, evens, hi);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask(n), picked);
        }
        i += n;
    }
}

#[cfg(test)]
mod tests {
    use super::copy_even;

    #[test]
    fn copy_even_picks_every_other_value_for_every_length() {
        for len in 0..80 {
            let src: Vec<f32> = (0..(2 * len).max(1) - 1).map(|v| v as f32).collect();
            let mut dst = vec![-1.0f32; len];
            copy_even(&mut dst, &src);
            let want: Vec<f32> = (0..len).map(|i| (2 * i) as f32).collect();
            assert_eq!(dst, want, "length {len}");
            // A longer source is fine too.
            let long: Vec<f32> = (0..2 * len + 5).map(|v| v as f32).collect();
            copy_even(&mut dst, &long);
            assert_eq!(dst, want, "length {len}, long source");
        }
    }
}
