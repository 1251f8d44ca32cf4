use crate::util::{Rng, assert_close, pools};
use ferry_kernels::{Pool2dShape, avg_pool2d, global_avg_pool, max_pool2d};

fn shape(
    c: usize,
    hw: (usize, usize),
    k: (usize, usize),
    stride: [usize; 2],
    pads: [usize; 4],
    dil: usize,
    ceil: bool,
) -> Pool2dShape {
    Pool2dShape { c, h: hw.0, w: hw.1, kh: k.0, kw: k.1, stride, pads, dilation: [dil, dil], ceil_mode: ceil }
}

fn cases() -> Vec<Pool2dShape> {
    vec![
        // ResNet's 3x3 stride-2 pad-1 max pool.
        shape(8, (16, 16), (3, 3), [2, 2], [1; 4], 1, false),
        shape(3, (15, 13), (3, 3), [2, 2], [1; 4], 1, true),
        shape(4, (7, 7), (2, 2), [2, 2], [0; 4], 1, true),
        shape(2, (8, 9), (3, 2), [1, 2], [2, 0, 1, 1], 2, false),
        shape(5, (6, 6), (6, 6), [1, 1], [0; 4], 1, false),
        shape(3, (10, 10), (3, 3), [3, 3], [1, 1, 2, 2], 1, true),
        shape(1, (1, 1), (1, 1), [1, 1], [0; 4], 1, false),
    ]
}

/// (out position, in-bounds values, positions inside the padded input) per window, in f64.
fn windows(s: &Pool2dShape, x: &[f32]) -> Vec<(Vec<f64>, usize)> {
    let (oh, ow) = s.out_hw();
    let mut all = Vec::new();
    for c in 0..s.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut vals, mut padded) = (Vec::new(), 0);
                for ky in 0..s.kh {
                    for kx in 0..s.kw {
                        let py = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pads[0] as isize;
                        let px = (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.pads[1] as isize;
                        if py < (s.h + s.pads[2]) as isize && px < (s.w + s.pads[3]) as isize {
                            padded += 1;
                        }
                        if py >= 0 && px >= 0 && (py as usize) < s.h && (px as usize) < s.w {
                            vals.push(x[(c * s.h + py as usize) * s.w + px as usize] as f64);
                        }
                    }
                }
                all.push((vals, padded));
            }
        }
    }
    all
}

#[test]
fn pooling_matches_naive() {
    let mut rng = Rng::new(4);
    for s in cases() {
        let (oh, ow) = s.out_hw();
        let x = rng.vec(s.c * s.h * s.w);
        let win = windows(&s, &x);
        let max: Vec<f64> = win.iter().map(|(v, _)| v.iter().copied().fold(f64::NAN, f64::max)).collect();
        let avg: Vec<f64> = win.iter().map(|(v, _)| v.iter().sum::<f64>() / v.len() as f64).collect();
        let avg_pad: Vec<f64> = win.iter().map(|(v, p)| v.iter().sum::<f64>() / *p as f64).collect();
        let scale: Vec<f64> =
            win.iter().map(|(v, _)| v.iter().map(|a| a.abs()).sum::<f64>() / v.len() as f64).collect();
        for (pi, pool) in pools().iter().enumerate() {
            let mut out = vec![f32::NAN; s.c * oh * ow];
            max_pool2d(pool, &s, &x, &mut out);
            assert_close(&format!("max {s:?} pool {pi}"), &out, &max, &vec![0.0; max.len()], 0.0);
            avg_pool2d(pool, &s, false, &x, &mut out);
            assert_close(&format!("avg {s:?} pool {pi}"), &out, &avg, &scale, 1e-6);
            avg_pool2d(pool, &s, true, &x, &mut out);
            assert_close(&format!("avg incl pad {s:?} pool {pi}"), &out, &avg_pad, &scale, 1e-6);
        }
    }
}

#[test]
fn pool_output_sizes_follow_onnx_ceil_rules() {
    // 15 wide, k 3, s 2, pad 1: floor gives 8; ceil gives 8 too (a 9th window would start in the end pad).
    assert_eq!(shape(1, (15, 15), (3, 3), [2, 2], [1; 4], 1, true).out_hw(), (8, 8));
    // 7 wide, k 2, s 2: floor 3, ceil 4.
    assert_eq!(shape(1, (7, 7), (2, 2), [2, 2], [0; 4], 1, false).out_hw(), (3, 3));
    assert_eq!(shape(1, (7, 7), (2, 2), [2, 2], [0; 4], 1, true).out_hw(), (4, 4));
    assert!(shape(1, (2, 2), (5, 5), [1, 1], [0; 4], 1, false).validate().is_err());
}

#[test]
fn max_pool_keeps_nan_out_unless_alone() {
    let s = shape(1, (1, 2), (1, 2), [1, 1], [0; 4], 1, false);
    let mut out = [0.0f32];
    max_pool2d(&ferry_kernels::Pool::new(1), &s, &[f32::NAN, 2.0], &mut out);
    assert_eq!(out[0], 2.0);
}

#[test]
fn global_avg_pool_matches_naive() {
    let mut rng = Rng::new(5);
    for (c, hw) in [(1, 1), (3, 49), (2048, 49), (1280, 49), (7, 1000), (100_000, 1)] {
        let x = rng.vec(c * hw);
        let want: Vec<f64> =
            (0..c).map(|i| x[i * hw..(i + 1) * hw].iter().map(|&v| v as f64).sum::<f64>() / hw as f64).collect();
        let scale: Vec<f64> =
            (0..c).map(|i| x[i * hw..(i + 1) * hw].iter().map(|&v| v.abs() as f64).sum::<f64>() / hw as f64).collect();
        for pool in pools() {
            let mut out = vec![f32::NAN; c];
            global_avg_pool(&pool, c, hw, &x, &mut out);
            assert_close(&format!("gap c={c} hw={hw}"), &out, &want, &scale, 1e-6);
        }
    }
}
