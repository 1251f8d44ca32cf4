//! The fallback step: any op, any element type, through the reference runtime's kernel.

use crate::exec::{Ctx, Stop};
use ferry_ir::{Shape, Tensor, ValueId, ValueType};
use ferry_runtime::Value;

pub(crate) fn run(
    ctx: &mut Ctx,
    node: usize,
    inputs: &[Option<ValueId>],
    outputs: &[Option<ValueId>],
) -> Result<(), Stop> {
    let n = &ctx.graph.nodes[node];
    let args: Vec<Option<Value>> = inputs.iter().map(|i| i.and_then(|i| ctx.value(i))).collect();
    check_output_sizes(n, &args).map_err(|m| ctx.node_error(node, m))?;
    let outs = ferry_runtime::kernels::run(&n.op, &args, outputs.len()).map_err(|m| ctx.node_error(node, m))?;
    for (slot, v) in outputs.iter().zip(outs) {
        if let Some(id) = slot {
            ctx.store(*id, v)?;
        }
    }
    Ok(())
}

/// The reference executor's guard: refuse, before the kernel allocates, an output that shape
/// inference (with the actual input shapes and small inputs as constants) puts over the limit.
fn check_output_sizes(node: &ferry_ir::Node, args: &[Option<Value>]) -> Result<(), String> {
    let types: Vec<ValueType> = args
        .iter()
        .map(|a| match a {
            Some(Value::Tensor(t)) => ValueType::tensor(t.dtype, Shape::known(&t.shape)),
            _ => ValueType::Unknown,
        })
        .collect();
    let consts: Vec<Option<&Tensor>> = args
        .iter()
        .map(|a| match a {
            Some(Value::Tensor(t)) if t.numel() <= 64 => Some(t),
            _ => None,
        })
        .collect();
    let Ok(outs) = ferry_ir::infer::infer_node(node, &types, &consts) else { return Ok(()) };
    for (k, o) in outs.iter().enumerate() {
        if let (Some(d), Some(s)) = (o.dtype(), o.shape().and_then(Shape::to_known)) {
            ferry_runtime::limits::check_tensor(d, &s, &format!("output {k}"))?;
        }
    }
    Ok(())
}
