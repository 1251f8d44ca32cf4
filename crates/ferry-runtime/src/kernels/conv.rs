//! Convolutions and sliding-window pooling over `[N, C, spatial...]` inputs, as plain loops in f64.

use crate::KernelResult;
use crate::array::Array;
use ferry_ir::ops::{AutoPad, Conv, ConvTranspose, Pool, PoolKind};
use ndarray::{ArrayD, IxDyn};

/// All row-major multi-indices of `shape`.
pub(crate) fn positions(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        out.push(idx.clone());
        for i in (0..shape.len()).rev() {
            idx[i] += 1;
            if idx[i] < shape[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    out
}

pub(crate) fn per_axis(v: &[u64], n: usize, what: &str) -> KernelResult<Vec<usize>> {
    if v.is_empty() {
        return Ok(vec![1; n]);
    }
    if v.len() != n {
        return Err(format!("{what} has {} entries for {n} spatial axes", v.len()));
    }
    Ok(v.iter().map(|x| (*x as usize).max(1)).collect())
}

/// Begin and end pads per spatial axis, and output sizes (floor mode unless `ceil`).
pub(crate) fn window_geometry(
    pads: &AutoPad,
    input: &[usize],
    ek: &[usize],
    strides: &[usize],
    ceil: bool,
) -> KernelResult<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let n = input.len();
    let (mut pb, mut pe) = (vec![0; n], vec![0; n]);
    match pads {
        AutoPad::Explicit(v) if v.is_empty() => {}
        AutoPad::Explicit(v) if v.len() == 2 * n => {
            for i in 0..n {
                pb[i] = v[i] as usize;
                pe[i] = v[n + i] as usize;
            }
        }
        AutoPad::Explicit(v) => return Err(format!("{} pads for {n} spatial axes", v.len())),
        AutoPad::Valid => {}
        AutoPad::SameUpper | AutoPad::SameLower => {
            for i in 0..n {
                let out = input[i].div_ceil(strides[i]);
                let total = ((out.max(1) - 1) * strides[i] + ek[i]).saturating_sub(input[i]);
                let small = total / 2;
                if matches!(pads, AutoPad::SameUpper) {
                    pb[i] = small;
                    pe[i] = total - small;
                } else {
                    pb[i] = total - small;
                    pe[i] = small;
                }
            }
        }
    }
    let mut out = vec![0; n];
    for i in 0..n {
        let span = input[i] + pb[i] + pe[i];
        if span < ek[i] {
            return Err(format!("the window ({}) is larger than the padded input ({span})", ek[i]));
        }
        let span = span - ek[i];
        out[i] = if ceil { span.div_ceil(strides[i]) + 1 } else { span / strides[i] + 1 };
        if ceil && (out[i] - 1) * strides[i] >= input[i] + pb[i] {
            out[i] -= 1;
        }
    }
    Ok((pb, pe, out))
}

pub(crate) fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

pub fn conv(op: &Conv, x: &Array, w: &Array, b: Option<&Array>) -> KernelResult<Array> {
    let dtype = x.dtype();
    let (xv, wv) = (x.to_f64()?, w.to_f64()?);
    let (xs, ws) = (xv.shape().to_vec(), wv.shape().to_vec());
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(format!("Conv of {xs:?} with weights {ws:?}"));
    }
    let n = xs.len() - 2;
    let g = (op.group as usize).max(1);
    let (batch, c, m) = (xs[0], xs[1], ws[0]);
    let cg = ws[1];
    if cg * g != c || m % g != 0 {
        return Err(format!("Conv channels: input {c}, weights {ws:?}, group {g}"));
    }
    let k = &ws[2..];
    let st = per_axis(&op.strides, n, "strides")?;
    let dil = per_axis(&op.dilations, n, "dilations")?;
    let ek: Vec<usize> = (0..n).map(|i| (k[i].max(1) - 1) * dil[i] + 1).collect();
    let (pb, _, out) = window_geometry(&op.pads, &xs[2..], &ek, &st, false)?;
    let bias = match b {
        Some(b) => b.to_f64()?.iter().copied().collect(),
        None => vec![0.0; m],
    };
    if bias.len() != m {
        return Err("Conv bias length differs from the output channels".into());
    }
    let xd = xv.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let wd = wv.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let xstr = strides_of(&xs);
    let kpos = positions(k);
    let opos = positions(&out);
    let mut y = Vec::with_capacity(batch * m * opos.len());
    let per_kernel: usize = k.iter().product();
    for bi in 0..batch {
        for oc in 0..m {
            let grp = oc / (m / g);
            for op_ in &opos {
                let mut acc = bias[oc];
                for ci in 0..cg {
                    let ic = grp * cg + ci;
                    let xbase = bi * xstr[0] + ic * xstr[1];
                    let wbase = (oc * cg + ci) * per_kernel;
                    'k: for (ki, kp) in kpos.iter().enumerate() {
                        let mut off = xbase;
                        for d in 0..n {
                            let p = (op_[d] * st[d] + kp[d] * dil[d]) as isize - pb[d] as isize;
                            if p < 0 || p >= xs[d + 2] as isize {
                                continue 'k;
                            }
                            off += p as usize * xstr[d + 2];
                        }
                        acc += xd[off] * wd[wbase + ki];
                    }
                }
                y.push(acc);
            }
        }
    }
    let mut shape = vec![batch, m];
    shape.extend(&out);
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| e.to_string())?)
}

