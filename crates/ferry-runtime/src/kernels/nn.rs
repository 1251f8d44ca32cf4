//! Neural-network kernels that are not sliding windows: integer matmul, einsum, (de)quantization,
//! non-max suppression, resize and attention. Plain loops in f64.

use super::{array, opt_array, tensor_value};
use crate::array::Array;
use crate::kernels::{conv::positions, elementwise, elementwise::broadcast_shape, linalg, reduce::norm_axis};
use crate::lowbits;
use crate::{KernelResult, Value};
use ferry_ir::DType;
use ferry_ir::ops::{Attention, BinaryOp, QkMatmulOutputMode, Resize};
use ndarray::{ArrayD, Axis, IxDyn};

fn shaped<T>(shape: &[usize], v: Vec<T>) -> KernelResult<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())
}

fn flat(a: &ArrayD<f64>) -> Vec<f64> {
    a.as_standard_layout().iter().copied().collect()
}

pub fn matmul_integer(args: &[Option<Value>]) -> KernelResult<Array> {
    let a = array(args, 0)?;
    let b = array(args, 1)?;
    let mut x = a.to_i64()?.mapv(|v| v as f64);
    let mut y = b.to_i64()?.mapv(|v| v as f64);
    if let Some(zp) = opt_array(args, 2)? {
        let zp = zp.to_i64()?.mapv(|v| v as f64);
        let zp = if zp.ndim() == 1 && zp.len() > 1 && x.ndim() >= 2 {
            zp.clone().into_shape_with_order(IxDyn(&[zp.len(), 1])).map_err(|e| e.to_string())?
        } else {
            zp
        };
        // Through the checked broadcast: a zero point that does not fit is an error, not a panic.
        x = elementwise::binary(BinaryOp::Sub, &Array::F64(x), &Array::F64(zp))?.to_f64()?;
    }
    if let Some(zp) = opt_array(args, 3)? {
        let zp = zp.to_i64()?.mapv(|v| v as f64);
        y = elementwise::binary(BinaryOp::Sub, &Array::F64(y), &Array::F64(zp))?.to_f64()?;
    }
    let r = linalg::matmul(&Array::F64(x), &Array::F64(y))?.to_f64()?;
    Ok(Array::I32(r.mapv(|v| v as i32)))
}

