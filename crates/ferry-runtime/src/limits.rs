//! Ceilings on what one run may allocate, so a hostile or mistaken model gets a clear error
//! instead of an out-of-memory abort.

use std::sync::OnceLock;

/// Default ceiling for one tensor: 4 GiB.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 4 << 30;

/// The ceiling for one tensor, from `FERRY_MAX_TENSOR_BYTES` when set.
pub fn max_tensor_bytes() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("FERRY_MAX_TENSOR_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_TENSOR_BYTES)
    })
}

/// Refuses a tensor of `dtype` and `shape` that would exceed the ceiling.
pub fn check_tensor(dtype: ferry_ir::DType, shape: &[u64], what: &str) -> Result<(), String> {
    let numel = shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
    let bytes = numel.and_then(|n| dtype.storage_bytes(n)).or(numel.map(|n| n.saturating_mul(16)));
    let limit = max_tensor_bytes();
    match bytes {
        Some(b) if b <= limit => Ok(()),
        _ => Err(format!(
            "{what} would be a {dtype} tensor of shape {shape:?}, over the {limit}-byte limit for one tensor \
             (raise it with FERRY_MAX_TENSOR_BYTES)"
        )),
    }
}

/// Default ceiling for everything one run holds at once (intermediate values; weights excluded): 16 GiB.
pub const DEFAULT_MAX_PLAN_BYTES: u64 = 16 << 30;

/// The ceiling for one run's live intermediate values, from `FERRY_MAX_PLAN_BYTES` when set.
pub fn max_plan_bytes() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("FERRY_MAX_PLAN_BYTES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_MAX_PLAN_BYTES)
    })
}

/// Refuses a run (or an execution plan) that would hold more than the ceiling at once.
pub fn check_plan(bytes: u64, what: &str) -> Result<(), String> {
    let limit = max_plan_bytes();
    if bytes <= limit {
        return Ok(());
    }
    Err(format!(
        "{what} would hold {bytes} bytes of intermediate values at once, over the {limit}-byte limit for one run \
         (raise it with FERRY_MAX_PLAN_BYTES)"
    ))
}

/// Refuses, before a kernel allocates, an output that shape inference (with the actual input
/// shapes and small inputs as constants) says would exceed the per-tensor ceiling.
pub fn check_node_outputs(node: &ferry_ir::Node, args: &[Option<crate::Value>]) -> Result<(), String> {
    use ferry_ir::{Shape, ValueType};
    let types: Vec<ValueType> = args
        .iter()
        .map(|a| match a {
            Some(crate::Value::Tensor(t)) => ValueType::tensor(t.dtype, Shape::known(&t.shape)),
            _ => ValueType::Unknown,
        })
        .collect();
    let consts: Vec<Option<&ferry_ir::Tensor>> = args
        .iter()
        .map(|a| match a {
            Some(crate::Value::Tensor(t)) if t.numel() <= 64 => Some(t),
            _ => None,
        })
        .collect();
    let Ok(outs) = ferry_ir::infer::infer_node(node, &types, &consts) else { return Ok(()) };
    for (k, o) in outs.iter().enumerate() {
        if let (Some(d), Some(s)) = (o.dtype(), o.shape().and_then(Shape::to_known)) {
            check_tensor(d, &s, &format!("output {k}"))?;
        }
    }
    Ok(())
}
