//! f32 elementwise steps: unary functions, and binary arithmetic with numpy broadcasting. Rows of
//! the output are computed by tight loops the compiler vectorizes (same-shape operands, a scalar,
//! or a row repeated); the broadcast walk happens once per row, not per element.

use ferry_ir::ops::{BinaryOp, UnaryOp};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Unary {
    Relu,
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Reciprocal,
    Floor,
    Ceil,
    Sin,
    Cos,
}

impl Unary {
    pub(crate) fn from_op(u: UnaryOp) -> Option<Unary> {
        Some(match u {
            UnaryOp::Relu => Unary::Relu,
            UnaryOp::Neg => Unary::Neg,
            UnaryOp::Abs => Unary::Abs,
            UnaryOp::Sqrt => Unary::Sqrt,
            UnaryOp::Exp => Unary::Exp,
            UnaryOp::Log => Unary::Log,
            UnaryOp::Tanh => Unary::Tanh,
            UnaryOp::Sigmoid => Unary::Sigmoid,
            UnaryOp::Reciprocal => Unary::Reciprocal,
            UnaryOp::Floor => Unary::Floor,
            UnaryOp::Ceil => Unary::Ceil,
            UnaryOp::Sin => Unary::Sin,
            UnaryOp::Cos => Unary::Cos,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl Binary {
    pub(crate) fn from_op(b: BinaryOp) -> Option<Binary> {
        Some(match b {
            BinaryOp::Add => Binary::Add,
            BinaryOp::Sub => Binary::Sub,
            BinaryOp::Mul => Binary::Mul,
            BinaryOp::Div => Binary::Div,
            BinaryOp::Pow => Binary::Pow,
            BinaryOp::Max => Binary::Max,
            BinaryOp::Min => Binary::Min,
            _ => return None,
        })
    }
}

/// `y = f(x)` over equal-length slices, or in place when `x` is None.
pub(crate) fn unary(op: Unary, x: Option<&[f32]>, y: &mut [f32]) {
    macro_rules! map {
        ($f:expr) => {{
            let f = $f;
            match x {
                Some(x) => y.iter_mut().zip(x).for_each(|(o, i)| *o = f(*i)),
                None => y.iter_mut().for_each(|o| *o = f(*o)),
            }
        }};
    }
    match op {
        Unary::Relu => map!(|v: f32| if v < 0.0 { 0.0 } else { v }),
        Unary::Neg => map!(|v: f32| -v),
        Unary::Abs => map!(|v: f32| v.abs()),
        Unary::Sqrt => map!(|v: f32| v.sqrt()),
        Unary::Exp => map!(|v: f32| v.exp()),
        Unary::Log => map!(|v: f32| v.ln()),
        Unary::Tanh => map!(|v: f32| v.tanh()),
        Unary::Sigmoid => map!(sigmoid),
        Unary::Reciprocal => map!(|v: f32| 1.0 / v),
        Unary::Floor => map!(|v: f32| v.floor()),
        Unary::Ceil => map!(|v: f32| v.ceil()),
        Unary::Sin => map!(|v: f32| v.sin()),
        Unary::Cos => map!(|v: f32| v.cos()),
    }
}

fn sigmoid(v: f32) -> f32 {
    // Written so neither branch overflows.
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// NaN-propagating min/max, as ONNX defines them.
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}

fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) }
}

/// Where an operand of one output row comes from.
#[derive(Clone, Copy)]
pub(crate) enum Row<'a> {
    /// One element per output element.
    Slice(&'a [f32]),
    /// The same element for the whole row.
    Scalar(f32),
    /// The output row itself (in place).
    Out,
}

/// `out[i] = op(a[i], b[i])` for one row.
pub(crate) fn binary_row(op: Binary, a: Row, b: Row, out: &mut [f32]) {
    match op {
        Binary::Add => row_with(a, b, out, |x, y| x + y),
        Binary::Sub => row_with(a, b, out, |x, y| x - y),
        Binary::Mul => row_with(a, b, out, |x, y| x * y),
        Binary::Div => row_with(a, b, out, |x, y| x / y),
        Binary::Pow => row_with(a, b, out, |x: f32, y: f32| x.powf(y)),
        Binary::Max => row_with(a, b, out, max_nan),
        Binary::Min => row_with(a, b, out, min_nan),
    }
}

#[inline(always)]
fn row_with(a: Row, b: Row, out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    let n = out.len();
    match (a, b) {
        (Row::Slice(a), Row::Slice(b)) => {
            out.iter_mut().zip(&a[..n]).zip(&b[..n]).for_each(|((o, x), y)| *o = f(*x, *y))
        }
        (Row::Slice(a), Row::Scalar(y)) => out.iter_mut().zip(&a[..n]).for_each(|(o, x)| *o = f(*x, y)),
        (Row::Scalar(x), Row::Slice(b)) => out.iter_mut().zip(&b[..n]).for_each(|(o, y)| *o = f(x, *y)),
        (Row::Scalar(x), Row::Scalar(y)) => out.fill(f(x, y)),
        (Row::Out, Row::Slice(b)) => out.iter_mut().zip(&b[..n]).for_each(|(o, y)| *o = f(*o, *y)),
        (Row::Out, Row::Scalar(y)) => out.iter_mut().for_each(|o| *o = f(*o, y)),
        (Row::Slice(a), Row::Out) => out.iter_mut().zip(&a[..n]).for_each(|(o, x)| *o = f(*x, *o)),
        (Row::Scalar(x), Row::Out) => out.iter_mut().for_each(|o| *o = f(x, *o)),
        (Row::Out, Row::Out) => out.iter_mut().for_each(|o| *o = f(*o, *o)),
    }
}

/// How a binary step walks its operands: the output split into rows of `row` elements; per row,
/// each operand either advances with the row (stride `row`), repeats one row, or is a scalar.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Broadcast {
    pub row: usize,
    /// Output shape without its last (row) axis, collapsed.
    pub outer: Vec<usize>,
    /// Per operand: the element strides over `outer`, and whether the row is a scalar (stride 0
    /// along the row).
    pub a: (Vec<usize>, bool),
    pub b: (Vec<usize>, bool),
}

