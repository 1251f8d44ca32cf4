use crate::util::{Rng, assert_close, pools};
use ferry_kernels::{Act, Conv2d, Conv2dShape};

fn shape(
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: usize,
    pad: [usize; 4],
    dil: usize,
    group: usize,
) -> Conv2dShape {
    Conv2dShape {
        c_in,
        h: hw.0,
        w: hw.1,
        c_out,
        kh: k.0,
        kw: k.1,
        stride: [stride, stride],
        pads: pad,
        dilation: [dil, dil],
        group,
    }
}

fn cases() -> Vec<Conv2dShape> {
    vec![
        // 1x1 stride 1 (direct GEMM), odd sizes.
        shape(16, (7, 9), 24, (1, 1), 1, [0; 4], 1, 1),
        shape(3, (1, 1), 5, (1, 1), 1, [0; 4], 1, 1),
        // 1x1 stride 2 (ResNet downsampling).
        shape(8, (9, 9), 12, (1, 1), 2, [0; 4], 1, 1),
        // 3x3 pad 1, stride 1 and 2.
        shape(8, (10, 11), 16, (3, 3), 1, [1; 4], 1, 1),
        shape(5, (13, 12), 7, (3, 3), 2, [1; 4], 1, 1),
        // The stem: 7x7 stride 2 pad 3.
        shape(3, (23, 21), 8, (7, 7), 2, [3; 4], 1, 1),
        // Asymmetric pads, rectangular kernel, dilation.
        shape(4, (12, 10), 6, (3, 2), 1, [2, 0, 1, 3], 2, 1),
        shape(6, (9, 9), 4, (3, 3), 3, [0, 1, 2, 0], 2, 1),
        // Grouped.
        shape(8, (8, 7), 12, (3, 3), 1, [1; 4], 1, 4),
        shape(6, (6, 6), 6, (1, 1), 1, [0; 4], 1, 2),
        // Depthwise 3x3, stride 1 and 2 (MobileNetV2), odd sizes, dilation, no padding, 5x5.
        shape(32, (14, 14), 32, (3, 3), 1, [1; 4], 1, 32),
        shape(24, (15, 13), 24, (3, 3), 2, [1; 4], 1, 24),
        shape(7, (9, 10), 7, (3, 3), 2, [0, 1, 1, 0], 1, 7),
        shape(5, (12, 12), 5, (3, 3), 1, [2; 4], 2, 5),
        shape(9, (11, 11), 9, (5, 5), 1, [2; 4], 1, 9),
        shape(4, (3, 3), 4, (3, 3), 1, [1; 4], 1, 4),
        shape(4, (1, 1), 4, (3, 3), 1, [1; 4], 1, 4),
        // Depthwise rows wider than one 16-lane block: odd widths, asymmetric pads on either side.
        shape(3, (5, 37), 3, (3, 3), 1, [1, 0, 1, 2], 1, 3),
        shape(3, (6, 33), 3, (3, 3), 2, [1, 2, 0, 1], 1, 3),
        shape(2, (4, 17), 2, (3, 5), 1, [0, 3, 2, 1], 1, 2),
        shape(2, (6, 13), 2, (3, 5), 1, [0, 3, 2, 1], 1, 2),
        shape(3, (9, 16), 3, (3, 3), 1, [1, 1, 1, 1], 1, 3),
        // Stride 2 read in place (two vectors per tap): no left pad, even and odd widths past 32.
        shape(2, (5, 40), 2, (3, 3), 2, [0, 0, 1, 1], 1, 2),
        shape(2, (7, 67), 2, (3, 3), 2, [1, 1, 1, 1], 1, 2),
        // Depthwise with a channel multiplier (c_out = 2 c_in) is a grouped convolution.
        shape(4, (6, 6), 8, (3, 3), 1, [1; 4], 1, 4),
        // Small output planes with many output channels (computed as the transposed product).
        shape(16, (7, 7), 64, (3, 3), 1, [1; 4], 1, 1),
        shape(48, (7, 7), 64, (1, 1), 1, [0; 4], 1, 1),
        shape(40, (9, 9), 70, (1, 1), 2, [0; 4], 1, 1),
        shape(8, (5, 5), 64, (3, 3), 1, [1; 4], 1, 2),
        // More output positions than one column block, so column blocks start mid-row.
        shape(3, (30, 31), 8, (3, 3), 1, [1; 4], 1, 1),
        shape(2, (50, 50), 7, (5, 5), 2, [2; 4], 1, 1),
        // 3x3 stride 1 with enough channels (Winograd): odd output sizes, asymmetric and no padding.
        shape(128, (9, 11), 128, (3, 3), 1, [1; 4], 1, 1),
        shape(129, (8, 7), 130, (3, 3), 1, [0, 1, 2, 0], 1, 1),
        shape(130, (6, 5), 128, (3, 3), 1, [0; 4], 1, 1),
        shape(64, (10, 9), 64, (3, 3), 1, [1; 4], 1, 1),
        // Larger: ResNet-like 3x3 with many channels.
        shape(64, (14, 14), 40, (3, 3), 1, [1; 4], 1, 1),
    ]
}

