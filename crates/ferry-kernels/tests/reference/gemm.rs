use crate::util::{Rng, assert_close, pools};
use ferry_kernels::{Act, Epilogue, Lhs, PackedA, PackedB, Rhs, gemm, gemm_lhs};

/// Shapes: m=1 GEMV, k=1, odd sizes, sizes around register-tile and cache-block edges.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 768, 768),
    (1, 37, 300),
    // GEMV against PackedB split over threads (>= 2M multiply-adds), a partial last panel.
    (1, 1000, 2100),
    (5, 3, 1),
    (64, 64, 1),
    (7, 9, 13),
    (6, 16, 8),
    (13, 33, 17),
    (48, 50, 70),
    (128, 96, 129),
    (33, 200, 520),
    (70, 300, 260),
    (260, 49, 64),
];

#[derive(Clone, Copy)]
enum Layout {
    RowMajor,
    ColMajor,
    Padded,
}

/// (rs, cs, length) of a rows x cols matrix in `layout`.
fn strides(layout: Layout, rows: usize, cols: usize) -> (isize, isize, usize) {
    match layout {
        Layout::RowMajor => (cols as isize, 1, rows * cols),
        Layout::ColMajor => (1, rows as isize, rows * cols),
        Layout::Padded => ((cols + 3) as isize, 1, rows * (cols + 3)),
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,
    a_rs: isize,
    a_cs: isize,
    b: Vec<f32>,
    b_rs: isize,
    b_cs: isize,
    bias_col: Vec<f32>,
    bias_row: Vec<f32>,
    c0: Vec<f32>,
    c_rs: usize,
}

impl Case {
    fn new(rng: &mut Rng, (m, n, k): (usize, usize, usize), la: Layout, lb: Layout) -> Case {
        let (a_rs, a_cs, alen) = strides(la, m, k);
        let (b_rs, b_cs, blen) = strides(lb, k, n);
        let c_rs = n + 2;
        Case {
            m,
            n,
            k,
            a: rng.vec(alen),
            a_rs,
            a_cs,
            b: rng.vec(blen),
            b_rs,
            b_cs,
            bias_col: rng.vec(n),
            bias_row: rng.vec(m),
            c0: rng.vec(m * c_rs),
            c_rs,
        }
    }

    fn a(&self, i: usize, p: usize) -> f64 {
        self.a[(i as isize * self.a_rs + p as isize * self.a_cs) as usize] as f64
    }

    fn b(&self, p: usize, j: usize) -> f64 {
        self.b[(p as isize * self.b_rs + j as isize * self.b_cs) as usize] as f64
    }

    /// The naive f64 result for epilogue `ep`, and the magnitude of the summed terms. Elements in the
    /// row padding must keep their old values.
    fn reference(&self, ep: &Epilogue) -> (Vec<f64>, Vec<f64>) {
        let mut want: Vec<f64> = self.c0.iter().map(|&v| v as f64).collect();
        let mut scale = vec![0.0; want.len()];
        for i in 0..self.m {
            for j in 0..self.n {
                let (mut s, mut mag) = (0.0, 0.0);
                for p in 0..self.k {
                    s += self.a(i, p) * self.b(p, j);
                    mag += (self.a(i, p) * self.b(p, j)).abs();
                }
                let idx = i * self.c_rs + j;
                if ep.accumulate {
                    s += want[idx];
                    mag += want[idx].abs();
                }
                if ep.bias_row.is_some() {
                    s += self.bias_row[i] as f64;
                    mag += (self.bias_row[i] as f64).abs();
                }
                if ep.bias_col.is_some() {
                    s += self.bias_col[j] as f64;
                    mag += (self.bias_col[j] as f64).abs();
                }
                want[idx] = crate::act::reference(ep.act, s);
                // An activation's slope is at most ~1.1, so it cannot magnify the sum's error much.
                scale[idx] = mag * 1.2;
            }
        }
        (want, scale)
    }
}

fn epilogues<'a>(case: &'a Case) -> Vec<Epilogue<'a>> {
    vec![
        Epilogue::default(),
        Epilogue { bias_col: Some(&case.bias_col), act: Act::Relu, ..Default::default() },
        Epilogue { bias_row: Some(&case.bias_row), accumulate: true, act: Act::Gelu, ..Default::default() },
        Epilogue {
            bias_col: Some(&case.bias_col),
            bias_row: Some(&case.bias_row),
            act: Act::Clip { min: -0.5, max: 0.7 },
            accumulate: false,
        },
    ]
}

#[test]
fn gemm_matches_naive_for_every_layout_and_epilogue() {
    let mut rng = Rng::new(1);
    let pools = pools();
    for &shape in SHAPES {
        for (la, lb) in [
            (Layout::RowMajor, Layout::RowMajor),
            (Layout::ColMajor, Layout::ColMajor),
            (Layout::Padded, Layout::ColMajor),
            (Layout::RowMajor, Layout::Padded),
        ] {
            let case = Case::new(&mut rng, shape, la, lb);
            let packed_b = PackedB::new(case.k, case.n, &case.b, case.b_rs, case.b_cs);
            let packed_a = PackedA::new(case.m, case.k, &case.a, case.a_rs, case.a_cs);
            for ep in epilogues(&case) {
                let (want, scale) = case.reference(&ep);
                for (pi, pool) in pools.iter().enumerate() {
                    let what = format!("{shape:?} pool {pi} act {:?} acc {}", ep.act, ep.accumulate);
                    let strided = Rhs::Strided { data: &case.b, rs: case.b_rs, cs: case.b_cs };
                    let mut c = case.c0.clone();
                    gemm(pool, case.m, case.n, case.k, &case.a, case.a_rs, case.a_cs, strided, &mut c, case.c_rs, &ep);
                    assert_close(&format!("{what} strided"), &c, &want, &scale, 1e-5);
                    // Strided A with packed B (the m = 1 vector-matrix path when m is 1).
                    let mut c = case.c0.clone();
                    let packed = Rhs::Packed(&packed_b);
                    gemm(pool, case.m, case.n, case.k, &case.a, case.a_rs, case.a_cs, packed, &mut c, case.c_rs, &ep);
                    assert_close(&format!("{what} packed b"), &c, &want, &scale, 1e-5);
                    let mut c = case.c0.clone();
                    let lhs = Lhs::Packed(&packed_a);
                    gemm_lhs(pool, case.m, case.n, case.k, lhs, Rhs::Packed(&packed_b), &mut c, case.c_rs, &ep);
                    assert_close(&format!("{what} packed"), &c, &want, &scale, 1e-5);
                }
            }
        }
    }
}

#[test]
fn gemm_with_empty_dimensions_leaves_or_fills_c() {
    let pool = ferry_kernels::Pool::new(1);
    // k = 0: the product is zero, so c becomes act(bias).
    let bias = [1.0f32, -2.0, 3.0];
    let mut c = vec![9.0f32; 6];
    let ep = Epilogue { bias_col: Some(&bias), act: Act::Relu, ..Default::default() };
    gemm(&pool, 2, 3, 0, &[], 0, 1, Rhs::Strided { data: &[], rs: 3, cs: 1 }, &mut c, 3, &ep);
    assert_eq!(c, [1.0, 0.0, 3.0, 1.0, 0.0, 3.0]);
    // m = 0: nothing is written.
    let mut c: Vec<f32> = vec![];
    gemm(&pool, 0, 3, 4, &[], 4, 1, Rhs::Strided { data: &[0.0; 12], rs: 3, cs: 1 }, &mut c, 3, &ep);
}
