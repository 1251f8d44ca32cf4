//! GridSample, Col2Im, RoiAlign, MaxUnpool, DeformConv, Det and BitCast, as plain loops in f64.

use super::conv::{per_axis, positions, strides_of, window_geometry};
use crate::KernelResult;
use crate::array::Array;
use ferry_ir::ops::{Conv, GridSampleMode, GridSamplePadding};
use ferry_ir::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};

fn flat(a: &Array) -> KernelResult<(Vec<usize>, Vec<f64>)> {
    let v = a.to_f64()?;
    Ok((v.shape().to_vec(), v.as_standard_layout().iter().copied().collect()))
}

fn build(dtype: DType, shape: &[usize], data: Vec<f64>) -> KernelResult<Array> {
    Array::from_f64(dtype, ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?)
}

/// Reflects `x` into `[lo, hi]` by the nearer border until it falls inside.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).floor();
        let r = dx - n * range;
        if n as i64 % 2 == 0 { lo + r } else { hi - r }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).floor();
        let r = dx - n * range;
        if n as i64 % 2 == 0 { hi - r } else { lo + r }
    } else {
        x
    }
}

fn cubic_coeffs(t: f64) -> [f64; 4] {
    let a = -0.75;
    let x = t.abs();
    [
        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((a * (2.0 - x) - 5.0 * a) * (2.0 - x) + 8.0 * a) * (2.0 - x) - 4.0 * a,
    ]
}

