//! The kinds of step a plan runs, and what each needs besides its values.

use crate::elementwise::{Binary, Broadcast, Unary};
use crate::fuse::conv::ConvStep;
use crate::fuse::matmul::{BatchedStep, DenseStep};
use crate::fuse::norm::{LayerNormStep, SoftmaxStep};
use crate::fuse::pool::{GlobalAvgStep, PoolStep};
use ferry_ir::ValueId;

/// An f32 operand: a value of the run, or a constant converted once when the plan was built.
#[derive(Debug)]
pub(crate) enum F32Operand {
    Val(ValueId),
    Const(Vec<f32>),
}

/// Any-element-type operand, as bytes.
#[derive(Debug)]
pub(crate) enum ByteOperand {
    Val(ValueId),
    Const(Vec<u8>),
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The node's reference kernel on values copied out of the arena; results copied back in.
    Fallback {
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<ValueId>>,
    },
    /// `y` is `x` with another shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity): no work,
    /// the planner gives both the same bytes.
    Alias {
        x: ValueId,
        y: ValueId,
    },
    Unary {
        op: Unary,
        x: ValueId,
        y: ValueId,
    },
    Binary {
        op: Binary,
        a: F32Operand,
        b: F32Operand,
        y: ValueId,
        walk: Broadcast,
    },
    Transpose {
        x: ValueId,
        y: ValueId,
        elem: usize,
        in_shape: Vec<usize>,
        perm: Vec<usize>,
    },
    /// Concatenation: per outer index, each part contributes a contiguous run of bytes.
    Concat {
        parts: Vec<(ByteOperand, usize)>,
        y: ValueId,
        outer: usize,
    },
    /// Rows of a constant table picked by run-time indices (embeddings): Gather on axis 0.
    GatherRows {
        table: Vec<u8>,
        rows: usize,
        row_bytes: usize,
        indices: ValueId,
        y: ValueId,
    },
    /// Fused groups (see `fuse`).
    Conv(Box<ConvStep>),
    Dense(Box<DenseStep>),
    Batched(Box<BatchedStep>),
    Softmax(SoftmaxStep),
    LayerNorm(LayerNormStep),
    Pool(PoolStep),
    GlobalAvg(GlobalAvgStep),
}

impl Kind {
    /// The input whose buffer the output may take over, and whether that requires the input to
    /// be dead after this step (in place) rather than always (an alias).
    pub(crate) fn shares_input(&self) -> Option<(ValueId, bool)> {
        match self {
            Kind::Alias { x, .. } => Some((*x, false)),
            Kind::Unary { x, .. } => Some((*x, true)),
            Kind::Softmax(s) => Some((s.x, true)),
            Kind::Binary { a: F32Operand::Val(a), walk, .. } if !walk.a.1 && is_full(&walk.a.0, walk) => {
                Some((*a, true))
            }
            Kind::Binary { b: F32Operand::Val(b), walk, .. } if !walk.b.1 && is_full(&walk.b.0, walk) => {
                Some((*b, true))
            }
            _ => None,
        }
    }
}

/// Whether an operand walked with these outer strides covers every output element once (no
/// broadcasting), so it may share the output's bytes.
pub(crate) fn is_full(strides: &[usize], walk: &Broadcast) -> bool {
    let mut acc = walk.row;
    for k in (0..walk.outer.len()).rev() {
        if walk.outer[k] > 1 && strides[k] != acc {
            return false;
        }
        acc *= walk.outer[k];
    }
    true
}
