//! An editable view of one graph: who produces and who reads each value, which values are
//! constants, and which may not change (graph outputs, values read by nested graphs by name).
//! Passes mark nodes dead and rewire inputs here; `finish` drops the dead nodes and the
//! initializers nobody reads any more. Nodes keep their topological order: no pass inserts one.

use ferry_ir::{Graph, Node, Tensor, ValueId, ValueType};
use std::collections::{HashMap, HashSet};

pub struct Editor<'g> {
    pub g: &'g mut Graph,
    pub dead: Vec<bool>,
    /// For each value, the live nodes reading it (a node appears once per input slot).
    consumers: Vec<Vec<usize>>,
    producer: Vec<Option<usize>>,
    /// Constant values: initializers that are not graph inputs.
    consts: HashMap<ValueId, Tensor>,
    is_output: Vec<bool>,
    is_input: Vec<bool>,
    /// Values that nested graphs read by name: they keep their name and meaning.
    pinned: Vec<bool>,
    /// Every name used in this graph and the graphs nested in it, for fresh names.
    names: HashSet<String>,
}

impl<'g> Editor<'g> {
    pub fn new(g: &'g mut Graph) -> Editor<'g> {
        let n_values = g.values.len();
        let mut consumers = vec![Vec::new(); n_values];
        let mut producer = vec![None; n_values];
        for (n, node) in g.nodes.iter().enumerate() {
            for i in node.inputs.iter().flatten() {
                consumers[*i].push(n);
            }
            for o in node.outputs.iter().flatten() {
                producer[*o] = Some(n);
            }
        }
        let mut is_output = vec![false; n_values];
        for o in &g.outputs {
            is_output[*o] = true;
        }
        let mut is_input = vec![false; n_values];
        for i in &g.inputs {
            is_input[*i] = true;
        }
        let consts = g.initializers.iter().filter(|(v, _)| !is_input[*v]).map(|(v, t)| (*v, t.clone())).collect();
        let mut captured = HashSet::new();
        let mut names = HashSet::new();
        for node in &g.nodes {
            for sub in node.op.subgraphs() {
                sub.visit(&mut |s, _| {
                    captured.extend(s.captures.iter().map(|c| s.values[*c].name.clone()));
                    names.extend(s.values.iter().map(|v| v.name.clone()));
                });
            }
        }
        names.extend(g.values.iter().map(|v| v.name.clone()));
        let pinned = g.values.iter().map(|v| captured.contains(&v.name)).collect();
        let dead = vec![false; g.nodes.len()];
        Editor { g, dead, consumers, producer, consts, is_output, is_input, pinned, names }
    }

    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.consts.get(&v)
    }

    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.producer[v].filter(|n| !self.dead[*n])
    }

    pub fn uses(&self, v: ValueId) -> usize {
        self.consumers[v].len()
    }

    pub fn consumers(&self, v: ValueId) -> &[usize] {
        &self.consumers[v]
    }

    pub fn is_output(&self, v: ValueId) -> bool {
        self.is_output[v]
    }

    pub fn is_input(&self, v: ValueId) -> bool {
        self.is_input[v]
    }

    pub fn is_pinned(&self, v: ValueId) -> bool {
        self.pinned[v]
    }

    /// Whether `v` may disappear or be computed differently: not a graph output and not read by
    /// a nested graph.
    pub fn is_private(&self, v: ValueId) -> bool {
        !self.is_output[v] && !self.pinned[v] && !self.is_input[v]
    }

    pub fn ty(&self, v: ValueId) -> &ValueType {
        &self.g.values[v].ty
    }

    /// A name not used anywhere in this graph or its nested graphs.
    fn fresh_name(&mut self, hint: &str) -> String {
        let mut k = 0usize;
        loop {
            let name = if k == 0 { format!("{hint}_opt") } else { format!("{hint}_opt{k}") };
            if self.names.insert(name.clone()) {
                return name;
            }
            k += 1;
        }
    }

    /// Adds a new constant value (an initializer) named after `hint`.
    pub fn add_constant(&mut self, t: Tensor, hint: &str) -> ValueId {
        let name = self.fresh_name(hint);
        let ty = ValueType::tensor(t.dtype, ferry_ir::Shape::known(&t.shape));
        let v = self.g.add_value(name, ty);
        self.consumers.push(Vec::new());
        self.producer.push(None);
        self.is_output.push(false);
        self.is_input.push(false);
        self.pinned.push(false);
        self.g.initializers.push((v, t.clone()));
        self.consts.insert(v, t);
        v
    }

    /// Makes the existing value `v` a constant holding `t` (its producer must be killed).
    pub fn set_constant(&mut self, v: ValueId, t: Tensor) {
        self.g.values[v].ty = ValueType::tensor(t.dtype, ferry_ir::Shape::known(&t.shape));
        self.g.initializers.push((v, t.clone()));
        self.consts.insert(v, t);
        self.producer[v] = None;
    }

    /// Points input `slot` of node `n` at `v`.
    pub fn set_input(&mut self, n: usize, slot: usize, v: Option<ValueId>) {
        if let Some(old) = self.g.nodes[n].inputs[slot] {
            remove_one(&mut self.consumers[old], n);
        }
        if let Some(v) = v {
            self.consumers[v].push(n);
        }
        self.g.nodes[n].inputs[slot] = v;
    }

    /// Makes node `n` write `v` in output `slot` (the old output loses its producer).
    pub fn set_output(&mut self, n: usize, slot: usize, v: ValueId) {
        if let Some(old) = self.g.nodes[n].outputs[slot] {
            self.producer[old] = None;
        }
        self.producer[v] = Some(n);
        self.g.nodes[n].outputs[slot] = Some(v);
    }

    pub fn kill(&mut self, n: usize) {
        if self.dead[n] {
            return;
        }
        self.dead[n] = true;
        for slot in 0..self.g.nodes[n].inputs.len() {
            if let Some(v) = self.g.nodes[n].inputs[slot] {
                remove_one(&mut self.consumers[v], n);
            }
        }
        for o in self.g.nodes[n].outputs.iter().flatten() {
            if self.producer[*o] == Some(n) {
                self.producer[*o] = None;
            }
        }
    }

    /// Node `n` computes `old` (its output), which equals `new`: remove `n` and let readers of
    /// `old` read `new`. When `old` must keep its name (a graph output, or read by a nested
    /// graph), `new`'s producer writes `old` directly instead, if nobody else reads `new`.
    /// Returns false (and changes nothing) when neither is possible.
    pub fn replace_output(&mut self, n: usize, old: ValueId, new: ValueId) -> bool {
        if old == new {
            return false;
        }
        let others_read_old =
            self.g.nodes[n].outputs.iter().flatten().filter(|o| **o != old).any(|o| self.uses(*o) > 0);
        if others_read_old {
            return false;
        }
        if !self.is_output[old] && !self.pinned[old] {
            self.kill(n);
            for c in self.consumers[old].clone() {
                for slot in 0..self.g.nodes[c].inputs.len() {
                    if self.g.nodes[c].inputs[slot] == Some(old) {
                        self.set_input(c, slot, Some(new));
                    }
                }
            }
            return true;
        }
        // `old` keeps its name: move it onto new's producer when new is private to node `n`.
        let Some(p) = self.producer(new) else { return false };
        let only_reader = self.consumers[new].iter().all(|c| *c == n);
        if !self.is_private(new) || !only_reader || p == n {
            return false;
        }
        let slot = self.g.nodes[p].outputs.iter().position(|o| *o == Some(new)).expect("producer writes it");
        // `old`'s type annotation stays (graph outputs keep theirs).
        self.kill(n);
        self.set_output(p, slot, old);
        true
    }

    /// Drops dead nodes and the initializers nobody reads (graph inputs' defaults stay).
    pub fn finish(self) {
        let dead = self.dead;
        let mut k = 0;
        self.g.nodes.retain(|_| {
            k += 1;
            !dead[k - 1]
        });
        let used = used_values(self.g);
        let (inputs, outputs) = (&self.g.inputs, &self.g.outputs);
        let pinned = &self.pinned;
        self.g.initializers.retain(|(v, _)| used[*v] || inputs.contains(v) || outputs.contains(v) || pinned[*v]);
    }
}

/// Values read by some node of `g`.
pub fn used_values(g: &Graph) -> Vec<bool> {
    let mut used = vec![false; g.values.len()];
    for node in &g.nodes {
        for i in node.inputs.iter().flatten() {
            used[*i] = true;
        }
    }
    used
}

fn remove_one(list: &mut Vec<usize>, n: usize) {
    if let Some(k) = list.iter().position(|x| *x == n) {
        list.swap_remove(k);
    }
}

/// A node built in code (tests and passes).
pub fn node(op: ferry_ir::Op, inputs: &[ValueId], outputs: &[ValueId]) -> Node {
    Node {
        name: String::new(),
        op,
        inputs: inputs.iter().map(|i| Some(*i)).collect(),
        outputs: outputs.iter().map(|o| Some(*o)).collect(),
        doc_string: String::new(),
    }
}