/// Naive f64 convolution; returns values and term magnitudes.
fn reference(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    old: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let (oh, ow) = s.out_hw();
    let (cig, cog) = (s.c_in / s.group, s.c_out / s.group);
    let mut want = vec![0.0; s.c_out * oh * ow];
    let mut scale = vec![0.0; want.len()];
    for co in 0..s.c_out {
        let g = co / cog;
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut sum, mut mag) = (0.0f64, 0.0f64);
                for ci in 0..cig {
                    for ky in 0..s.kh {
                        for kx in 0..s.kw {
                            let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.pads[1] as isize;
                            if iy < 0 || ix < 0 || iy as usize >= s.h || ix as usize >= s.w {
                                continue;
                            }
                            let xv = x[((g * cig + ci) * s.h + iy as usize) * s.w + ix as usize] as f64;
                            let wv = w[((co * cig + ci) * s.kh + ky) * s.kw + kx] as f64;
                            sum += xv * wv;
                            mag += (xv * wv).abs();
                        }
                    }
                }
                let idx = (co * oh + oy) * ow + ox;
                if let Some(b) = bias {
                    sum += b[co] as f64;
                    mag += (b[co] as f64).abs();
                }
                if let Some(o) = old {
                    sum += o[idx] as f64;
                    mag += (o[idx] as f64).abs();
                }
                want[idx] = crate::act::reference(act, sum);
                scale[idx] = mag * 1.2;
            }
        }
    }
    (want, scale)
}

#[test]
fn conv2d_matches_naive_for_every_shape() {
    let mut rng = Rng::new(3);
    let pools = pools();
    for s in cases() {
        let (oh, ow) = s.out_hw();
        let x = rng.vec(s.c_in * s.h * s.w);
        let w = rng.vec(s.c_out * s.c_in / s.group * s.kh * s.kw);
        let b = rng.vec(s.c_out);
        let old = rng.vec(s.c_out * oh * ow);
        // HardSwish: an activation no kernel fuses in registers (applied in a pass afterwards).
        for (bias, act) in [
            (None, Act::None),
            (Some(&b[..]), Act::Relu),
            (Some(&b[..]), Act::Clip { min: 0.0, max: 6.0 }),
            (Some(&b[..]), Act::HardSwish),
        ] {
            let conv = Conv2d::new(s, &w, bias, act).unwrap();
            let mut scratch = vec![f32::NAN; conv.scratch_len()];
            for (pi, pool) in pools.iter().enumerate() {
                let (want, scale) = reference(&s, &x, &w, bias, act, None);
                let mut out = vec![f32::NAN; s.c_out * oh * ow];
                conv.run(pool, &x, &mut out, &mut scratch);
                assert_close(&format!("{s:?} {act:?} pool {pi}"), &out, &want, &scale, 1e-5);
                let (want, scale) = reference(&s, &x, &w, bias, act, Some(&old));
                let mut out = old.clone();
                conv.run_add(pool, &x, &mut out, &mut scratch);
                assert_close(&format!("{s:?} {act:?} pool {pi} run_add"), &out, &want, &scale, 1e-5);
            }
        }
    }
}

#[test]
fn conv2d_refuses_bad_shapes() {
    let bad_group = shape(6, (4, 4), 4, (3, 3), 1, [1; 4], 1, 4);
    assert!(Conv2d::new(bad_group, &[0.0; 54], None, Act::None).is_err());
    let too_big = shape(1, (2, 2), 1, (5, 5), 1, [0; 4], 1, 1);
    assert!(Conv2d::new(too_big, &[0.0; 25], None, Act::None).is_err());
    let ok = shape(1, (4, 4), 2, (3, 3), 1, [0; 4], 1, 1);
    assert!(Conv2d::new(ok, &[0.0; 17], None, Act::None).is_err(), "wrong weight length");
    assert!(Conv2d::new(ok, &[0.0; 18], Some(&[0.0; 3]), Act::None).is_err(), "wrong bias length");
    let huge_dilation = Conv2dShape { dilation: [usize::MAX, 1], ..ok };
    assert!(Conv2d::new(huge_dilation, &[0.0; 18], None, Act::None).is_err());
}
