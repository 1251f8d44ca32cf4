//! MaxRoiPool: Fast R-CNN region-of-interest max pooling, as plain loops in f64.

use crate::KernelResult;
use crate::array::Array;
use ndarray::{ArrayD, IxDyn};

/// `[R, C, PH, PW]` maxima over the bins of each roi (batch index, x1, y1, x2, y2). Roi corners are
/// scaled and rounded half away from zero to pixels, the roi is at least 1×1, bin `p` covers
/// `floor(p·size/P) .. ceil((p+1)·size/P)` clipped to the image; an empty bin, or a roi whose
/// batch index lies outside the batch, gives 0.
pub fn max_roi_pool(x: &Array, rois: &Array, pooled: [u64; 2], spatial_scale: f32) -> KernelResult<Array> {
    let xv = x.to_f64()?;
    let xv = xv.as_standard_layout();
    let rv = rois.to_f64()?;
    let rv = rv.as_standard_layout();
    let (xs, rs) = (xv.shape().to_vec(), rv.shape().to_vec());
    if xs.len() != 4 || rs.len() != 2 || rs[1] != 5 {
        return Err(format!("MaxRoiPool of {xs:?} with rois {rs:?} (want [N, C, H, W] and [R, 5])"));
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (ph_n, pw_n) = (pooled[0] as usize, pooled[1] as usize);
    crate::limits::check_tensor(x.dtype(), &[rs[0] as u64, c as u64, pooled[0], pooled[1]], "the MaxRoiPool output")?;
    let len = rs[0] * c * ph_n * pw_n;
    let xd = xv.as_slice().ok_or("non-contiguous input")?;
    let rd = rv.as_slice().ok_or("non-contiguous rois")?;
    let mut out = vec![0.0; len];
    // Pixel coordinate of a roi corner; f32 rounding as the reference implementations compute it.
    let px = |v: f64| ((v as f32) * spatial_scale).round() as i64;
    for r in 0..rs[0] {
        let roi = &rd[r * 5..r * 5 + 5];
        let b = roi[0] as i64;
        if b < 0 || b as usize >= n {
            continue;
        }
        let (x1, y1, x2, y2) = (px(roi[1]), px(roi[2]), px(roi[3]), px(roi[4]));
        let rh = (y2 - y1 + 1).max(1) as f64;
        let rw = (x2 - x1 + 1).max(1) as f64;
        let (bh, bw) = (rh / ph_n as f64, rw / pw_n as f64);
        let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
        for p in 0..ph_n {
            let hs = clip((p as f64 * bh).floor() as i64 + y1, h);
            let he = clip(((p + 1) as f64 * bh).ceil() as i64 + y1, h);
            for q in 0..pw_n {
                let ws = clip((q as f64 * bw).floor() as i64 + x1, w);
                let we = clip(((q + 1) as f64 * bw).ceil() as i64 + x1, w);
                if he <= hs || we <= ws {
                    continue;
                }
                for ch in 0..c {
                    let plane = &xd[((b as usize) * c + ch) * h * w..][..h * w];
                    let mut m = f64::NEG_INFINITY;
                    for yy in hs..he {
                        for xx in ws..we {
                            m = m.max(plane[yy * w + xx]);
                        }
                    }
                    out[((r * c + ch) * ph_n + p) * pw_n + q] = m;
                }
            }
        }
    }
    let y = ArrayD::from_shape_vec(IxDyn(&[rs[0], c, ph_n, pw_n]), out).map_err(|e| e.to_string())?;
    Array::from_f64(x.dtype(), y)
}
