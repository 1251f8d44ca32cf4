//! Element-wise activations, fused into GEMM/conv epilogues or run on their own.

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

/// Applies `act` to a slice on the calling thread.
pub(crate) fn apply_slice(act: Act, x: &mut [f32]) {
    match act {
        Act::None => {}
        Act::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        _ => x.iter_mut().for_each(|v| *v = apply(act, *v)),
    }
}

/// One element.
pub(crate) fn apply(act: Act, x: f32) -> f32 {
    match act {
        Act::None => x,
        Act::Relu => x.max(0.0),
        Act::LeakyRelu(alpha) => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        Act::Clip { min, max } => x.max(min).min(max),
        Act::Sigmoid => sigmoid(x),
        Act::Tanh => x.tanh(),
        // The scaling happens in f64: erfc's tail magnifies the rounding of its argument ~2z^2 times.
        Act::Gelu => (0.5 * x as f64 * erfc(-x as f64 * std::f64::consts::FRAC_1_SQRT_2)) as f32,
        Act::GeluTanh => {
            // 0.5 (1 + tanh u) = sigmoid(2u), which does not cancel for large negative x.
            let inner = 0.797_884_6 * (x + 0.044715 * x * x * x);
            x * sigmoid(2.0 * inner)
        }
        Act::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        Act::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Act::Silu => x * sigmoid(x),
    }
}

fn sigmoid(x: f32) -> f32 {
    // exp of a non-positive argument never overflows, so both branches stay finite.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The complementary error function with a relative error below ~1.2e-7 everywhere (a Chebyshev
/// fit of `erfc(z) exp(z^2)`, evaluated in f64). Gelu uses `erfc(-x/sqrt 2)` rather than `1 + erf`,
/// which keeps the relative error small for large negative `x` too.
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}
