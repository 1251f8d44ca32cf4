//! 2-D convolution (NCHW, one image per call) with bias and activation fused.

mod depthwise;
mod im2col;
mod winograd;

use crate::act::Act;
use crate::gemm::{Epilogue, Lhs, PackedA, PackedB, Rhs, gemm_lhs, gemm_packer};
use crate::pool::Pool;
pub(crate) use im2col::valid_range;
use im2col::{Windows, im2col};
use winograd::Winograd;

/// The geometry of one 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub group: usize,
}

impl Conv2dShape {
    /// Output height and width (floor mode). Call [`Conv2dShape::validate`] first for untrusted shapes.
    pub fn out_hw(&self) -> (usize, usize) {
        let eh = (self.kh - 1) * self.dilation[0] + 1;
        let ew = (self.kw - 1) * self.dilation[1] + 1;
        let ph = self.h + self.pads[0] + self.pads[2];
        let pw = self.w + self.pads[1] + self.pads[3];
        ((ph - eh) / self.stride[0] + 1, (pw - ew) / self.stride[1] + 1)
    }

    /// Why this shape cannot be run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if s.group == 0 || !s.c_in.is_multiple_of(s.group) || !s.c_out.is_multiple_of(s.group) {
            return Err(format!("group {} must divide c_in {} and c_out {}", s.group, s.c_in, s.c_out));
        }
        if s.kh == 0 || s.kw == 0 || s.stride.contains(&0) || s.dilation.contains(&0) {
            return Err(format!(
                "kernel {}x{}, strides {:?} and dilations {:?} must be positive",
                s.kh, s.kw, s.stride, s.dilation
            ));
        }
        let eh = (s.kh - 1).checked_mul(s.dilation[0]).map(|v| v + 1);
        let ew = (s.kw - 1).checked_mul(s.dilation[1]).map(|v| v + 1);
        let ph = s.h.checked_add(s.pads[0]).and_then(|v| v.checked_add(s.pads[2]));
        let pw = s.w.checked_add(s.pads[1]).and_then(|v| v.checked_add(s.pads[3]));
        match (eh, ew, ph, pw) {
            (Some(eh), Some(ew), Some(ph), Some(pw)) if eh <= ph && ew <= pw => Ok(()),
            _ => Err(format!("the dilated kernel does not fit in the padded {}x{} input", s.h, s.w)),
        }
    }

    fn c_in_g(&self) -> usize {
        self.c_in / self.group
    }

    fn c_out_g(&self) -> usize {
        self.c_out / self.group
    }

    fn patch(&self) -> usize {
        self.c_in_g() * self.kh * self.kw
    }

    fn is_depthwise(&self) -> bool {
        self.group > 1 && self.group == self.c_in && self.group == self.c_out
    }

    /// Whether `out^T = cols^T x W^T` fills the micro-kernel's tiles clearly better than
    /// `out = W x cols` (small output planes).
    fn prefers_transposed(&self) -> bool {
        let (mr, nr) = crate::gemm::tile_dims();
        let (oh, ow) = self.out_hw();
        let fill = |rows: usize, cols: usize| {
            (rows as f64 / (rows.div_ceil(mr) * mr) as f64) * (cols as f64 / (cols.div_ceil(nr) * nr) as f64)
        };
        // Only small planes: the transposed product materializes im2col and transposes the
        // output, passes that cost more than the better tile fill saves on large planes (a
        // 3->32-channel stem at 112x112 output ran 2x slower transposed).
        oh * ow <= 256 && fill(oh * ow, self.c_out_g()) > 1.05 * fill(self.c_out_g(), oh * ow)
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pads == [0; 4]
    }
}

/// A convolution with its weights packed and its algorithm chosen once.
#[derive(Clone, Debug)]
pub struct Conv2d {
    shape: Conv2dShape,
    algo: Algo,
    bias: Option<Vec<f32>>,
    act: Act,
}

#[derive(Clone, Debug)]
enum Algo {
    /// One packed `[c_out/group, c_in/group*kh*kw]` GEMM operand per group; the input is unrolled
    /// into columns (im2col) unless the convolution is pointwise.
    Gemm(Vec<PackedA>),
    /// `out^T = cols^T x W^T` per group (weights packed as the right operand), computed into scratch
    /// and transposed back: for small output planes, whose few columns would leave the micro-kernel's
    /// wide tiles partly empty, while the transposed product has plenty of columns.
    GemmTransposed(Vec<PackedB>),
    /// 3x3 stride 1: Winograd F(2x2, 3x3), 16 GEMMs over transformed tiles.
    Winograd(Winograd),
    /// One filter per channel (group == c_in == c_out): a direct loop, no GEMM.
    Depthwise(Vec<f32>),
}

