//! Reductions (the ten `ReduceKind`s), Softmax/LogSoftmax and global pooling. Floats accumulate
//! in f64 and round once to the element type; integer Sum/Prod/Max/Min/L1/SumSquare accumulate in
//! i64 (wrapping) so that large values stay exact.

use crate::KernelResult;
use crate::array::Array;
use ferry_ir::ops::{PoolKind, ReduceKind};
use ndarray::{ArrayD, Axis, IxDyn};

/// Normalizes possibly negative axes against `rank`; duplicates are an error.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> KernelResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = if a < 0 { a + rank as i64 } else { a };
        if n < 0 || n >= rank as i64 {
            return Err(format!("axis {a} is out of range for rank {rank}"));
        }
        if out.contains(&(n as usize)) {
            return Err(format!("axis {a} is repeated"));
        }
        out.push(n as usize);
    }
    Ok(out)
}

pub(crate) fn norm_axis(axis: i64, rank: usize) -> KernelResult<usize> {
    Ok(norm_axes(&[axis], rank)?[0])
}

/// For each element of a row-major array of `shape`, the row-major position of its reduced
/// element (reduced axes collapsed), plus the output shape with reduced axes kept as 1.
fn reduce_map(shape: &[usize], reduced: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = shape.iter().zip(reduced).map(|(d, r)| if *r { 1 } else { *d }).collect();
    let rank = shape.len();
    let mut out_strides = vec![0usize; rank];
    let mut acc = 1;
    for i in (0..rank).rev() {
        out_strides[i] = if reduced[i] { 0 } else { acc };
        acc *= out_shape[i];
    }
    let total: usize = shape.iter().product();
    let mut map = Vec::with_capacity(total);
    let mut idx = vec![0usize; rank];
    let mut pos = 0usize;
    for _ in 0..total {
        map.push(pos);
        for i in (0..rank).rev() {
            idx[i] += 1;
            pos += out_strides[i];
            if idx[i] < shape[i] {
                break;
            }
            pos -= out_strides[i] * idx[i];
            idx[i] = 0;
        }
    }
    (map, out_shape)
}