/// Plans the walk for operands of shapes `a` and `b` broadcast to `out`.
pub(crate) fn broadcast(a: &[usize], b: &[usize], out: &[usize]) -> Option<Broadcast> {
    let r = out.len();
    if a.len() > r || b.len() > r {
        return None;
    }
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - s.len()).chain(s.iter().copied()).collect() };
    let (pa, pb) = (pad(a), pad(b));
    for k in 0..r {
        let ok = |d: usize| d == out[k] || d == 1;
        if !ok(pa[k]) || !ok(pb[k]) {
            return None;
        }
    }
    // Collapse axes: merge neighbours where both operands are either full or broadcast on both.
    let mut dims: Vec<(usize, bool, bool)> = Vec::new(); // (size, a full, b full)
    for k in 0..r {
        if out[k] == 1 {
            continue;
        }
        let (fa, fb) = (pa[k] == out[k], pb[k] == out[k]);
        match dims.last_mut() {
            Some(last) if last.1 == fa && last.2 == fb => last.0 *= out[k],
            _ => dims.push((out[k], fa, fb)),
        }
    }
    if dims.is_empty() {
        dims.push((1, true, true));
    }
    let (row, row_a, row_b) = *dims.last().expect("not empty");
    let outer_dims = &dims[..dims.len() - 1];
    let strides = |full: &dyn Fn(&(usize, bool, bool)) -> bool, row_full: bool| -> Vec<usize> {
        let mut acc = if row_full { row } else { 1 };
        let mut s = vec![0; outer_dims.len()];
        for k in (0..outer_dims.len()).rev() {
            if full(&outer_dims[k]) {
                s[k] = acc;
                acc *= outer_dims[k].0;
            }
        }
        s
    };
    Some(Broadcast {
        row,
        outer: outer_dims.iter().map(|d| d.0).collect(),
        a: (strides(&|d| d.1, row_a), !row_a),
        b: (strides(&|d| d.2, row_b), !row_b),
    })
}

/// Where the operands are: a slice, or the output itself (in place: then it is not broadcast).
pub(crate) enum Src<'a> {
    Slice(&'a [f32]),
    Out,
}