pub fn conv_transpose(op: &ConvTranspose, x: &Array, w: &Array, b: Option<&Array>) -> KernelResult<Array> {
    let dtype = x.dtype();
    let (xv, wv) = (x.to_f64()?, w.to_f64()?);
    let (xs, ws) = (xv.shape().to_vec(), wv.shape().to_vec());
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(format!("ConvTranspose of {xs:?} with weights {ws:?}"));
    }
    let n = xs.len() - 2;
    let cv = &op.conv;
    let g = (cv.group as usize).max(1);
    let (batch, c) = (xs[0], xs[1]);
    if ws[0] != c || c % g != 0 {
        return Err(format!("ConvTranspose channels: input {c}, weights {ws:?}, group {g}"));
    }
    let mg = ws[1];
    let m = mg * g;
    let cg = c / g;
    let k = &ws[2..];
    let st = per_axis(&cv.strides, n, "strides")?;
    let dil = per_axis(&cv.dilations, n, "dilations")?;
    let opad: Vec<usize> = if op.output_padding.is_empty() {
        vec![0; n]
    } else if op.output_padding.len() >= n {
        op.output_padding[op.output_padding.len() - n..].iter().map(|v| *v as usize).collect()
    } else {
        return Err("output_padding has too few entries".into());
    };
    let ek: Vec<usize> = (0..n).map(|i| (k[i].max(1) - 1) * dil[i] + 1).collect();
    let full: Vec<usize> = (0..n).map(|i| st[i] * (xs[i + 2].max(1) - 1) + opad[i] + ek[i]).collect();
    let explicit = match &cv.pads {
        AutoPad::Explicit(v) if v.len() == 2 * n => Some(v.iter().map(|p| *p as usize).collect::<Vec<_>>()),
        AutoPad::Explicit(v) if !v.is_empty() => return Err(format!("{} pads for {n} spatial axes", v.len())),
        AutoPad::Valid => Some(vec![0; 2 * n]),
        AutoPad::Explicit(_) => None,
        _ => None,
    };
    let requested: Option<Vec<usize>> = match &op.output_shape {
        Some(s) if s.len() >= n => Some(s[s.len() - n..].iter().map(|v| *v as usize).collect()),
        Some(_) => return Err("output_shape has too few entries".into()),
        None => None,
    };
    let (pb, out) = match (explicit, requested) {
        (Some(p), Some(req)) => (p[..n].to_vec(), req),
        (Some(p), None) => {
            let out: Vec<usize> = (0..n)
                .map(|i| full[i].checked_sub(p[i] + p[n + i]).ok_or("ConvTranspose pads exceed the output".to_string()))
                .collect::<KernelResult<_>>()?;
            (p[..n].to_vec(), out)
        }
        (None, req) => {
            let same_or_none = matches!(cv.pads, AutoPad::SameUpper | AutoPad::SameLower);
            let req = match req {
                Some(r) => r,
                None if same_or_none => (0..n).map(|i| xs[i + 2] * st[i]).collect(),
                None => full.clone(),
            };
            let mut pb = vec![0; n];
            for i in 0..n {
                let total = full[i] as isize - req[i] as isize;
                let half = total.div_euclid(2);
                pb[i] = if matches!(cv.pads, AutoPad::SameUpper) { half } else { total - half }.max(0) as usize;
            }
            (pb, req)
        }
    };
    let bias = match b {
        Some(b) => b.to_f64()?.iter().copied().collect(),
        None => vec![0.0; m],
    };
    if bias.len() != m {
        return Err("ConvTranspose bias length differs from the output channels".into());
    }
    let ostr = strides_of(&out);
    let per_out: usize = out.iter().product();
    let mut y = vec![0.0; batch * m * per_out];
    for bi in 0..batch {
        for oc in 0..m {
            y[(bi * m + oc) * per_out..(bi * m + oc + 1) * per_out].fill(bias[oc]);
        }
    }
    let xd = xv.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let wd = wv.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let ipos = positions(&xs[2..]);
    let kpos = positions(k);
    let per_in = ipos.len();
    let per_kernel = kpos.len();
    for bi in 0..batch {
        for ic in 0..c {
            let grp = ic / cg;
            for (ii, ip) in ipos.iter().enumerate() {
                let xval = xd[(bi * c + ic) * per_in + ii];
                for j in 0..mg {
                    let oc = grp * mg + j;
                    let wbase = (ic * mg + j) * per_kernel;
                    'k: for (ki, kp) in kpos.iter().enumerate() {
                        let mut off = 0;
                        for d in 0..n {
                            let p = (ip[d] * st[d] + kp[d] * dil[d]) as isize - pb[d] as isize;
                            if p < 0 || p >= out[d] as isize {
                                continue 'k;
                            }
                            off += p as usize * ostr[d];
                        }
                        y[(bi * m + oc) * per_out + off] += xval * wd[wbase + ki];
                    }
                }
            }
        }
    }
    let mut shape = vec![batch, m];
    shape.extend(&out);
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| e.to_string())?)
}

