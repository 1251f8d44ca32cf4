//! Row-wise normalizations: softmax and layer norm over the last axis.

use crate::fastmath;
use crate::isa::multiversion;
use crate::pool::{PAR_MIN_ELEMS, Pool};

fn rows_per_task(pool: &Pool, rows: usize, row_len: usize) -> usize {
    let min_rows = (PAR_MIN_ELEMS / 4 / row_len.max(1)).max(1);
    pool.chunk_for(rows, min_rows)
}

/// Softmax over each `row_len`-element row of `x`, in place (max subtracted first, so large inputs
/// do not overflow).
pub fn softmax_rows(pool: &Pool, x: &mut [f32], row_len: usize) {
    if row_len == 0 || x.is_empty() {
        return;
    }
    assert!(x.len().is_multiple_of(row_len), "{} values do not split into rows of {row_len}", x.len());
    let per = rows_per_task(pool, x.len() / row_len, row_len);
    pool.for_each_chunk_mut(x, per * row_len, |_, chunk| {
        for row in chunk.chunks_exact_mut(row_len) {
            softmax_row(row);
        }
    });
}

multiversion! {
    fn softmax_row / softmax_row_with(row: &mut [f32]) {
        // Separate simple loops: each one vectorizes (a fused loop with a reduction does not).
        let max = lane_max(row);
        row.iter_mut().for_each(|v| *v = fastmath::exp(*v - max));
        let inv = 1.0 / lane_sum(row, |v| v);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// The largest value of `x` (NaN-ignoring, like `f32::max`), in sixteen lanes.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..16 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Layer normalization of each `row_len`-element row: `(x - mean) / sqrt(var + eps) * gamma + beta`
/// with the biased variance.
pub fn layer_norm_rows(
    pool: &Pool,
    x: &[f32],
    out: &mut [f32],
    row_len: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) {
    if row_len == 0 || x.is_empty() {
        return;
    }
    assert!(x.len().is_multiple_of(row_len), "{} values do not split into rows of {row_len}", x.len());
    assert!(out.len() >= x.len(), "output has {} values for {}", out.len(), x.len());
    for (name, p) in [("gamma", gamma), ("beta", beta)] {
        if let Some(p) = p {
            assert!(p.len() >= row_len, "{name} has {} values for rows of {row_len}", p.len());
        }
    }
    let per = rows_per_task(pool, x.len() / row_len, row_len);
    pool.for_each_chunk_mut(&mut out[..x.len()], per * row_len, |t, chunk| {
        let base = t * per * row_len;
        for (r, dst) in chunk.chunks_exact_mut(row_len).enumerate() {
            let src = &x[base + r * row_len..base + (r + 1) * row_len];
            layer_norm_row(src, dst, gamma, beta, eps);
        }
    });
}

multiversion! {
    fn layer_norm_row / layer_norm_row_with(
        src: &[f32],
        dst: &mut [f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
    ) {
        // Two passes (mean, then squared deviations): a one-pass variance loses precision when the
        // mean is large next to the spread.
        let n = src.len() as f32;
        let mean = lane_sum(src, |v| v) / n;
        let var = lane_sum(src, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        let dst = &mut dst[..src.len()];
        match (gamma, beta) {
            (Some(g), Some(b)) => {
                for (((d, s), g), b) in dst.iter_mut().zip(src).zip(&g[..src.len()]).zip(&b[..src.len()]) {
                    *d = (s - mean) * inv * g + b;
                }
            }
            (Some(g), None) => {
                for ((d, s), g) in dst.iter_mut().zip(src).zip(&g[..src.len()]) {
                    *d = (s - mean) * inv * g;
                }
            }
            (None, Some(b)) => {
                for ((d, s), b) in dst.iter_mut().zip(src).zip(&b[..src.len()]) {
                    *d = (s - mean) * inv + b;
                }
            }
            (None, None) => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = (s - mean) * inv;
                }
            }
        }
    }
}

/// Sum of `f(v)` over `x` in sixteen lanes (vectorizable; the order differs from a serial sum).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for l in 0..16 {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}
