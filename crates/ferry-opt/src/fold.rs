//! Constant folding: a node whose inputs are all constants is evaluated once, with the reference
//! runtime's kernel for its op, and its outputs become initializers. Memory stays bounded: the
//! output size is computed by shape inference *before* the kernel runs, and a node whose result
//! would be larger than `max_folded_bytes`, or would grow its inputs by more than
//! `max_growth` (past a small floor), stays in the graph (ConstantOfShape/Expand/Tile/Range of
//! large sizes keep the file small). Random ops, custom (opaque) ops and control flow are never
//! folded; a kernel that fails leaves the node alone, so the model fails at run time as before.

use crate::OptimizeOptions;
use crate::editor::Editor;
use ferry_ir::{Op, Shape, Tensor, ValueType};
use ferry_runtime::Value;

/// Results up to this size may grow their inputs by any factor.
const GROWTH_FLOOR_BYTES: u64 = 1 << 20;

/// Folds every foldable node, in order (so chains fold in one sweep). Returns the count.
pub fn fold_constants(ed: &mut Editor, opts: &OptimizeOptions) -> usize {
    let mut folded = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] || !foldable_op(&ed.g.nodes[n].op) {
            continue;
        }
        let node = &ed.g.nodes[n];
        if node.outputs.iter().flatten().any(|o| ed.is_output(*o)) || node.outputs.iter().all(Option::is_none) {
            continue;
        }
        let consts: Option<Vec<Option<&Tensor>>> =
            node.inputs.iter().map(|i| i.map_or(Some(None), |i| ed.constant(i).map(Some))).collect();
        let Some(consts) = consts else { continue };
        if !fits_limits(ed, n, &consts, opts) {
            continue;
        }
        let args: Vec<Option<Value>> = consts.iter().map(|c| c.map(|t| Value::Tensor(t.clone()))).collect();
        let node = &ed.g.nodes[n];
        let Ok(outs) = ferry_runtime::kernels::run(&node.op, &args, node.outputs.len()) else { continue };
        let outputs = node.outputs.clone();
        let mut tensors = Vec::new();
        for (slot, v) in outputs.iter().zip(outs.into_iter().chain(std::iter::repeat(None))) {
            match (slot, v) {
                (None, _) => {}
                (Some(o), Some(Value::Tensor(t))) => tensors.push((*o, t)),
                _ => {
                    tensors.clear();
                    break;
                }
            }
        }
        if tensors.is_empty() {
            continue;
        }
        ed.kill(n);
        for (o, t) in tensors {
            ed.set_constant(o, t);
        }
        folded += 1;
    }
    folded
}

/// Ops whose result depends only on their inputs and attributes, and that have a plain kernel.
fn foldable_op(op: &Op) -> bool {
    match op {
        Op::RandomNormal { .. } | Op::RandomUniform { .. } => false,
        Op::If { .. } | Op::Loop { .. } | Op::Scan(_) | Op::Opaque(_) => false,
        // Already constants.
        Op::Constant(_) => false,
        // Sequences and optionals do not become initializers.
        Op::SequenceConstruct
        | Op::SequenceEmpty { .. }
        | Op::SequenceInsert
        | Op::SequenceErase
        | Op::SplitToSequence { .. }
        | Op::OptionalConstruct { .. } => false,
        _ => true,
    }
}

/// Whether the node's outputs are known in advance to fit the limits. Sizes come from shape
/// inference on the constant inputs; an output of unknown size is folded only for ops whose
/// output is never larger than their input (NonZero: rank times), and small inputs.
fn fits_limits(ed: &Editor, n: usize, consts: &[Option<&Tensor>], opts: &OptimizeOptions) -> bool {
    let node = &ed.g.nodes[n];
    let types: Vec<ValueType> = consts
        .iter()
        .map(|c| c.map_or(ValueType::Unknown, |t| ValueType::tensor(t.dtype, Shape::known(&t.shape))))
        .collect();
    let in_bytes: u64 = consts.iter().flatten().map(|t| t.byte_len()).sum();
    let allowed = opts.max_folded_bytes.min(GROWTH_FLOOR_BYTES.max(in_bytes.saturating_mul(opts.max_growth)));
    let Ok(outs) = ferry_ir::infer::infer_node(node, &types, consts) else { return false };
    let mut total = 0u64;
    for (slot, ty) in node.outputs.iter().zip(outs.iter().chain(std::iter::repeat(&ValueType::Unknown))) {
        if slot.is_none() {
            continue;
        }
        let size = match (ty.dtype(), ty.shape().and_then(Shape::to_known)) {
            (Some(d), Some(s)) => ferry_ir::tensor::checked_numel(&s).ok().and_then(|k| d.storage_bytes(k)),
            _ => range_bytes(&node.op, consts, ty.dtype()).or_else(|| bounded_by_input(&node.op, in_bytes)),
        };
        match size.and_then(|s| total.checked_add(s)) {
            Some(t) => total = t,
            None => return false,
        }
    }
    total <= allowed
}

/// An upper bound on the output bytes of ops whose output size depends on the data but is
/// bounded by the input's.
fn bounded_by_input(op: &Op, in_bytes: u64) -> Option<u64> {
    match op {
        // int64 coordinates: at most 8 bytes per (element, axis), ranks are small.
        Op::NonZero => Some(in_bytes.saturating_mul(8 * 8)),
        Op::Unique { .. } | Op::Compress { .. } => Some(in_bytes.saturating_mul(8)),
        _ => None,
    }
}

/// Range's output size from its constant scalars (inference leaves float ranges unknown).
fn range_bytes(op: &Op, consts: &[Option<&Tensor>], dtype: Option<ferry_ir::DType>) -> Option<u64> {
    if !matches!(op, Op::Range) {
        return None;
    }
    let scalar = |i: usize| consts.get(i).copied().flatten()?.to_f64_vec().ok()?.first().copied();
    let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
    let count = ((limit - start) / delta).ceil().max(0.0);
    // One more element than computed covers the float rounding of the count.
    (count.is_finite() && count < 1e15).then(|| dtype?.storage_bytes(count as u64 + 1)).flatten()
}