pub fn einsum(equation: &str, inputs: &[Array]) -> KernelResult<Array> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() {
        return Err(format!("Einsum equation has {} operands, {} inputs given", terms.len(), inputs.len()));
    }
    // Ellipsis dims get labels '0'.. (right-aligned across operands).
    let mut ell_rank = 0;
    for (t, a) in terms.iter().zip(inputs) {
        if t.contains("...") {
            let named = t.replace("...", "").chars().count();
            ell_rank = ell_rank.max(a.shape().len().saturating_sub(named));
        }
    }
    let ell_labels: Vec<char> = (0..ell_rank).map(|i| char::from(b'0' + i as u8)).collect();
    let expand = |t: &str, rank: usize| -> KernelResult<Vec<char>> {
        if let Some(pos) = t.find("...") {
            let named = t.replace("...", "").chars().count();
            let k = rank.checked_sub(named).ok_or("Einsum operand rank is too small")?;
            let mut v: Vec<char> = t[..pos].chars().collect();
            v.extend(&ell_labels[ell_rank - k..]);
            v.extend(t[pos + 3..].chars());
            Ok(v)
        } else {
            Ok(t.chars().collect())
        }
    };
    let mut op_labels = Vec::new();
    let mut sizes: std::collections::BTreeMap<char, usize> = Default::default();
    for (t, a) in terms.iter().zip(inputs) {
        let l = expand(t, a.shape().len())?;
        if l.len() != a.shape().len() {
            return Err(format!("Einsum term '{t}' does not match an input of rank {}", a.shape().len()));
        }
        for (c, d) in l.iter().zip(a.shape()) {
            let e = sizes.entry(*c).or_insert(*d);
            if *e != *d {
                if *e == 1 {
                    *e = *d;
                } else if *d != 1 {
                    return Err(format!("Einsum label '{c}' has sizes {e} and {d}"));
                }
            }
        }
        op_labels.push(l);
    }
    let out_labels: Vec<char> = match rhs {
        Some(r) => {
            let mut v: Vec<char> = Vec::new();
            if let Some(pos) = r.find("...") {
                v.extend(r[..pos].chars());
                v.extend(&ell_labels);
                v.extend(r[pos + 3..].chars());
            } else {
                v.extend(r.chars());
            }
            v
        }
        None => {
            let mut v = ell_labels.clone();
            let mut letters: Vec<char> = sizes
                .keys()
                .filter(|c| !c.is_ascii_digit())
                .filter(|c| op_labels.iter().flatten().filter(|x| x == c).count() == 1)
                .copied()
                .collect();
            letters.sort();
            v.extend(letters);
            v
        }
    };
    for c in &out_labels {
        if !sizes.contains_key(c) {
            return Err(format!("Einsum output label '{c}' is not in any input"));
        }
    }
    let sum_labels: Vec<char> = sizes.keys().filter(|c| !out_labels.contains(c)).copied().collect();
    let all: Vec<char> = out_labels.iter().chain(&sum_labels).copied().collect();
    let dims: Vec<usize> = all.iter().map(|c| sizes[c]).collect();
    let datas: Vec<Vec<f64>> = inputs.iter().map(|a| a.to_f64().map(|v| flat(&v))).collect::<KernelResult<_>>()?;
    // Per operand, per label in `all`: stride (0 if absent or broadcast).
    let strides: Vec<Vec<usize>> = op_labels
        .iter()
        .zip(inputs)
        .map(|(l, a)| {
            let sh = a.shape();
            let mut st = vec![0usize; all.len()];
            let mut acc = 1;
            for i in (0..l.len()).rev() {
                if sh[i] != 1 {
                    let j = all.iter().position(|c| *c == l[i]).unwrap_or(0);
                    st[j] += acc;
                }
                acc *= sh[i];
            }
            st
        })
        .collect();
    let n_out: usize = dims[..out_labels.len()].iter().product();
    let n_sum: usize = dims[out_labels.len()..].iter().product();
    let mut out = vec![0.0; n_out];
    if n_out > 0 && n_sum > 0 {
        let mut idx = vec![0usize; all.len()];
        let mut offs = vec![0usize; inputs.len()];
        for o in out.iter_mut() {
            let mut acc = 0.0;
            for _ in 0..n_sum {
                let mut p = 1.0;
                for (k, d) in datas.iter().enumerate() {
                    p *= d[offs[k]];
                }
                acc += p;
                // summed labels are innermost: after n_sum steps the output labels have advanced by one
                advance(&mut idx, &mut offs, &dims, &strides);
            }
            *o = acc;
        }
    }
    let shape: Vec<usize> = dims[..out_labels.len()].to_vec();
    Array::from_f64(inputs[0].dtype(), shaped(&shape, out)?)
}

/// Odometer step (row-major) over every label, keeping each operand's offset in step.
fn advance(idx: &mut [usize], offs: &mut [usize], dims: &[usize], strides: &[Vec<usize>]) {
    for i in (0..idx.len()).rev() {
        idx[i] += 1;
        for (k, s) in strides.iter().enumerate() {
            offs[k] += s[i];
        }
        if idx[i] < dims[i] {
            return;
        }
        for (k, s) in strides.iter().enumerate() {
            offs[k] -= s[i] * idx[i];
        }
        idx[i] = 0;
    }
}

