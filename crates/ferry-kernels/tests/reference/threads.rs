//! Results do not depend on the thread count: threads split outputs, never a sum.

use crate::util::{Rng, pools};
use ferry_kernels::{Act, Conv2d, Conv2dShape, Epilogue, PackedB, Rhs, gemm};

#[test]
fn gemm_results_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(8);
    let (m, n, k) = (70, 300, 600);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let bias = rng.vec(n);
    let packed = PackedB::new(k, n, &b, n as isize, 1);
    let ep = Epilogue { bias_col: Some(&bias), act: Act::Gelu, ..Default::default() };
    let results: Vec<Vec<f32>> = pools()
        .iter()
        .map(|pool| {
            let mut c = vec![0.0f32; m * n];
            gemm(pool, m, n, k, &a, k as isize, 1, Rhs::Packed(&packed), &mut c, n, &ep);
            c
        })
        .collect();
    for r in &results[1..] {
        assert!(r.iter().zip(&results[0]).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn conv_results_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(9);
    let shapes = [
        // Winograd, direct GEMM with packed windows, depthwise, transposed.
        (64, 20, 64, 3, 1, 1),
        (16, 33, 24, 3, 2, 1),
        (32, 30, 32, 3, 1, 32),
        // Depthwise large enough to be split over channels (>= 64K outputs per task), stride 1 and 2.
        (96, 40, 96, 3, 1, 96),
        (72, 81, 72, 3, 2, 72),
        (96, 7, 128, 1, 1, 1),
    ];
    for (c_in, hw, c_out, k, stride, group) in shapes {
        let s = Conv2dShape {
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: k,
            kw: k,
            stride: [stride, stride],
            pads: [k / 2; 4],
            dilation: [1, 1],
            group,
        };
        let (oh, ow) = s.out_hw();
        let x = rng.vec(c_in * hw * hw);
        let w = rng.vec(c_out * c_in / group * k * k);
        let conv = Conv2d::new(s, &w, Some(&rng.vec(c_out)), Act::Relu).unwrap();
        let mut scratch = vec![0.0f32; conv.scratch_len()];
        let results: Vec<Vec<f32>> = pools()
            .iter()
            .map(|pool| {
                let mut out = vec![0.0f32; c_out * oh * ow];
                conv.run(pool, &x, &mut out, &mut scratch);
                out
            })
            .collect();
        for r in &results[1..] {
            assert!(r.iter().zip(&results[0]).all(|(x, y)| x.to_bits() == y.to_bits()), "{s:?}");
        }
    }
}
