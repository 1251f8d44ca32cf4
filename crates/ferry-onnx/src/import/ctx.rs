//! What a canonicalizer sees of one ONNX node: its resolved op version, inputs, outputs and
//! attributes, and a way to emit core nodes in its place.

use crate::error::{OnnxError, Result};
use bytes::Bytes;
use ferry_ir::ops::{AttrValue, Attribute};
use ferry_ir::{DType, Graph, Node, Op, Tensor, ValueId, ValueType};
use std::collections::{HashMap, HashSet};

pub struct NodeCtx<'a> {
    pub op_type: &'a str,
    pub domain: &'a str,
    /// `since_version` of the op schema the model's opset resolves this node to.
    pub version: u32,
    pub node_name: String,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Vec<Attribute>,
    pub(crate) graph: &'a mut Graph,
    pub(crate) used_names: &'a mut HashSet<String>,
    pub(crate) consts: &'a mut HashMap<ValueId, Tensor>,
    pub(crate) emitted: usize,
}

/// What a canonicalizer decided.
pub enum Canon {
    /// Core nodes were emitted in the node's place.
    Done,
    /// No canonical form for this use (e.g. a type it needs is unknown): keep the node opaque.
    /// Nothing may have been emitted.
    KeepOpaque(String),
}

impl NodeCtx<'_> {
    /// Input `i`, or `None` when absent (past the end or given as "").
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn required_input(&self, i: usize) -> Result<ValueId> {
        self.input(i).ok_or_else(|| self.error(format!("input {i} is required")))
    }

    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    pub fn error(&self, msg: impl std::fmt::Display) -> OnnxError {
        OnnxError::invalid(format!("node '{}' ({}-{}): {msg}", self.node_name, self.op_type, self.version))
    }

    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub fn attr_i(&self, name: &str, default: i64) -> Result<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(_) => Err(self.error(format!("attribute '{name}' must be an int"))),
        }
    }

    pub fn attr_i_opt(&self, name: &str) -> Result<Option<i64>> {
        self.attr(name).map(|_| self.attr_i(name, 0)).transpose()
    }

    pub fn attr_f(&self, name: &str, default: f32) -> Result<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(_) => Err(self.error(format!("attribute '{name}' must be a float"))),
        }
    }

    pub fn attr_f_opt(&self, name: &str) -> Result<Option<f32>> {
        self.attr(name).map(|_| self.attr_f(name, 0.0)).transpose()
    }

    pub fn attr_s(&self, name: &str, default: &str) -> Result<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(AttrValue::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(_) => Err(self.error(format!("attribute '{name}' must be a string"))),
        }
    }

    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.error(format!("attribute '{name}' must be a list of ints"))),
        }
    }

    /// A list of non-negative ints (sizes, strides, pads).
    pub fn attr_sizes(&self, name: &str) -> Result<Option<Vec<u64>>> {
        self.attr_ints(name)?
            .map(|v| {
                v.iter()
                    .map(|x| {
                        u64::try_from(*x).map_err(|_| self.error(format!("attribute '{name}' has negative value {x}")))
                    })
                    .collect()
            })
            .transpose()
    }

    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.error(format!("attribute '{name}' must be a list of floats"))),
        }
    }

    pub fn attr_strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Strings(v)) => {
                Ok(Some(v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()))
            }
            Some(_) => Err(self.error(format!("attribute '{name}' must be a list of strings"))),
        }
    }

    pub fn attr_tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(t)) => Ok(Some(t.clone())),
            Some(_) => Err(self.error(format!("attribute '{name}' must be a tensor"))),
        }
    }

    pub fn attr_dtype(&self, name: &str) -> Result<Option<DType>> {
        match self.attr_i_opt(name)? {
            None => Ok(None),
            Some(code) => DType::from_onnx_code(code as i32)
                .map(Some)
                .ok_or_else(|| self.error(format!("attribute '{name}' names unknown element type {code}"))),
        }
    }

    /// Takes a graph attribute out of the node (each body belongs to one core node).
    pub fn take_graph(&mut self, name: &str) -> Result<Graph> {
        let pos = self
            .attrs
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| self.error(format!("attribute '{name}' is required")))?;
        match self.attrs.remove(pos).value {
            AttrValue::Graph(g) => Ok(*g),
            _ => Err(self.error(format!("attribute '{name}' must be a graph"))),
        }
    }

    /// A fresh intermediate value.
    pub fn temp(&mut self, hint: &str) -> ValueId {
        let base = format!("{}/{hint}", if self.node_name.is_empty() { self.op_type } else { &self.node_name });
        let mut name = base.clone();
        let mut k = 1;
        while self.used_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used_names.insert(name.clone());
        self.graph.add_value(name, ValueType::Unknown)
    }

    /// Adds a core node; the first one keeps the source node's name.
    pub fn emit(&mut self, op: Op, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) {
        let name = if self.emitted == 0 || self.node_name.is_empty() {
            self.node_name.clone()
        } else {
            format!("{}/{}", self.node_name, self.emitted)
        };
        self.emitted += 1;
        let node = Node { name, op, inputs, outputs, doc_string: String::new() };
        // Infer as we go, so later canonicalizers can rely on known types.
        let in_types: Vec<ValueType> =
            node.inputs.iter().map(|i| i.map_or(ValueType::Unknown, |i| self.graph.values[i].ty.clone())).collect();
        let in_consts: Vec<Option<&Tensor>> = node.inputs.iter().map(|i| i.and_then(|i| self.consts.get(&i))).collect();
        if let Ok(types) = ferry_ir::infer::infer_node(&node, &in_types, &in_consts) {
            for (o, ty) in node.outputs.iter().zip(types) {
                if let Some(o) = o {
                    if !ty.is_unknown() {
                        self.graph.values[*o].ty = ferry_ir::infer::merge(&self.graph.values[*o].ty, ty);
                    }
                }
            }
        }
        if let (Op::Constant(t), Some(Some(o))) = (&node.op, node.outputs.first()) {
            self.consts.insert(*o, t.clone());
        }
        self.graph.nodes.push(node);
    }

    /// Emits `op` into a fresh value and returns it.
    pub fn emit_temp(&mut self, op: Op, inputs: Vec<Option<ValueId>>, hint: &str) -> ValueId {
        let out = self.temp(hint);
        self.emit(op, inputs, vec![Some(out)]);
        out
    }

    /// Emits `op` writing the node's output `i` (or a temp nobody reads when that output is unused).
    pub fn emit_to_output(&mut self, op: Op, inputs: Vec<Option<ValueId>>, i: usize) {
        let out = self.output(i).unwrap_or_else(|| self.temp("unused"));
        self.emit(op, inputs, vec![Some(out)]);
    }

    pub fn constant(&mut self, t: Tensor, hint: &str) -> ValueId {
        self.emit_temp(Op::Constant(t), vec![], hint)
    }

    pub fn const_i64s(&mut self, values: &[i64], hint: &str) -> ValueId {
        let t = Tensor::from_i64(vec![values.len() as u64], values).expect("length matches");
        self.constant(t, hint)
    }

    /// The constant value of an input, if it is an initializer or a Constant node's output.
    pub fn const_input(&self, i: usize) -> Option<&Tensor> {
        self.consts.get(&self.input(i)?)
    }

    /// The element type of input `i`, when known.
    pub fn input_dtype(&self, i: usize) -> Option<DType> {
        self.input(i).and_then(|v| self.graph.values[v].ty.dtype())
    }

    /// The rank of input `i`, when known.
    pub fn input_rank(&self, i: usize) -> Option<usize> {
        self.input(i).and_then(|v| self.graph.values[v].ty.shape().map(|s| s.rank()))
    }

    /// The type already known for a value (from annotations or earlier inference).
    pub fn value_type(&self, v: ValueId) -> &ValueType {
        &self.graph.values[v].ty
    }
}

pub fn string_attr(v: &str) -> AttrValue {
    AttrValue::String(Bytes::from(v.to_string()))
}