/// Index into a per-tensor / per-axis / blocked parameter for each element of `shape`.
fn param_index(shape: &[usize], pshape: &[usize], axis: i64, block: u64) -> KernelResult<Vec<usize>> {
    let total: usize = shape.iter().product();
    let plen: usize = pshape.iter().product();
    if plen == 1 {
        return Ok(vec![0; total]);
    }
    let rank = shape.len();
    let axis = norm_axis(axis, rank)?;
    let pos = positions(shape);
    if block == 0 {
        if pshape.len() != 1 || pshape[0] != shape[axis] {
            return Err(format!("per-axis parameter of shape {pshape:?} for axis {axis} of {shape:?}"));
        }
        return Ok(pos.iter().map(|p| p[axis]).collect());
    }
    if pshape.len() != rank {
        return Err(format!("blocked parameter of shape {pshape:?} for an input {shape:?}"));
    }
    let mut out = Vec::with_capacity(total);
    for p in pos {
        let mut f = 0;
        for d in 0..rank {
            let c = if d == axis { p[d] / block as usize } else { p[d] };
            if c >= pshape[d] {
                return Err("blocked parameter is too small".into());
            }
            f = f * pshape[d] + c;
        }
        out.push(f);
    }
    Ok(out)
}

fn int_range(d: DType) -> KernelResult<(f64, f64)> {
    Ok(match d {
        DType::I8 => (-128.0, 127.0),
        DType::U8 => (0.0, 255.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U16 => (0.0, 65535.0),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U32 => (0.0, u32::MAX as f64),
        DType::I4 => (-8.0, 7.0),
        DType::U4 => (0.0, 15.0),
        DType::I2 => (-2.0, 1.0),
        DType::U2 => (0.0, 3.0),
        other => return Err(format!("quantizing to {other} is not supported by the reference kernels yet")),
    })
}

/// A tensor's dtype, shape and elements as f64.
type Numbers = (DType, Vec<usize>, Vec<f64>);

/// Numbers of input `i`, including the low-precision types the typed arrays lack.
fn numbers(args: &[Option<Value>], i: usize) -> KernelResult<Numbers> {
    let t = super::arg_value(args, i)?.tensor().ok_or_else(|| format!("input {i} must be a tensor"))?;
    let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
    if lowbits::is_lowbits(t.dtype) {
        return Ok((t.dtype, shape, lowbits::to_f64(t)?));
    }
    Ok((t.dtype, shape, flat(&Array::from_tensor(t)?.to_f64()?)))
}

fn opt_numbers(args: &[Option<Value>], i: usize) -> KernelResult<Option<Numbers>> {
    match args.get(i).and_then(|a| a.as_ref()) {
        Some(_) => numbers(args, i).map(Some),
        None => Ok(None),
    }
}

pub fn quantize(
    args: &[Option<Value>],
    axis: i64,
    saturate: bool,
    block: u64,
    out: Option<DType>,
) -> KernelResult<Value> {
    let (_, xs, xv) = numbers(args, 0)?;
    let (sdtype, sshape, sv) = numbers(args, 1)?;
    let zp = opt_numbers(args, 2)?;
    let dtype = out.or(zp.as_ref().map(|z| z.0)).unwrap_or(DType::U8);
    let float_out = dtype.is_float();
    let (lo, hi) = if float_out { (f64::NEG_INFINITY, f64::INFINITY) } else { int_range(dtype)? };
    let si = param_index(&xs, &sshape, axis, block)?;
    let zv: Vec<f64> = match &zp {
        Some((_, _, z)) => {
            if z.len() != sv.len() {
                return Err("zero point and scale differ in size".into());
            }
            z.clone()
        }
        None => vec![0.0; sv.len()],
    };
    let f32_math = sdtype == DType::F32;
    let y: Vec<f64> = xv
        .iter()
        .zip(&si)
        .map(|(v, &i)| {
            let q = if f32_math { (*v as f32 / sv[i] as f32) as f64 } else { v / sv[i] };
            if float_out { q + zv[i] } else { (q.round_ties_even() + zv[i]).clamp(lo, hi) }
        })
        .collect();
    if lowbits::is_lowbits(dtype) {
        let shape = xs.iter().map(|d| *d as u64).collect();
        return Ok(Value::Tensor(lowbits::from_f64(dtype, shape, &y, saturate, "up")?));
    }
    Ok(tensor_value(Array::from_f64(dtype, shaped(&xs, y)?)?))
}

pub fn dequantize(args: &[Option<Value>], axis: i64, block: u64) -> KernelResult<Array> {
    let (_, xs, xv) = numbers(args, 0)?;
    let (sdtype, sshape, sv) = numbers(args, 1)?;
    let si = param_index(&xs, &sshape, axis, block)?;
    let zv: Vec<f64> = match opt_numbers(args, 2)? {
        Some((_, _, z)) => z,
        None => vec![0.0; sv.len()],
    };
    if zv.len() != sv.len() {
        return Err("zero point and scale differ in size".into());
    }
    let y: Vec<f64> = xv.iter().zip(&si).map(|(v, &i)| (v - zv[i]) * sv[i]).collect();
    Array::from_f64(sdtype, shaped(&xs, y)?)
}

pub fn nms(args: &[Option<Value>], center: bool) -> KernelResult<Array> {
    let boxes = array(args, 0)?.to_f64()?;
    let scores = array(args, 1)?.to_f64()?;
    let first = |i: usize| -> KernelResult<Option<f64>> {
        Ok(match opt_array(args, i)? {
            Some(a) => a.to_f64()?.iter().next().copied(),
            None => None,
        })
    };
    let max_out = first(2)?.unwrap_or(0.0).max(0.0) as usize;
    let iou_t = first(3)?.unwrap_or(0.0);
    let score_t = first(4)?;
    let (bs, ss) = (boxes.shape().to_vec(), scores.shape().to_vec());
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        return Err(format!("NonMaxSuppression boxes {bs:?} and scores {ss:?} do not fit"));
    }
    let corners = |b: usize, i: usize| -> [f64; 4] {
        let v = [boxes[[b, i, 0]], boxes[[b, i, 1]], boxes[[b, i, 2]], boxes[[b, i, 3]]];
        if center {
            // [x_min, x_max, y_min, y_max]
            [v[0] - v[2] / 2.0, v[0] + v[2] / 2.0, v[1] - v[3] / 2.0, v[1] + v[3] / 2.0]
        } else {
            [v[1].min(v[3]), v[1].max(v[3]), v[0].min(v[2]), v[0].max(v[2])]
        }
    };
    let suppress = |b: usize, i: usize, j: usize| -> bool {
        let (p, q) = (corners(b, i), corners(b, j));
        let (x0, x1) = (p[0].max(q[0]), p[1].min(q[1]));
        let (y0, y1) = (p[2].max(q[2]), p[3].min(q[3]));
        if x1 <= x0 || y1 <= y0 {
            return false;
        }
        let inter = (x1 - x0) * (y1 - y0);
        let a1 = (p[1] - p[0]) * (p[3] - p[2]);
        let a2 = (q[1] - q[0]) * (q[3] - q[2]);
        let union = a1 + a2 - inter;
        if inter <= 0.0 || a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
            return false;
        }
        inter / union > iou_t
    };
    let mut rows: Vec<i64> = Vec::new();
    for b in 0..bs[0] {
        for c in 0..ss[1] {
            let mut cand: Vec<(f64, usize)> =
                (0..bs[1]).map(|i| (scores[[b, c, i]], i)).filter(|(s, _)| score_t.is_none_or(|t| *s > t)).collect();
            // Highest score first; ties: lower index first.
            cand.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(std::cmp::Ordering::Equal).then(x.1.cmp(&y.1)));
            let mut sel: Vec<usize> = Vec::new();
            for (_, i) in cand {
                if sel.len() >= max_out {
                    break;
                }
                if sel.iter().all(|&j| !suppress(b, i, j)) {
                    sel.push(i);
                    rows.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let n = rows.len() / 3;
    Ok(Array::I64(shaped(&[n, 3], rows)?))
}

/// Per output position along one axis: the taps (input index, weight), or None to extrapolate.
type Taps = Vec<Option<Vec<(usize, f64)>>>;

fn axis_taps(r: &Resize, input: usize, output: usize, scale: f64, roi: Option<(f64, f64)>) -> KernelResult<Taps> {
    let a = r.cubic_coeff_a as f64;
    let out_w = scale * input as f64;
    let mut taps = Vec::with_capacity(output);
    for y in 0..output {
        let yf = y as f64;
        let x = match r.coordinate_transformation_mode.as_str() {
            "align_corners" => {
                if out_w == 1.0 {
                    0.0
                } else {
                    yf * (input as f64 - 1.0) / (out_w - 1.0)
                }
            }
            "asymmetric" => yf / scale,
            "tf_crop_and_resize" => {
                let (r0, r1) = roi.ok_or("tf_crop_and_resize needs roi")?;
                let x = if out_w == 1.0 {
                    (r1 - r0) * (input as f64 - 1.0) / 2.0
                } else {
                    yf * (r1 - r0) * (input as f64 - 1.0) / (out_w - 1.0)
                } + r0 * (input as f64 - 1.0);
                if x < 0.0 || x > input as f64 - 1.0 {
                    taps.push(None);
                    continue;
                }
                x
            }
            "pytorch_half_pixel" => {
                if out_w == 1.0 {
                    -0.5
                } else {
                    (yf + 0.5) / scale - 0.5
                }
            }
            "half_pixel" => (yf + 0.5) / scale - 0.5,
            "half_pixel_symmetric" => {
                let adj = output as f64 / out_w;
                let center = input as f64 / 2.0;
                center * (1.0 - adj) + (yf + 0.5) / scale - 0.5
            }
            m => return Err(format!("unknown coordinate_transformation_mode {m}")),
        };
        let xi = x.floor();
        let ratio = if x == xi { 1.0 } else { x - xi };
        let aa = r.antialias && scale < 1.0;
        let coeffs: Vec<f64> = match r.mode.as_str() {
            "nearest" => {
                let up = match r.nearest_mode.as_str() {
                    _ if ratio == 1.0 => true,
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    "ceil" => true,
                    m => return Err(format!("unknown nearest_mode {m}")),
                };
                if up { vec![0.0, 1.0] } else { vec![1.0, 0.0] }
            }
            "linear" if aa => {
                let start = (-1.0 / scale).floor() as i64 + 1;
                let foot = 2 - 2 * start;
                let c: Vec<f64> =
                    (start..start + foot).map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0)).collect();
                let s: f64 = c.iter().sum();
                c.into_iter().map(|v| v / s).collect()
            }
            "linear" => vec![1.0 - ratio, ratio],
            "cubic" if aa => {
                let f = |x: f64| {
                    let x = x.abs();
                    if x <= 1.0 {
                        (a + 2.0) * x * x * x - (a + 3.0) * x * x + 1.0
                    } else if x < 2.0 {
                        a * x * x * x - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / scale).floor() as i64 + 1;
                let c: Vec<f64> = (start..2 - start).map(|i| f(scale * (i as f64 - ratio))).collect();
                let s: f64 = c.iter().sum();
                c.into_iter().map(|v| v / s).collect()
            }
            "cubic" => {
                let (r1, q) = (ratio + 1.0, 1.0 - ratio);
                vec![
                    ((a * r1 - 5.0 * a) * r1 + 8.0 * a) * r1 - 4.0 * a,
                    ((a + 2.0) * ratio - (a + 3.0)) * ratio * ratio + 1.0,
                    ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                    ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
                ]
            }
            m => return Err(format!("unknown resize mode {m}")),
        };
        let n = coeffs.len() as i64;
        let pad = (n + 1) / 2;
        let xp = x + pad as f64;
        let p = xp.floor();
        let frac = xp - p;
        let off = if n % 2 == 0 {
            if frac == 0.0 { -(n / 2) } else { -(n / 2) + 1 }
        } else {
            let base = -((n - 1) / 2);
            if frac <= 0.5 { base } else { base + 1 }
        };
        let start = p as i64 + off - pad;
        let mut c = coeffs;
        if r.exclude_outside {
            for (k, w) in c.iter_mut().enumerate() {
                let i = start + k as i64;
                if i < 0 || i >= input as i64 {
                    *w = 0.0;
                }
            }
            let s: f64 = c.iter().sum();
            let s = if s == 0.0 { 1.0 } else { s };
            c.iter_mut().for_each(|w| *w /= s);
        }
        let t: Vec<(usize, f64)> = c
            .into_iter()
            .enumerate()
            .map(|(k, w)| ((start + k as i64).clamp(0, input as i64 - 1) as usize, w))
            .collect();
        taps.push(Some(t));
    }
    Ok(taps)
}

pub fn resize(r: &Resize, args: &[Option<Value>]) -> KernelResult<Array> {
    let x = array(args, 0)?;
    let dtype = x.dtype();
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let axes: Vec<usize> = match &r.axes {
        Some(a) => a.iter().map(|v| norm_axis(*v, rank)).collect::<KernelResult<_>>()?,
        None => (0..rank).collect(),
    };
    let roi: Option<Vec<f64>> = match opt_array(args, 1)? {
        Some(a) if a.shape().iter().product::<usize>() > 0 => Some(flat(&a.to_f64()?)),
        _ => None,
    };
    let scales = opt_array(args, 2)?.filter(|a| a.shape().iter().product::<usize>() > 0);
    let sizes = opt_array(args, 3)?.filter(|a| a.shape().iter().product::<usize>() > 0);
    let mut scale = vec![1.0f64; rank];
    let mut out: Vec<usize> = shape.clone();
    if let Some(s) = sizes {
        let s: Vec<i64> = s.to_i64()?.iter().copied().collect();
        if s.len() != axes.len() {
            return Err(format!("{} sizes for {} axes", s.len(), axes.len()));
        }
        for (i, &a) in axes.iter().enumerate() {
            scale[a] = s[i] as f64 / shape[a] as f64;
            out[a] = s[i].max(0) as usize;
        }
        if r.keep_aspect_ratio_policy != "stretch" {
            let vals = axes.iter().map(|a| scale[*a]);
            let sc = if r.keep_aspect_ratio_policy == "not_larger" {
                vals.fold(f64::INFINITY, f64::min)
            } else {
                vals.fold(f64::NEG_INFINITY, f64::max)
            };
            for &a in &axes {
                scale[a] = sc;
                out[a] = (sc * shape[a] as f64 + 0.5) as usize;
            }
        }
    } else if let Some(s) = scales {
        let s: Vec<f64> = flat(&s.to_f64()?);
        if s.len() != axes.len() {
            return Err(format!("{} scales for {} axes", s.len(), axes.len()));
        }
        for (i, &a) in axes.iter().enumerate() {
            if s[i] <= 0.0 {
                return Err("resize scales must be positive".into());
            }
            scale[a] = s[i];
            out[a] = (s[i] * shape[a] as f64).floor() as usize;
        }
    } else {
        return Err("Resize needs scales or sizes".into());
    }
    if let Some(v) = &roi {
        if v.len() != 2 * axes.len() && v.len() != 2 * shape.len() {
            return Err(format!(
                "Resize's roi has {} values; it needs 2 per resized axis ({}) or 2 per input axis ({})",
                v.len(),
                2 * axes.len(),
                2 * shape.len()
            ));
        }
    }
    let mut cur = x.to_f64()?;
    for (i, &a) in axes.iter().enumerate() {
        let axis_roi = roi.as_ref().map(|v| {
            let n = v.len() / 2;
            // roi lists starts then ends, for the resized axes (or all axes).
            if n == axes.len() { (v[i], v[n + i]) } else { (v[a], v[n + a]) }
        });
        let identity = (scale[a] - 1.0).abs() < 1e-9
            && out[a] == cur.shape()[a]
            && axis_roi.is_none_or(|(s, e)| s.abs() < 1e-9 && (e - 1.0).abs() < 1e-9);
        if identity {
            continue;
        }
        let taps = axis_taps(r, cur.shape()[a], out[a], scale[a], axis_roi)?;
        let mut nshape = cur.shape().to_vec();
        nshape[a] = out[a];
        let mut next = ArrayD::<f64>::zeros(IxDyn(&nshape));
        for (o, t) in taps.iter().enumerate() {
            let mut dst = next.index_axis_mut(Axis(a), o);
            match t {
                None => dst.fill(r.extrapolation_value as f64),
                Some(t) => {
                    for (src, w) in t {
                        let s = cur.index_axis(Axis(a), *src);
                        dst.zip_mut_with(&s, |d, v| *d += w * v);
                    }
                }
            }
        }
        cur = next;
    }
    if dtype.is_int() {
        let (lo, hi) = int_range(dtype).unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        cur.mapv_inplace(|v| v.round_ties_even().clamp(lo, hi));
    }
    Array::from_f64(dtype, cur)
}

/// [B, S, H*D] -> [B, H, S, D].
fn heads(a: ArrayD<f64>, h: Option<u64>) -> KernelResult<ArrayD<f64>> {
    match a.ndim() {
        4 => Ok(a),
        3 => {
            let h = h.ok_or("3-D attention inputs need the head counts")? as usize;
            let s = a.shape().to_vec();
            if h == 0 || !s[2].is_multiple_of(h) {
                return Err(format!("hidden size {} does not split into {h} heads", s[2]));
            }
            let r = a.into_shape_with_order(IxDyn(&[s[0], s[1], h, s[2] / h])).map_err(|e| e.to_string())?;
            Ok(r.permuted_axes(IxDyn(&[0, 2, 1, 3])).as_standard_layout().to_owned())
        }
        r => Err(format!("attention inputs must be 3-D or 4-D, found rank {r}")),
    }
}

pub fn attention(op: &Attention, args: &[Option<Value>], n_out: usize) -> KernelResult<Vec<Option<Value>>> {
    let q_arr = array(args, 0)?;
    let k_arr = array(args, 1)?;
    let v_arr = array(args, 2)?;
    let three_d = q_arr.shape().len() == 3;
    let q = heads(q_arr.to_f64()?, op.q_num_heads)?;
    let mut k = heads(k_arr.to_f64()?, op.kv_num_heads)?;
    let mut v = heads(v_arr.to_f64()?, op.kv_num_heads)?;
    let mut past_len = None;
    if let (Some(pk), Some(pv)) = (opt_array(args, 4)?, opt_array(args, 5)?) {
        let (pk, pv) = (pk.to_f64()?, pv.to_f64()?);
        past_len = Some(pk.shape()[2]);
        k = ndarray::concatenate(Axis(2), &[pk.view(), k.view()]).map_err(|e| e.to_string())?;
        v = ndarray::concatenate(Axis(2), &[pv.view(), v.view()]).map_err(|e| e.to_string())?;
    }
    let nonpad: Option<Vec<i64>> = match opt_array(args, 6)? {
        Some(a) => Some(a.to_i64()?.iter().copied().collect()),
        None => None,
    };
    let (b, hq, sq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hk, t, dv) = (k.shape()[1], k.shape()[2], v.shape()[3]);
    if hk == 0
        || hq % hk != 0
        || k.shape()[3] != d
        || v.shape()[2] != t
        || k.shape()[0] != b
        || v.shape()[0] != b
        || v.shape()[1] != hk
    {
        return Err(format!("attention shapes Q {:?} K {:?} V {:?} do not fit", q.shape(), k.shape(), v.shape()));
    }
    let group = hq / hk;
    let scale = op.scale.map(|s| s as f64).unwrap_or(1.0 / (d as f64).sqrt());
    let mask = match opt_array(args, 3)? {
        Some(m) => {
            let is_bool = m.dtype() == DType::Bool;
            let mut mv = m.to_f64()?;
            if is_bool {
                mv.mapv_inplace(|x| if x != 0.0 { 0.0 } else { f64::NEG_INFINITY });
            }
            let last = *mv.shape().last().unwrap_or(&t);
            if last < t {
                let mut pshape = mv.shape().to_vec();
                let n = pshape.len();
                pshape[n - 1] = t - last;
                let pad = ArrayD::from_elem(IxDyn(&pshape), f64::NEG_INFINITY);
                mv = ndarray::concatenate(Axis(n - 1), &[mv.view(), pad.view()]).map_err(|e| e.to_string())?;
            }
            let target = [b, hq, sq, t];
            let bs = broadcast_shape(mv.shape(), &target)?;
            if bs != target {
                return Err(format!("attention mask {:?} does not broadcast to {target:?}", mv.shape()));
            }
            Some(mv.broadcast(IxDyn(&target)).ok_or("attention mask does not broadcast")?.to_owned())
        }
        None => None,
    };
    let mut y = ArrayD::<f64>::zeros(IxDyn(&[b, hq, sq, dv]));
    let mut qk = ArrayD::<f64>::zeros(IxDyn(&[b, hq, sq, t]));
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / group;
            for i in 0..sq {
                let mut row = vec![0.0; t];
                for (j, r) in row.iter_mut().enumerate() {
                    let mut s = 0.0;
                    for e in 0..d {
                        s += q[[bi, h, i, e]] * k[[bi, kh, j, e]];
                    }
                    *r = s * scale;
                }
                if op.qk_matmul_output_mode == QkMatmulOutputMode::Raw {
                    row.iter().enumerate().for_each(|(j, r)| qk[[bi, h, i, j]] = *r);
                }
                if op.softcap > 0.0 {
                    let c = op.softcap as f64;
                    row.iter_mut().for_each(|r| *r = c * (*r / c).tanh());
                }
                if op.qk_matmul_output_mode == QkMatmulOutputMode::Softcapped {
                    row.iter().enumerate().for_each(|(j, r)| qk[[bi, h, i, j]] = *r);
                }
                let offset: i64 = match (past_len, &nonpad) {
                    (Some(p), _) => p as i64,
                    (None, Some(np)) => np.get(bi).copied().unwrap_or(t as i64) - sq as i64,
                    _ => 0,
                };
                let pos = i as i64 + offset;
                for (j, r) in row.iter_mut().enumerate() {
                    let j = j as i64;
                    let mut bias = 0.0;
                    if let Some(m) = &mask {
                        bias += m[[bi, h, i, j as usize]];
                    }
                    if op.is_causal && j > pos {
                        bias = f64::NEG_INFINITY;
                    }
                    if let Some(np) = &nonpad
                        && j >= np.get(bi).copied().unwrap_or(t as i64)
                    {
                        bias = f64::NEG_INFINITY;
                    }
                    if op.left_window_size.is_some_and(|l| pos - j > l as i64)
                        || op.right_window_size.is_some_and(|rw| j - pos > rw as i64)
                    {
                        bias = f64::NEG_INFINITY;
                    }
                    *r += bias;
                }
                if op.qk_matmul_output_mode == QkMatmulOutputMode::Biased {
                    row.iter().enumerate().for_each(|(j, r)| qk[[bi, h, i, j]] = *r);
                }
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    row.iter_mut().for_each(|r| *r = 0.0);
                } else {
                    row.iter_mut().for_each(|r| *r = (*r - m).exp());
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|r| *r /= s);
                }
                if let Some(p) = op.softmax_precision {
                    let rounded = Array::from_f64(p, shaped(&[t], row.clone())?).and_then(|a| a.to_f64());
                    if let Ok(rv) = rounded {
                        row = rv.iter().copied().collect();
                    }
                }
                if op.qk_matmul_output_mode == QkMatmulOutputMode::Softmax {
                    row.iter().enumerate().for_each(|(j, r)| qk[[bi, h, i, j]] = *r);
                }
                for e in 0..dv {
                    let mut s = 0.0;
                    for (j, p) in row.iter().enumerate() {
                        s += p * v[[bi, kh, j, e]];
                    }
                    y[[bi, h, i, e]] = s;
                }
            }
        }
    }
    let y = if three_d {
        let p = y.permuted_axes(IxDyn(&[0, 2, 1, 3])).as_standard_layout().to_owned();
        p.into_shape_with_order(IxDyn(&[b, sq, hq * dv])).map_err(|e| e.to_string())?
    } else {
        y
    };
    let dtype = q_arr.dtype();
    let mut outs = vec![Some(tensor_value(Array::from_f64(dtype, y)?))];
    if n_out > 1 {
        outs.push(Some(tensor_value(Array::from_f64(k_arr.dtype(), k)?)));
    }
    if n_out > 2 {
        outs.push(Some(tensor_value(Array::from_f64(v_arr.dtype(), v)?)));
    }
    if n_out > 3 {
        outs.push(Some(tensor_value(Array::from_f64(dtype, qk)?)));
    }
    Ok(outs)
}