pub fn grid_sample(
    mode: GridSampleMode,
    padding: GridSamplePadding,
    align_corners: bool,
    x: &Array,
    grid: &Array,
) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    let (gs, gd) = flat(grid)?;
    let r = xs.len().checked_sub(2).filter(|r| *r >= 1).ok_or("GridSample input needs [N, C, spatial...]")?;
    if gs.len() != r + 2 || gs[0] != xs[0] || gs[r + 1] != r {
        return Err(format!("GridSample grid {gs:?} does not fit input {xs:?}"));
    }
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let out_sp = &gs[1..r + 1];
    let points: usize = out_sp.iter().product();
    let plane: usize = dims.iter().product();
    let xstr = strides_of(dims);
    let (lo, hi): (Vec<f64>, Vec<f64>) =
        dims.iter().map(|d| if align_corners { (0.0, *d as f64 - 1.0) } else { (-0.5, *d as f64 - 0.5) }).unzip();
    let mut out = vec![0.0; n * c * points];
    let mut taps: Vec<Vec<(i64, f64)>> = vec![Vec::new(); r];
    for b in 0..n {
        for p in 0..points {
            let g = &gd[(b * points + p) * r..(b * points + p + 1) * r];
            for i in 0..r {
                // grid[..., 0] indexes the last spatial axis; denormalized in f32 as ONNX does.
                let v = g[r - 1 - i] as f32;
                let len = dims[i] as f32;
                let mut xc =
                    if align_corners { (v + 1.0) / 2.0 * (len - 1.0) } else { ((v + 1.0) * len - 1.0) / 2.0 } as f64;
                if mode == GridSampleMode::Nearest {
                    xc = xc.round_ties_even();
                }
                if xc < lo[i] || xc > hi[i] {
                    match padding {
                        GridSamplePadding::Border => xc = xc.clamp(0.0, dims[i] as f64 - 1.0),
                        GridSamplePadding::Reflection => xc = reflect(xc, lo[i], hi[i]),
                        GridSamplePadding::Zeros => {}
                    }
                }
                taps[i] = match mode {
                    GridSampleMode::Nearest => vec![(xc.trunc() as i64, 1.0)],
                    GridSampleMode::Linear => {
                        let x0 = xc.floor();
                        let t = xc - x0;
                        vec![(x0 as i64, 1.0 - t), (x0 as i64 + 1, t)]
                    }
                    GridSampleMode::Cubic => {
                        let x0 = xc.floor();
                        let k = cubic_coeffs(xc - x0);
                        (0..4).map(|j| (x0 as i64 - 1 + j as i64, k[j])).collect()
                    }
                };
            }
            // Resolve each tap to an element offset (None: reads zero).
            let resolved: Vec<Vec<(Option<usize>, f64)>> = (0..r)
                .map(|i| {
                    taps[i]
                        .iter()
                        .map(|&(idx, w)| {
                            let d = dims[i] as i64;
                            let idx = match padding {
                                GridSamplePadding::Zeros => (0..d).contains(&idx).then_some(idx),
                                GridSamplePadding::Border => Some(idx.clamp(0, d - 1)),
                                GridSamplePadding::Reflection => Some(reflect(idx as f64, lo[i], hi[i]) as i64),
                            };
                            (idx.filter(|k| (0..d).contains(k)).map(|k| k as usize * xstr[i]), w)
                        })
                        .collect()
                })
                .collect();
            let counts: Vec<usize> = resolved.iter().map(Vec::len).collect();
            let combos = positions(&counts);
            for ch in 0..c {
                let base = (b * c + ch) * plane;
                let mut acc = 0.0;
                'combo: for combo in &combos {
                    let (mut off, mut w) = (base, 1.0);
                    for i in 0..r {
                        let (o, wi) = resolved[i][combo[i]];
                        match o {
                            Some(o) => off += o,
                            None => continue 'combo,
                        }
                        w *= wi;
                    }
                    acc += w * xd[off];
                }
                out[(b * c + ch) * points + p] = acc;
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend(out_sp);
    build(x.dtype(), &shape, out)
}

fn usizes(v: &[i64], what: &str) -> KernelResult<Vec<usize>> {
    v.iter().map(|d| usize::try_from(*d).map_err(|_| format!("{what} must not be negative: {v:?}"))).collect()
}

pub fn col2im(
    x: &Array,
    image: &[i64],
    block: &[i64],
    dilations: &[u64],
    pads: &[u64],
    strides: &[u64],
) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    let image = usizes(image, "image_shape")?;
    let block = usizes(block, "block_shape")?;
    let r = image.len();
    if xs.len() != 3 || block.len() != r || r == 0 {
        return Err(format!("Col2Im of {xs:?} into image {image:?} with blocks {block:?}"));
    }
    let dil = per_axis(dilations, r, "dilations")?;
    let st = per_axis(strides, r, "strides")?;
    let pads: Vec<usize> = if pads.is_empty() { vec![0; 2 * r] } else { pads.iter().map(|p| *p as usize).collect() };
    if pads.len() != 2 * r {
        return Err(format!("{} pads for {r} spatial axes", pads.len()));
    }
    let kn: usize = block.iter().product();
    if kn == 0 || xs[1] % kn != 0 {
        return Err(format!("Col2Im: {} columns are not a multiple of the block size {kn}", xs[1]));
    }
    let c = xs[1] / kn;
    let mut nblocks = Vec::with_capacity(r);
    for i in 0..r {
        let span = image[i] + pads[i] + pads[r + i];
        let ek = dil[i] * (block[i].max(1) - 1) + 1;
        nblocks.push(if span < ek { 0 } else { (span - ek) / st[i] + 1 });
    }
    let l: usize = nblocks.iter().product();
    if l != xs[2] {
        return Err(format!("Col2Im: {} blocks given, the geometry makes {l}", xs[2]));
    }
    let plane: usize = image.iter().product();
    let istr = strides_of(&image);
    let kpos = positions(&block);
    let bpos = positions(&nblocks);
    let mut out = vec![0.0; xs[0] * c * plane];
    for b in 0..xs[0] {
        for ch in 0..c {
            for (ki, kp) in kpos.iter().enumerate() {
                let row = (b * xs[1] + ch * kn + ki) * l;
                'blk: for (bi, bp) in bpos.iter().enumerate() {
                    let mut off = (b * c + ch) * plane;
                    for d in 0..r {
                        let p = (bp[d] * st[d] + kp[d] * dil[d]) as isize - pads[d] as isize;
                        if p < 0 || p >= image[d] as isize {
                            continue 'blk;
                        }
                        off += p as usize * istr[d];
                    }
                    out[off] += xd[row + bi];
                }
            }
        }
    }
    let mut shape = vec![xs[0], c];
    shape.extend(&image);
    build(x.dtype(), &shape, out)
}

