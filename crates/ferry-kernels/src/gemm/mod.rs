//! General matrix multiply with a fused epilogue (bias, accumulate, activation).
//!
//! The product is blocked the usual way for caches: columns in blocks of `NC`, the shared dimension
//! in blocks of `KC`, rows in blocks of `MC`; each block of B and A is packed into panels (unless it
//! was packed ahead of time, see [`PackedA`], [`PackedB`]) and a register-tile micro-kernel
//! (`kernels.rs`) computes `MR x NR` tiles of C. The epilogue runs on each tile right after its
//! last block, while the tile is still in L1. Threads take disjoint rectangles of C.

mod gemv;
mod kernels;
mod pack;

pub use kernels::kernel_name;

/// The micro-kernel's tile (MR rows, NR columns), for callers choosing an orientation.
pub(crate) fn tile_dims() -> (usize, usize) {
    (kernel().mr, kernel().nr)
}

use crate::act::Act;
use crate::isa::multiversion;
use crate::pool::Pool;
use kernels::{Kernel, TileEp, kernel};
use pack::{pack_a, pack_b};
use std::cell::RefCell;

/// Shared-dimension block: an `MR x KC` A panel and a `KC x NR` B panel stay in L1/L2.
const KC: usize = 256;
/// Row block: the packed `MC x KC` A block stays in L2.
const MC: usize = 72;
/// Column block: the packed `KC x NC` B block stays in L2.
const NC: usize = 512;
/// Below this many multiply-adds a product runs on one thread (waking others costs more).
const PAR_MIN_MACS: usize = 1 << 20;

/// A constant right-hand side (k x n) packed once, at prepare time, for repeated products.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    /// Panels of `nr` columns over the whole of k: panel `jb` is `data[jb*k*nr..(jb+1)*k*nr]`.
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `b`, whose element (p, j) is `b[p * rs + j * cs]`.
    pub fn new(k: usize, n: usize, b: &[f32], rs: isize, cs: isize) -> PackedB {
        let view = View::new(b, k, n, rs, cs, "B");
        let nr = kernel().nr;
        let mut data = vec![0.0; n.div_ceil(nr) * nr * k];
        pack_b(&view, 0, k, 0, n, nr, &mut data);
        PackedB { k, n, nr, data }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }
}

/// A constant left-hand side (m x k) packed once, e.g. convolution weights `[c_out, c_in*kh*kw]`.
#[derive(Clone, Debug)]
pub struct PackedA {
    m: usize,
    k: usize,
    mr: usize,
    /// Panels of `mr` rows over the whole of k: panel `ib` is `data[ib*k*mr..(ib+1)*k*mr]`.
    data: Vec<f32>,
}

impl PackedA {
    /// Packs `a`, whose element (i, p) is `a[i * rs + p * cs]`.
    pub fn new(m: usize, k: usize, a: &[f32], rs: isize, cs: isize) -> PackedA {
        let view = View::new(a, m, k, rs, cs, "A");
        let mr = kernel().mr;
        let mut data = vec![0.0; m.div_ceil(mr) * mr * k];
        pack_a(&view, 0, m, 0, k, mr, &mut data);
        PackedA { m, k, mr, data }
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }
}

/// The right-hand operand of [`gemm`].
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    Packed(&'a PackedB),
    /// Element (p, j) is `data[p * rs + j * cs]`.
    Strided {
        data: &'a [f32],
        rs: isize,
        cs: isize,
    },
}

/// The left-hand operand of [`gemm_lhs`].
#[derive(Clone, Copy, Debug)]
pub enum Lhs<'a> {
    Packed(&'a PackedA),
    /// Element (i, p) is `data[i * rs + p * cs]`.
    Strided {
        data: &'a [f32],
        rs: isize,
        cs: isize,
    },
}

/// What happens to each output element after the product:
/// `c = act(a*b + (c if accumulate) + bias_row[i] + bias_col[j])`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// One value per column (length n).
    pub bias_col: Option<&'a [f32]>,
    /// One value per row (length m).
    pub bias_row: Option<&'a [f32]>,
    pub act: Act,
    /// Add the product to what `c` holds (before bias and activation).
    pub accumulate: bool,
}

