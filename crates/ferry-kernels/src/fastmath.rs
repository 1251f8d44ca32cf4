//! Branch-free f32 approximations of exp, tanh, sigmoid and erfc that the compiler vectorizes.
//! Each is accurate to a few 1e-7 relative (tests compare them with f64 references); none calls
//! libm, so a loop over them becomes vector code.

/// 1.5 * 2^23: adding it rounds an f32 of magnitude below 2^22 to an integer, which then sits in the
/// low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x for x <= 88 (larger x are the callers' to avoid); below -87 the result is 0 (true values
/// there are denormal). NaN gives NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // e^x = 2^n e^r with n = round(x log2 e) and r = x - n ln 2 in [-0.35, 0.35]; ln 2 is split in a
    // part whose product with n is exact and a small correction, so r keeps full precision.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = if x < -87.0 { -87.0 } else { x };
    let shifted = xc * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let n_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Taylor series to r^7: the remainder is below 5e-9 relative for |r| <= 0.35.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) << 23) as u32);
    if x < -87.0 { 0.0 } else { p * scale }
}

/// 1 / (1 + e^-x), without overflow for either sign.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

/// tanh(x): its odd Taylor series near zero (where 1 - e^-2x would cancel), else (1 - e)/(1 + e)
/// with e = e^-2|x|.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let e = exp(-2.0 * a);
    let far = (1.0 - e) / (1.0 + e);
    let a2 = a * a;
    let near = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
    let v = if a < 0.3 { near } else { far };
    v.copysign(x)
}

/// erfc(x) from a Chebyshev fit of erfc(z) e^(z^2) (relative error below 1.2e-7 in exact arithmetic).
#[inline(always)]
pub(crate) fn erfc(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    let r = t * exp(p - z * z);
    if x >= 0.0 { r } else { 2.0 - r }
}
