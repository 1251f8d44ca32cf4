//! Max, average and global average pooling over NCHW planes.

use crate::isa::multiversion;
use crate::pool::Pool;

/// The geometry of a 2-D pooling window over `c` planes of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl Pool2dShape {
    /// Output height and width (ONNX rules: in ceil mode a window that would start in the end
    /// padding is dropped). Call [`Pool2dShape::validate`] first for untrusted shapes.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            out_len(self.h, self.pads[0], self.pads[2], self.kh, self.dilation[0], self.stride[0], self.ceil_mode),
            out_len(self.w, self.pads[1], self.pads[3], self.kw, self.dilation[1], self.stride[1], self.ceil_mode),
        )
    }

    /// Why this shape cannot be pooled, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if s.kh == 0 || s.kw == 0 || s.stride.contains(&0) || s.dilation.contains(&0) {
            return Err(format!(
                "kernel {}x{}, strides {:?} and dilations {:?} must be positive",
                s.kh, s.kw, s.stride, s.dilation
            ));
        }
        let fits = |n: usize, b: usize, e: usize, k: usize, d: usize| {
            let ek = (k - 1).checked_mul(d).map(|v| v + 1);
            let span = n.checked_add(b).and_then(|v| v.checked_add(e));
            matches!((ek, span), (Some(ek), Some(span)) if ek <= span)
        };
        if !fits(s.h, s.pads[0], s.pads[2], s.kh, s.dilation[0])
            || !fits(s.w, s.pads[1], s.pads[3], s.kw, s.dilation[1])
        {
            return Err(format!("the dilated window does not fit in the padded {}x{} input", s.h, s.w));
        }
        Ok(())
    }
}

fn out_len(n: usize, pad_begin: usize, pad_end: usize, k: usize, dil: usize, stride: usize, ceil: bool) -> usize {
    let span = n + pad_begin + pad_end - ((k - 1) * dil + 1);
    let mut out = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    if ceil && (out - 1) * stride >= n + pad_begin {
        out -= 1;
    }
    out
}

fn check(s: &Pool2dShape, input: &[f32], out: &[f32]) -> (usize, usize) {
    let (oh, ow) = s.out_hw();
    assert!(input.len() >= s.c * s.h * s.w, "input has {} values, the shape needs {}", input.len(), s.c * s.h * s.w);
    assert!(out.len() >= s.c * oh * ow, "output has {} values, the shape needs {}", out.len(), s.c * oh * ow);
    (oh, ow)
}

/// Max pooling; padding never wins. A window's first value seeds its maximum and a later number
/// replaces a NaN seed; a window that sees no input at all gives NaN.
pub fn max_pool2d(pool: &Pool, s: &Pool2dShape, input: &[f32], out: &mut [f32]) {
    let (oh, ow) = check(s, input, out);
    let (hw, ohw) = (s.h * s.w, oh * ow);
    // Per kx: the output columns whose input column is inside the row, and that first input column.
    let ranges: Vec<(usize, usize, usize)> = (0..s.kw)
        .map(|kx| {
            let off = (kx * s.dilation[1]) as isize - s.pads[1] as isize;
            let (lo, hi) = crate::conv::valid_range(off, s.stride[1], s.w, ow);
            (lo, hi, (lo as isize * s.stride[1] as isize + off).max(0) as usize)
        })
        .collect();
    pool.for_each_chunk_mut(&mut out[..s.c * ohw], ohw.max(1), |c, dst| {
        max_plane(s, &ranges, &input[c * hw..(c + 1) * hw], oh, ow, dst);
    });
}

