//! 2-D convolution (NCHW, one image per call) with bias and activation fused.

mod depthwise;
mod im2col;

use crate::act::Act;
use crate::gemm::{Epilogue, Lhs, PackedA, Rhs, gemm_lhs};
use crate::pool::Pool;
use im2col::im2col;

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
        let algo = if shape.is_depthwise() {
            Algo::Depthwise(weight_oihw.to_vec())
        } else {
            Algo::Gemm(
                (0..shape.group)
                    .map(|g| {
                        let w = &weight_oihw[g * cog * patch..(g + 1) * cog * patch];
                        PackedA::new(cog, patch, w, patch as isize, 1)
                    })
                    .collect(),
            )
        };
        Ok(Conv2d { shape, algo, bias: bias.map(|b| b.to_vec()), act })
    }

    pub fn shape(&self) -> &Conv2dShape {
        &self.shape
    }

    /// Elements of scratch space [`Conv2d::run`] needs.
    pub fn scratch_len(&self) -> usize {
        let s = &self.shape;
        if s.is_pointwise() || s.is_depthwise() {
            return 0;
        }
        let (oh, ow) = s.out_hw();
        s.patch() * oh * ow
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
            let rhs = if s.is_pointwise() {
                Rhs::Strided { data: x, rs: hw as isize, cs: 1 }
            } else {
                im2col(pool, s, x, &mut scratch[..patch * ohw]);
                Rhs::Strided { data: &scratch[..patch * ohw], rs: ohw as isize, cs: 1 }
            };
            gemm_lhs(pool, cog, ohw, patch, Lhs::Packed(&weights[g]), rhs, y, ohw, &ep);
        }
    }
}
