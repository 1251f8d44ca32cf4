//! Signal processing: DFT, STFT and the mel filter bank. Complex values are a trailing dimension
//! of 2 (real, imaginary); a real input may have a trailing 1. The transforms are direct sums
//! (O(n²) per transformed line), written for clarity.

use super::{array, opt_array, scalar_i64};
use crate::array::Array;
use crate::kernels::reduce::norm_axis;
use crate::{KernelResult, Value};
use ferry_ir::DType;
use ndarray::{ArrayD, IxDyn};
use std::f64::consts::PI;

/// Direct DFT of `x` (complex pairs) to `n_out` bins of a length-`len` transform (x zero-padded
/// or truncated to `len`); `sign` -1 forward, +1 inverse (without the 1/len).
fn dft_line(x: &[(f64, f64)], len: usize, n_out: usize, sign: f64) -> Vec<(f64, f64)> {
    let m = x.len().min(len);
    (0..n_out)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (t, (xr, xi)) in x.iter().enumerate().take(m) {
                // reduce the angle's integer part first to keep it accurate
                let ang = sign * 2.0 * PI * ((k * t) % len) as f64 / len as f64;
                let (s, c) = ang.sin_cos();
                re += xr * c - xi * s;
                im += xr * s + xi * c;
            }
            (re, im)
        })
        .collect()
}

pub fn dft(args: &[Option<Value>], inverse: bool, onesided: bool) -> KernelResult<Array> {
    let x = array(args, 0)?;
    let dtype = x.dtype();
    let v = x.to_f64()?;
    let shape = v.shape().to_vec();
    let rank = shape.len();
    if rank < 2 || (shape[rank - 1] != 1 && shape[rank - 1] != 2) {
        return Err(format!("DFT input {shape:?} must end in a complex dimension of 1 or 2"));
    }
    let axis = norm_axis(scalar_i64(args.get(2).and_then(|a| a.as_ref()))?, rank)?;
    if axis == rank - 1 {
        return Err("DFT axis cannot be the complex dimension".into());
    }
    let n = shape[axis];
    let len = match args.get(1).and_then(|a| a.as_ref()) {
        Some(l) => usize::try_from(scalar_i64(Some(l))?).map_err(|_| "negative dft_length".to_string())?,
        None if inverse && onesided => 2 * n.saturating_sub(1),
        None => n,
    };
    if len == 0 {
        return Err("dft_length must be positive".into());
    }
    let complex = shape[rank - 1] == 2;
    let (n_out, last) = match (inverse, onesided) {
        (false, true) => (len / 2 + 1, 2),
        (true, true) => (len, 1),
        _ => (len, 2),
    };
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..rank - 1].iter().product();
    let data: Vec<f64> = v.as_standard_layout().iter().copied().collect();
    let c = shape[rank - 1];
    let mut out = vec![0.0; outer * n_out * inner * last];
    for o in 0..outer {
        for i in 0..inner {
            let line: Vec<(f64, f64)> = (0..n)
                .map(|t| {
                    let base = ((o * n + t) * inner + i) * c;
                    (data[base], if complex { data[base + 1] } else { 0.0 })
                })
                .collect();
            let res: Vec<(f64, f64)> = if inverse && onesided {
                // Hermitian completion of the one-sided spectrum, then the real part.
                let half = len / 2 + 1;
                let full: Vec<(f64, f64)> = (0..len)
                    .map(|k| {
                        let get = |k: usize| if k < line.len() && k < half { line[k] } else { (0.0, 0.0) };
                        if k < half {
                            get(k)
                        } else {
                            let (r, im) = get(len - k);
                            (r, -im)
                        }
                    })
                    .collect();
                dft_line(&full, len, len, 1.0).into_iter().map(|(r, _)| (r / len as f64, 0.0)).collect()
            } else if inverse {
                dft_line(&line, len, len, 1.0).into_iter().map(|(r, im)| (r / len as f64, im / len as f64)).collect()
            } else {
                dft_line(&line, len, n_out, -1.0)
            };
            for (k, (r, im)) in res.into_iter().enumerate() {
                let base = ((o * n_out + k) * inner + i) * last;
                out[base] = r;
                if last == 2 {
                    out[base + 1] = im;
                }
            }
        }
    }
    let mut oshape = shape.clone();
    oshape[axis] = n_out;
    oshape[rank - 1] = last;
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&oshape), out).map_err(|e| e.to_string())?)
}

