//! Sequence and optional kernels: they move whole values around and never look inside tensors,
//! except SplitToSequence and ConcatFromSequence.

use super::{arg_value, array, indexing, scalar_i64, tensor_value};
use crate::array::Array;
use crate::{KernelResult, Value};

fn sequence(args: &[Option<Value>], i: usize) -> KernelResult<&Vec<Value>> {
    match arg_value(args, i)? {
        Value::Sequence(s) => Ok(s),
        other => Err(format!("input {i} must be a sequence, not a {}", other.kind())),
    }
}

/// A position in `0..len` (`0..=len` when `inclusive`, for inserting); negative counts from the end.
fn position(args: &[Option<Value>], i: usize, len: usize, inclusive: bool) -> KernelResult<Option<usize>> {
    let Some(v) = args.get(i).and_then(|a| a.as_ref()) else { return Ok(None) };
    let p = scalar_i64(Some(v))?;
    let q = if p < 0 { p + len as i64 } else { p };
    let hi = if inclusive { len as i64 } else { len as i64 - 1 };
    if q < 0 || q > hi {
        return Err(format!("position {p} is out of range for a sequence of {len}"));
    }
    Ok(Some(q as usize))
}

pub fn construct(args: &[Option<Value>]) -> KernelResult<Value> {
    let items = (0..args.len()).map(|i| arg_value(args, i).cloned()).collect::<KernelResult<Vec<_>>>()?;
    Ok(Value::Sequence(items))
}

pub fn at(args: &[Option<Value>]) -> KernelResult<Value> {
    let s = sequence(args, 0)?;
    let p = position(args, 1, s.len(), false)?.ok_or("SequenceAt needs a position")?;
    Ok(s[p].clone())
}

pub fn insert(args: &[Option<Value>]) -> KernelResult<Value> {
    let mut s = sequence(args, 0)?.clone();
    let t = arg_value(args, 1)?.clone();
    let p = position(args, 2, s.len(), true)?.unwrap_or(s.len());
    s.insert(p, t);
    Ok(Value::Sequence(s))
}

pub fn erase(args: &[Option<Value>]) -> KernelResult<Value> {
    let mut s = sequence(args, 0)?.clone();
    if s.is_empty() {
        return Err("SequenceErase on an empty sequence".into());
    }
    let p = position(args, 1, s.len(), false)?.unwrap_or(s.len() - 1);
    s.remove(p);
    Ok(Value::Sequence(s))
}

pub fn length(args: &[Option<Value>]) -> KernelResult<Value> {
    Ok(Value::Tensor(ferry_ir::Tensor::scalar_i64(sequence(args, 0)?.len() as i64)))
}

pub fn split_to_sequence(args: &[Option<Value>], axis: i64, keepdims: bool) -> KernelResult<Value> {
    let x = array(args, 0)?;
    let split = match args.get(1).and_then(|a| a.as_ref()) {
        Some(_) => Some(array(args, 1)?),
        None => None,
    };
    let parts = indexing::split_to_sequence(&x, axis, keepdims, split)?;
    Ok(Value::Sequence(parts.into_iter().map(tensor_value).collect()))
}

pub fn concat_from_sequence(args: &[Option<Value>], axis: i64, new_axis: bool) -> KernelResult<Value> {
    let parts: Vec<Array> = sequence(args, 0)?
        .iter()
        .map(|v| v.tensor().ok_or_else(|| "sequence items must be tensors".to_string()).and_then(Array::from_tensor))
        .collect::<KernelResult<_>>()?;
    if parts.is_empty() {
        return Err("ConcatFromSequence of an empty sequence".into());
    }
    let out = if new_axis { indexing::stack_along(&parts, axis)? } else { super::layout::concat(&parts, axis)? };
    Ok(tensor_value(out))
}

pub fn optional_construct(args: &[Option<Value>]) -> Value {
    Value::Optional(args.first().and_then(|a| a.clone()).map(Box::new))
}

pub fn optional_has_element(args: &[Option<Value>]) -> Value {
    let has = match args.first().and_then(|a| a.as_ref()) {
        None => false,
        Some(Value::Optional(o)) => o.is_some(),
        Some(_) => true,
    };
    super::bool_value(has)
}

pub fn optional_get_element(args: &[Option<Value>]) -> KernelResult<Value> {
    match arg_value(args, 0)? {
        Value::Optional(Some(v)) => Ok((**v).clone()),
        Value::Optional(None) => Err("OptionalGetElement of an empty optional".into()),
        other => Ok(other.clone()),
    }
}