#[allow(clippy::too_many_arguments)]
pub fn roi_align(
    x: &Array,
    rois: &Array,
    batch_indices: &[i64],
    (out_h, out_w): (u64, u64),
    sampling_ratio: u64,
    spatial_scale: f32,
    max_mode: bool,
    half_pixel: bool,
) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    let (rs, rd) = flat(rois)?;
    if xs.len() != 4 || rs.len() != 2 || rs[1] != 4 || batch_indices.len() != rs[0] {
        return Err(format!("RoiAlign of {xs:?} with rois {rs:?} and {} batch indices", batch_indices.len()));
    }
    let (c, h, w) = (xs[1], xs[2], xs[3]);
    let (ph_n, pw_n) = (out_h as usize, out_w as usize);
    let scale = spatial_scale as f64;
    let mut out = vec![0.0; rs[0] * c * ph_n * pw_n];
    if h == 0 || w == 0 {
        // An empty feature map: every sample falls outside it, and samples outside count as 0.
        return build(x.dtype(), &[rs[0], c, ph_n, pw_n], out);
    }
    for n in 0..rs[0] {
        let bi =
            usize::try_from(batch_indices[n]).ok().filter(|b| *b < xs[0]).ok_or("RoiAlign batch index out of range")?;
        let off = if half_pixel { 0.5 } else { 0.0 };
        let roi = &rd[n * 4..n * 4 + 4];
        let (sw, sh) = (roi[0] * scale - off, roi[1] * scale - off);
        let (ew, eh) = (roi[2] * scale - off, roi[3] * scale - off);
        let (mut rw, mut rh) = (ew - sw, eh - sh);
        if !half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph_n as f64, rw / pw_n as f64);
        let gh = if sampling_ratio > 0 { sampling_ratio as usize } else { (rh / ph_n as f64).ceil().max(0.0) as usize };
        let gw = if sampling_ratio > 0 { sampling_ratio as usize } else { (rw / pw_n as f64).ceil().max(0.0) as usize };
        let count = (gh * gw).max(1) as f64;
        for ph in 0..ph_n {
            for pw in 0..pw_n {
                // The bilinear taps (offset, weight) of every sample in this bin.
                let mut samples: Vec<[(usize, f64); 4]> = Vec::with_capacity(gh * gw);
                for iy in 0..gh {
                    let y = sh + ph as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                    for ix in 0..gw {
                        let mut xx = sw + pw as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                        if y < -1.0 || y > h as f64 || xx < -1.0 || xx > w as f64 {
                            samples.push([(0, 0.0); 4]);
                            continue;
                        }
                        let yy = y.max(0.0);
                        xx = xx.max(0.0);
                        let (mut yl, mut xl) = (yy as usize, xx as usize);
                        let (yh, xh);
                        let (mut yv, mut xv) = (yy, xx);
                        if yl >= h - 1 {
                            yl = h - 1;
                            yh = h - 1;
                            yv = yl as f64;
                        } else {
                            yh = yl + 1;
                        }
                        if xl >= w - 1 {
                            xl = w - 1;
                            xh = w - 1;
                            xv = xl as f64;
                        } else {
                            xh = xl + 1;
                        }
                        let (ly, lx) = (yv - yl as f64, xv - xl as f64);
                        let (hy, hx) = (1.0 - ly, 1.0 - lx);
                        samples.push([
                            (yl * w + xl, hy * hx),
                            (yl * w + xh, hy * lx),
                            (yh * w + xl, ly * hx),
                            (yh * w + xh, ly * lx),
                        ]);
                    }
                }
                for ch in 0..c {
                    let base = (bi * c + ch) * h * w;
                    let mut acc: Option<f64> = None;
                    for s in &samples {
                        if max_mode {
                            let v = s.iter().map(|(o, wt)| wt * xd[base + o]).fold(f64::NEG_INFINITY, f64::max);
                            acc = Some(acc.map_or(v, |a| a.max(v)));
                        } else {
                            let v: f64 = s.iter().map(|(o, wt)| wt * xd[base + o]).sum();
                            acc = Some(acc.unwrap_or(0.0) + v);
                        }
                    }
                    let v = acc.unwrap_or(0.0);
                    out[((n * c + ch) * ph_n + ph) * pw_n + pw] = if max_mode { v } else { v / count };
                }
            }
        }
    }
    build(x.dtype(), &[rs[0], c, ph_n, pw_n], out)
}

