use crate::util::{Rng, assert_close, pools};
use ferry_kernels::{layer_norm_rows, softmax_rows};

const SHAPES: &[(usize, usize)] = &[(1, 1), (3, 7), (128, 128), (12 * 128, 128), (5, 1000), (64, 768), (2, 33)];

#[test]
fn softmax_matches_naive() {
    let mut rng = Rng::new(6);
    for &(rows, len) in SHAPES {
        // Spread inputs to +-40 so the max subtraction matters; one row of huge values.
        let mut x: Vec<f32> = rng.vec(rows * len).iter().map(|v| v * 40.0).collect();
        x[..len].iter_mut().for_each(|v| *v += 1e4);
        let mut want = Vec::with_capacity(x.len());
        for r in x.chunks(len) {
            let m = r.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let s: f64 = r.iter().map(|&v| (v as f64 - m).exp()).sum();
            want.extend(r.iter().map(|&v| (v as f64 - m).exp() / s));
        }
        for pool in pools() {
            let mut got = x.clone();
            softmax_rows(&pool, &mut got, len);
            // Relative to the row's largest value: tiny probabilities carry the absolute error of exp.
            assert_close(&format!("softmax {rows}x{len}"), &got, &want, &vec![1e-3; want.len()], 2e-6);
        }
    }
}

#[test]
fn layer_norm_matches_naive() {
    let mut rng = Rng::new(7);
    for &(rows, len) in SHAPES {
        // An offset makes the mean large next to the spread, which a one-pass variance would lose.
        let x: Vec<f32> = rng.vec(rows * len).iter().map(|v| v * 3.0 + 20.0).collect();
        let gamma = rng.vec(len);
        let beta = rng.vec(len);
        for (g, b) in [(None, None), (Some(&gamma[..]), Some(&beta[..])), (Some(&gamma[..]), None)] {
            let mut want = Vec::with_capacity(x.len());
            let mut scale = Vec::with_capacity(x.len());
            for r in x.chunks(len) {
                let n = len as f64;
                let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                let inv = 1.0 / (var + 1e-5).sqrt();
                for (i, &v) in r.iter().enumerate() {
                    let gi = g.map_or(1.0, |g| g[i] as f64);
                    let bi = b.map_or(0.0, |b| b[i] as f64);
                    want.push((v as f64 - mean) * inv * gi + bi);
                    // The normalized value's error scales with |x| / std (f32 rounding of x itself).
                    scale.push(((v as f64).abs() * inv * gi.abs()).max(1.0) + bi.abs());
                }
            }
            for pool in pools() {
                let mut got = vec![f32::NAN; x.len()];
                layer_norm_rows(&pool, &x, &mut got, len, g, b, 1e-5);
                assert_close(&format!("layer norm {rows}x{len}"), &got, &want, &scale, 1e-5);
            }
        }
    }
}