pub fn reduce(kind: ReduceKind, x: &Array, axes: Option<&[i64]>, keepdims: bool, noop: bool) -> KernelResult<Array> {
    use ReduceKind::*;
    let rank = x.shape().len();
    let axes = match axes {
        Some(a) if !a.is_empty() => norm_axes(a, rank)?,
        _ if noop => return Ok(x.clone()),
        _ => (0..rank).collect(),
    };
    let reduced: Vec<bool> = (0..rank).map(|i| axes.contains(&i)).collect();
    let (map, keep_shape) = reduce_map(x.shape(), &reduced);
    let final_shape: Vec<usize> = if keepdims {
        keep_shape.clone()
    } else {
        x.shape().iter().zip(&reduced).filter(|(_, r)| !**r).map(|(d, _)| *d).collect()
    };
    let n_out: usize = keep_shape.iter().product();
    let dtype = x.dtype();
    if dtype.is_int() && matches!(kind, Sum | Prod | Max | Min | L1 | SumSquare) {
        let v = x.to_i64()?;
        let unsigned = dtype.is_unsigned_int();
        let init = match kind {
            Prod => 1,
            Max => {
                if unsigned {
                    0
                } else {
                    i64::MIN
                }
            }
            Min => i64::MAX,
            _ => 0,
        };
        let mut out = vec![init; n_out];
        for (val, &o) in v.iter().zip(&map) {
            let a = &mut out[o];
            *a = match kind {
                Sum => a.wrapping_add(*val),
                Prod => a.wrapping_mul(*val),
                Max => (*a).max(*val),
                Min => (*a).min(*val),
                L1 => a.wrapping_add(val.wrapping_abs()),
                _ => a.wrapping_add(val.wrapping_mul(*val)),
            };
        }
        let arr = ArrayD::from_shape_vec(IxDyn(&final_shape), out).map_err(|e| e.to_string())?;
        return Array::from_i64(dtype, arr);
    }
    let v = x.to_f64()?;
    let is_bool = dtype == ferry_ir::DType::Bool;
    let init = match kind {
        Prod => 1.0,
        // bool: the empty maximum is false, the empty minimum true
        Max if is_bool => 0.0,
        Min if is_bool => 1.0,
        Max | LogSumExp => f64::NEG_INFINITY,
        Min => f64::INFINITY,
        _ => 0.0,
    };
    let mut out = vec![init; n_out];
    let mut count = vec![0usize; n_out];
    if kind == LogSumExp {
        // Stable: shift by the maximum of each group.
        let mut m = vec![f64::NEG_INFINITY; n_out];
        for (val, &o) in v.iter().zip(&map) {
            if *val > m[o] || val.is_nan() {
                m[o] = *val;
            }
        }
        let mut s = vec![0.0; n_out];
        for (val, &o) in v.iter().zip(&map) {
            if m[o].is_finite() {
                s[o] += (val - m[o]).exp();
            }
        }
        for o in 0..n_out {
            out[o] = if m[o].is_finite() {
                m[o] + s[o].ln()
            } else if m[o] == f64::INFINITY {
                f64::INFINITY
            } else {
                m[o]
            };
        }
    } else {
        for (val, &o) in v.iter().zip(&map) {
            let a = &mut out[o];
            count[o] += 1;
            *a = match kind {
                Sum | Mean | LogSum => *a + val,
                Prod => *a * val,
                Max => {
                    if val.is_nan() || *val > *a {
                        *val
                    } else {
                        *a
                    }
                }
                Min => {
                    if val.is_nan() || *val < *a {
                        *val
                    } else {
                        *a
                    }
                }
                L1 => *a + val.abs(),
                L2 | SumSquare => *a + val * val,
                LogSumExp => unreachable!(),
            };
        }
        for o in 0..n_out {
            out[o] = match kind {
                Mean => out[o] / count[o] as f64,
                L2 => out[o].sqrt(),
                LogSum => out[o].ln(),
                _ => out[o],
            };
        }
    }
    let arr = ArrayD::from_shape_vec(IxDyn(&final_shape), out).map_err(|e| e.to_string())?;
    Array::from_f64(dtype, arr)
}

pub fn softmax(x: &Array, axis: i64, log: bool) -> KernelResult<Array> {
    let mut v = x.to_f64()?;
    let axis = norm_axis(axis, v.ndim())?;
    for mut lane in v.lanes_mut(Axis(axis)) {
        let m = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let m = if m.is_finite() { m } else { 0.0 };
        let s: f64 = lane.iter().map(|e| (e - m).exp()).sum();
        for e in lane.iter_mut() {
            *e = if log { *e - m - s.ln() } else { (*e - m).exp() / s };
        }
    }
    Array::from_f64(x.dtype(), v)
}

pub fn global_pool(kind: PoolKind, x: &Array) -> KernelResult<Array> {
    let rank = x.shape().len();
    if rank < 2 {
        return Err("global pooling needs an [N, C, ...] input".into());
    }
    let axes: Vec<i64> = (2..rank as i64).collect();
    match kind {
        PoolKind::Max => reduce(ReduceKind::Max, x, Some(&axes), true, false),
        PoolKind::Avg => reduce(ReduceKind::Mean, x, Some(&axes), true, false),
        PoolKind::Lp(p) => {
            let v = x.to_f64()?;
            let pw = v.mapv(|e| e.abs().powi(p as i32));
            let s = reduce(ReduceKind::Sum, &Array::F64(pw), Some(&axes), true, false)?.to_f64()?;
            Array::from_f64(x.dtype(), s.mapv(|e| e.powf(1.0 / p as f64)))
        }
    }
}