/// Returns the pooled values and, for Max, the flat indices of the chosen elements.
pub fn pool(op: &Pool, x: &Array) -> KernelResult<(Array, Option<Array>)> {
    let dtype = x.dtype();
    let xv = x.to_f64()?;
    let xs = xv.shape().to_vec();
    if xs.len() < 3 {
        return Err(format!("pooling needs an [N, C, spatial...] input, found {xs:?}"));
    }
    let n = xs.len() - 2;
    if op.kernel_shape.len() != n {
        return Err(format!("kernel_shape has {} entries for {n} spatial axes", op.kernel_shape.len()));
    }
    let k: Vec<usize> = op.kernel_shape.iter().map(|v| *v as usize).collect();
    let st = per_axis(&op.strides, n, "strides")?;
    let dil = per_axis(&op.dilations, n, "dilations")?;
    let ek: Vec<usize> = (0..n).map(|i| (k[i].max(1) - 1) * dil[i] + 1).collect();
    let (pb, pe, out) = window_geometry(&op.pads, &xs[2..], &ek, &st, op.ceil_mode)?;
    let sp = &xs[2..];
    let xd = xv.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let sstr = strides_of(sp);
    let per_in: usize = sp.iter().product();
    let kpos = positions(&k);
    let opos = positions(&out);
    let planes = xs[0] * xs[1];
    let mut y = Vec::with_capacity(planes * opos.len());
    let mut idx = Vec::with_capacity(planes * opos.len());
    for plane in 0..planes {
        let base = plane * per_in;
        for o in &opos {
            let (mut acc, mut best, mut best_i, mut count, mut padded) =
                (0.0, f64::NAN, None::<Vec<usize>>, 0usize, 0usize);
            'k: for kp in &kpos {
                let mut inside_pad = true;
                let mut off = 0;
                let mut coords = Vec::with_capacity(n);
                let mut valid = true;
                for d in 0..n {
                    let p = (o[d] * st[d] + kp[d] * dil[d]) as isize - pb[d] as isize;
                    if p < -(pb[d] as isize) || p >= (sp[d] + pe[d]) as isize {
                        inside_pad = false;
                    }
                    if p < 0 || p >= sp[d] as isize {
                        valid = false;
                    } else {
                        off += p as usize * sstr[d];
                        coords.push(p as usize);
                    }
                }
                if inside_pad {
                    padded += 1;
                }
                if !valid {
                    continue 'k;
                }
                let v = xd[base + off];
                count += 1;
                match op.kind {
                    PoolKind::Max => {
                        if best_i.is_none() || v > best || (best.is_nan() && !v.is_nan()) {
                            best = v;
                            best_i = Some(coords);
                        }
                    }
                    PoolKind::Avg => acc += v,
                    PoolKind::Lp(p) => acc += v.abs().powi(p as i32),
                }
            }
            let val = match op.kind {
                PoolKind::Max => best,
                PoolKind::Avg => acc / if op.count_include_pad { padded } else { count } as f64,
                PoolKind::Lp(p) => acc.powf(1.0 / p as f64),
            };
            y.push(val);
            if let Some(c) = best_i {
                let flat = if op.column_major_indices {
                    let mut f = 0;
                    let mut mul = 1;
                    for d in 0..n {
                        f += c[d] * mul;
                        mul *= sp[d];
                    }
                    f
                } else {
                    (0..n).map(|d| c[d] * sstr[d]).sum()
                };
                idx.push((plane * per_in + flat) as i64);
            } else {
                idx.push(0);
            }
        }
    }
    let mut shape = vec![xs[0], xs[1]];
    shape.extend(&out);
    let yv = Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| e.to_string())?)?;
    let iv = if op.kind == PoolKind::Max {
        Some(Array::I64(ArrayD::from_shape_vec(IxDyn(&shape), idx).map_err(|e| e.to_string())?))
    } else {
        None
    };
    Ok((yv, iv))
}

pub fn lrn(x: &Array, alpha: f32, beta: f32, bias: f32, size: u64) -> KernelResult<Array> {
    let v = x.to_f64()?;
    let s = v.shape().to_vec();
    if s.len() < 2 {
        return Err("LRN needs an [N, C, ...] input".into());
    }
    let (c, inner) = (s[1], s[2..].iter().product::<usize>());
    let d = v.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    let size = size as usize;
    // floor((size - 1) / 2) channels before, ceil((size - 1) / 2) after.
    let (lo, hi) = ((size.max(1) - 1) / 2, size.max(1) / 2);
    let mut y = vec![0.0; d.len()];
    for b in 0..s[0] {
        for ch in 0..c {
            for i in 0..inner {
                let from = ch.saturating_sub(lo);
                let to = (ch + hi).min(c - 1);
                let sq: f64 = (from..=to).map(|cc| d[(b * c + cc) * inner + i].powi(2)).sum();
                let e = (b * c + ch) * inner + i;
                y[e] = d[e] / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
            }
        }
    }
    Array::from_f64(x.dtype(), ArrayD::from_shape_vec(IxDyn(&s), y).map_err(|e| e.to_string())?)
}
