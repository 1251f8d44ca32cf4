//! Elementwise and broadcasting kernels. Floats compute in f64 and round once to the element
//! type (exact for + - * / of f32/f16, more accurate than the type for the rest); integers
//! compute in i64 with wrapping and truncate to their width, as C and ONNX do.

use crate::KernelResult;
use crate::array::Array;
use ferry_ir::DType;
use ferry_ir::ops::{BinaryOp, UnaryOp};
use ndarray::{ArrayD, IxDyn, Zip};

pub fn broadcast_shape(a: &[usize], b: &[usize]) -> KernelResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], i: usize| if i < rank - s.len() { 1 } else { s[i - (rank - s.len())] };
    (0..rank)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(format!("cannot broadcast shapes {a:?} and {b:?} ({x} vs {y})")),
        })
        .collect()
}

fn broadcast<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> KernelResult<ArrayD<T>> {
    a.broadcast(IxDyn(shape))
        .map(|v| v.to_owned())
        .ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", a.shape()))
}

fn zip2<A: Clone, B: Clone, C>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> C) -> KernelResult<ArrayD<C>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let (a, b) = (broadcast(a, &shape)?, broadcast(b, &shape)?);
    Ok(Zip::from(&a).and(&b).map_collect(|x, y| f(x.clone(), y.clone())))
}

pub fn unary(op: UnaryOp, x: &Array) -> KernelResult<Array> {
    use UnaryOp::*;
    let dtype = x.dtype();
    if let Array::Bool(b) = x {
        return match op {
            Not => Ok(Array::Bool(b.mapv(|v| !v))),
            _ => Err(format!("{op:?} does not take bool")),
        };
    }
    if op == IsNaN {
        return Ok(Array::Bool(x.to_f64()?.mapv(f64::is_nan)));
    }
    if dtype.is_int() {
        let v = x.to_i64()?;
        let r = match op {
            Abs => v.mapv(i64::wrapping_abs),
            Neg => v.mapv(i64::wrapping_neg),
            Sign => v.mapv(i64::signum),
            Relu => v.mapv(|x| x.max(0)),
            BitwiseNot => v.mapv(|x| !x),
            Floor | Ceil | Round => v,
            _ => return Err(format!("{op:?} does not take {dtype}")),
        };
        return Array::from_i64(dtype, r);
    }
    let v = x.to_f64()?;
    let f: fn(f64) -> f64 = match op {
        Abs => f64::abs,
        Neg => |x| -x,
        Floor => f64::floor,
        Ceil => f64::ceil,
        Round => f64::round_ties_even,
        Sqrt => f64::sqrt,
        Reciprocal => |x| 1.0 / x,
        Exp => f64::exp,
        Log => f64::ln,
        Sin => f64::sin,
        Cos => f64::cos,
        Tan => f64::tan,
        Asin => f64::asin,
        Acos => f64::acos,
        Atan => f64::atan,
        Sinh => f64::sinh,
        Cosh => f64::cosh,
        Tanh => f64::tanh,
        Asinh => f64::asinh,
        Acosh => f64::acosh,
        Atanh => f64::atanh,
        Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
        Erf => erf,
        Sign => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        Relu => |x| if x < 0.0 { 0.0 } else { x },
        Softplus => |x| if x > 30.0 { x } else { x.exp().ln_1p() },
        Not | BitwiseNot | IsNaN => return Err(format!("{op:?} does not take {dtype}")),
    };
    Array::from_f64(dtype, v.mapv(f))
}

/// The error function (Abramowitz-Stegun 7.1.26 is too coarse; this is the W. J. Cody-style
/// rational approximation via erfc's continued fraction, accurate to ~1e-15).
fn erf(x: f64) -> f64 {
    // Series for small |x|, complementary continued fraction otherwise.
    if x.abs() < 2.5 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let ax = x.abs();
        // Lentz's method for erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
        (1.0 - erfc).copysign(x)
    }
}