pub fn stft(args: &[Option<Value>], onesided: bool) -> KernelResult<Array> {
    let x = array(args, 0)?;
    let dtype = x.dtype();
    let v = x.to_f64()?;
    let shape = v.shape().to_vec();
    if shape.len() != 3 || (shape[2] != 1 && shape[2] != 2) {
        return Err(format!("STFT signal {shape:?} must be [batch, length, 1|2]"));
    }
    let step = usize::try_from(scalar_i64(args.get(1).and_then(|a| a.as_ref()))?).map_err(|_| "negative frame_step")?;
    let window: Option<Vec<f64>> =
        opt_array(args, 2)?.map(|w| w.to_f64().map(|a| a.iter().copied().collect())).transpose()?;
    let flen = match args.get(3).and_then(|a| a.as_ref()) {
        Some(l) => usize::try_from(scalar_i64(Some(l))?).map_err(|_| "negative frame_length")?,
        None => window.as_ref().map(|w| w.len()).unwrap_or(shape[1]),
    };
    let window = window.unwrap_or_else(|| vec![1.0; flen]);
    if step == 0 || flen == 0 || flen > shape[1] || window.len() != flen {
        return Err("STFT frame_step, frame_length and window do not fit the signal".into());
    }
    let frames = 1 + (shape[1] - flen) / step;
    let bins = if onesided { flen / 2 + 1 } else { flen };
    let complex = shape[2] == 2;
    let mut out = Vec::with_capacity(shape[0] * frames * bins * 2);
    for b in 0..shape[0] {
        for f in 0..frames {
            let line: Vec<(f64, f64)> = (0..flen)
                .map(|t| {
                    let p = f * step + t;
                    let im = if complex { v[[b, p, 1]] } else { 0.0 };
                    (v[[b, p, 0]] * window[t], im * window[t])
                })
                .collect();
            for (r, im) in dft_line(&line, flen, bins, -1.0) {
                out.push(r);
                out.push(im);
            }
        }
    }
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&[shape[0], frames, bins, 2]), out).map_err(|e| e.to_string())?)
}

pub fn mel_weight_matrix(args: &[Option<Value>], dtype: DType) -> KernelResult<Array> {
    let int = |i: usize| scalar_i64(args.get(i).and_then(|a| a.as_ref()));
    let float = |i: usize| -> KernelResult<f32> {
        array(args, i)?.to_f64()?.iter().next().map(|v| *v as f32).ok_or_else(|| "expected one element".to_string())
    };
    let (mels, dft_len, rate) = (int(0)?, int(1)?, int(2)?);
    let (lo, hi) = (float(3)?, float(4)?);
    if mels <= 0 || dft_len <= 0 || rate <= 0 {
        return Err("MelWeightMatrix sizes must be positive".into());
    }
    let (mels, bins) = (mels as usize, dft_len as usize / 2 + 1);
    let ln10 = 10f64.ln();
    let to_mel = |hz: f32| (2595f32 * (hz / 700f32).ln_1p()) as f64 / ln10;
    let (lo_mel, hi_mel) = (to_mel(lo), to_mel(hi));
    let step = (hi_mel - lo_mel) / (mels + 2) as f64;
    let points: Vec<i64> = (0..mels + 2)
        .map(|i| {
            let hz = 700.0 * ((i as f64 * step + lo_mel) / 2595.0 * ln10).exp_m1();
            ((dft_len + 1) as f64 * hz / rate as f64).floor() as i64
        })
        .collect();
    let mut out = ArrayD::<f64>::zeros(IxDyn(&[bins, mels]));
    let set = |out: &mut ArrayD<f64>, j: i64, i: usize, v: f64| -> KernelResult<()> {
        let j = usize::try_from(j).ok().filter(|j| *j < bins).ok_or("mel band outside the spectrum")?;
        out[[j, i]] = v;
        Ok(())
    };
    for i in 0..mels {
        let (l, c, h) = (points[i], points[i + 1], points[i + 2]);
        if c == l {
            set(&mut out, c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(&mut out, j, i, (j - l) as f64 / (c - l) as f64)?;
            }
        }
        if h > c {
            for j in c..h {
                set(&mut out, j, i, (h - j) as f64 / (h - c) as f64)?;
            }
        }
    }
    Array::from_f64(dtype, out)
}