impl Conv2d {
    /// Packs `weight_oihw` (`[c_out, c_in/group, kh, kw]`) and checks the shape.
    pub fn new(shape: Conv2dShape, weight_oihw: &[f32], bias: Option<&[f32]>, act: Act) -> Result<Conv2d, String> {
        shape.validate()?;
        let (cog, patch) = (shape.c_out_g(), shape.patch());
        let need = shape.c_out.checked_mul(patch).ok_or("weight size overflows")?;
        if weight_oihw.len() != need {
            return Err(format!("weight has {} values, the shape needs {need}", weight_oihw.len()));
        }
        if let Some(b) = bias {
            if b.len() != shape.c_out {
                return Err(format!("bias has {} values for {} output channels", b.len(), shape.c_out));
            }
        }
        let group_weights = |g: usize| &weight_oihw[g * cog * patch..(g + 1) * cog * patch];
        let algo = if shape.is_depthwise() {
            Algo::Depthwise(weight_oihw.to_vec())
        } else if Winograd::suits(&shape) {
            Algo::Winograd(Winograd::new(&shape, weight_oihw))
        } else if shape.prefers_transposed() {
            Algo::GemmTransposed(
                (0..shape.group).map(|g| PackedB::new(patch, cog, group_weights(g), 1, patch as isize)).collect(),
            )
        } else {
            Algo::Gemm(
                (0..shape.group).map(|g| PackedA::new(cog, patch, group_weights(g), patch as isize, 1)).collect(),
            )
        };
        // The scratch sizes are products of the shape's dimensions; refuse shapes where one would
        // not fit in memory's address range, so later index arithmetic cannot overflow.
        let (oh, ow) = shape.out_hw();
        let wide = |v: &[usize]| v.iter().fold(1u128, |acc, &x| acc.saturating_mul(x as u128));
        let biggest = [
            wide(&[16, oh.div_ceil(2), ow.div_ceil(2), shape.c_in + shape.c_out]),
            wide(&[patch, oh, ow]) + wide(&[oh, ow, cog]),
            wide(&[shape.c_out, oh, ow]),
        ];
        if biggest.iter().any(|&n| n > isize::MAX as u128 / 4) {
            return Err(format!("convolution {shape:?} is too large to address"));
        }
        Ok(Conv2d { shape, algo, bias: bias.map(|b| b.to_vec()), act })
    }

    pub fn shape(&self) -> &Conv2dShape {
        &self.shape
    }

    /// Elements of scratch space [`Conv2d::run`] needs.
    pub fn scratch_len(&self) -> usize {
        if matches!(self.algo, Algo::Winograd(_)) {
            return Winograd::scratch_len(&self.shape);
        }
        self.cols_len() + self.transposed_len()
    }

    /// The im2col buffer (only the transposed product materializes one).
    fn cols_len(&self) -> usize {
        let s = &self.shape;
        if s.is_pointwise() || !matches!(self.algo, Algo::GemmTransposed(_)) {
            return 0;
        }
        let (oh, ow) = s.out_hw();
        s.patch() * oh * ow
    }

    /// The transposed result of one group.
    fn transposed_len(&self) -> usize {
        let (oh, ow) = self.shape.out_hw();
        if matches!(self.algo, Algo::GemmTransposed(_)) { oh * ow * self.shape.c_out_g() } else { 0 }
    }

    /// `out_chw = act(conv(input_chw) + bias)`.
    pub fn run(&self, pool: &Pool, input_chw: &[f32], out_chw: &mut [f32], scratch: &mut [f32]) {
        self.run_impl(pool, input_chw, out_chw, scratch, false)
    }

    /// `out_chw = act(conv(input_chw) + bias + out_chw)`: a residual add fused into the convolution.
    pub fn run_add(&self, pool: &Pool, input_chw: &[f32], out_chw: &mut [f32], scratch: &mut [f32]) {
        self.run_impl(pool, input_chw, out_chw, scratch, true)
    }