pub fn binary(op: BinaryOp, a: &Array, b: &Array) -> KernelResult<Array> {
    use BinaryOp::*;
    let dtype = a.dtype();
    let comparison = matches!(op, Equal | Less | LessOrEqual | Greater | GreaterOrEqual);
    match (a, b) {
        (Array::Bool(x), Array::Bool(y)) => {
            let f: fn(bool, bool) -> bool = match op {
                And | BitAnd => |x, y| x & y,
                Or | BitOr => |x, y| x | y,
                Xor | BitXor => |x, y| x ^ y,
                Equal => |x, y| x == y,
                _ => return Err(format!("{op:?} does not take bool")),
            };
            return Ok(Array::Bool(zip2(x, y, f)?));
        }
        (Array::Str(x), Array::Str(y)) if op == Equal => return Ok(Array::Bool(zip2(x, y, |x, y| x == y)?)),
        _ => {}
    }
    if comparison {
        let r = if dtype.is_int() && b.dtype().is_int() {
            let cmp: fn(i64, i64) -> bool = match op {
                Equal => |x, y| x == y,
                Less => |x, y| x < y,
                LessOrEqual => |x, y| x <= y,
                Greater => |x, y| x > y,
                _ => |x, y| x >= y,
            };
            zip2(&a.to_i64()?, &b.to_i64()?, cmp)?
        } else {
            let cmp: fn(f64, f64) -> bool = match op {
                Equal => |x, y| x == y,
                Less => |x, y| x < y,
                LessOrEqual => |x, y| x <= y,
                Greater => |x, y| x > y,
                _ => |x, y| x >= y,
            };
            zip2(&a.to_f64()?, &b.to_f64()?, cmp)?
        };
        return Ok(Array::Bool(r));
    }
    if op == Pow && dtype.is_int() && !b.dtype().is_int() {
        // An integer base to a float power: numpy's power, then the base's type (truncated).
        return Array::from_f64(dtype, zip2(&a.to_f64()?, &b.to_f64()?, f64::powf)?);
    }
    if dtype.is_int() {
        let (x, y) = (a.to_i64()?, b.to_i64()?);
        let unsigned = dtype.is_unsigned_int();
        let bits = dtype.bits().unwrap_or(64);
        let r = match op {
            Add => zip2(&x, &y, i64::wrapping_add)?,
            Sub => zip2(&x, &y, i64::wrapping_sub)?,
            Mul => zip2(&x, &y, i64::wrapping_mul)?,
            Div => {
                if y.iter().any(|v| *v == 0) {
                    return Err("integer division by zero".into());
                }
                zip2(&x, &y, i64::wrapping_div)?
            }
            Mod => {
                if y.iter().any(|v| *v == 0) {
                    return Err("integer modulo by zero".into());
                }
                zip2(&x, &y, |x, y| {
                    let r = x.wrapping_rem(y);
                    if r != 0 && (r < 0) != (y < 0) { r + y } else { r }
                })?
            }
            Fmod => {
                if y.iter().any(|v| *v == 0) {
                    return Err("integer modulo by zero".into());
                }
                zip2(&x, &y, i64::wrapping_rem)?
            }
            Pow => zip2(&x, &y, |x, y| if y < 0 { 0 } else { x.wrapping_pow(y.min(u32::MAX as i64) as u32) })?,
            Min => zip2(&x, &y, |x, y| if unsigned { ((x as u64).min(y as u64)) as i64 } else { x.min(y) })?,
            Max => zip2(&x, &y, |x, y| if unsigned { ((x as u64).max(y as u64)) as i64 } else { x.max(y) })?,
            BitAnd => zip2(&x, &y, |x, y| x & y)?,
            BitOr => zip2(&x, &y, |x, y| x | y)?,
            BitXor => zip2(&x, &y, |x, y| x ^ y)?,
            ShiftLeft => zip2(&x, &y, |x, y| if (y as u64) >= bits as u64 { 0 } else { ((x as u64) << y) as i64 })?,
            // Signed types (BitShift-28) shift arithmetically; a negative count counts as too wide.
            ShiftRight if !unsigned => {
                zip2(&x, &y, |x, y| if (y as u64) >= bits as u64 { if x < 0 { -1 } else { 0 } } else { x >> y })?
            }
            ShiftRight => zip2(&x, &y, |x, y| {
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                if (y as u64) >= bits as u64 { 0 } else { (((x as u64) & mask) >> y) as i64 }
            })?,
            And | Or | Xor | Equal | Less | LessOrEqual | Greater | GreaterOrEqual => {
                return Err(format!("{op:?} does not take {dtype}"));
            }
        };
        return Array::from_i64(dtype, r);
    }
    let (x, y) = (a.to_f64()?, b.to_f64()?);
    let f: fn(f64, f64) -> f64 = match op {
        Add => |x, y| x + y,
        Sub => |x, y| x - y,
        Mul => |x, y| x * y,
        Div => |x, y| x / y,
        Pow => f64::powf,
        Fmod => |x, y| x % y,
        Mod => |x, y| {
            let r = x % y;
            if r != 0.0 && (r < 0.0) != (y < 0.0) { r + y } else { r }
        },
        Min => |x, y| if x.is_nan() || y.is_nan() { f64::NAN } else { x.min(y) },
        Max => |x, y| if x.is_nan() || y.is_nan() { f64::NAN } else { x.max(y) },
        _ => return Err(format!("{op:?} does not take {dtype}")),
    };
    Array::from_f64(dtype, zip2(&x, &y, f)?)
}