pub(crate) fn binary(op: Binary, plan: &Broadcast, a: Src, b: Src, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let rows: usize = plan.outer.iter().product();
    let mut idx = vec![0usize; plan.outer.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    for r in 0..rows {
        let out_row = &mut out[r * plan.row..(r + 1) * plan.row];
        let pick = |src: &Src, off: usize, scalar: bool| -> RowSrc {
            match src {
                Src::Out => RowSrc::Out,
                Src::Slice(s) if scalar => RowSrc::Scalar(s[off]),
                Src::Slice(_) => RowSrc::At(off),
            }
        };
        let (ra, rb) = (pick(&a, oa, plan.a.1), pick(&b, ob, plan.b.1));
        let row_a = resolve(&a, ra, plan.row);
        let row_b = resolve(&b, rb, plan.row);
        binary_row(op, row_a, row_b, out_row);
        // Advance the odometer over the outer axes.
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            oa += plan.a.0[k];
            ob += plan.b.0[k];
            if idx[k] < plan.outer[k] {
                break;
            }
            oa -= plan.a.0[k] * plan.outer[k];
            ob -= plan.b.0[k] * plan.outer[k];
            idx[k] = 0;
        }
    }
}

enum RowSrc {
    At(usize),
    Scalar(f32),
    Out,
}

fn resolve<'a>(src: &Src<'a>, r: RowSrc, row: usize) -> Row<'a> {
    match (src, r) {
        (Src::Slice(s), RowSrc::At(off)) => Row::Slice(&s[off..off + row]),
        (_, RowSrc::Scalar(v)) => Row::Scalar(v),
        _ => Row::Out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcasting by the definition: index every operand per output element.
    fn naive(a: &[f32], sa: &[usize], b: &[f32], sb: &[usize], out: &[usize]) -> Vec<f32> {
        let r = out.len();
        let pad =
            |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - s.len()).chain(s.iter().copied()).collect() };
        let (pa, pb) = (pad(sa), pad(sb));
        let n: usize = out.iter().product();
        (0..n)
            .map(|flat| {
                let mut rem = flat;
                let mut coords = vec![0; r];
                for k in (0..r).rev() {
                    coords[k] = rem % out[k];
                    rem /= out[k];
                }
                let at = |p: &[usize]| (0..r).fold(0, |acc, k| acc * p[k] + if p[k] == 1 { 0 } else { coords[k] });
                a[at(&pa)] - b[at(&pb)]
            })
            .collect()
    }

    #[test]
    fn broadcast_walks_match_the_definition() {
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![2, 3, 4], vec![2, 3, 4]),
            (vec![2, 3, 4], vec![4]),
            (vec![2, 3, 4], vec![3, 1]),
            (vec![2, 1, 4], vec![1, 3, 1]),
            (vec![1], vec![2, 3]),
            (vec![], vec![5]),
            (vec![2, 3, 1, 5], vec![3, 4, 1]),
            (vec![1, 6, 1, 1], vec![2, 6, 3, 3]),
        ];
        for (sa, sb) in cases {
            let r = sa.len().max(sb.len());
            let pad =
                |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - s.len()).chain(s.iter().copied()).collect() };
            let out: Vec<usize> = pad(&sa).iter().zip(pad(&sb)).map(|(x, y)| (*x).max(y)).collect();
            let a: Vec<f32> = (0..sa.iter().product::<usize>()).map(|i| i as f32 * 1.5).collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>()).map(|i| i as f32 * 0.25 + 7.0).collect();
            let plan = broadcast(&sa, &sb, &out).unwrap();
            let mut got = vec![0.0; out.iter().product()];
            binary(Binary::Sub, &plan, Src::Slice(&a), Src::Slice(&b), &mut got);
            assert_eq!(got, naive(&a, &sa, &b, &sb, &out), "{sa:?} - {sb:?}");
        }
    }

    #[test]
    fn min_max_propagate_nan() {
        let mut out = [0.0; 2];
        binary_row(Binary::Max, Row::Slice(&[f32::NAN, 1.0]), Row::Scalar(2.0), &mut out);
        assert!(out[0].is_nan());
        assert_eq!(out[1], 2.0);
    }
}
