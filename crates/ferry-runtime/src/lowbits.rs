//! Element types without a native Rust form: float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz, e8m0),
//! float4e2m1 and the packed integers int4/uint4/int2/uint2. Values are decoded to f64 (every
//! one of them is exact in f64) and encoded from f64 with ONNX's rules (the same as `ml_dtypes`,
//! which onnx's reference uses):
//! - float8 and float4: round to nearest, ties to even. Out of range with `saturate`: the largest
//!   finite value of that sign. Without it: infinity where the type has one (e5m2), else NaN.
//!   float4e2m1 has neither, so it always saturates. The "fnuz" types have no negative zero.
//! - e8m0 (an exponent only): rounds per `round_mode` ("up", "down", "nearest") on the float32
//!   bits; the sign is dropped; NaN and infinity become NaN (0xFF).
//! - int4/uint4/int2/uint2: truncation toward zero, then wrap-around to the type's width.
//!
//! Sub-byte types are packed low bits first (two 4-bit or four 2-bit elements per byte).

use crate::array::Array;
use bytes::Bytes;
use ferry_ir::{DType, Tensor, TensorData};
use ndarray::{ArrayD, IxDyn};

/// Whether `dtype` is handled here rather than by [`Array`].
pub fn is_lowbits(dtype: DType) -> bool {
    use DType::*;
    matches!(dtype, F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | F4E2M1 | I4 | U4 | I2 | U2)
}

#[derive(Clone, Copy, PartialEq)]
enum Special {
    /// IEEE-like: the top exponent holds infinity and NaN (e5m2).
    Ieee,
    /// Only all-ones (exponent and mantissa) is NaN; no infinity (e4m3fn).
    Fn,
    /// NaN is the negative-zero pattern; no infinity, no negative zero.
    Fnuz,
    /// No infinity and no NaN (float4e2m1).
    None,
}

#[derive(Clone, Copy)]
struct Minifloat {
    ebits: u32,
    mbits: u32,
    bias: i32,
    special: Special,
}

impl Minifloat {
    fn of(dtype: DType) -> Option<Minifloat> {
        use DType::*;
        let (ebits, mbits, bias, special) = match dtype {
            F8E4M3FN => (4, 3, 7, Special::Fn),
            F8E4M3FNUZ => (4, 3, 8, Special::Fnuz),
            F8E5M2 => (5, 2, 15, Special::Ieee),
            F8E5M2FNUZ => (5, 2, 16, Special::Fnuz),
            F4E2M1 => (2, 1, 1, Special::None),
            _ => return None,
        };
        Some(Minifloat { ebits, mbits, bias, special })
    }

    fn sign_bit(self) -> u32 {
        1 << (self.ebits + self.mbits)
    }

    /// The magnitude code of the largest finite value.
    fn max_code(self) -> u32 {
        let all = (1u32 << (self.ebits + self.mbits)) - 1;
        match self.special {
            Special::Ieee => all - (1 << self.mbits), // top exponent reserved
            Special::Fn => all - 1,                   // all ones is NaN
            Special::Fnuz | Special::None => all,
        }
    }

    fn nan_code(self, negative: bool) -> u32 {
        let code: u32 = match self.special {
            Special::Ieee => ((1 << (self.ebits + self.mbits)) - 1 - ((1 << self.mbits) - 1)) | (1 << (self.mbits - 1)),
            Special::Fn => (1 << (self.ebits + self.mbits)) - 1,
            // ml_dtypes gives float4e2m1's NaN as negative zero.
            Special::Fnuz | Special::None => return self.sign_bit(),
        };
        code | if negative { self.sign_bit() } else { 0 }
    }

    fn decode(self, code: u32) -> f64 {
        let neg = code & self.sign_bit() != 0;
        let mag = code & (self.sign_bit() - 1);
        let e = mag >> self.mbits;
        let m = mag & ((1 << self.mbits) - 1);
        let top = (1 << self.ebits) - 1;
        match self.special {
            Special::Fnuz if code == self.sign_bit() => return f64::NAN,
            Special::Fn if mag == (1 << (self.ebits + self.mbits)) - 1 => return f64::NAN,
            Special::Ieee if e == top => {
                let v = if m == 0 { f64::INFINITY } else { f64::NAN };
                return if neg { -v } else { v };
            }
            _ => {}
        }
        let v = if e == 0 {
            m as f64 * 2f64.powi(1 - self.bias - self.mbits as i32)
        } else {
            (1.0 + m as f64 / (1u32 << self.mbits) as f64) * 2f64.powi(e as i32 - self.bias)
        };
        if neg { -v } else { v }
    }

