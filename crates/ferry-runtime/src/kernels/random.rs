//! RandomNormal / RandomUniform (and their *Like forms). Deterministic: the same seed gives the
//! same numbers on every run and platform; without a seed a fixed default seed is used, so a
//! model runs reproducibly (ONNX leaves the sequence unspecified, so no other runtime matches it).

use super::{KernelResult, array};
use crate::Value;
use crate::array::Array;
use ferry_ir::DType;
use ndarray::{ArrayD, IxDyn};

/// The seed used when the node has none.
pub const DEFAULT_SEED: u64 = 0x5eed_f322_7e12_0001;

/// SplitMix64: small, fast, and good enough for test data and dropout-like uses.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn seed_of(seed: Option<f32>) -> u64 {
    seed.map_or(DEFAULT_SEED, |s| s.to_bits() as u64 ^ DEFAULT_SEED)
}

fn out_shape(shape: &Option<Vec<u64>>, args: &[Option<Value>]) -> KernelResult<Vec<usize>> {
    let dims: Vec<u64> = match shape {
        Some(s) => s.clone(),
        None => array(args, 0)?.shape().iter().map(|d| *d as u64).collect(),
    };
    let n = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).ok_or("the shape overflows")?;
    if n > (1 << 34) {
        return Err(format!("refusing to generate {n} random numbers"));
    }
    Ok(dims.iter().map(|d| *d as usize).collect())
}

fn finish(dtype: DType, shape: &[usize], values: Vec<f64>) -> KernelResult<Array> {
    if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!("random values of type {dtype} are not supported (float types only)"));
    }
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| e.to_string())?)
}

pub fn normal(
    shape: &Option<Vec<u64>>,
    dtype: DType,
    mean: f32,
    scale: f32,
    seed: Option<f32>,
    args: &[Option<Value>],
) -> KernelResult<Array> {
    let shape = out_shape(shape, args)?;
    let mut rng = Rng::new(seed_of(seed));
    let n = shape.iter().product();
    let values = (0..n).map(|_| mean as f64 + scale as f64 * rng.normal()).collect();
    finish(dtype, &shape, values)
}

pub fn uniform(
    shape: &Option<Vec<u64>>,
    dtype: DType,
    low: f32,
    high: f32,
    seed: Option<f32>,
    args: &[Option<Value>],
) -> KernelResult<Array> {
    let shape = out_shape(shape, args)?;
    let mut rng = Rng::new(seed_of(seed));
    let n = shape.iter().product();
    let (lo, hi) = (low as f64, high as f64);
    let values = (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect();
    finish(dtype, &shape, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ops_are_deterministic_and_in_range() {
        let s = Some(vec![1000]);
        let a = uniform(&s, DType::F32, -2.0, 3.0, Some(1.0), &[]).unwrap();
        let b = uniform(&s, DType::F32, -2.0, 3.0, Some(1.0), &[]).unwrap();
        let c = uniform(&s, DType::F32, -2.0, 3.0, Some(2.0), &[]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.to_f64().unwrap().iter().all(|v| (-2.0..3.0).contains(v)));
        let n = normal(&s, DType::F64, 5.0, 2.0, None, &[]).unwrap().to_f64().unwrap();
        let mean = n.iter().sum::<f64>() / 1000.0;
        assert!((mean - 5.0).abs() < 0.3, "{mean}");
        assert_eq!(n, normal(&s, DType::F64, 5.0, 2.0, None, &[]).unwrap().to_f64().unwrap());
    }
}
