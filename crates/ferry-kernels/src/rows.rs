//! Row-wise normalizations: softmax and layer norm over the last axis.

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

fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
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

fn layer_norm_row(src: &[f32], dst: &mut [f32], gamma: Option<&[f32]>, beta: Option<&[f32]>, eps: f32) {
    let n = src.len() as f32;
    let mean = src.iter().sum::<f32>() / n;
    let var = src.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        let mut v = (s - mean) * inv;
        if let Some(g) = gamma {
            v *= g[i];
        }
        if let Some(b) = beta {
            v += b[i];
        }
        *d = v;
    }
}
