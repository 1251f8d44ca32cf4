//! What a lowering sees while writing one core node as ONNX nodes of the target opset.

use crate::error::ExportProblem;
use crate::proto::{self, attribute_proto::AttributeType};
use crate::schemas;
use crate::tensor::tensor_to_proto;
use bytes::Bytes;
use ferry_ir::{Graph, Node, Tensor, ValueId};
use std::collections::HashMap;

pub type LowerResult = std::result::Result<(), ExportProblem>;

pub struct LowerCtx<'a> {
    pub opset: u32,
    pub graph: &'a Graph,
    pub node: &'a Node,
    pub(crate) consts: &'a HashMap<ValueId, &'a Tensor>,
    pub(crate) exporter: &'a mut super::Exporter,
    pub(crate) out: Vec<proto::NodeProto>,
    pub(crate) nested_problems: Vec<ExportProblem>,
}

impl LowerCtx<'_> {
    /// The ONNX name of input `i` ("" when absent).
    pub fn input(&self, i: usize) -> String {
        match self.node.inputs.get(i).copied().flatten() {
            Some(v) => self.graph.values[v].name.clone(),
            None => String::new(),
        }
    }

    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).copied().flatten().is_some()
    }

    pub fn inputs(&self) -> Vec<String> {
        (0..self.node.inputs.len()).map(|i| self.input(i)).collect()
    }

    pub fn output(&self, i: usize) -> String {
        match self.node.outputs.get(i).copied().flatten() {
            Some(v) => self.graph.values[v].name.clone(),
            None => String::new(),
        }
    }

    pub fn outputs(&self) -> Vec<String> {
        (0..self.node.outputs.len()).map(|i| self.output(i)).collect()
    }

    pub fn const_input(&self, i: usize) -> Option<&Tensor> {
        self.node.inputs.get(i).copied().flatten().and_then(|v| self.consts.get(&v).copied())
    }

    pub fn input_type(&self, i: usize) -> Option<&ferry_ir::ValueType> {
        self.node.inputs.get(i).copied().flatten().map(|v| &self.graph.values[v].ty)
    }

    /// A problem for this node.
    pub fn problem(&self, message: impl Into<String>, min_opset: Option<u32>) -> ExportProblem {
        ExportProblem { node: self.display_name(), op: self.node.op.name(), message: message.into(), min_opset }
    }

    pub fn display_name(&self) -> String {
        if !self.node.name.is_empty() {
            return self.node.name.clone();
        }
        self.node
            .outputs
            .iter()
            .flatten()
            .next()
            .map(|o| format!("producing '{}'", self.graph.values[*o].name))
            .unwrap_or_default()
    }

    /// Fails unless the target opset is at least `min`.
    pub fn require_opset(&self, min: u32, what: &str) -> LowerResult {
        if self.opset < min { Err(self.problem(format!("{what} needs opset {min}"), Some(min))) } else { Ok(()) }
    }

    /// The `since_version` of `op_type` in the target opset (None when the op does not exist yet).
    pub fn op_version(&self, op_type: &str) -> Option<u32> {
        schemas::resolve("", op_type, self.opset).map(|s| s.since_version)
    }

    /// Fails unless `op_type` exists in the target opset.
    pub fn require_op(&self, op_type: &str) -> std::result::Result<u32, ExportProblem> {
        self.op_version(op_type).ok_or_else(|| {
            let first = schemas::versions("", op_type).next().map(|s| s.since_version);
            self.problem(format!("ONNX has no {op_type} before opset {}", first.unwrap_or(0)), first)
        })
    }

    pub fn temp(&mut self, hint: &str) -> String {
        let base = format!("{}/{hint}", if self.node.name.is_empty() { "ferry" } else { &self.node.name });
        let mut name = base.clone();
        let mut k = 1;
        while self.exporter.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.exporter.used.insert(name.clone());
        name
    }

    pub fn emit(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<proto::AttributeProto>,
    ) {
        self.emit_in("", op_type, inputs, outputs, attrs)
    }

    pub fn emit_in(
        &mut self,
        domain: &str,
        op_type: &str,
        mut inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<proto::AttributeProto>,
    ) {
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        let name = if self.out.is_empty() {
            self.node.name.clone()
        } else if self.node.name.is_empty() {
            String::new()
        } else {
            self.temp("node")
        };
        self.out.push(proto::NodeProto {
            input: inputs,
            output: outputs,
            name: (!name.is_empty()).then_some(name),
            op_type: Some(op_type.to_string()),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            attribute: attrs,
            doc_string: (self.out.is_empty() && !self.node.doc_string.is_empty()).then(|| self.node.doc_string.clone()),
            ..Default::default()
        });
    }

    /// Emits `op_type` into a fresh value and returns its name.
    pub fn emit_temp(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<proto::AttributeProto>,
        hint: &str,
    ) -> String {
        let out = self.temp(hint);
        self.emit(op_type, inputs, vec![out.clone()], attrs);
        out
    }

    /// A Constant node holding `t`; returns its output name.
    pub fn constant(&mut self, t: &Tensor, hint: &str) -> String {
        let attr = attr_tensor("value", t);
        self.emit_temp("Constant", vec![], vec![attr], hint)
    }

    pub fn const_i64s(&mut self, values: &[i64], hint: &str) -> String {
        let t = Tensor::from_i64(vec![values.len() as u64], values).expect("length matches");
        self.constant(&t, hint)
    }

    pub fn subgraph(&mut self, g: &Graph) -> proto::GraphProto {
        match self.exporter.graph(g) {
            Ok(p) => p,
            Err(problems) => {
                self.nested_problems.extend(problems);
                proto::GraphProto::default()
            }
        }
    }
}

fn attr(name: &str, ty: AttributeType) -> proto::AttributeProto {
    proto::AttributeProto { name: Some(name.to_string()), r#type: Some(ty as i32), ..Default::default() }
}

pub fn attr_i(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}

pub fn attr_f(name: &str, v: f32) -> proto::AttributeProto {
    proto::AttributeProto { f: Some(v), ..attr(name, AttributeType::Float) }
}

pub fn attr_s(name: &str, v: &str) -> proto::AttributeProto {
    proto::AttributeProto { s: Some(Bytes::from(v.to_string())), ..attr(name, AttributeType::String) }
}

pub fn attr_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

pub fn attr_floats(name: &str, v: &[f32]) -> proto::AttributeProto {
    proto::AttributeProto { floats: v.to_vec(), ..attr(name, AttributeType::Floats) }
}

pub fn attr_strings(name: &str, v: &[String]) -> proto::AttributeProto {
    proto::AttributeProto {
        strings: v.iter().map(|s| Bytes::from(s.clone())).collect(),
        ..attr(name, AttributeType::Strings)
    }
}

pub fn attr_tensor(name: &str, t: &Tensor) -> proto::AttributeProto {
    proto::AttributeProto { t: Some(Box::new(tensor_to_proto("", t))), ..attr(name, AttributeType::Tensor) }
}

pub fn attr_graph(name: &str, g: proto::GraphProto) -> proto::AttributeProto {
    proto::AttributeProto { g: Some(g), ..attr(name, AttributeType::Graph) }
}

pub fn sizes(v: &[u64]) -> Vec<i64> {
    v.iter().map(|x| *x as i64).collect()
}
