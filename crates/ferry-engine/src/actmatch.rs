//! Recognizing an activation written as a small elementwise subgraph (importers decompose
//! LeakyRelu, Clip, HardSwish, Gelu, SiLU into core arithmetic, each in its own association).
//!
//! Rather than one structural pattern per spelling, the region of elementwise nodes that reads
//! only the value `x` and scalar constants is evaluated as a scalar function of `x` and compared
//! with each activation the kernels fuse, at many points. A region computing the same function
//! fuses whatever its association; one that computes anything else does not.

use crate::facts::Fact;
use crate::lower::Cx;
use ferry_ir::ops::{BinaryOp, UnaryOp};
use ferry_ir::{DType, Op, ValueId};
use ferry_kernels::Act;
use std::collections::HashMap;

/// The activation `x` flows through, the value it ends in, and the nodes that compute it.
pub(crate) struct Matched {
    pub act: Act,
    pub out: ValueId,
    pub nodes: Vec<usize>,
}

const MAX_REGION: usize = 12;
const WINDOW: usize = 48;

/// Finds the largest closed elementwise region starting at `x` that computes a known activation.
pub(crate) fn activation_after(cx: &Cx, x: ValueId, after_node: usize, taken: &[bool]) -> Option<Matched> {
    if cx.is_output[x] {
        return None;
    }
    let g = cx.g;
    let mut region: Vec<usize> = Vec::new();
    let mut inside: Vec<ValueId> = vec![x];
    let mut closed: Vec<(usize, ValueId)> = Vec::new();
    for n in after_node + 1..g.nodes.len().min(after_node + 1 + WINDOW) {
        if taken[n] || region.len() >= MAX_REGION {
            break;
        }
        let node = &g.nodes[n];
        let elementwise = matches!(node.op, Op::Unary(_) | Op::Binary(_) | Op::Where);
        let ins: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        let reads_region = ins.iter().any(|i| inside.contains(i));
        let rest_scalar = ins.iter().all(|i| inside.contains(i) || scalar_const(cx, *i).is_some());
        if !(elementwise && reads_region && rest_scalar && ins.len() == node.inputs.len()) {
            continue;
        }
        let Some(Some(out)) = node.outputs.first() else { continue };
        region.push(n);
        inside.push(*out);
        // Closed: every region value except `out` is read only inside the region.
        let escapes = |v: &ValueId| cx.is_output[*v] || cx.readers[*v].iter().any(|r| !region.contains(r));
        if inside.iter().filter(|v| **v != *out).all(|v| !escapes(v)) {
            closed.push((region.len(), *out));
        }
    }
    for (len, out) in closed.into_iter().rev() {
        let nodes = region[..len].to_vec();
        if cx.facts[out].static_f32().is_none() {
            continue;
        }
        if let Some(act) = identify(cx, x, &nodes, out) {
            return Some(Matched { act, out, nodes });
        }
    }
    None
}

fn scalar_const(cx: &Cx, v: ValueId) -> Option<f64> {
    match &cx.facts[v] {
        Fact::Const(t) if t.numel() == 1 && (t.dtype == DType::F32 || t.dtype == DType::Bool) => {
            t.to_f64_vec().ok().and_then(|v| v.first().copied())
        }
        _ => None,
    }
}

/// Evaluates the region at `t`; None when it has an op the evaluator does not know.
fn eval(cx: &Cx, x: ValueId, nodes: &[usize], out: ValueId, t: f64) -> Option<f64> {
    let mut vals: HashMap<ValueId, f64> = HashMap::new();
    vals.insert(x, t);
    for n in nodes {
        let node = &cx.g.nodes[*n];
        let arg = |k: usize| -> Option<f64> {
            let v = node.inputs.get(k).copied().flatten()?;
            vals.get(&v).copied().or_else(|| scalar_const(cx, v))
        };
        let r = match &node.op {
            Op::Unary(u) => unary(*u, arg(0)?)?,
            Op::Binary(b) => binary(*b, arg(0)?, arg(1)?)?,
            Op::Where => {
                if arg(0)? != 0.0 {
                    arg(1)?
                } else {
                    arg(2)?
                }
            }
            _ => return None,
        };
        vals.insert(node.outputs[0]?, r);
    }
    vals.get(&out).copied()
}

fn unary(u: UnaryOp, a: f64) -> Option<f64> {
    Some(match u {
        UnaryOp::Relu => a.max(0.0),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-a).exp()),
        UnaryOp::Tanh => a.tanh(),
        UnaryOp::Erf => erf(a),
        UnaryOp::Exp => a.exp(),
        UnaryOp::Neg => -a,
        UnaryOp::Abs => a.abs(),
        UnaryOp::Sqrt => a.sqrt(),
        UnaryOp::Reciprocal => 1.0 / a,
        UnaryOp::Softplus => a.exp().ln_1p(),
        _ => return None,
    })
}

