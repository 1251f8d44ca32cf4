//! Random data and comparison helpers.

use ferry_kernels::Pool;

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Pools of 1, 2 and 3 threads (3 exercises uneven splits on any machine).
pub fn pools() -> Vec<Pool> {
    vec![Pool::new(1), Pool::new(2), Pool::new(3)]
}

/// Asserts `got[i]` is within `rtol` of `want[i]`, relative to `max(|want[i]|, scale[i])`, where
/// `scale` is the magnitude of the terms that were summed (so cancellation does not demand more
/// precision than f32 sums have).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], scale: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let (g, w) = (got[i] as f64, want[i]);
        if g.is_nan() && w.is_nan() {
            continue;
        }
        // The absolute floor covers results that underflow f32 (they are 1e-38 and below).
        let tol = rtol * w.abs().max(scale[i]) + 1e-30;
        assert!((g - w).abs() <= tol, "{what}: element {i}: got {g}, want {w} (tolerance {tol:e})");
    }
}
