//! A plan: the steps that run one graph for one set of input shapes, where each value lives
//! (a constant, an arena range, or a reference-runtime value), and a pool of arenas to run in.

use crate::facts::{Fact, elem_bytes};
use crate::memplan::{self, Interval};
use crate::steps::Kind;
use ferry_ir::{DType, Graph, Tensor, ValueId};
use ferry_runtime::Value;
use std::sync::Mutex;

#[derive(Debug)]
pub(crate) enum Loc {
    Const(Tensor),
    /// Byte offset and length in the arena.
    Arena {
        offset: usize,
        bytes: usize,
    },
    /// Index into the run's reference-runtime values.
    Dyn(usize),
}

#[derive(Debug)]
pub(crate) struct Slot {
    /// Element type and shape (Dyn slots: unknown, empty).
    pub dtype: Option<DType>,
    pub shape: Vec<usize>,
    pub loc: Loc,
}

#[derive(Debug)]
pub(crate) struct Step {
    /// The graph node it comes from (the last node of a fused group), for error messages.
    pub node: usize,
    pub kind: Kind,
    /// Values read and written at run time (constants excluded); they decide lifetimes.
    pub reads: Vec<ValueId>,
    pub writes: Vec<ValueId>,
}

/// Memory an arena needs, and what the plan saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanStats {
    /// Bytes of the arena (the peak of all intermediate and input/output tensors at once).
    pub arena_bytes: usize,
    /// Bytes the same tensors would take with no reuse (each value its own buffer).
    pub unshared_bytes: usize,
    /// Steps, and how many of them run a reference kernel.
    pub steps: usize,
    pub fallback_steps: usize,
    /// Graph nodes folded into constants when the plan was built.
    pub folded_nodes: usize,
}

/// One run's memory: the arena, the scratch for kernels that need it, and the values that live
/// outside the arena.
pub(crate) struct Arena {
    pub mem: Vec<u64>,
    pub scratch: Vec<f32>,
    pub dyns: Vec<Option<Value>>,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub slots: Vec<Option<Slot>>,
    pub steps: Vec<Step>,
    pub stats: PlanStats,
    pub scratch_len: usize,
    pub n_dyn: usize,
    pub arenas: Mutex<Vec<Arena>>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Arena({} bytes)", self.mem.len() * 8)
    }
}

