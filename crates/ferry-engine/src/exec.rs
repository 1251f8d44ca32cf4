//! Running a plan in one arena.

use crate::elementwise::{self, Src};
use crate::plan::{Arena, Loc, Plan, Slot};
use crate::steps::{ByteOperand, F32Operand, Kind};
use bytes::Bytes;
use ferry_ir::{Graph, Tensor, ValueId};
use ferry_runtime::{RunError, Value};

/// Why a run stopped: a real error, or a reference kernel's result that does not fit what shape
/// inference planned (then the caller runs the graph with the reference executor instead).
pub(crate) enum Stop {
    Run(RunError),
    Replan(String),
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Stop {
        Stop::Run(e)
    }
}

/// What steps see while they run.
pub(crate) struct Ctx<'a> {
    pub plan: &'a Plan,
    pub graph: &'a Graph,
    base: *mut u8,
    arena_len: usize,
    pub dyns: &'a mut [Option<Value>],
    pub scratch: &'a mut [f32],
    pub pool: &'a ferry_kernels::Pool,
}

impl<'a> Ctx<'a> {
    fn slot(&self, v: ValueId) -> &'a Slot {
        self.plan.slots[v].as_ref().expect("every value a step touches has a slot")
    }

    fn range(&self, v: ValueId) -> (usize, usize) {
        match self.slot(v).loc {
            Loc::Arena { offset, bytes } => {
                assert!(offset + bytes <= self.arena_len, "planned range inside the arena");
                (offset, bytes)
            }
            _ => panic!("value {v} is not in the arena"),
        }
    }

    pub(crate) fn offset(&self, v: ValueId) -> usize {
        self.range(v).0
    }

    /// The bytes of an arena value.
    pub(crate) fn bytes(&self, v: ValueId) -> &'a [u8] {
        let (offset, bytes) = self.range(v);
        // SAFETY: the range lies inside the arena (checked above), which outlives 'a. The planner
        // never lets a value being written overlap another live value unless it is the same
        // buffer (in place), and in-place kernels read that operand only through the output.
        unsafe { std::slice::from_raw_parts(self.base.add(offset), bytes) }
    }

    #[allow(clippy::mut_from_ref)] // the arena is behind a raw pointer; see `bytes` for why this is sound
    pub(crate) fn bytes_mut(&self, v: ValueId) -> &'a mut [u8] {
        let (offset, bytes) = self.range(v);
        // SAFETY: as in `bytes`; a step asks for each written value's bytes once.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), bytes) }
    }

    pub(crate) fn f32s(&self, v: ValueId) -> &'a [f32] {
        let b = self.bytes(v);
        // SAFETY: offsets are multiples of 64 in an 8-byte-aligned arena; f32 has no invalid bits.
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) }
    }

    #[allow(clippy::mut_from_ref)] // see `bytes_mut`
    pub(crate) fn f32s_mut(&self, v: ValueId) -> &'a mut [f32] {
        let b = self.bytes_mut(v);
        // SAFETY: as in `f32s`.
        unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut f32, b.len() / 4) }
    }

    /// A value as the reference runtime sees it (arena bytes are copied out).
    pub(crate) fn value(&self, v: ValueId) -> Option<Value> {
        let slot = self.slot(v);
        match &slot.loc {
            Loc::Const(t) => Some(Value::Tensor(t.clone())),
            Loc::Arena { .. } => {
                let dtype = slot.dtype.expect("arena values have a dtype");
                let shape = slot.shape.iter().map(|d| *d as u64).collect();
                Some(Value::Tensor(
                    Tensor::from_raw(dtype, shape, Bytes::copy_from_slice(self.bytes(v)))
                        .expect("planned sizes match the bytes"),
                ))
            }
            Loc::Dyn(i) => self.dyns[*i].clone(),
        }
    }

    /// Stores a reference result; an arena value must have the planned type and shape.
    pub(crate) fn store(&mut self, v: ValueId, value: Option<Value>) -> Result<(), Stop> {
        let slot = self.slot(v);
        match &slot.loc {
            Loc::Dyn(i) => {
                self.dyns[*i] = value;
                Ok(())
            }
            Loc::Arena { .. } => {
                let t = match &value {
                    Some(Value::Tensor(t)) => t,
                    _ => return Err(Stop::Replan(format!("value {v}: expected a tensor"))),
                };
                let planned = slot.shape.iter().map(|d| *d as u64).eq(t.shape.iter().copied());
                if Some(t.dtype) != slot.dtype || !planned {
                    return Err(Stop::Replan(format!(
                        "value {v}: planned {:?}{:?}, computed {}{:?}",
                        slot.dtype, slot.shape, t.dtype, t.shape
                    )));
                }
                let raw = t.raw().ok_or_else(|| Stop::Replan("string tensor in the arena".into()))?;
                self.bytes_mut(v).copy_from_slice(raw);
                Ok(())
            }
            Loc::Const(_) => Ok(()),
        }
    }

    pub(crate) fn node_error(&self, node: usize, message: String) -> Stop {
        let n = &self.graph.nodes[node];
        Stop::Run(RunError::Node { node: n.name.clone(), op: n.op.name(), message })
    }
}