pub fn max_unpool(
    x: &Array,
    indices: &[i64],
    output_shape: Option<Vec<i64>>,
    kernel_shape: &[u64],
    strides: &[u64],
    pads: &[u64],
) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    if xs.len() < 3 || kernel_shape.len() != xs.len() - 2 || indices.len() != xd.len() {
        return Err(format!("MaxUnpool of {xs:?} with kernel {kernel_shape:?} and {} indices", indices.len()));
    }
    let r = xs.len() - 2;
    let st = per_axis(strides, r, "strides")?;
    let pad = |i: usize| pads.get(i).copied().unwrap_or(0) as usize;
    let mut inferred = vec![xs[0], xs[1]];
    for i in 0..r {
        let full = (xs[i + 2].max(1) - 1) * st[i] + kernel_shape[i] as usize;
        inferred.push(full.checked_sub(pad(i) + pad(r + i)).ok_or("MaxUnpool pads exceed the output")?);
    }
    let total: usize = inferred.iter().product();
    let mut y = vec![0.0; total];
    for (v, i) in xd.iter().zip(indices) {
        let i = usize::try_from(*i).ok().filter(|i| *i < total).ok_or("MaxUnpool index out of range")?;
        y[i] = *v;
    }
    let shape = match output_shape {
        Some(s) => usizes(&s, "output_shape")?,
        None => inferred.clone(),
    };
    if shape.len() != inferred.len() || shape.iter().zip(&inferred).any(|(s, i)| s < i) {
        return Err(format!("MaxUnpool output_shape {shape:?} is smaller than {inferred:?}"));
    }
    let mut out = vec![0.0; shape.iter().product()];
    let ostr = strides_of(&shape);
    for (k, pos) in positions(&inferred).iter().enumerate() {
        let off: usize = pos.iter().zip(&ostr).map(|(p, s)| p * s).sum();
        out[off] = y[k];
    }
    build(x.dtype(), &shape, out)
}

/// Bilinear sample of a `[h, w]` plane at pixel coordinates, zero outside.
fn bilinear(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ty, tx) = (y - y0, x - x0);
    let mut acc = 0.0;
    for (dy, wy) in [(0i64, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0i64, 1.0 - tx), (1, tx)] {
            let (yy, xx) = (y0 as i64 + dy, x0 as i64 + dx);
            if (0..h as i64).contains(&yy) && (0..w as i64).contains(&xx) {
                acc += wy * wx * plane[yy as usize * w + xx as usize];
            }
        }
    }
    acc
}