fn binary(b: BinaryOp, a: f64, c: f64) -> Option<f64> {
    let bool = |p: bool| if p { 1.0 } else { 0.0 };
    Some(match b {
        BinaryOp::Add => a + c,
        BinaryOp::Sub => a - c,
        BinaryOp::Mul => a * c,
        BinaryOp::Div => a / c,
        BinaryOp::Pow => a.powf(c),
        BinaryOp::Max => a.max(c),
        BinaryOp::Min => a.min(c),
        BinaryOp::Less => bool(a < c),
        BinaryOp::LessOrEqual => bool(a <= c),
        BinaryOp::Greater => bool(a > c),
        BinaryOp::GreaterOrEqual => bool(a >= c),
        _ => return None,
    })
}

/// erf to about 1e-12 (series near 0, continued fraction beyond): only used to match functions.
pub(crate) fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // Maclaurin series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = x;
        let mut sum = x;
        for n in 1..80 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc by Lentz's continued fraction.
        let z = x.abs();
        let mut f = z;
        let (mut c, mut d) = (z, 0.0);
        for n in 1..200 {
            let a = n as f64 / 2.0;
            d = 1.0 / (z + a * d);
            c = z + a / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        let erfc = (-z * z).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc).copysign(x)
    }
}

fn reference(act: Act, t: f64) -> f64 {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    match act {
        Act::None => t,
        Act::Relu => t.max(0.0),
        Act::LeakyRelu(a) => {
            if t >= 0.0 {
                t
            } else {
                a as f64 * t
            }
        }
        Act::Clip { min, max } => t.max(min as f64).min(max as f64),
        Act::Sigmoid => sig(t),
        Act::Tanh => t.tanh(),
        Act::Gelu => 0.5 * t * (1.0 + erf(t / std::f64::consts::SQRT_2)),
        Act::GeluTanh => 0.5 * t * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (t + 0.044715 * t * t * t)).tanh()),
        Act::HardSigmoid { alpha, beta } => (alpha as f64 * t + beta as f64).clamp(0.0, 1.0),
        Act::HardSwish => t * (t / 6.0 + 0.5).clamp(0.0, 1.0),
        Act::Silu => t * sig(t),
    }
}

fn identify(cx: &Cx, x: ValueId, nodes: &[usize], out: ValueId) -> Option<Act> {
    let f = |t: f64| eval(cx, x, nodes, out, t);
    // Clip bounds; an unbounded side is infinite (the region passes 1e4 through).
    let (lo, hi) = (f(-1e4)?, f(1e4)?);
    let lo = if lo == -1e4 { f64::NEG_INFINITY } else { lo };
    let hi = if hi == 1e4 { f64::INFINITY } else { hi };
    let slope_neg = -f(-1.0)?;
    let at0 = f(0.0)?;
    let slope0 = (f(0.01)? - at0) / 0.01;
    let candidates = [
        Act::Relu,
        Act::LeakyRelu(slope_neg as f32),
        Act::Clip { min: lo as f32, max: hi as f32 },
        Act::Sigmoid,
        Act::Tanh,
        Act::Gelu,
        Act::GeluTanh,
        Act::HardSigmoid { alpha: slope0 as f32, beta: at0 as f32 },
        Act::HardSwish,
        Act::Silu,
    ];
    let points: Vec<f64> = (0..=120).map(|i| -9.0 + i as f64 * 0.15).chain([-1e4, -50.0, 50.0, 1e4]).collect();
    let values: Vec<f64> = points.iter().map(|t| f(*t)).collect::<Option<_>>()?;
    candidates.into_iter().find(|act| {
        let finite_params = match act {
            Act::Clip { min, max } => min.is_finite() || max.is_finite(),
            Act::LeakyRelu(a) => a.is_finite() && *a != 0.0,
            Act::HardSigmoid { alpha, beta } => alpha.is_finite() && beta.is_finite(),
            _ => true,
        };
        finite_params
            && points.iter().zip(&values).all(|(t, v)| {
                let want = reference(*act, *t);
                (v - want).abs() <= 1e-6 * (1.0 + want.abs())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun, table 7.1.
        for (x, want) in [(0.5, 0.5204998778), (1.0, 0.8427007929), (2.0, 0.9953222650), (3.0, 0.9999779095)] {
            assert!((erf(x) - want).abs() < 1e-9, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-9);
        }
    }
}
