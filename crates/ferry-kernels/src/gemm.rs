//! General matrix multiply with a fused epilogue (bias, accumulate, activation).

use crate::act::{Act, apply};
use crate::pool::Pool;

/// A constant right-hand side (k x n) packed once, at prepare time, for repeated products.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// Row-major k x n.
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `b`, whose element (p, j) is `b[p * rs + j * cs]`.
    pub fn new(k: usize, n: usize, b: &[f32], rs: isize, cs: isize) -> PackedB {
        let view = View::new(b, k, n, rs, cs, "B");
        let mut data = Vec::with_capacity(k * n);
        for p in 0..k {
            for j in 0..n {
                data.push(view.get(p, j));
            }
        }
        PackedB { k, n, data }
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
    /// Row-major m x k.
    data: Vec<f32>,
}

impl PackedA {
    /// Packs `a`, whose element (i, p) is `a[i * rs + p * cs]`.
    pub fn new(m: usize, k: usize, a: &[f32], rs: isize, cs: isize) -> PackedA {
        let view = View::new(a, m, k, rs, cs, "A");
        let mut data = Vec::with_capacity(m * k);
        for i in 0..m {
            for p in 0..k {
                data.push(view.get(i, p));
            }
        }
        PackedA { m, k, data }
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

/// [`gemm`] with a left operand that may be prepacked.
pub fn gemm_lhs(pool: &Pool, m: usize, n: usize, k: usize, a: Lhs, b: Rhs, c: &mut [f32], c_rs: usize, ep: &Epilogue) {
    let _ = pool;
    let a = match a {
        Lhs::Packed(p) => {
            assert!(p.m == m && p.k == k, "PackedA is {}x{}, the product needs {m}x{k}", p.m, p.k);
            View::new(&p.data, m, k, k as isize, 1, "A")
        }
        Lhs::Strided { data, rs, cs } => View::new(data, m, k, rs, cs, "A"),
    };
    let b = match b {
        Rhs::Packed(p) => {
            assert!(p.k == k && p.n == n, "PackedB is {}x{}, the product needs {k}x{n}", p.k, p.n);
            View::new(&p.data, k, n, n as isize, 1, "B")
        }
        Rhs::Strided { data, rs, cs } => View::new(data, k, n, rs, cs, "B"),
    };
    check_epilogue(m, n, c, c_rs, ep);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                s += a.get(i, p) * b.get(p, j);
            }
            let ci = i * c_rs + j;
            c[ci] = finish(ep, i, j, s, c[ci]);
        }
    }
}

/// Applies the epilogue to one sum: `old` is what `c` held.
#[inline(always)]
pub(crate) fn finish(ep: &Epilogue, i: usize, j: usize, sum: f32, old: f32) -> f32 {
    let mut v = sum;
    if ep.accumulate {
        v += old;
    }
    if let Some(b) = ep.bias_row {
        v += b[i];
    }
    if let Some(b) = ep.bias_col {
        v += b[j];
    }
    apply(ep.act, v)
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
#[derive(Clone, Copy)]
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
}