pub fn where_(c: &Array, a: &Array, b: &Array) -> KernelResult<Array> {
    let Array::Bool(c) = c else { return Err("Where's condition must be bool".into()) };
    let shape = broadcast_shape(&broadcast_shape(c.shape(), a.shape())?, b.shape())?;
    let c = broadcast(c, &shape)?;
    macro_rules! pick {
        ($x:expr, $y:expr) => {{
            let (x, y) = (broadcast($x, &shape)?, broadcast($y, &shape)?);
            Zip::from(&c).and(&x).and(&y).map_collect(|c, x, y| if *c { x.clone() } else { y.clone() })
        }};
    }
    Ok(match (a, b) {
        (Array::F32(x), Array::F32(y)) => Array::F32(pick!(x, y)),
        (Array::F64(x), Array::F64(y)) => Array::F64(pick!(x, y)),
        (Array::F16(x), Array::F16(y)) => Array::F16(pick!(x, y)),
        (Array::BF16(x), Array::BF16(y)) => Array::BF16(pick!(x, y)),
        (Array::I8(x), Array::I8(y)) => Array::I8(pick!(x, y)),
        (Array::I16(x), Array::I16(y)) => Array::I16(pick!(x, y)),
        (Array::I32(x), Array::I32(y)) => Array::I32(pick!(x, y)),
        (Array::I64(x), Array::I64(y)) => Array::I64(pick!(x, y)),
        (Array::U8(x), Array::U8(y)) => Array::U8(pick!(x, y)),
        (Array::U16(x), Array::U16(y)) => Array::U16(pick!(x, y)),
        (Array::U32(x), Array::U32(y)) => Array::U32(pick!(x, y)),
        (Array::U64(x), Array::U64(y)) => Array::U64(pick!(x, y)),
        (Array::Bool(x), Array::Bool(y)) => Array::Bool(pick!(x, y)),
        (Array::Str(x), Array::Str(y)) => Array::Str(pick!(x, y)),
        (x, y) => return Err(format!("Where's branches differ in type: {} and {}", x.dtype(), y.dtype())),
    })
}

pub fn cast(x: &Array, to: DType) -> KernelResult<Array> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    match (x, to) {
        (Array::Str(s), to) => {
            let v: ArrayD<f64> = s.mapv(|b| String::from_utf8_lossy(&b).trim().parse::<f64>().unwrap_or(f64::NAN));
            Array::from_f64(to, v)
        }
        (x, DType::String) => {
            let v = x.to_f64()?;
            Ok(Array::Str(v.mapv(|f| bytes::Bytes::from(format!("{f}")))))
        }
        (x, to) if x.dtype().is_int() || x.dtype() == DType::Bool => Array::from_i64(to, x.to_i64()?),
        // Float to integer: truncation toward zero (saturating at the type's range, as Rust does).
        (x, to) => Array::from_f64(to, x.to_f64()?),
    }
}
