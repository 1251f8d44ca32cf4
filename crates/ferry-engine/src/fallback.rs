//! The fallback step: any op, any element type, through the reference runtime's kernel.

use crate::exec::{Ctx, Stop};
use ferry_ir::ValueId;
use ferry_runtime::Value;

pub(crate) fn run(
    ctx: &mut Ctx,
    node: usize,
    inputs: &[Option<ValueId>],
    outputs: &[Option<ValueId>],
) -> Result<(), Stop> {
    let n = &ctx.graph.nodes[node];
    let args: Vec<Option<Value>> = inputs.iter().map(|i| i.and_then(|i| ctx.value(i))).collect();
    ferry_runtime::limits::check_node_outputs(n, &args).map_err(|m| ctx.node_error(node, m))?;
    let outs = ferry_runtime::kernels::run(&n.op, &args, outputs.len()).map_err(|m| ctx.node_error(node, m))?;
    for (slot, v) in outputs.iter().zip(outs) {
        if let Some(id) = slot {
            ctx.store(*id, v)?;
        }
    }
    Ok(())
}
