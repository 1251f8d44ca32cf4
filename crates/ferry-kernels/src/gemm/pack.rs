//! Packing operands into the panel layouts the micro-kernels read.
//!
//! A is packed in panels of `mr` rows: within a panel, for each p, the `mr` values of column p.
//! B is packed in panels of `nr` columns: within a panel, for each p, the `nr` values of row p.
//! Rows or columns past the matrix edge are zero, so edge tiles compute garbage-free sums.

use super::View;

/// Packs rows `i0..i0+rows` (the last panel zero-padded to `mr`) and columns `p0..p0+kc` of `a`
/// into `dst`: panel `ib` starts at `ib * kc * mr`.
pub(crate) fn pack_a(a: &View, i0: usize, rows: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
    let panels = rows.div_ceil(mr);
    let dst = &mut dst[..panels * kc * mr];
    for ib in 0..panels {
        let panel = &mut dst[ib * kc * mr..(ib + 1) * kc * mr];
        let live = mr.min(rows - ib * mr);
        if live < mr {
            panel.fill(0.0);
        }
        if a.rs == 1 && a.cs != 1 {
            // Column-major A (a transposed operand): each column's mr values are contiguous.
            if live == 6 && mr == 6 {
                // A fixed-size copy compiles to two moves instead of a memcpy call.
                for (p, out) in panel.chunks_exact_mut(6).take(kc).enumerate() {
                    let col: &[f32; 6] = a.col(i0 + ib * mr, p0 + p, 6).try_into().expect("6 values");
                    let out: &mut [f32; 6] = out.try_into().expect("6 slots");
                    *out = *col;
                }
            } else {
                for p in 0..kc {
                    panel[p * mr..p * mr + live].copy_from_slice(a.col(i0 + ib * mr, p0 + p, live));
                }
            }
            continue;
        }
        for ii in 0..live {
            let i = i0 + ib * mr + ii;
            if a.cs == 1 {
                // A row is contiguous: read it in order, write with stride mr.
                let row = a.row(i, p0, kc);
                for (p, &v) in row.iter().enumerate() {
                    panel[p * mr + ii] = v;
                }
            } else {
                for p in 0..kc {
                    panel[p * mr + ii] = a.get(i, p0 + p);
                }
            }
        }
    }
}

/// Packs rows `p0..p0+kc` and columns `j0..j0+cols` (the last panel zero-padded to `nr`) of `b`
/// into `dst`: panel `jb` starts at `jb * kc * nr`.
pub(crate) fn pack_b(b: &View, p0: usize, kc: usize, j0: usize, cols: usize, nr: usize, dst: &mut [f32]) {
    let panels = cols.div_ceil(nr);
    let dst = &mut dst[..panels * kc * nr];
    for jb in 0..panels {
        let panel = &mut dst[jb * kc * nr..(jb + 1) * kc * nr];
        let live = nr.min(cols - jb * nr);
        let j = j0 + jb * nr;
        if b.cs == 1 && live == nr {
            // Fixed-size copies compile to a few vector moves instead of a memcpy call per row.
            match nr {
                32 => copy_rows::<32>(b, p0, kc, j, panel),
                16 => copy_rows::<16>(b, p0, kc, j, panel),
                8 => copy_rows::<8>(b, p0, kc, j, panel),
                _ => (0..kc).for_each(|p| panel[p * nr..(p + 1) * nr].copy_from_slice(b.row(p0 + p, j, nr))),
            }
        } else if b.cs == 1 {
            for p in 0..kc {
                let out = &mut panel[p * nr..(p + 1) * nr];
                out[..live].copy_from_slice(b.row(p0 + p, j, live));
                out[live..].fill(0.0);
            }
        } else if b.rs == 1 {
            // Column-major B: read each column in order.
            if live < nr {
                panel.fill(0.0);
            }
            for jj in 0..live {
                let col = b.col(p0, j + jj, kc);
                for (p, &v) in col.iter().enumerate() {
                    panel[p * nr + jj] = v;
                }
            }
        } else {
            for p in 0..kc {
                for jj in 0..nr {
                    panel[p * nr + jj] = if jj < live { b.get(p0 + p, j + jj) } else { 0.0 };
                }
            }
        }
    }
}

/// Copies `N` values of each of rows `p0..p0 + kc` from column `j` into consecutive `N`-value slots.
#[inline(always)]
fn copy_rows<const N: usize>(b: &View, p0: usize, kc: usize, j: usize, panel: &mut [f32]) {
    for (p, out) in panel.chunks_exact_mut(N).take(kc).enumerate() {
        let src: &[f32; N] = b.row(p0 + p, j, N).try_into().expect("N values");
        let dst: &mut [f32; N] = out.try_into().expect("N slots");
        *dst = *src;
    }
}