multiversion! {
    /// One plane, one output row at a time: each (ky, kx) tap updates a contiguous run of outputs.
    fn max_plane / max_plane_with(
        s: &Pool2dShape,
        ranges: &[(usize, usize, usize)],
        plane: &[f32],
        oh: usize,
        ow: usize,
        dst: &mut [f32],
    ) {
        for oy in 0..oh {
            let out = &mut dst[oy * ow..(oy + 1) * ow];
            out.fill(f32::NAN);
            for ky in 0..s.kh {
                let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                if iy < 0 || iy as usize >= s.h {
                    continue;
                }
                let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                for &(lo, hi, first) in ranges {
                    if lo >= hi {
                        continue;
                    }
                    let o = &mut out[lo..hi];
                    let better = |best: f32, v: f32| if best.is_nan() || v > best { v } else { best };
                    if s.stride[1] == 1 {
                        for (b, &v) in o.iter_mut().zip(&src[first..first + (hi - lo)]) {
                            *b = better(*b, v);
                        }
                    } else if s.stride[1] == 2 {
                        for (b, pair) in o.iter_mut().zip(src[first..].chunks(2)) {
                            *b = better(*b, pair[0]);
                        }
                    } else {
                        for (b, &v) in o.iter_mut().zip(src[first..].iter().step_by(s.stride[1])) {
                            *b = better(*b, v);
                        }
                    }
                }
            }
        }
    }
}

/// Average pooling. With `count_include_pad` the divisor counts padding positions (but not the
/// positions past the end padding that ceil mode adds).
pub fn avg_pool2d(pool: &Pool, s: &Pool2dShape, count_include_pad: bool, input: &[f32], out: &mut [f32]) {
    let (oh, ow) = check(s, input, out);
    let (hw, ohw) = (s.h * s.w, oh * ow);
    pool.for_each_chunk_mut(&mut out[..s.c * ohw], ohw.max(1), |c, dst| {
        let plane = &input[c * hw..(c + 1) * hw];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0f32;
                let mut count = 0usize;
                window(s, oy, ox, |iy, ix| {
                    sum += plane[iy * s.w + ix];
                    count += 1;
                });
                let div = if count_include_pad { padded_count(s, oy, ox) } else { count };
                dst[oy * ow + ox] = sum / div as f32;
            }
        }
    });
}

/// Calls `f(iy, ix)` for every in-bounds input position of output (oy, ox)'s window.
#[inline(always)]
fn window(s: &Pool2dShape, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
    for ky in 0..s.kh {
        let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
        if iy < 0 || iy as usize >= s.h {
            continue;
        }
        for kx in 0..s.kw {
            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.pads[1] as isize;
            if ix < 0 || ix as usize >= s.w {
                continue;
            }
            f(iy as usize, ix as usize);
        }
    }
}

/// Window positions inside the padded input (input plus begin and end pads).
fn padded_count(s: &Pool2dShape, oy: usize, ox: usize) -> usize {
    let axis = |o: usize, stride: usize, k: usize, dil: usize, n: usize, pb: usize, pe: usize| {
        (0..k).filter(|&t| o * stride + t * dil < n + pb + pe).count()
    };
    axis(oy, s.stride[0], s.kh, s.dilation[0], s.h, s.pads[0], s.pads[2])
        * axis(ox, s.stride[1], s.kw, s.dilation[1], s.w, s.pads[1], s.pads[3])
}

/// `out[c] = mean(input[c*hw..(c+1)*hw])`.
pub fn global_avg_pool(pool: &Pool, c: usize, hw: usize, input: &[f32], out: &mut [f32]) {
    assert!(input.len() >= c * hw, "input has {} values, needs {}", input.len(), c * hw);
    assert!(out.len() >= c, "output has {} values for {c} channels", out.len());
    let per_task = (crate::pool::PAR_MIN_ELEMS / hw.max(1)).max(1);
    pool.for_each_chunk_mut(&mut out[..c], per_task, |t, dst| {
        for (i, o) in dst.iter_mut().enumerate() {
            let ch = t * per_task + i;
            let s: f32 = input[ch * hw..(ch + 1) * hw].iter().sum();
            *o = s / hw as f32;
        }
    });
}
