//! The graph: nodes over values, kept in topological order. Nested graphs (control-flow bodies)
//! read values of enclosing graphs by name; those names are listed in `captures`.

use crate::ops::Op;
use crate::tensor::Tensor;
use crate::value::ValueType;
use std::collections::HashMap;

pub type ValueId = usize;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Value {
    pub name: String,
    pub ty: ValueType,
    pub doc_string: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// `None` marks an optional input that is absent.
    pub inputs: Vec<Option<ValueId>>,
    /// `None` marks an optional output nobody asked for.
    pub outputs: Vec<Option<ValueId>>,
    pub doc_string: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    pub doc_string: String,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Weights and other constant values, by value.
    pub initializers: Vec<(ValueId, Tensor)>,
    /// Values of an enclosing graph read by this one, by the value's (shared) name.
    pub captures: Vec<ValueId>,
}

impl Graph {
    pub fn add_value(&mut self, name: impl Into<String>, ty: ValueType) -> ValueId {
        self.values.push(Value { name: name.into(), ty, doc_string: String::new() });
        self.values.len() - 1
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    pub fn value_by_name(&self) -> HashMap<&str, ValueId> {
        self.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect()
    }

    pub fn initializer(&self, id: ValueId) -> Option<&Tensor> {
        self.initializers.iter().find(|(v, _)| *v == id).map(|(_, t)| t)
    }

    /// The node producing each value, if any.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for o in node.outputs.iter().flatten() {
                p[*o] = Some(n);
            }
        }
        p
    }

    /// Calls `f` on this graph and every nested graph, depth first, with the nesting depth.
    pub fn visit(&self, f: &mut dyn FnMut(&Graph, usize)) {
        fn go(g: &Graph, depth: usize, f: &mut dyn FnMut(&Graph, usize)) {
            f(g, depth);
            for n in &g.nodes {
                for sub in n.op.subgraphs() {
                    go(sub, depth + 1, f);
                }
            }
        }
        go(self, 0, f)
    }

    /// Total bytes and element count of the initializers, nested graphs included.
    pub fn parameter_totals(&self) -> (u64, u64) {
        let mut totals = (0u64, 0u64);
        self.visit(&mut |g, _| {
            for (_, t) in &g.initializers {
                totals.0 += t.numel();
                totals.1 += t.byte_len();
            }
        });
        totals
    }

    /// Node count per op name, nested graphs included.
    pub fn op_histogram(&self) -> std::collections::BTreeMap<String, usize> {
        let mut h = std::collections::BTreeMap::new();
        self.visit(&mut |g, _| {
            for n in &g.nodes {
                *h.entry(n.op.name()).or_insert(0) += 1;
            }
        });
        h
    }
}

impl Graph {
    /// Values known to be constant here: initializers that are not graph inputs (an input with
    /// an initializer is only a default) and outputs of `Constant` nodes.
    pub fn constants(&self) -> HashMap<ValueId, &Tensor> {
        let mut c: HashMap<ValueId, &Tensor> =
            self.initializers.iter().filter(|(v, _)| !self.inputs.contains(v)).map(|(v, t)| (*v, t)).collect();
        for n in &self.nodes {
            if let (Op::Constant(t), Some(Some(o))) = (&n.op, n.outputs.first()) {
                c.insert(*o, t);
            }
        }
        c
    }
}
