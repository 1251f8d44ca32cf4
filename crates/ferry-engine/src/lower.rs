//! Lowering: graph nodes (with their facts) to plan steps. Nodes whose outputs are all constants
//! are gone (folded); fusion groups become one step; common f32 and layout ops get fast steps;
//! everything else becomes a fallback step on the reference kernel.

use crate::elementwise::{self, Binary, Unary};
use crate::facts::{Fact, elem_bytes};
use crate::plan::Step;
use crate::steps::{ByteOperand, F32Operand, Kind};
use ferry_ir::{DType, Graph, Node, Op, ValueId};

/// The graph's nodes with their facts, and who reads each value (fusion needs to know that an
/// intermediate value has no other reader).
pub(crate) struct Cx<'a> {
    pub g: &'a Graph,
    pub facts: &'a [Fact],
    pub readers: Vec<Vec<usize>>,
    pub is_output: Vec<bool>,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(g: &'a Graph, facts: &'a [Fact]) -> Cx<'a> {
        let mut readers = vec![Vec::new(); g.values.len()];
        for (n, node) in g.nodes.iter().enumerate() {
            for i in node.inputs.iter().flatten() {
                if !readers[*i].contains(&n) {
                    readers[*i].push(n);
                }
            }
        }
        let mut is_output = vec![false; g.values.len()];
        for o in &g.outputs {
            is_output[*o] = true;
        }
        Cx { g, facts, readers, is_output }
    }

    pub(crate) fn input(&self, node: &Node, k: usize) -> Option<ValueId> {
        node.inputs.get(k).copied().flatten()
    }

    pub(crate) fn output(&self, node: &Node, k: usize) -> Option<ValueId> {
        node.outputs.get(k).copied().flatten()
    }

    /// An f32 constant's elements.
    pub(crate) fn f32_const(&self, v: ValueId) -> Option<Vec<f32>> {
        match &self.facts[v] {
            Fact::Const(t) if t.dtype == DType::F32 => {
                t.raw().map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            _ => None,
        }
    }

    /// The shape of an f32 value that lives in the arena.
    pub(crate) fn arena_f32(&self, v: ValueId) -> Option<&'a [usize]> {
        self.facts[v].static_f32()
    }
}

pub(crate) struct Lowered {
    pub steps: Vec<Step>,
    pub folded: usize,
    pub scratch_len: usize,
}

pub(crate) fn lower(cx: &Cx) -> Lowered {
    let g = cx.g;
    let mut steps = Vec::new();
    let mut folded = 0;
    let mut scratch_len = 0;
    let mut taken = vec![false; g.nodes.len()];
    for (n, node) in g.nodes.iter().enumerate() {
        if taken[n] {
            continue;
        }
        let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        if !outs.is_empty() && outs.iter().all(|o| matches!(cx.facts[*o], Fact::Const(_))) {
            folded += 1;
            continue;
        }
        if let Some(f) = crate::fuse::fuse_at(cx, n, &taken) {
            f.nodes.iter().for_each(|k| taken[*k] = true);
            scratch_len = scratch_len.max(f.scratch);
            let last = *f.nodes.iter().max().unwrap_or(&n);
            steps.push(Step { node: last, kind: f.kind, reads: f.reads, writes: vec![f.out] });
            continue;
        }
        let kind = fast_step(cx, node)
            .unwrap_or_else(|| Kind::Fallback { inputs: node.inputs.clone(), outputs: node.outputs.clone() });
        let reads = node.inputs.iter().flatten().copied().filter(|i| !matches!(cx.facts[*i], Fact::Const(_))).collect();
        steps.push(Step { node: n, kind, reads, writes: outs });
    }
    Lowered { steps, folded, scratch_len }
}

