//! Common-subexpression elimination: a node with the same op, attributes and inputs as an earlier
//! node is replaced by it; small constants with the same type and bytes are merged first, so that
//! nodes reading twin constants match too. Random ops, custom ops and control flow are never
//! merged (two draws are not one draw; a custom op may have effects).

use crate::editor::Editor;
use ferry_ir::{Op, ValueId};
use std::collections::HashMap;

/// Constants up to this size are compared byte for byte.
const MAX_MERGED_CONSTANT_BYTES: u64 = 1 << 16;

pub fn merge_constants(ed: &mut Editor) -> usize {
    let mut seen: HashMap<(ferry_ir::DType, Vec<u64>, Vec<u8>), ValueId> = HashMap::new();
    let mut merged = 0;
    let candidates: Vec<ValueId> = ed.g.initializers.iter().map(|(v, _)| *v).collect();
    for v in candidates {
        let Some(t) = ed.constant(v) else { continue };
        if t.byte_len() > MAX_MERGED_CONSTANT_BYTES || ed.uses(v) == 0 {
            continue;
        }
        let Some(raw) = t.raw() else { continue };
        let key = (t.dtype, t.shape.clone(), raw.to_vec());
        match seen.get(&key) {
            Some(first) if ed.is_private(v) => {
                let first = *first;
                for c in ed.consumers(v).to_vec() {
                    for slot in 0..ed.g.nodes[c].inputs.len() {
                        if ed.g.nodes[c].inputs[slot] == Some(v) {
                            ed.set_input(c, slot, Some(first));
                        }
                    }
                }
                merged += 1;
            }
            Some(_) => {}
            None => {
                seen.insert(key, v);
            }
        }
    }
    merged
}

pub fn eliminate_common(ed: &mut Editor) -> usize {
    let mut seen: HashMap<(String, Vec<Option<ValueId>>), Vec<usize>> = HashMap::new();
    let mut removed = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] || !mergeable(&ed.g.nodes[n].op) {
            continue;
        }
        let node = &ed.g.nodes[n];
        let key = (node.op.name(), node.inputs.clone());
        let twin = seen.get(&key).and_then(|earlier| {
            earlier.iter().copied().find(|e| {
                let other = &ed.g.nodes[*e];
                !ed.dead[*e] && other.op == node.op && other.outputs.len() == node.outputs.len()
            })
        });
        let Some(e) = twin else {
            seen.entry(key).or_default().push(n);
            continue;
        };
        if replace_all_outputs(ed, n, e) {
            removed += 1;
        }
    }
    removed
}

/// Replaces every output of node `n` by the same output of node `e`, when all can be.
fn replace_all_outputs(ed: &mut Editor, n: usize, e: usize) -> bool {
    let pairs: Vec<(Option<ValueId>, Option<ValueId>)> =
        ed.g.nodes[n].outputs.iter().copied().zip(ed.g.nodes[e].outputs.iter().copied()).collect();
    // Every used output of `n` needs a counterpart, and must be free to be renamed.
    let ok = pairs.iter().all(|(o, t)| match (o, t) {
        (Some(o), Some(_)) => ed.is_private(*o),
        (Some(o), None) => ed.uses(*o) == 0 && ed.is_private(*o),
        (None, _) => true,
    });
    if !ok {
        return false;
    }
    ed.kill(n);
    for (o, t) in pairs {
        if let (Some(o), Some(t)) = (o, t) {
            for c in ed.consumers(o).to_vec() {
                for slot in 0..ed.g.nodes[c].inputs.len() {
                    if ed.g.nodes[c].inputs[slot] == Some(o) {
                        ed.set_input(c, slot, Some(t));
                    }
                }
            }
        }
    }
    true
}

fn mergeable(op: &Op) -> bool {
    !matches!(
        op,
        Op::RandomNormal { .. }
            | Op::RandomUniform { .. }
            | Op::Opaque(_)
            | Op::If { .. }
            | Op::Loop { .. }
            | Op::Scan(_)
            | Op::Constant(_)
    )
}