pub fn deform_conv(
    op: &Conv,
    offset_group: u64,
    x: &Array,
    w: &Array,
    offset: &Array,
    b: Option<&Array>,
    mask: Option<&Array>,
) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    let (ws, wd) = flat(w)?;
    let (os, od) = flat(offset)?;
    if xs.len() != 4 || ws.len() != 4 || os.len() != 4 {
        return Err(format!("DeformConv supports 2-D inputs: {xs:?}, weights {ws:?}, offsets {os:?}"));
    }
    let (n, c, h, wid) = (xs[0], xs[1], xs[2], xs[3]);
    let (m, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let g = (op.group as usize).max(1);
    let og = (offset_group as usize).max(1);
    if cg * g != c || m % g != 0 || c % og != 0 {
        return Err(format!("DeformConv channels: input {c}, weights {ws:?}, group {g}, offset_group {og}"));
    }
    let (oh, ow) = (os[2], os[3]);
    if os[0] != n || os[1] != og * kh * kw * 2 {
        return Err(format!("DeformConv offsets {os:?} do not fit"));
    }
    let st = per_axis(&op.strides, 2, "strides")?;
    let dil = per_axis(&op.dilations, 2, "dilations")?;
    let ek = [(kh.max(1) - 1) * dil[0] + 1, (kw.max(1) - 1) * dil[1] + 1];
    let (pb, _, out) = window_geometry(&op.pads, &xs[2..], &ek, &st, false)?;
    if out != [oh, ow] {
        return Err(format!("DeformConv offsets are {oh}x{ow}, the geometry makes {out:?}"));
    }
    let md = match mask {
        Some(mk) => {
            let (ms, md) = flat(mk)?;
            if ms != [n, og * kh * kw, oh, ow] {
                return Err(format!("DeformConv mask {ms:?} does not fit"));
            }
            Some(md)
        }
        None => None,
    };
    let bias = match b {
        Some(b) => b.to_f64()?.iter().copied().collect(),
        None => vec![0.0; m],
    };
    if bias.len() != m {
        return Err("DeformConv bias length differs from the output channels".into());
    }
    let (cpg, cpog, mpg) = (cg, c / og, m / g);
    let kk = kh * kw;
    // Sampled values per [batch, channel, kernel position, output position].
    let mut cols = vec![0.0; n * c * kk * oh * ow];
    for bi in 0..n {
        for ch in 0..c {
            let grp = ch / cpog;
            let plane = &xd[(bi * c + ch) * h * wid..(bi * c + ch + 1) * h * wid];
            for i in 0..kh {
                for j in 0..kw {
                    let k = i * kw + j;
                    for y in 0..oh {
                        for xo in 0..ow {
                            let ob = ((bi * og + grp) * kk + k) * 2;
                            let dy = od[(ob * oh + y) * ow + xo];
                            let dx = od[((ob + 1) * oh + y) * ow + xo];
                            let py = (y * st[0] + i * dil[0]) as f64 - pb[0] as f64 + dy;
                            let px = (xo * st[1] + j * dil[1]) as f64 - pb[1] as f64 + dx;
                            let mut v = bilinear(plane, h, wid, py, px);
                            if let Some(md) = &md {
                                v *= md[(((bi * og + grp) * kk + k) * oh + y) * ow + xo];
                            }
                            cols[(((bi * c + ch) * kk + k) * oh + y) * ow + xo] = v;
                        }
                    }
                }
            }
        }
    }
    let mut outv = vec![0.0; n * m * oh * ow];
    let pts = oh * ow;
    for bi in 0..n {
        for oc in 0..m {
            let grp = oc / mpg;
            let dst = &mut outv[(bi * m + oc) * pts..(bi * m + oc + 1) * pts];
            dst.iter_mut().for_each(|v| *v = bias[oc]);
            for ci in 0..cpg {
                let ch = grp * cpg + ci;
                for k in 0..kk {
                    let wt = wd[(oc * cpg + ci) * kk + k];
                    let src = &cols[((bi * c + ch) * kk + k) * pts..((bi * c + ch) * kk + k + 1) * pts];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += wt * s;
                    }
                }
            }
        }
    }
    build(x.dtype(), &[n, m, oh, ow], outv)
}

/// Determinants by LU decomposition with partial pivoting.
pub fn det(x: &Array) -> KernelResult<Array> {
    let (xs, xd) = flat(x)?;
    let r = xs.len();
    if r < 2 || xs[r - 1] != xs[r - 2] {
        return Err(format!("Det needs square trailing matrices, not {xs:?}"));
    }
    let k = xs[r - 1];
    let count: usize = xs[..r - 2].iter().product();
    let mut out = Vec::with_capacity(count);
    for b in 0..count {
        let mut a = xd[b * k * k..(b + 1) * k * k].to_vec();
        let mut d = 1.0;
        for col in 0..k {
            let piv = (col..k).max_by(|p, q| a[p * k + col].abs().total_cmp(&a[q * k + col].abs())).unwrap_or(col);
            if a[piv * k + col] == 0.0 {
                d = 0.0;
                break;
            }
            if piv != col {
                for j in 0..k {
                    a.swap(piv * k + j, col * k + j);
                }
                d = -d;
            }
            let p = a[col * k + col];
            d *= p;
            for row in col + 1..k {
                let f = a[row * k + col] / p;
                for j in col..k {
                    a[row * k + j] -= f * a[col * k + j];
                }
            }
        }
        out.push(d);
    }
    build(x.dtype(), &xs[..r - 2], out)
}

/// The same bytes read as `to` (same bit width).
pub fn bit_cast(t: &Tensor, to: DType) -> KernelResult<Tensor> {
    if t.dtype.bits() != to.bits() || to == DType::String {
        return Err(format!("BitCast from {} to {to} changes the bit width", t.dtype));
    }
    let raw = t.raw().ok_or("BitCast of a string tensor")?.clone();
    if to == DType::Bool && raw.iter().any(|b| *b > 1) {
        return Err("BitCast to bool of bytes other than 0 and 1".into());
    }
    Tensor::from_raw(to, t.shape.clone(), raw).map_err(|e| e.to_string())
}