    fn encode(self, x: f64, saturate: bool) -> u32 {
        let saturate = saturate || self.special == Special::None;
        let neg = x.is_sign_negative();
        let sign = if neg { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan_code(neg);
        }
        let overflow = || -> u32 {
            if saturate {
                sign | self.max_code()
            } else if self.special == Special::Ieee {
                sign | (((1 << self.ebits) - 1) << self.mbits)
            } else {
                self.nan_code(neg)
            }
        };
        let a = x.abs();
        if a.is_infinite() {
            return overflow();
        }
        if a == 0.0 {
            return if self.special == Special::Fnuz { 0 } else { sign };
        }
        let emin = 1 - self.bias;
        // floor(log2(a)) from the f64 exponent (a is normal in f64 for every input we can hold,
        // and subnormal f64 inputs round to zero here anyway).
        let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(emin);
        let quantum = 2f64.powi(e - self.mbits as i32);
        let r = (a / quantum).round_ties_even() as u64;
        let code: u64 = if r < (1 << self.mbits) {
            r // subnormal (only when e == emin)
        } else {
            let biased = (e + self.bias) as u64;
            (biased << self.mbits) + (r - (1 << self.mbits)) // a mantissa carry moves into the exponent
        };
        if code > self.max_code() as u64 {
            return overflow();
        }
        if code == 0 && self.special == Special::Fnuz {
            return 0;
        }
        sign | code as u32
    }
}

fn int_bits(dtype: DType) -> Option<(u32, bool)> {
    match dtype {
        DType::I4 => Some((4, true)),
        DType::U4 => Some((4, false)),
        DType::I2 => Some((2, true)),
        DType::U2 => Some((2, false)),
        _ => None,
    }
}

fn e8m0_decode(code: u32) -> f64 {
    if code == 0xFF { f64::NAN } else { 2f64.powi(code as i32 - 127) }
}

fn e8m0_encode(x: f64, saturate: bool, round_mode: &str) -> Result<u32, String> {
    let bits = (x as f32).to_bits();
    let exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return Ok(0xFF);
    }
    let frac = bits & 0x7F_FFFF;
    let up = match round_mode {
        "up" => frac != 0,
        "down" => false,
        "nearest" => {
            let (g, r, s) = (frac & 0x40_0000 != 0, frac & 0x20_0000 != 0, frac & 0x1F_FFFF != 0);
            g && (r || s || exp > 0)
        }
        other => return Err(format!("unknown round_mode '{other}' (expected up, down or nearest)")),
    };
    Ok(if up && !(saturate && exp == 0xFE) { exp + 1 } else { exp })
}

/// Bits per stored element (8 for the float8 types).
fn width(dtype: DType) -> u32 {
    dtype.bits().unwrap_or(8)
}

/// Decodes a low-bit tensor's elements to f64 (exact).
pub fn to_f64(t: &Tensor) -> Result<Vec<f64>, String> {
    let raw = match &t.data {
        TensorData::Raw(b) => b,
        TensorData::Strings(_) => return Err("expected numbers, found strings".into()),
    };
    let n = usize::try_from(ferry_ir::tensor::checked_numel(&t.shape).map_err(|e| e.to_string())?)
        .map_err(|_| "tensor too large".to_string())?;
    let w = width(t.dtype);
    let need = (n as u64 * w as u64).div_ceil(8);
    if (raw.len() as u64) < need {
        return Err(format!("{} tensor of {n} elements needs {need} bytes, found {}", t.dtype, raw.len()));
    }
    let per = (8 / w) as usize;
    let code = |i: usize| -> u32 { ((raw[i / per] >> ((i % per) as u32 * w)) as u32) & ((1u32 << w) - 1) };
    let mut out = Vec::with_capacity(n);
    if let Some(f) = Minifloat::of(t.dtype) {
        out.extend((0..n).map(|i| f.decode(code(i))));
    } else if t.dtype == DType::F8E8M0 {
        out.extend((0..n).map(|i| e8m0_decode(code(i))));
    } else if let Some((bits, signed)) = int_bits(t.dtype) {
        out.extend((0..n).map(|i| {
            let c = code(i) as i64;
            if signed && c >= 1 << (bits - 1) { (c - (1 << bits)) as f64 } else { c as f64 }
        }));
    } else {
        return Err(format!("{} is not a low-bit type", t.dtype));
    }
    Ok(out)
}

/// Encodes f64 values as a `dtype` tensor of `shape` (see the module docs for the rounding rules).
pub fn from_f64(
    dtype: DType,
    shape: Vec<u64>,
    values: &[f64],
    saturate: bool,
    round_mode: &str,
) -> Result<Tensor, String> {
    let codes: Vec<u32> = if let Some(f) = Minifloat::of(dtype) {
        values.iter().map(|v| f.encode(*v, saturate)).collect()
    } else if dtype == DType::F8E8M0 {
        values.iter().map(|v| e8m0_encode(*v, saturate, round_mode)).collect::<Result<_, _>>()?
    } else if let Some((bits, _)) = int_bits(dtype) {
        // `as i64` truncates toward zero (NaN becomes 0); the mask wraps to the width.
        values.iter().map(|v| (*v as i64 as u64 & ((1u64 << bits) - 1)) as u32).collect()
    } else {
        return Err(format!("{dtype} is not a low-bit type"));
    };
    let w = width(dtype);
    let per = (8 / w) as usize;
    let mut bytes = vec![0u8; codes.len().div_ceil(per)];
    for (i, c) in codes.iter().enumerate() {
        bytes[i / per] |= (*c as u8) << ((i % per) as u32 * w);
    }
    Tensor::from_raw(dtype, shape, Bytes::from(bytes)).map_err(|e| e.to_string())
}

