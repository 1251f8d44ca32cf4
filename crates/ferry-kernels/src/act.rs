//! Element-wise activations, fused into GEMM/conv epilogues or run on their own.

use crate::fastmath;
use crate::isa::multiversion;
use crate::pool::{PAR_MIN_ELEMS, Pool};

/// An activation applied element-wise (ONNX semantics).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Act {
    #[default]
    None,
    Relu,
    /// `x` if `x >= 0`, else `alpha * x`.
    LeakyRelu(f32),
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `x * sigmoid(x)`.
    Silu,
}

/// Applies `act` to every element of `x`, in place.
pub fn act_inplace(pool: &Pool, act: Act, x: &mut [f32]) {
    if act == Act::None {
        return;
    }
    if x.len() < PAR_MIN_ELEMS || pool.threads() == 1 {
        apply_slice(act, x);
    } else {
        let chunk = pool.chunk_for(x.len(), PAR_MIN_ELEMS / 4);
        pool.for_each_chunk_mut(x, chunk, |_, c| apply_slice(act, c));
    }
}

multiversion! {
    /// Applies `act` to a slice on the calling thread (one vectorized loop per activation).
    pub(crate) fn apply_slice / apply_slice_with(act: Act, x: &mut [f32]) {
        apply_inline(act, x)
    }
}

/// The body of [`apply_slice`], for other multiversioned loops to inline.
#[inline(always)]
pub(crate) fn apply_inline(act: Act, x: &mut [f32]) {
    match act {
        Act::None => {}
        Act::Relu => x.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
        Act::LeakyRelu(alpha) => x.iter_mut().for_each(|v| *v = if *v < 0.0 { alpha * *v } else { *v }),
        Act::Clip { min, max } => x.iter_mut().for_each(|v| {
            // NaN passes through; with min > max everything becomes max (as numpy's clip does).
            let t = if *v < min { min } else { *v };
            *v = if t > max { max } else { t };
        }),
        Act::Sigmoid => x.iter_mut().for_each(|v| *v = fastmath::sigmoid(*v)),
        Act::Tanh => x.iter_mut().for_each(|v| *v = fastmath::tanh(*v)),
        Act::Gelu => x.iter_mut().for_each(|v| *v = gelu(*v)),
        Act::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Act::HardSigmoid { alpha, beta } => x.iter_mut().for_each(|v| *v = (alpha * *v + beta).clamp(0.0, 1.0)),
        Act::HardSwish => x.iter_mut().for_each(|v| *v *= (*v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)),
        Act::Silu => x.iter_mut().for_each(|v| *v *= fastmath::sigmoid(*v)),
    }
}

/// `0.5 x erfc(-x / sqrt 2)`: the same as `0.5 x (1 + erf(x / sqrt 2))` without cancelling for
/// large negative x.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * fastmath::erfc(-x * std::f32::consts::FRAC_1_SQRT_2)
}

/// `0.5 (1 + tanh u) = sigmoid(2u)`, which does not cancel for large negative x.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044715 * x * x * x);
    x * fastmath::sigmoid(2.0 * u)
}

#[cfg(test)]
mod tests {
    use super::{Act, apply_slice_with};

    /// Every ISA level computes the same activations (the dispatch is invisible): the integration
    /// tests check the chosen level against f64 references, this checks the others against it.
    #[test]
    fn every_isa_level_agrees() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).chain([f32::NAN, 1e30, -1e30]).collect();
        let acts = [Act::Relu, Act::Sigmoid, Act::Tanh, Act::Gelu, Act::GeluTanh, Act::Silu, Act::HardSwish];
        for act in acts {
            let levels = crate::isa::available();
            let mut first = x.clone();
            apply_slice_with(levels[0], act, &mut first);
            for &level in &levels[1..] {
                let mut got = x.clone();
                apply_slice_with(level, act, &mut got);
                for (i, (a, b)) in first.iter().zip(&got).enumerate() {
                    let same = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs();
                    assert!(same, "{act:?} {level:?} element {i}: {b} vs {a}");
                }
            }
        }
    }
}