/// Runs every step; inputs are the graph inputs in order (defaults already filled in).
pub(crate) fn run(
    plan: &Plan,
    graph: &Graph,
    arena: &mut Arena,
    inputs: Vec<Value>,
    pool: &ferry_kernels::Pool,
) -> Result<Vec<Value>, Stop> {
    let arena_len = arena.mem.len() * 8;
    let mut ctx = Ctx {
        plan,
        graph,
        base: arena.mem.as_mut_ptr() as *mut u8,
        arena_len,
        dyns: &mut arena.dyns,
        scratch: &mut arena.scratch,
        pool,
    };
    for (id, v) in graph.inputs.iter().zip(inputs) {
        if plan.slots[*id].is_some() {
            ctx.store(*id, Some(v))?;
        }
    }
    for step in &plan.steps {
        run_step(&mut ctx, step.node, &step.kind)?;
    }
    graph
        .outputs
        .iter()
        .map(|o| {
            ctx.value(*o).ok_or_else(|| {
                Stop::Run(RunError::Input(format!("output '{}' was not computed", graph.values[*o].name)))
            })
        })
        .collect()
}

fn run_step(ctx: &mut Ctx, node: usize, kind: &Kind) -> Result<(), Stop> {
    match kind {
        Kind::Fallback { inputs, outputs } => crate::fallback::run(ctx, node, inputs, outputs),
        Kind::Alias { x, y } => {
            // The planner gives both the same bytes; copy only if it could not.
            if ctx.offset(*x) != ctx.offset(*y) {
                ctx.bytes_mut(*y).copy_from_slice(ctx.bytes(*x));
            }
            Ok(())
        }
        Kind::Unary { op, x, y } => {
            let out = ctx.f32s_mut(*y);
            let src = if ctx.offset(*x) == ctx.offset(*y) { None } else { Some(ctx.f32s(*x)) };
            elementwise::unary(*op, src, out);
            Ok(())
        }
        Kind::Binary { op, a, b, y, walk } => {
            let out_at = ctx.offset(*y);
            fn src<'s>(ctx: &Ctx<'s>, o: &'s F32Operand, out_at: usize) -> Src<'s> {
                match o {
                    F32Operand::Const(c) => Src::Slice(c),
                    F32Operand::Val(v) if ctx.offset(*v) == out_at => Src::Out,
                    F32Operand::Val(v) => Src::Slice(ctx.f32s(*v)),
                }
            }
            let (sa, sb) = (src(ctx, a, out_at), src(ctx, b, out_at));
            elementwise::binary(*op, walk, sa, sb, ctx.f32s_mut(*y));
            Ok(())
        }
        Kind::Transpose { x, y, elem, in_shape, perm } => {
            crate::layout::transpose(ctx.bytes(*x), ctx.bytes_mut(*y), *elem, in_shape, perm);
            Ok(())
        }
        Kind::Concat { parts, y, outer } => {
            let srcs: Vec<(&[u8], usize)> = parts
                .iter()
                .map(|(p, run)| match p {
                    ByteOperand::Const(c) => (c.as_slice(), *run),
                    ByteOperand::Val(v) => (ctx.bytes(*v), *run),
                })
                .collect();
            crate::layout::concat(&srcs, *outer, ctx.bytes_mut(*y));
            Ok(())
        }
        Kind::GatherRows { table, rows, row_bytes, indices, y } => {
            let wide = ctx.slot(*indices).dtype == Some(ferry_ir::DType::I64);
            crate::layout::gather_rows(table, *rows, *row_bytes, ctx.bytes(*indices), wide, ctx.bytes_mut(*y))
                .map_err(|m| ctx.node_error(node, m))
        }
        Kind::Conv(s) => {
            crate::fuse::conv::run(ctx, s);
            Ok(())
        }
        Kind::Dense(s) => {
            crate::fuse::matmul::run_dense(ctx, s);
            Ok(())
        }
        Kind::Batched(s) => {
            crate::fuse::matmul::run_batched(ctx, s);
            Ok(())
        }
        Kind::Softmax(s) => {
            crate::fuse::norm::run_softmax(ctx, s);
            Ok(())
        }
        Kind::LayerNorm(s) => {
            crate::fuse::norm::run_layer_norm(ctx, s);
            Ok(())
        }
        Kind::Pool(s) => {
            crate::fuse::pool::run_pool(ctx, s);
            Ok(())
        }
        Kind::GlobalAvg(s) => {
            crate::fuse::pool::run_global_avg(ctx, s);
            Ok(())
        }
    }
}
