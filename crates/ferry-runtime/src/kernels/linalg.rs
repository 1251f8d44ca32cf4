//! Contractions.

use crate::KernelResult;
use crate::array::Array;
use ndarray::{ArrayD, Ix2, IxDyn};

/// numpy matmul: 1-D operands gain (and lose) a unit axis; batch axes broadcast.
pub fn matmul(a: &Array, b: &Array) -> KernelResult<Array> {
    let dtype = a.dtype();
    let (x, y) = (a.to_f64()?, b.to_f64()?);
    let (xs, ys) = (x.shape().to_vec(), y.shape().to_vec());
    if xs.is_empty() || ys.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let x = if xs.len() == 1 { x.into_shape_with_order(IxDyn(&[1, xs[0]])).map_err(|e| e.to_string())? } else { x };
    let y = if ys.len() == 1 { y.into_shape_with_order(IxDyn(&[ys[0], 1])).map_err(|e| e.to_string())? } else { y };
    let (xr, yr) = (x.ndim(), y.ndim());
    let (m, k) = (x.shape()[xr - 2], x.shape()[xr - 1]);
    let (k2, n) = (y.shape()[yr - 2], y.shape()[yr - 1]);
    if k != k2 {
        return Err(format!("MatMul inner sizes differ: {xs:?} x {ys:?}"));
    }
    let batch = super::elementwise::broadcast_shape(&x.shape()[..xr - 2], &y.shape()[..yr - 2])?;
    let bx: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
    let by: Vec<usize> = batch.iter().copied().chain([k, n]).collect();
    let x = x.broadcast(IxDyn(&bx)).ok_or("MatMul batch broadcast")?.to_owned();
    let y = y.broadcast(IxDyn(&by)).ok_or("MatMul batch broadcast")?.to_owned();
    let count: usize = batch.iter().product();
    let xm = x.into_shape_with_order(IxDyn(&[count, m, k])).map_err(|e| e.to_string())?;
    let ym = y.into_shape_with_order(IxDyn(&[count, k, n])).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(count * m * n);
    for i in 0..count {
        let xi = xm.index_axis(ndarray::Axis(0), i).into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
        let yi = ym.index_axis(ndarray::Axis(0), i).into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
        out.extend(xi.dot(&yi).iter().copied());
    }
    let mut shape: Vec<usize> = batch;
    if xs.len() > 1 {
        shape.push(m);
    }
    if ys.len() > 1 {
        shape.push(n);
    }
    let r = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())?;
    if dtype.is_int() { Array::from_i64(dtype, r.mapv(|v| v as i64)) } else { Array::from_f64(dtype, r) }
}
