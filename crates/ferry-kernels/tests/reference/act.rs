use crate::util::{Rng, assert_close, pools};
use ferry_kernels::{Act, act_inplace};

/// erf in f64: its Taylor series below 2.5 (terms shrink fast enough that f64 keeps ~1e-14), the
/// continued fraction for erfc above.
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        let (mut term, mut sum) = (x, x);
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let sign = x.signum();
        sign * (1.0 - erfc_large(x.abs()))
    }
}

/// erfc(x) for x >= 2.5 by its continued fraction, evaluated from the tail.
pub fn erfc_large(x: f64) -> f64 {
    let mut f = x;
    for n in (1..200).rev() {
        f = x + (n as f64 / 2.0) / f;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

fn erfc(x: f64) -> f64 {
    if x >= 2.5 { erfc_large(x) } else { 1.0 - erf(x) }
}

pub fn reference(act: Act, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match act {
        Act::None => x,
        Act::Relu => x.max(0.0),
        Act::LeakyRelu(a) => {
            if x >= 0.0 {
                x
            } else {
                a as f64 * x
            }
        }
        Act::Clip { min, max } => x.max(min as f64).min(max as f64),
        Act::Sigmoid => sigmoid(x),
        Act::Tanh => x.tanh(),
        Act::Gelu => 0.5 * x * erfc(-x / std::f64::consts::SQRT_2),
        // 0.5 (1 + tanh u) = sigmoid(2u): the same function without f64's own cancellation.
        Act::GeluTanh => x * sigmoid(2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)),
        Act::HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
        Act::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Act::Silu => x * sigmoid(x),
    }
}

/// How much `act` magnifies a relative error in its input at `x` (|x f'(x) / f(x)|, bounded above):
/// in the Gelu tails the result is exp(-x^2/2)-small, and an f32 argument alone carries that much error.
fn condition(act: Act, x: f64) -> f64 {
    match act {
        Act::Gelu if x < 0.0 => 1.0 + x * x,
        Act::GeluTanh if x < 0.0 => 1.0 + x.abs() * (1.6 + 0.22 * x * x),
        // alpha x + beta cancels near the lower knee.
        Act::HardSigmoid { alpha, beta } => {
            1.0 + (alpha as f64 * x).abs() / (alpha as f64 * x + beta as f64).abs().max(1e-30)
        }
        Act::HardSwish => 1.0 + (x / 6.0).abs() / (x / 6.0 + 0.5).abs().max(1e-30),
        _ => 1.0,
    }
}

const ACTS: &[Act] = &[
    Act::None,
    Act::Relu,
    Act::LeakyRelu(0.1),
    Act::Clip { min: 0.0, max: 6.0 },
    Act::Sigmoid,
    Act::Tanh,
    Act::Gelu,
    Act::GeluTanh,
    Act::HardSigmoid { alpha: 0.2, beta: 0.5 },
    Act::HardSwish,
    Act::Silu,
];

/// Inputs over the whole useful range: random values scaled up to +-30, plus edge values.
fn inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|i| rng.f32() * [0.5, 3.0, 10.0, 30.0][i % 4]).collect();
    x.extend([0.0, -0.0, 1e-8, -1e-8, 88.0, -88.0, 100.0, -100.0, 1e30, -1e30, -5.0, -9.0, -12.0, 3.0, -3.0]);
    x
}

#[test]
fn activations_match_f64_references() {
    let mut rng = Rng::new(2);
    for pool in pools() {
        // Long enough to take the parallel path, with a ragged tail for the vector loops.
        for n in [1, 7, 16, 33, 100_003] {
            let x = inputs(&mut rng, n);
            for &act in ACTS {
                let want: Vec<f64> = x.iter().map(|&v| reference(act, v as f64)).collect();
                let mut got = x.clone();
                act_inplace(&pool, act, &mut got);
                let scale: Vec<f64> = x.iter().zip(&want).map(|(&v, w)| w.abs() * condition(act, v as f64)).collect();
                assert_close(&format!("{act:?} n={n}"), &got, &want, &scale, 2e-6);
            }
        }
    }
}

#[test]
fn the_erf_reference_agrees_with_known_values() {
    // Known values of erf (Abramowitz & Stegun table 7.1) guard the reference itself.
    for (x, v) in [(0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0), (3.0, 0.999_977_909_5)] {
        assert!((erf(x) - v).abs() < 1e-9, "erf({x}) = {}", erf(x));
    }
    assert!((erfc_large(4.0) - 1.541_725_790_0e-8).abs() < 1e-16);
}