impl Plan {
    /// Gives each value a place: constants stay where they are; values of fixed shape share the
    /// arena by lifetime (aliases and in-place steps share their input's buffer); the rest are
    /// reference values.
    pub(crate) fn new(g: &Graph, facts: Vec<Fact>, steps: Vec<Step>, folded_nodes: usize, scratch_len: usize) -> Plan {
        let n = g.values.len();
        let end = steps.len() + 1;
        // Step s is time s + 1; graph inputs are written at time 0 and outputs read at `end`.
        let mut last_use = vec![0usize; n];
        let mut used = vec![false; n];
        for (s, step) in steps.iter().enumerate() {
            for v in step.reads.iter().chain(&step.writes) {
                last_use[*v] = last_use[*v].max(s + 1);
                used[*v] = true;
            }
        }
        for v in g.inputs.iter().chain(&g.outputs) {
            used[*v] = true;
        }
        // Constants are not lifetimes' business, but fallback steps read them (cheap: shared bytes).
        for (v, f) in facts.iter().enumerate() {
            used[v] |= matches!(f, Fact::Const(_));
        }
        for v in &g.outputs {
            last_use[*v] = end;
        }
        let mut buf_of: Vec<Option<usize>> = vec![None; n];
        let mut bufs: Vec<Interval> = Vec::new();
        let mut members: Vec<Vec<ValueId>> = Vec::new();
        let new_buf =
            |v: ValueId, bytes: usize, t: usize, bufs: &mut Vec<Interval>, members: &mut Vec<Vec<ValueId>>| {
                bufs.push(Interval { bytes, first: t, last: t.max(last_use[v]) });
                members.push(vec![v]);
                bufs.len() - 1
            };
        let bytes_of = |v: ValueId| match &facts[v] {
            Fact::Static { dtype, shape } => elem_bytes(*dtype).map(|e| e * shape.iter().product::<usize>()),
            _ => None,
        };
        for v in &g.inputs {
            if let Some(b) = bytes_of(*v) {
                if buf_of[*v].is_none() {
                    buf_of[*v] = Some(new_buf(*v, b, 0, &mut bufs, &mut members));
                }
            }
        }
        for (s, step) in steps.iter().enumerate() {
            let t = s + 1;
            for w in &step.writes {
                let Some(bytes) = bytes_of(*w) else { continue };
                if buf_of[*w].is_some() {
                    continue;
                }
                let shared = step.kind.shares_input().and_then(|(input, must_die)| {
                    let b = buf_of[input]?;
                    let fits = bufs[b].bytes == bytes;
                    let free = !must_die || members[b].iter().all(|m| last_use[*m] <= t);
                    // Only elementwise steps may read other operands from the bytes they write.
                    let elementwise =
                        matches!(step.kind, Kind::Binary { .. } | Kind::Unary { .. } | Kind::Alias { .. });
                    let clash = step.reads.iter().any(|r| *r != input && buf_of[*r] == Some(b));
                    (fits && free && (elementwise || !clash)).then_some(b)
                });
                match shared {
                    Some(b) => {
                        buf_of[*w] = Some(b);
                        members[b].push(*w);
                        bufs[b].last = bufs[b].last.max(last_use[*w]).max(t);
                    }
                    None => buf_of[*w] = Some(new_buf(*w, bytes, t, &mut bufs, &mut members)),
                }
            }
        }
        let layout = memplan::plan(&bufs);
        let mut n_dyn = 0;
        let slots: Vec<Option<Slot>> = (0..n)
            .map(|v| {
                if !used[v] {
                    return None;
                }
                Some(match (&facts[v], buf_of[v]) {
                    (Fact::Const(t), _) => Slot {
                        dtype: Some(t.dtype),
                        shape: t.shape.iter().map(|d| *d as usize).collect(),
                        loc: Loc::Const(t.clone()),
                    },
                    (Fact::Static { dtype, shape }, Some(b)) => Slot {
                        dtype: Some(*dtype),
                        shape: shape.clone(),
                        loc: Loc::Arena { offset: layout.offsets[b], bytes: bytes_of(v).unwrap_or(0) },
                    },
                    _ => {
                        n_dyn += 1;
                        Slot { dtype: None, shape: vec![], loc: Loc::Dyn(n_dyn - 1) }
                    }
                })
            })
            .collect();
        let fallback_steps = steps.iter().filter(|s| matches!(s.kind, Kind::Fallback { .. })).count();
        // Without reuse every tensor (aliases and in-place results included) would have its own bytes.
        let unshared_bytes = (0..n)
            .filter(|v| buf_of[*v].is_some())
            .map(|v| bytes_of(v).unwrap_or(0).div_ceil(memplan::ALIGN) * memplan::ALIGN)
            .sum::<usize>()
            .max(layout.total);
        let stats =
            PlanStats { arena_bytes: layout.peak, unshared_bytes, steps: steps.len(), fallback_steps, folded_nodes };
        Plan { slots, steps, stats, scratch_len, n_dyn, arenas: Mutex::new(Vec::new()) }
    }

    /// An arena from the pool, or a new one.
    pub(crate) fn take_arena(&self) -> Arena {
        let pooled = self.arenas.lock().map(|mut p| p.pop()).unwrap_or(None);
        pooled.unwrap_or_else(|| Arena {
            mem: vec![0u64; self.stats.arena_bytes.div_ceil(8)],
            scratch: vec![0f32; self.scratch_len],
            dyns: vec![None; self.n_dyn],
        })
    }

    pub(crate) fn give_arena(&self, mut arena: Arena) {
        arena.dyns.iter_mut().for_each(|d| *d = None);
        if let Ok(mut p) = self.arenas.lock() {
            p.push(arena);
        }
    }
}