    fn run_impl(&self, pool: &Pool, input: &[f32], out: &mut [f32], scratch: &mut [f32], accumulate: bool) {
        let s = &self.shape;
        let (oh, ow) = s.out_hw();
        let (hw, ohw) = (s.h * s.w, oh * ow);
        assert!(input.len() >= s.c_in * hw, "input has {} values, the shape needs {}", input.len(), s.c_in * hw);
        assert!(out.len() >= s.c_out * ohw, "output has {} values, the shape needs {}", out.len(), s.c_out * ohw);
        assert!(
            scratch.len() >= self.scratch_len(),
            "scratch has {} values, needs {}",
            scratch.len(),
            self.scratch_len()
        );
        let (cig, cog, patch) = (s.c_in_g(), s.c_out_g(), s.patch());
        let weights = match &self.algo {
            Algo::Depthwise(w) => {
                let bias = self.bias.as_deref();
                return depthwise::run(pool, s, w, bias, self.act, input, &mut out[..s.c_out * ohw], accumulate);
            }
            Algo::GemmTransposed(w) => return self.run_transposed(pool, w, input, out, scratch, accumulate),
            Algo::Winograd(w) => {
                let bias = self.bias.as_deref();
                return w.run(pool, s, bias, self.act, input, &mut out[..s.c_out * ohw], scratch, accumulate);
            }
            Algo::Gemm(w) => w,
        };
        for g in 0..s.group {
            let x = &input[g * cig * hw..(g + 1) * cig * hw];
            let y = &mut out[g * cog * ohw..(g + 1) * cog * ohw];
            let ep = Epilogue {
                bias_col: None,
                bias_row: self.bias.as_deref().map(|b| &b[g * cog..(g + 1) * cog]),
                act: self.act,
                accumulate,
            };
            let lhs = Lhs::Packed(&weights[g]);
            if s.is_pointwise() {
                let rhs = Rhs::Strided { data: x, rs: hw as isize, cs: 1 };
                gemm_lhs(pool, cog, ohw, patch, lhs, rhs, y, ohw, &ep);
            } else {
                gemm_packer(pool, cog, ohw, patch, lhs, &Windows::new(s, x), y, ohw, &ep);
            }
        }
    }

    fn run_transposed(
        &self,
        pool: &Pool,
        weights: &[PackedB],
        input: &[f32],
        out: &mut [f32],
        scratch: &mut [f32],
        accumulate: bool,
    ) {
        let s = &self.shape;
        let (oh, ow) = s.out_hw();
        let (hw, ohw) = (s.h * s.w, oh * ow);
        let (cig, cog, patch) = (s.c_in_g(), s.c_out_g(), s.patch());
        let (cols, rest) = scratch.split_at_mut(self.cols_len());
        let tmp = &mut rest[..ohw * cog];
        for g in 0..s.group {
            let x = &input[g * cig * hw..(g + 1) * cig * hw];
            let y = &mut out[g * cog * ohw..(g + 1) * cog * ohw];
            // The left operand is the (transposed) input columns: element (pos, p) at p * len + pos.
            let lhs = if s.is_pointwise() {
                Lhs::Strided { data: x, rs: 1, cs: hw as isize }
            } else {
                im2col(pool, s, x, cols);
                Lhs::Strided { data: cols, rs: 1, cs: ohw as isize }
            };
            if accumulate {
                transpose(y, cog, ohw, tmp);
            }
            let ep = Epilogue {
                bias_col: self.bias.as_deref().map(|b| &b[g * cog..(g + 1) * cog]),
                bias_row: None,
                act: self.act,
                accumulate,
            };
            gemm_lhs(pool, ohw, cog, patch, lhs, Rhs::Packed(&weights[g]), tmp, cog, &ep);
            transpose(tmp, ohw, cog, y);
        }
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`, in blocks that stay in cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integration tests' small-plane shapes must really take the transposed path (so it is
    /// tested), and large planes must not.
    #[test]
    fn small_output_planes_use_the_transposed_product() {
        let s = |c_in, hw, c_out, k: usize, group| Conv2dShape {
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: k,
            kw: k,
            stride: [1, 1],
            pads: [k / 2; 4],
            dilation: [1, 1],
            group,
        };
        for shape in [s(16, 7, 64, 3, 1), s(48, 7, 64, 1, 1), s(8, 5, 64, 3, 2)] {
            let w = vec![0.0; shape.c_out * shape.c_in / shape.group * shape.kh * shape.kw];
            let conv = Conv2d::new(shape, &w, None, Act::None).unwrap();
            assert!(matches!(conv.algo, Algo::GemmTransposed(_)), "{shape:?}");
        }
        let big = s(16, 56, 64, 3, 1);
        let conv = Conv2d::new(big, &vec![0.0; 64 * 16 * 9], None, Act::None).unwrap();
        assert!(matches!(conv.algo, Algo::Gemm(_)));
        // And the integration tests' Winograd shapes take that path.
        for shape in [s(128, 9, 128, 3, 1), s(130, 6, 128, 3, 1), s(129, 8, 130, 3, 1), s(64, 10, 64, 3, 1)] {
            let w = vec![0.0; shape.c_out * shape.c_in * 9];
            let conv = Conv2d::new(shape, &w, None, Act::None).unwrap();
            assert!(matches!(conv.algo, Algo::Winograd(_)), "{shape:?}");
        }
    }
}