/// ONNX Cast where the source or the target is a low-bit type.
pub fn cast(t: &Tensor, to: DType, saturate: bool, round_mode: &str) -> Result<Tensor, String> {
    let values: Vec<f64> = if is_lowbits(t.dtype) {
        to_f64(t)?
    } else {
        let a = Array::from_tensor(t)?;
        let a = if a.dtype() == DType::String { crate::kernels::cast_array(&a, DType::F64)? } else { a };
        a.to_f64()?.iter().copied().collect()
    };
    if is_lowbits(to) {
        return from_f64(to, t.shape.clone(), &values, saturate, round_mode);
    }
    let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
    let a = Array::F64(ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| e.to_string())?);
    Ok(crate::kernels::cast_array(&a, to)?.into_tensor())
}

/// Casts a tensor of any numeric type to `to` (saturating float8, "up" rounding for e8m0).
pub fn cast_tensor(t: &Tensor, to: DType) -> Result<Tensor, String> {
    if is_lowbits(t.dtype) || is_lowbits(to) {
        cast(t, to, true, "up")
    } else {
        Ok(crate::kernels::cast_array(&Array::from_tensor(t)?, to)?.into_tensor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(d: DType, x: f32, sat: bool) -> u32 {
        let t = from_f64(d, vec![1], &[x as f64], sat, "up").unwrap();
        t.raw().unwrap()[0] as u32
    }

    // Expected codes are what onnx's reference (ml_dtypes) produces for these inputs.
    #[test]
    fn float8_matches_the_onnx_reference() {
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        let cases: [(DType, [u32; 9]); 4] = [
            (DType::F8E4M3FN, [127, 255, 127, 255, 128, 0, 126, 127, 120]),
            (DType::F8E4M3FNUZ, [128, 128, 128, 128, 0, 0, 128, 128, 128]),
            (DType::F8E5M2, [126, 254, 124, 252, 128, 0, 95, 95, 92]),
            (DType::F8E5M2FNUZ, [128, 128, 128, 128, 0, 0, 99, 99, 96]),
        ];
        let xs = [nan, -nan, inf, -1e6, -0.0, 1e-7, 464.0, 470.0, 248.0];
        for (d, want) in cases {
            let got: Vec<u32> = xs.iter().map(|x| enc(d, *x, false)).collect();
            assert_eq!(got, want, "{d}");
        }
        assert_eq!(enc(DType::F8E4M3FN, inf, true), 126);
        assert_eq!(enc(DType::F8E4M3FN, -1e6, true), 254);
        assert_eq!(enc(DType::F8E5M2, inf, true), 123);
        assert_eq!(enc(DType::F8E4M3FNUZ, 1e6, true), 127);
    }

    #[test]
    fn float4_and_small_ints_match_the_onnx_reference() {
        let xs = [0.48f64, 0.25, 1.05, -3.5, -8.0, 9.0, 1e6, 1e-7, f64::NAN, f64::INFINITY, -4.0, -0.0, 2.5, 5.0, 0.75];
        let t = from_f64(DType::F4E2M1, vec![xs.len() as u64], &xs, false, "up").unwrap();
        let back = to_f64(&t).unwrap();
        assert_eq!(back[..8], [0.5, 0.0, 1.0, -4.0, -6.0, 6.0, 6.0, 0.0]);
        assert_eq!(back[9..], [6.0, -4.0, 0.0, 2.0, 4.0, 1.0]);
        let ints = [-9.0, -2.5, -1.5, 7.6, -8.6, 20.4, 15.0];
        let i4 = to_f64(&from_f64(DType::I4, vec![7], &ints, true, "up").unwrap()).unwrap();
        assert_eq!(i4, [7.0, -2.0, -1.0, 7.0, -8.0, 4.0, -1.0]);
        let u4 = to_f64(&from_f64(DType::U4, vec![7], &ints, true, "up").unwrap()).unwrap();
        assert_eq!(u4, [7.0, 14.0, 15.0, 7.0, 8.0, 4.0, 15.0]);
        let i2 = to_f64(&from_f64(DType::I2, vec![7], &[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0], true, "up").unwrap());
        assert_eq!(i2.unwrap(), [1.0, -2.0, -1.0, 0.0, 1.0, -2.0, -1.0]);
    }
}