/// `c[i*c_rs + j] = act(sum_p a[i*a_rs + p*a_cs] * b[p][j] + bias)` for an m x k times k x n product.
pub fn gemm(
    pool: &Pool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: isize,
    a_cs: isize,
    b: Rhs,
    c: &mut [f32],
    c_rs: usize,
    ep: &Epilogue,
) {
    gemm_lhs(pool, m, n, k, Lhs::Strided { data: a, rs: a_rs, cs: a_cs }, b, c, c_rs, ep)
}

/// Where A's panels come from: prepacked over the whole of k, or packed per block.
#[derive(Clone, Copy)]
enum ASource<'a> {
    Packed(&'a PackedA),
    Strided(View<'a>),
}

#[derive(Clone, Copy)]
enum BSource<'a> {
    Packed(&'a PackedB),
    Strided(View<'a>),
    Custom(&'a dyn PackB),
}

/// A right operand that packs itself, e.g. convolution windows read straight from the image (so no
/// im2col matrix is written and read back).
pub(crate) trait PackB: Sync {
    /// Packs rows `p0..p0 + kc`, columns `j0..j0 + cols` into `nr`-column panels (panel `jb` at
    /// `jb * kc * nr`, the last one zero-padded), as `pack::pack_b` does for a matrix.
    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, nr: usize, dst: &mut [f32]);
}

/// [`gemm_lhs`] with a self-packing right operand (`k x n`).
pub(crate) fn gemm_packer(
    pool: &Pool,
    m: usize,
    n: usize,
    k: usize,
    a: Lhs,
    b: &dyn PackB,
    c: &mut [f32],
    c_rs: usize,
    ep: &Epilogue,
) {
    gemm_impl(pool, m, n, k, a, BSource::Custom(b), c, c_rs, ep)
}

/// [`gemm`] with a left operand that may be prepacked.
pub fn gemm_lhs(pool: &Pool, m: usize, n: usize, k: usize, a: Lhs, b: Rhs, c: &mut [f32], c_rs: usize, ep: &Epilogue) {
    let nr = kernel().nr;
    let b = match b {
        Rhs::Packed(p) => {
            assert!(p.k == k && p.n == n, "PackedB is {}x{}, the product needs {k}x{n}", p.k, p.n);
            debug_assert_eq!(p.nr, nr);
            BSource::Packed(p)
        }
        Rhs::Strided { data, rs, cs } => BSource::Strided(View::new(data, k, n, rs, cs, "B")),
    };
    gemm_impl(pool, m, n, k, a, b, c, c_rs, ep)
}

fn gemm_impl(pool: &Pool, m: usize, n: usize, k: usize, a: Lhs, b: BSource, c: &mut [f32], c_rs: usize, ep: &Epilogue) {
    let kern = kernel();
    let a = match a {
        Lhs::Packed(p) => {
            assert!(p.m == m && p.k == k, "PackedA is {}x{}, the product needs {m}x{k}", p.m, p.k);
            debug_assert_eq!(p.mr, kern.mr);
            ASource::Packed(p)
        }
        Lhs::Strided { data, rs, cs } => ASource::Strided(View::new(data, m, k, rs, cs, "A")),
    };
    check_epilogue(m, n, c, c_rs, ep);
    if m == 0 || n == 0 {
        return;
    }
    if let (1, ASource::Strided(v), BSource::Packed(p)) = (m, &a, &b) {
        if k > 0 {
            return gemv::gemv_packed(pool, v, p, c, ep);
        }
    }
    let out = OutPtr(c.as_mut_ptr());
    let job = Job { kern, m, k, a, b, out, c_rs, ep };
    let tasks = split(pool.threads(), m, n, k, kern);
    if tasks.len() == 1 {
        job.run(tasks[0]);
    } else {
        pool.for_each(tasks.len(), |t| job.run(tasks[t]));
    }
}

/// A rectangle of C: rows `r0..r1`, columns `c0..c1` (starts aligned to MR and NR).
#[derive(Clone, Copy, Debug)]
struct Rect {
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
}

/// Splits C into a few rectangles per thread: columns first (each thread then packs only its own B
/// columns), rows as well when there are too few columns.
fn split(threads: usize, m: usize, n: usize, k: usize, kern: Kernel) -> Vec<Rect> {
    let whole = Rect { r0: 0, r1: m, c0: 0, c1: n };
    // A few tasks per thread (stealing evens out a busy core), but none under PAR_MIN_MACS: waking
    // a thread for less costs more than it saves.
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    let target = (threads * 2).min(macs / PAR_MIN_MACS);
    if threads <= 1 || target < 2 {
        return vec![whole];
    }
    let col_panels = n.div_ceil(kern.nr);
    let row_panels = m.div_ceil(kern.mr);
    let n_parts = col_panels.min(target);
    let m_parts = row_panels.min(target.div_ceil(n_parts));
    let mut rects = Vec::with_capacity(n_parts * m_parts);
    for mi in 0..m_parts {
        let (r0, r1) = (row_panels * mi / m_parts * kern.mr, (row_panels * (mi + 1) / m_parts * kern.mr).min(m));
        for ni in 0..n_parts {
            let (c0, c1) = (col_panels * ni / n_parts * kern.nr, (col_panels * (ni + 1) / n_parts * kern.nr).min(n));
            if r0 < r1 && c0 < c1 {
                rects.push(Rect { r0, r1, c0, c1 });
            }
        }
    }
    rects
}

/// C's base pointer, shared by the tasks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: tasks write disjoint rectangles of C (see `split`), and `gemm_lhs` keeps the exclusive
// borrow of C alive until every task has finished, so no two threads touch the same element.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

struct Job<'a> {
    kern: Kernel,
    m: usize,
    k: usize,
    a: ASource<'a>,
    b: BSource<'a>,
    out: OutPtr,
    c_rs: usize,
    ep: &'a Epilogue<'a>,
}

thread_local! {
    /// Packing buffers, reused across calls on each thread.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Job<'_> {
    fn run(&self, rect: Rect) {
        let (mut abuf, mut bbuf) = BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        self.run_with(rect, &mut abuf, &mut bbuf);
        BUFFERS.with(|b| *b.borrow_mut() = (abuf, bbuf));
    }

    fn run_with(&self, rect: Rect, abuf: &mut Vec<f32>, bbuf: &mut Vec<f32>) {
        let Kernel { mr, nr, .. } = self.kern;
        if self.k == 0 {
            // No products: C is zero (or keeps its value when accumulating), then the epilogue.
            self.finish(rect.r0, rect.r1 - rect.r0, rect.c0, rect.c1 - rect.c0, true);
            return;
        }
        if matches!(self.a, ASource::Strided(_)) {
            abuf.resize(MC.div_ceil(mr) * mr * KC, 0.0);
        }
        if matches!(self.b, BSource::Strided(_) | BSource::Custom(_)) {
            bbuf.resize(NC.div_ceil(nr) * nr * KC, 0.0);
        }
        for jc in (rect.c0..rect.c1).step_by(NC) {
            let nc = NC.min(rect.c1 - jc);
            for pc in (0..self.k).step_by(KC) {
                let kc = KC.min(self.k - pc);
                let last = pc + kc == self.k;
                // B panels for columns jc..jc+nc, rows pc..pc+kc: (base, panel stride).
                let (b_base, b_stride) = match self.b {
                    BSource::Packed(p) => (p.data[(jc / nr) * self.k * nr + pc * nr..].as_ptr(), self.k * nr),
                    BSource::Strided(v) => {
                        pack_b(&v, pc, kc, jc, nc, nr, bbuf);
                        (bbuf.as_ptr(), kc * nr)
                    }
                    BSource::Custom(packer) => {
                        packer.pack(pc, kc, jc, nc, nr, &mut bbuf[..nc.div_ceil(nr) * nr * kc]);
                        (bbuf.as_ptr(), kc * nr)
                    }
                };
                for ic in (rect.r0..rect.r1).step_by(MC) {
                    let mc = MC.min(rect.r1 - ic);
                    let (a_base, a_stride) = match self.a {
                        ASource::Packed(p) => (p.data[(ic / mr) * self.k * mr + pc * mr..].as_ptr(), self.k * mr),
                        ASource::Strided(v) => {
                            pack_a(&v, ic, mc, pc, kc, mr, abuf);
                            (abuf.as_ptr(), kc * mr)
                        }
                    };
                    for jb in 0..nc.div_ceil(nr) {
                        // SAFETY: panel jb of this block lies inside the packed B data (packed
                        // buffers hold nc.div_ceil(nr) panels; PackedB holds n.div_ceil(nr)).
                        let bp = unsafe { b_base.add(jb * b_stride) };
                        for ib in 0..mc.div_ceil(mr) {
                            // SAFETY: likewise for A's panels.
                            let ap = unsafe { a_base.add(ib * a_stride) };
                            let (i, j) = (ic + ib * mr, jc + jb * nr);
                            let (rows, cols) = (mr.min(self.m - i).min(rect.r1 - i), nr.min(rect.c1 - j));
                            let add = pc > 0 || self.ep.accumulate;
                            let fused = self.tile(kc, ap, bp, i, j, rows, cols, add, last);
                            if last && !fused {
                                self.finish(i, rows, j, cols, false);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs the micro-kernel for the tile at (i, j) of `rows x cols` (at most MR x NR). On the last
    /// block of a full tile, the kernel applies the epilogue itself when it can (biases and a clamp);
    /// returns whether it did.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        i: usize,
        j: usize,
        rows: usize,
        cols: usize,
        add: bool,
        last: bool,
    ) -> bool {
        let Kernel { mr, nr, run, .. } = self.kern;
        // SAFETY: (i, j) is inside C's checked m x n area at row stride c_rs.
        let dst = unsafe { self.out.0.add(i * self.c_rs + j) };
        if rows == mr && cols == nr {
            let fused = if last { self.tile_epilogue(i, j) } else { None };
            // SAFETY: a full tile lies inside C; the panels hold kc*mr and kc*nr values; the biases
            // (if any) cover rows i..i+mr and columns j..j+nr, which are inside m and n; the kernel
            // was chosen for this CPU.
            unsafe { run(kc, ap, bp, dst, self.c_rs, add, fused.as_ref()) };
            return fused.is_some();
        }
        // An edge tile: compute into a full-size scratch tile, then copy the live part.
        let mut tmp = [0.0f32; 32 * 8];
        debug_assert!(mr * nr <= tmp.len());
        for r in 0..rows {
            for col in 0..cols {
                // SAFETY: r < rows and col < cols stay inside C.
                tmp[r * nr + col] = if add { unsafe { *dst.add(r * self.c_rs + col) } } else { 0.0 };
            }
        }
        // SAFETY: tmp holds mr x nr values at row stride nr.
        unsafe { run(kc, ap, bp, tmp.as_mut_ptr(), nr, add, None) };
        for r in 0..rows {
            for col in 0..cols {
                // SAFETY: as above.
                unsafe { *dst.add(r * self.c_rs + col) = tmp[r * nr + col] };
            }
        }
        false
    }

    /// The in-register epilogue for the full tile at (i, j), if the activation is a clamp.
    fn tile_epilogue(&self, i: usize, j: usize) -> Option<TileEp> {
        let ep = self.ep;
        let (lo, hi) = match ep.act {
            Act::None => (f32::NEG_INFINITY, f32::INFINITY),
            Act::Relu => (0.0, f32::INFINITY),
            Act::Clip { min, max } => (min, max),
            _ => return None,
        };
        if ep.act == Act::None && ep.bias_row.is_none() && ep.bias_col.is_none() {
            return None;
        }
        Some(TileEp {
            bias_row: ep.bias_row.map_or(std::ptr::null(), |b| b[i..].as_ptr()),
            bias_col: ep.bias_col.map_or(std::ptr::null(), |b| b[j..].as_ptr()),
            lo,
            hi,
        })
    }

    /// Applies the epilogue to rows `i..i + rows`, columns `j..j + cols` of C (`zero_first`: they
    /// had no products, so they start at zero unless accumulating).
    fn finish(&self, i: usize, rows: usize, j: usize, cols: usize, zero_first: bool) {
        let ep = self.ep;
        if !zero_first && ep.bias_row.is_none() && ep.bias_col.is_none() && ep.act == Act::None {
            return;
        }
        // SAFETY: the rectangle is inside C's checked area and belongs to this task.
        let tile = TileRef { ptr: unsafe { self.out.0.add(i * self.c_rs + j) }, rs: self.c_rs, rows, cols };
        let bias_row = ep.bias_row.map(|b| &b[i..i + rows]);
        let bias_col = ep.bias_col.map(|b| &b[j..j + cols]);
        epilogue(&tile, bias_row, bias_col, ep.act, zero_first && !ep.accumulate);
    }
}

/// A rectangle of C owned by the calling task: `rows` rows of `cols` values at row stride `rs`.
/// Only `Job::finish` builds one, for a rectangle inside the task's own part of C.
struct TileRef {
    ptr: *mut f32,
    rs: usize,
    rows: usize,
    cols: usize,
}

multiversion! {
    /// Bias and activation over a tile, compiled per ISA level (one dispatch per tile, not per row).
    fn epilogue / epilogue_with(tile: &TileRef, bias_row: Option<&[f32]>, bias_col: Option<&[f32]>, act: Act, zero: bool) {
        for r in 0..tile.rows {
            // SAFETY: see `TileRef`: row r of the tile is this task's, and no other reference to
            // it is alive.
            let row = unsafe { std::slice::from_raw_parts_mut(tile.ptr.add(r * tile.rs), tile.cols) };
            if zero {
                row.fill(0.0);
            }
            if let Some(b) = bias_row {
                let v = b[r];
                row.iter_mut().for_each(|x| *x += v);
            }
            if let Some(b) = bias_col {
                row.iter_mut().zip(b).for_each(|(x, v)| *x += v);
            }
            crate::act::apply_inline(act, row);
        }
    }
}

pub(crate) fn check_epilogue(m: usize, n: usize, c: &[f32], c_rs: usize, ep: &Epilogue) {
    if m > 0 && n > 0 {
        assert!(c_rs >= n, "c row stride {c_rs} is shorter than a row ({n})");
        assert!(
            c.len() >= (m - 1) * c_rs + n,
            "c has {} elements, a {m}x{n} result with row stride {c_rs} needs more",
            c.len()
        );
    }
    if let Some(b) = ep.bias_row {
        assert!(b.len() >= m, "bias_row has {} values for {m} rows", b.len());
    }
    if let Some(b) = ep.bias_col {
        assert!(b.len() >= n, "bias_col has {} values for {n} columns", b.len());
    }
}

/// A bounds-checked strided 2-D view: every (r, c) in range maps inside `data`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rs: isize,
    cs: isize,
}

impl<'a> View<'a> {
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, rs: isize, cs: isize, what: &str) -> View<'a> {
        if rows > 0 && cols > 0 {
            let (r, c) = ((rows - 1) as isize, (cols - 1) as isize);
            let corners = [0, r * rs, c * cs, r * rs + c * cs];
            let lo = *corners.iter().min().unwrap_or(&0);
            let hi = *corners.iter().max().unwrap_or(&0);
            assert!(
                lo >= 0 && (hi as usize) < data.len(),
                "{what}: a {rows}x{cols} view with strides ({rs}, {cs}) does not fit in {} elements",
                data.len()
            );
        }
        View { data, rs, cs }
    }

    #[inline(always)]
    pub(crate) fn get(&self, r: usize, c: usize) -> f32 {
        self.data[(r as isize * self.rs + c as isize * self.cs) as usize]
    }

    /// `len` elements of row `r` from column `c` (only when `cs == 1`).
    #[inline(always)]
    pub(crate) fn row(&self, r: usize, c: usize, len: usize) -> &'a [f32] {
        debug_assert_eq!(self.cs, 1);
        let start = (r as isize * self.rs + c as isize) as usize;
        &self.data[start..start + len]
    }

    /// `len` elements of column `c` from row `r` (only when `rs == 1`).
    #[inline(always)]
    pub(crate) fn col(&self, r: usize, c: usize, len: usize) -> &'a [f32] {
        debug_assert_eq!(self.rs, 1);
        let start = (r as isize + c as isize * self.cs) as usize;
        &self.data[start..start + len]
    }
}
