//! Element types the typed arrays do not represent (sub-byte integers, float8, float4), decoded
//! to and encoded from f64 for the quantization kernels.

use crate::KernelResult;
use bytes::Bytes;
use ferry_ir::{DType, Tensor, TensorData};

/// Value of an 8-bit (or smaller) float code, per ONNX's definitions of the formats.
fn decode_float(dtype: DType, code: u8) -> f64 {
    let (exp_bits, man_bits, bias, fnuz) = match dtype {
        DType::F8E4M3FN => (4, 3, 7, false),
        DType::F8E4M3FNUZ => (4, 3, 8, true),
        DType::F8E5M2 => (5, 2, 15, false),
        DType::F8E5M2FNUZ => (5, 2, 16, true),
        _ => (2, 1, 1, false), // F4E2M1
    };
    let total = 1 + exp_bits + man_bits;
    let sign = (code >> (total - 1)) & 1 == 1;
    let e = ((code >> man_bits) & ((1 << exp_bits) - 1)) as i32;
    let m = (code & ((1 << man_bits) - 1)) as f64;
    if fnuz && code == 0x80 {
        return f64::NAN;
    }
    match dtype {
        DType::F8E4M3FN if e == 15 && m == 7.0 => return f64::NAN,
        DType::F8E5M2 if e == 31 => {
            return if m == 0.0 { if sign { f64::NEG_INFINITY } else { f64::INFINITY } } else { f64::NAN };
        }
        _ => {}
    }
    let scale = (1u32 << man_bits) as f64;
    let v = if e == 0 { m / scale * 2f64.powi(1 - bias) } else { (1.0 + m / scale) * 2f64.powi(e - bias) };
    if sign { -v } else { v }
}

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F4E2M1)
}

pub fn handles(dtype: DType) -> bool {
    is_float(dtype) || matches!(dtype, DType::I4 | DType::U4 | DType::I2 | DType::U2)
}

fn bits(dtype: DType) -> usize {
    match dtype {
        DType::I4 | DType::U4 | DType::F4E2M1 => 4,
        DType::I2 | DType::U2 => 2,
        _ => 8,
    }
}

/// Elements of a low-precision tensor as f64.
pub fn decode(t: &Tensor) -> KernelResult<Vec<f64>> {
    let TensorData::Raw(raw) = &t.data else { return Err("expected numbers".into()) };
    let n = t.shape.iter().product::<u64>() as usize;
    let b = bits(t.dtype);
    let per = 8 / b;
    if raw.len() < n.div_ceil(per) {
        return Err("tensor data is too short".into());
    }
    (0..n)
        .map(|i| {
            let code = (raw[i / per] >> ((i % per) * b)) & (((1u16 << b) - 1) as u8);
            Ok(match t.dtype {
                DType::U4 | DType::U2 => code as f64,
                DType::I4 | DType::I2 => ((code << (8 - b)) as i8 >> (8 - b)) as f64,
                d => decode_float(d, code),
            })
        })
        .collect()
}

/// The nearest code (ties to the even code) for a float format; out-of-range values saturate to
/// the largest finite value, or without `saturate` become NaN (inf for E5M2).
fn encode_float(dtype: DType, x: f64, saturate: bool) -> u8 {
    let codes = 1u16
        << (1 + match dtype {
            DType::F4E2M1 => 3,
            _ => 7,
        });
    let nan_code = match dtype {
        DType::F8E4M3FN => 0x7F,
        DType::F8E5M2 => 0x7E,
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ => 0x80,
        _ => 0,
    };
    if x.is_nan() {
        return nan_code;
    }
    let (mut best, mut best_d) = (0u8, f64::INFINITY);
    let mut max = 0.0f64;
    let half = codes / 2;
    // Same-sign codes first, so that a value rounding to zero keeps its sign where it can.
    let order: Vec<u16> =
        if x.is_sign_negative() { (half..codes).chain(0..half).collect() } else { (0..codes).collect() };
    for c in order {
        let v = decode_float(dtype, c as u8);
        if !v.is_finite() {
            continue;
        }
        max = max.max(v);
        if x.is_infinite() || (v != 0.0 && v.is_sign_negative() != x.is_sign_negative()) {
            continue;
        }
        let d = (v - x).abs();
        if d < best_d || (d == best_d && best & 1 == 1 && c & 1 == 0) {
            best = c as u8;
            best_d = d;
        }
    }
    let sign_bit = (codes / 2) as u8;
    if x.abs() > max {
        let top = encode_float_exact(dtype, max);
        if saturate || dtype == DType::F4E2M1 {
            return if x < 0.0 { top | sign_bit } else { top };
        }
        // Beyond the largest value by more than half of the last step: overflow.
        let step = max - decode_float(dtype, top - 1);
        if x.is_infinite() || x.abs() >= max + step / 2.0 {
            return match dtype {
                DType::F8E5M2 => {
                    if x < 0.0 {
                        0xFC
                    } else {
                        0x7C
                    }
                }
                _ => nan_code,
            };
        }
        return if x < 0.0 { top | sign_bit } else { top };
    }
    best
}

fn encode_float_exact(dtype: DType, v: f64) -> u8 {
    (0..=255u8).find(|c| decode_float(dtype, *c) == v).unwrap_or(0)
}

/// Builds a low-precision tensor from values already rounded (integers) or to be rounded (floats).
pub fn encode(dtype: DType, shape: &[usize], vals: &[f64], saturate: bool) -> KernelResult<Tensor> {
    let b = bits(dtype);
    let per = 8 / b;
    let mut raw = vec![0u8; vals.len().div_ceil(per)];
    for (i, v) in vals.iter().enumerate() {
        let code = if is_float(dtype) {
            encode_float(dtype, *v, saturate)
        } else {
            (*v as i64 as u8) & (((1u16 << b) - 1) as u8)
        };
        raw[i / per] |= code << ((i % per) * b);
    }
    Ok(Tensor { dtype, shape: shape.iter().map(|d| *d as u64).collect(), data: TensorData::Raw(Bytes::from(raw)) })
}

/// Integer range of a sub-byte integer type.
pub fn int_range(dtype: DType) -> Option<(f64, f64)> {
    match dtype {
        DType::I4 => Some((-8.0, 7.0)),
        DType::U4 => Some((0.0, 15.0)),
        DType::I2 => Some((-2.0, 1.0)),
        DType::U2 => Some((0.0, 3.0)),
        _ => None,
    }
}

pub fn is_float_type(dtype: DType) -> bool {
    is_float(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_extremes_and_packed_ints() {
        // Largest finite values per the ONNX float8 spec: e4m3fn 448, e5m2 57344.
        assert_eq!(decode_float(DType::F8E4M3FN, 0x7E), 448.0);
        assert_eq!(decode_float(DType::F8E5M2, 0x7B), 57344.0);
        assert!(decode_float(DType::F8E4M3FN, 0x7F).is_nan());
        assert_eq!(encode_float(DType::F8E4M3FN, 1000.0, true), 0x7E);
        assert_eq!(encode_float(DType::F8E4M3FN, 1000.0, false), 0x7F);
        // int4 packs two per byte, low nibble first.
        let t = encode(DType::I4, &[3], &[-1.0, 7.0, -8.0], true).unwrap();
        assert_eq!(decode(&t).unwrap(), vec![-1.0, 7.0, -8.0]);
    }
}
