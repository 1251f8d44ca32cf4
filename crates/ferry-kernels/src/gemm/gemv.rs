//! Vector-matrix product (m = 1, e.g. a batch-1 fully connected layer) against a packed right-hand
//! side. The blocked GEMM would fill only one of its MR register rows and pack the vector per
//! block; here B's panels are streamed once, several at a time so that their independent
//! accumulators hide the add latency.

use super::{Epilogue, PAR_MIN_MACS, PackedB, View};
use crate::act::apply_slice;
use crate::isa::multiversion;
use crate::pool::Pool;

/// Panels summed in one pass (their accumulators stay in registers: 4 x 32 floats = 8 zmm).
const GROUP: usize = 4;

/// `c[j] = act(sum_p a[0][p] * b[p][j] + (c[j] if accumulate) + bias_row[0] + bias_col[j])`.
pub(super) fn gemv_packed(pool: &Pool, a: &View, b: &PackedB, c: &mut [f32], ep: &Epilogue) {
    let (k, n, nr) = (b.k, b.n, b.nr);
    let x: Vec<f32> = (0..k).map(|p| a.get(0, p)).collect();
    let panels = n.div_ceil(nr);
    // Threads take whole groups of panels, each task at least PAR_MIN_MACS.
    let per_task = if pool.threads() > 1 && n.saturating_mul(k) >= 2 * PAR_MIN_MACS {
        panels.div_ceil(pool.threads() * 2).max(PAR_MIN_MACS / (k * nr).max(1)).max(1)
    } else {
        panels
    };
    let row_bias = ep.bias_row.map_or(0.0, |b| b[0]);
    pool.for_each_chunk_mut(&mut c[..n], per_task * nr, |t, out| {
        let first = t * per_task;
        let data = &b.data[first * k * nr..(first + out.len().div_ceil(nr)) * k * nr];
        panels_dot(&x, data, nr, ep.accumulate, out);
        let j0 = first * nr;
        if let Some(bc) = ep.bias_col {
            out.iter_mut().zip(&bc[j0..]).for_each(|(v, b)| *v += row_bias + b);
        } else if row_bias != 0.0 {
            out.iter_mut().for_each(|v| *v += row_bias);
        }
        apply_slice(ep.act, out);
    });
}

multiversion! {
    /// `out[j] (+)= x . column j` for the packed panels in `data` (`nr` columns each, over all of k).
    fn panels_dot / panels_dot_with(x: &[f32], data: &[f32], nr: usize, accumulate: bool, out: &mut [f32]) {
        match nr {
            32 => dot_nr::<32>(x, data, accumulate, out),
            16 => dot_nr::<16>(x, data, accumulate, out),
            8 => dot_nr::<8>(x, data, accumulate, out),
            4 => dot_nr::<4>(x, data, accumulate, out),
            _ => unreachable!("micro-kernels have NR 32, 16, 8 or 4, not {nr}"),
        }
    }
}

#[inline(always)]
fn dot_nr<const NR: usize>(x: &[f32], data: &[f32], accumulate: bool, out: &mut [f32]) {
    let k = x.len();
    // Panel jb as k rows of NR values.
    let panel = |jb: usize| -> &[[f32; NR]] { data[jb * k * NR..(jb + 1) * k * NR].as_chunks::<NR>().0 };
    let store = |out: &mut [f32], jb: usize, acc: &[f32; NR]| {
        let j0 = jb * NR;
        let cols = NR.min(out.len() - j0);
        let dst = &mut out[j0..j0 + cols];
        if accumulate {
            dst.iter_mut().zip(acc).for_each(|(d, a)| *d += a);
        } else {
            dst.copy_from_slice(&acc[..cols]);
        }
    };
    let panels = out.len().div_ceil(NR);
    let mut jb = 0;
    while jb + GROUP <= panels {
        let mut acc = [[0.0f32; NR]; GROUP];
        let (p0, p1, p2, p3) = (panel(jb), panel(jb + 1), panel(jb + 2), panel(jb + 3));
        for p in 0..k {
            let xp = x[p];
            for j in 0..NR {
                acc[0][j] += xp * p0[p][j];
                acc[1][j] += xp * p1[p][j];
                acc[2][j] += xp * p2[p][j];
                acc[3][j] += xp * p3[p][j];
            }
        }
        for (g, a) in acc.iter().enumerate() {
            store(out, jb + g, a);
        }
        jb += GROUP;
    }
    for jb in jb..panels {
        let mut acc = [0.0f32; NR];
        for (&xp, r) in x.iter().zip(panel(jb)) {
            for j in 0..NR {
                acc[j] += xp * r[j];
            }
        }
        store(out, jb, &acc);
    }
}