/// A fast step for one node, when its op, types and shapes have one.
fn fast_step(cx: &Cx, node: &Node) -> Option<Kind> {
    let x = cx.input(node, 0)?;
    let y = cx.output(node, 0)?;
    let (ydt, yshape) = match &cx.facts[y] {
        Fact::Static { dtype, shape } => (*dtype, shape.clone()),
        _ => return None,
    };
    match &node.op {
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze | Op::Unsqueeze | Op::Identity => {
            let (xdt, xshape) = match &cx.facts[x] {
                Fact::Static { dtype, shape } => (*dtype, shape),
                _ => return None,
            };
            let same_size = xshape.iter().product::<usize>() == yshape.iter().product::<usize>();
            (xdt == ydt && same_size && node.outputs.len() == 1).then_some(Kind::Alias { x, y })
        }
        Op::Unary(u) => {
            let op = Unary::from_op(*u)?;
            (cx.arena_f32(x)? == yshape.as_slice() && ydt == DType::F32).then_some(Kind::Unary { op, x, y })
        }
        Op::Binary(b) => {
            let op = Binary::from_op(*b)?;
            let bv = cx.input(node, 1)?;
            if ydt != DType::F32 {
                return None;
            }
            let operand = |v: ValueId| -> Option<(F32Operand, Vec<usize>)> {
                match &cx.facts[v] {
                    Fact::Static { dtype: DType::F32, shape } => Some((F32Operand::Val(v), shape.clone())),
                    Fact::Const(t) if t.dtype == DType::F32 => {
                        Some((F32Operand::Const(cx.f32_const(v)?), t.shape.iter().map(|d| *d as usize).collect()))
                    }
                    _ => None,
                }
            };
            let ((a, sa), (b, sb)) = (operand(x)?, operand(bv)?);
            let walk = elementwise::broadcast(&sa, &sb, &yshape)?;
            let r = sa.len().max(sb.len());
            (r == yshape.len()).then_some(Kind::Binary { op, a, b, y, walk })
        }
        Op::Transpose { perm } => {
            let (xdt, xshape) = match &cx.facts[x] {
                Fact::Static { dtype, shape } => (*dtype, shape.clone()),
                _ => return None,
            };
            let r = xshape.len();
            let perm: Vec<usize> = perm.clone().unwrap_or_else(|| (0..r).rev().collect());
            let valid = perm.len() == r && (0..r).all(|k| perm.contains(&k));
            let out: Vec<usize> = perm.iter().filter(|p| **p < r).map(|p| xshape[*p]).collect();
            (valid && out == yshape && xdt == ydt).then_some(Kind::Transpose {
                x,
                y,
                elem: elem_bytes(xdt)?,
                in_shape: xshape,
                perm,
            })
        }
        Op::Concat { axis } => concat_step(cx, node, *axis, ydt, &yshape, y),
        Op::Gather { axis } => {
            let table = cx.facts[x].konst()?;
            let idx = cx.input(node, 1)?;
            let Fact::Static { dtype: idt, shape: ishape } = &cx.facts[idx] else { return None };
            let resolved_axis = if *axis < 0 { *axis + table.shape.len() as i64 } else { *axis };
            if resolved_axis != 0 || table.shape.is_empty() || !matches!(idt, DType::I64 | DType::I32) {
                return None;
            }
            let rest: Vec<usize> = table.shape[1..].iter().map(|d| *d as usize).collect();
            let want: Vec<usize> = ishape.iter().chain(&rest).copied().collect();
            let row_bytes = elem_bytes(table.dtype)? * rest.iter().product::<usize>();
            (want == yshape && table.dtype == ydt).then_some(Kind::GatherRows {
                table: table.raw()?.to_vec(),
                rows: table.shape[0] as usize,
                row_bytes,
                indices: idx,
                y,
            })
        }
        _ => None,
    }
}

fn concat_step(cx: &Cx, node: &Node, axis: i64, ydt: DType, yshape: &[usize], y: ValueId) -> Option<Kind> {
    let r = yshape.len();
    let axis = if axis < 0 { axis + r as i64 } else { axis };
    if axis < 0 || axis as usize >= r {
        return None;
    }
    let axis = axis as usize;
    let elem = elem_bytes(ydt)?;
    let outer: usize = yshape[..axis].iter().product();
    let mut parts = Vec::new();
    let mut along = 0;
    for i in node.inputs.iter() {
        let i = (*i)?;
        let (dt, shape) = cx.facts[i].dtype_shape()?;
        if dt != ydt || shape.len() != r || (0..r).any(|k| k != axis && shape[k] != yshape[k]) {
            return None;
        }
        along += shape[axis];
        let run = shape[axis..].iter().product::<usize>() * elem;
        let op = match &cx.facts[i] {
            Fact::Const(t) => ByteOperand::Const(t.raw()?.to_vec()),
            _ => ByteOperand::Val(i),
        };
        parts.push((op, run));
    }
    (along == yshape[axis]).then_some(Kind::Concat { parts, y, outer })
}
