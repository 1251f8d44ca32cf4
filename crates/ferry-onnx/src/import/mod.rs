//! ONNX -> core IR. Each node is resolved to the op version its model's opset selects, then
//! canonicalized into core ops; ops without a canonical form yet are carried as opaque nodes (and
//! reported by `check`). Model-local functions are inlined.

mod attention;
mod compose;
mod control;
pub mod ctx;
mod elementwise;
mod misc;
mod ml;
pub(crate) mod nn;
mod reduce;
mod shape;
mod strings;
mod vision;

use crate::error::{OnnxError, Result};
use crate::external::ExternalData;
use crate::proto;
use crate::schemas;
use crate::tensor::tensor_from_proto;
use crate::types::type_from_proto;
use ctx::{Canon, NodeCtx};
use ferry_ir::ops::{AttrValue, Attribute, OpaqueOp, SparseTensor};
use ferry_ir::{Graph, Model, ModelMeta, Op, Tensor, ValueId, ValueType};
use std::collections::{HashMap, HashSet};

pub type Canonicalizer = fn(&mut NodeCtx) -> Result<Canon>;

/// Canonicalizers for ai.onnx and ai.onnx.ml ops, by op type. Each entry handles every version of
/// its op.
fn canonicalizer(domain: &str, op_type: &str) -> Option<Canonicalizer> {
    if domain == "ai.onnx.ml" {
        return ml::OPS.iter().find(|(name, _)| *name == op_type).map(|(_, f)| *f);
    }
    if !domain.is_empty() {
        return None;
    }
    let families: &[&[(&str, Canonicalizer)]] = &[
        elementwise::OPS,
        nn::OPS,
        reduce::OPS,
        control::OPS,
        shape::OPS,
        misc::OPS,
        attention::OPS,
        compose::OPS,
        vision::OPS,
        strings::OPS,
    ];
    families.iter().flat_map(|f| f.iter()).find(|(name, _)| *name == op_type).map(|(_, f)| *f)
}

/// Whether ferry has a canonical (core-op) form for this op; the rest is carried opaquely.
pub fn is_canonicalized(domain: &str, op_type: &str) -> bool {
    canonicalizer(schemas::normalize_domain(domain), op_type).is_some()
}

const MAX_GRAPH_DEPTH: usize = 64;
const MAX_FUNCTION_DEPTH: usize = 32;

struct Importer<'a> {
    opsets: HashMap<String, u32>,
    functions: HashMap<(String, String), &'a proto::FunctionProto>,
    ext: &'a mut ExternalData,
    /// Types for the inputs of the next graph imported (a Loop/Scan body, typed from the node's
    /// outer inputs), so the body's nodes canonicalize with known types.
    body_inputs: Vec<ValueType>,
}

pub fn import_model(m: &proto::ModelProto, ext: &mut ExternalData) -> Result<Model> {
    let mut opsets = HashMap::new();
    for o in &m.opset_import {
        let domain = schemas::normalize_domain(o.domain.as_deref().unwrap_or("")).to_string();
        let v = o.version.unwrap_or(0);
        let v = u32::try_from(v)
            .map_err(|_| OnnxError::invalid(format!("opset version {v} for domain '{domain}' is out of range")))?;
        opsets.insert(domain, v);
    }
    if m.opset_import.is_empty() {
        // IR version 1-2 models may omit it; they meant opset 1.
        opsets.insert(String::new(), 1);
    }
    let functions = m
        .functions
        .iter()
        .map(|f| ((f.domain.clone().unwrap_or_default(), f.name.clone().unwrap_or_default()), f))
        .collect();
    let graph_proto = m.graph.as_ref().ok_or_else(|| OnnxError::invalid("the model has no graph"))?;
    let mut imp = Importer { opsets, functions, ext, body_inputs: Vec::new() };
    let mut used = HashSet::new();
    let graph = imp.graph(graph_proto, &Scope::new(), 0, &mut used)?;
    let mut source_versions = vec![("ir_version".to_string(), m.ir_version.unwrap_or(0))];
    let mut opset_list: Vec<_> = imp.opsets.iter().collect();
    opset_list.sort();
    for (d, v) in opset_list {
        source_versions.push((format!("opset:{}", if d.is_empty() { "ai.onnx" } else { d }), *v as i64));
    }
    let meta = ModelMeta {
        producer_name: m.producer_name.clone().unwrap_or_default(),
        producer_version: m.producer_version.clone().unwrap_or_default(),
        domain: m.domain.clone().unwrap_or_default(),
        model_version: m.model_version.unwrap_or(0),
        doc_string: m.doc_string.clone().unwrap_or_default(),
        metadata_props: m
            .metadata_props
            .iter()
            .map(|p| (p.key.clone().unwrap_or_default(), p.value.clone().unwrap_or_default()))
            .collect(),
        source_format: "onnx".into(),
        source_versions,
        not_carried: not_carried(m),
    };
    Ok(Model { graph, meta })
}

/// Parts of the file the IR has no place for, described for `check` and `convert`.
fn not_carried(m: &proto::ModelProto) -> Vec<String> {
    fn walk(g: &proto::GraphProto, counts: &mut [usize; 4]) {
        counts[0] += g.node.iter().filter(|n| !n.metadata_props.is_empty()).count();
        counts[1] += usize::from(!g.metadata_props.is_empty());
        counts[2] +=
            g.value_info.iter().chain(&g.input).chain(&g.output).filter(|v| !v.metadata_props.is_empty()).count();
        counts[3] += g.quantization_annotation.len();
        for n in &g.node {
            for a in &n.attribute {
                a.g.iter().chain(&a.graphs).for_each(|sub| walk(sub, counts));
            }
        }
    }
    let mut counts = [0usize; 4];
    if let Some(g) = &m.graph {
        walk(g, &mut counts);
    }
    let mut notes = Vec::new();
    let what = ["node metadata_props", "graph metadata_props", "value metadata_props", "quantization annotations"];
    for (n, w) in counts.iter().zip(what) {
        if *n > 0 {
            notes.push(format!("{w} ({n})"));
        }
    }
    if !m.training_info.is_empty() {
        notes.push(format!("training_info ({} entries)", m.training_info.len()));
    }
    if !m.configuration.is_empty() {
        notes.push("multi-device configuration".into());
    }
    notes
}

/// A node after function inlining: names are final, attributes already converted.
struct FlatNode {
    name: String,
    op_type: String,
    domain: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Converted at import time of the node (graph bodies then see the outer values' types).
    raw_attrs: Vec<proto::AttributeProto>,
    /// Names a graph attribute may read from outside (only for nodes with graph attributes).
    scope: Option<HashSet<String>>,
    doc_string: String,
}

/// The values visible to a nested graph from its enclosing graphs, with their types so far.
type Scope = HashMap<String, ValueType>;

impl Importer<'_> {
    fn graph(
        &mut self,
        g: &proto::GraphProto,
        outer: &Scope,
        depth: usize,
        used: &mut HashSet<String>,
    ) -> Result<Graph> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(OnnxError::invalid(format!("graphs nested deeper than {MAX_GRAPH_DEPTH} levels")));
        }
        let body_inputs = std::mem::take(&mut self.body_inputs);
        let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
        let mut graph = Graph {
            name: g.name.clone().unwrap_or_default(),
            doc_string: g.doc_string.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut names: HashMap<String, ValueId> = HashMap::new();
        let declare = |graph: &mut Graph,
                       names: &mut HashMap<String, ValueId>,
                       used: &mut HashSet<String>,
                       name: &str,
                       ty: ValueType|
         -> ValueId {
            if let Some(id) = names.get(name) {
                return *id;
            }
            used.insert(name.to_string());
            let id = graph.add_value(name, ty);
            names.insert(name.to_string(), id);
            id
        };
        for vi in &g.input {
            let name = vi.name.clone().unwrap_or_default();
            if names.contains_key(&name) {
                return Err(OnnxError::invalid(format!("graph input '{name}' is declared twice")));
            }
            let mut ty = vi.r#type.as_ref().map(|t| type_from_proto(t, 0)).transpose()?.unwrap_or_default();
            if let Some(outer_ty) = body_inputs.get(graph.inputs.len()) {
                ty = ferry_ir::infer::merge(&ty, outer_ty.clone());
            }
            let id = declare(&mut graph, &mut names, used, &name, ty);
            graph.values[id].doc_string = vi.doc_string.clone().unwrap_or_default();
            graph.inputs.push(id);
        }
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            let tensor = tensor_from_proto(t, self.ext)?;
            let id = declare(&mut graph, &mut names, used, &name, ValueType::Unknown);
            if graph.initializers.iter().any(|(v, _)| *v == id) {
                return Err(OnnxError::invalid(format!("initializer '{name}' is given twice")));
            }
            if graph.values[id].ty.is_unknown() {
                graph.values[id].ty = ValueType::tensor(tensor.dtype, ferry_ir::Shape::known(&tensor.shape));
            }
            // An initializer that is also a graph input is only a default: not a constant.
            if !graph.inputs.contains(&id) {
                consts.insert(id, tensor.clone());
            }
            graph.initializers.push((id, tensor));
        }
        for s in &g.sparse_initializer {
            let sparse = self.sparse(s)?;
            let name = s.values.as_ref().and_then(|v| v.name.clone()).unwrap_or_default();
            let dense =
                densify(&sparse).map_err(|e| OnnxError::invalid(format!("sparse initializer '{name}': {e}")))?;
            let ty = ValueType::tensor(dense.dtype, ferry_ir::Shape::known(&dense.shape));
            let id = declare(&mut graph, &mut names, used, &name, ty);
            consts.insert(id, dense.clone());
            graph.initializers.push((id, dense));
        }
        let mut nodes = Vec::new();
        for (i, n) in g.node.iter().enumerate() {
            self.flatten_node(n, i, &mut nodes, &HashMap::new(), &HashMap::new(), "", 0, outer, &names)?;
        }
        let nodes = topo_sort(nodes, &names, outer)?;
        // Declare every node output first so annotations can attach to them.
        for n in &nodes {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                if names.contains_key(o) {
                    return Err(OnnxError::invalid(format!(
                        "value '{o}' is produced twice (second time by node '{}')",
                        n.name
                    )));
                }
                declare(&mut graph, &mut names, used, o, ValueType::Unknown);
            }
        }
        for vi in g.value_info.iter().chain(&g.output) {
            let name = vi.name.clone().unwrap_or_default();
            if let (Some(id), Some(t)) = (names.get(&name), &vi.r#type) {
                if graph.values[*id].ty.is_unknown() {
                    graph.values[*id].ty = type_from_proto(t, 0)?;
                }
            }
        }
        for n in nodes {
            let mut inputs = Vec::with_capacity(n.inputs.len());
            for i in &n.inputs {
                if i.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let id = match names.get(i) {
                    Some(id) => *id,
                    None if outer.contains_key(i) => {
                        let id = declare(&mut graph, &mut names, used, i, outer[i].clone());
                        graph.captures.push(id);
                        id
                    }
                    None => unreachable!("topo_sort rejected dangling input '{i}'"),
                };
                inputs.push(Some(id));
            }
            let outputs = n.outputs.iter().map(|o| (!o.is_empty()).then(|| names[o])).collect();
            let scope: Scope = match &n.scope {
                None => Scope::new(),
                Some(visible) => visible
                    .iter()
                    .map(|v| {
                        let ty = match names.get(v) {
                            Some(id) => graph.values[*id].ty.clone(),
                            None => outer.get(v).cloned().unwrap_or_default(),
                        };
                        (v.clone(), ty)
                    })
                    .collect(),
            };
            let body_inputs = self.body_input_types(&n, &inputs, &graph);
            let attrs = n
                .raw_attrs
                .iter()
                .map(|a| {
                    if a.name.as_deref() == Some("body") {
                        self.body_inputs = body_inputs.clone();
                    }
                    Ok(Attribute {
                        name: a.name.clone().unwrap_or_default(),
                        value: self.attribute(a, &scope, depth, used)?,
                        doc_string: a.doc_string.clone().unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            self.node(&mut graph, used, &mut consts, n, attrs, inputs, outputs)?;
        }
        for vi in &g.output {
            let name = vi.name.clone().unwrap_or_default();
            let id = match names.get(&name) {
                Some(id) => *id,
                None if outer.contains_key(&name) => {
                    let id = declare(&mut graph, &mut names, used, &name, outer[&name].clone());
                    graph.captures.push(id);
                    id
                }
                None => {
                    return Err(OnnxError::invalid(format!(
                        "graph output '{name}' is not produced by any node, input or initializer"
                    )));
                }
            };
            graph.outputs.push(id);
        }
        Ok(graph)
    }

    /// The types a Loop or Scan body's inputs get from the node's outer inputs: Loop's iteration
    /// count (i64 scalar), condition (bool scalar) and carried values; Scan's state variables and
    /// one slice of each scan input (the scan axis removed; Scan-8 also drops the batch axis).
    /// Carried and state values keep only their element type (their shapes may change).
    fn body_input_types(&self, n: &FlatNode, inputs: &[Option<ValueId>], graph: &Graph) -> Vec<ValueType> {
        if !n.domain.is_empty() || !matches!(n.op_type.as_str(), "Loop" | "Scan") {
            return Vec::new();
        }
        let ty = |i: usize| inputs.get(i).copied().flatten().map_or(ValueType::Unknown, |v| graph.values[v].ty.clone());
        fn loose(t: &ValueType) -> ValueType {
            match t {
                ValueType::Tensor { dtype, .. } => ValueType::Tensor { dtype: *dtype, shape: None },
                ValueType::Sequence(e) => ValueType::Sequence(Box::new(loose(e))),
                ValueType::Optional(e) => ValueType::Optional(Box::new(loose(e))),
                other => other.clone(),
            }
        }
        let drop_axes = |t: &ValueType, axes: &[usize]| match t {
            ValueType::Tensor { dtype, shape } => ValueType::Tensor {
                dtype: *dtype,
                shape: shape.as_ref().and_then(|s| {
                    axes.iter().all(|a| *a < s.rank()).then(|| {
                        ferry_ir::Shape(
                            s.0.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect(),
                        )
                    })
                }),
            },
            _ => ValueType::Unknown,
        };
        let int_attr = |name: &str| n.raw_attrs.iter().find(|a| a.name.as_deref() == Some(name));
        if n.op_type == "Loop" {
            let mut out = vec![
                ValueType::tensor(ferry_ir::DType::I64, ferry_ir::Shape::scalar()),
                ValueType::tensor(ferry_ir::DType::Bool, ferry_ir::Shape::scalar()),
            ];
            out.extend((2..inputs.len()).map(|i| loose(&ty(i))));
            return out;
        }
        let version = self.opsets.get("").and_then(|v| schemas::resolve("", "Scan", *v)).map(|s| s.since_version);
        let Some(m) = int_attr("num_scan_inputs").and_then(|a| a.i).filter(|m| *m >= 1) else {
            return Vec::new();
        };
        let m = m as usize;
        let first = usize::from(version == Some(8));
        let Some(total) = inputs.len().checked_sub(first).filter(|t| *t >= m) else {
            return Vec::new();
        };
        let n_state = total - m;
        let mut out: Vec<ValueType> = (0..n_state).map(|i| loose(&ty(first + i))).collect();
        let axes = int_attr("scan_input_axes").map(|a| a.ints.clone()).unwrap_or_default();
        for j in 0..m {
            let t = ty(first + n_state + j);
            let rank = t.shape().map(|s| s.rank());
            let dropped = if first == 1 {
                drop_axes(&t, &[0, 1])
            } else {
                let axis = axes.get(j).copied().unwrap_or(0);
                match rank.and_then(|r| ferry_ir::shape::normalize_axis(axis, r).ok()) {
                    Some(a) => drop_axes(&t, &[a]),
                    None => ValueType::Tensor { dtype: t.dtype(), shape: None },
                }
            };
            out.push(dropped);
        }
        out
    }

    fn sparse(&mut self, s: &proto::SparseTensorProto) -> Result<SparseTensor> {
        let values = s.values.as_ref().ok_or_else(|| OnnxError::invalid("sparse tensor without values"))?;
        let indices = s.indices.as_ref().ok_or_else(|| OnnxError::invalid("sparse tensor without indices"))?;
        Ok(SparseTensor {
            values: tensor_from_proto(values, self.ext)?,
            indices: tensor_from_proto(indices, self.ext)?,
            dims: crate::tensor::dims_from_proto(&s.dims, "sparse tensor")?,
        })
    }

    fn attribute(
        &mut self,
        a: &proto::AttributeProto,
        scope: &Scope,
        depth: usize,
        used: &mut HashSet<String>,
    ) -> Result<AttrValue> {
        use proto::attribute_proto::AttributeType as T;
        let name = a.name.as_deref().unwrap_or("");
        let ty = a.r#type.and_then(|t| T::try_from(t).ok()).unwrap_or(T::Undefined);
        let ty = if ty == T::Undefined { guess_attr_type(a) } else { ty };
        Ok(match ty {
            T::Float => AttrValue::Float(a.f.unwrap_or(0.0)),
            T::Int => AttrValue::Int(a.i.unwrap_or(0)),
            T::String => AttrValue::String(a.s.clone().unwrap_or_default()),
            T::Tensor => AttrValue::Tensor(tensor_from_proto(
                a.t.as_deref().ok_or_else(|| OnnxError::invalid(format!("attribute '{name}' has no tensor")))?,
                self.ext,
            )?),
            T::Graph => AttrValue::Graph(Box::new(self.graph(
                a.g.as_ref().ok_or_else(|| OnnxError::invalid(format!("attribute '{name}' has no graph")))?,
                scope,
                depth + 1,
                used,
            )?)),
            T::SparseTensor => AttrValue::SparseTensor(Box::new(
                self.sparse(
                    a.sparse_tensor
                        .as_deref()
                        .ok_or_else(|| OnnxError::invalid(format!("attribute '{name}' has no sparse tensor")))?,
                )?,
            )),
            T::TypeProto => AttrValue::Type(type_from_proto(
                a.tp.as_deref().ok_or_else(|| OnnxError::invalid(format!("attribute '{name}' has no type")))?,
                0,
            )?),
            T::Floats => AttrValue::Floats(a.floats.clone()),
            T::Ints => AttrValue::Ints(a.ints.clone()),
            T::Strings => AttrValue::Strings(a.strings.clone()),
            T::Tensors => {
                AttrValue::Tensors(a.tensors.iter().map(|t| tensor_from_proto(t, self.ext)).collect::<Result<_>>()?)
            }
            T::Graphs => AttrValue::Graphs(
                a.graphs.iter().map(|g| self.graph(g, scope, depth + 1, used)).collect::<Result<_>>()?,
            ),
            T::SparseTensors => {
                AttrValue::SparseTensors(a.sparse_tensors.iter().map(|s| self.sparse(s)).collect::<Result<_>>()?)
            }
            T::TypeProtos => {
                AttrValue::Types(a.type_protos.iter().map(|t| type_from_proto(t, 0)).collect::<Result<_>>()?)
            }
            T::Undefined => return Err(OnnxError::invalid(format!("attribute '{name}' has no type and no value"))),
        })
    }

    /// Expands model-local function calls into their bodies (renaming values) and resolves
    /// attribute references; pushes the resulting plain nodes (attributes are converted later,
    /// when the node is imported, so graph bodies see the types of the values around them).
    #[allow(clippy::too_many_arguments)]
    fn flatten_node(
        &mut self,
        n: &proto::NodeProto,
        index: usize,
        out: &mut Vec<FlatNode>,
        rename: &HashMap<String, String>,
        caller_attrs: &HashMap<String, proto::AttributeProto>,
        prefix: &str,
        fdepth: usize,
        outer: &Scope,
        names: &HashMap<String, ValueId>,
    ) -> Result<()> {
        let op_type = n.op_type.clone().unwrap_or_default();
        let domain = schemas::normalize_domain(n.domain.as_deref().unwrap_or("")).to_string();
        let map = |s: &String| -> String {
            if s.is_empty() { String::new() } else { rename.get(s).cloned().unwrap_or_else(|| format!("{prefix}{s}")) }
        };
        let inputs: Vec<String> = n.input.iter().map(|s| if prefix.is_empty() { s.clone() } else { map(s) }).collect();
        let outputs: Vec<String> =
            n.output.iter().map(|s| if prefix.is_empty() { s.clone() } else { map(s) }).collect();
        let base_name = n.name.clone().unwrap_or_default();
        let name = if prefix.is_empty() { base_name } else { format!("{prefix}{base_name}") };

        // Attributes referring to the caller's (ref_attr_name) are substituted first.
        let mut resolved_attrs = Vec::new();
        for a in &n.attribute {
            match &a.ref_attr_name {
                Some(r) if !r.is_empty() => {
                    if let Some(src) = caller_attrs.get(r) {
                        let mut a2 = src.clone();
                        a2.name = a.name.clone();
                        resolved_attrs.push(a2);
                    }
                }
                _ => resolved_attrs.push(a.clone()),
            }
        }

        if let Some(f) = self.functions.get(&(domain.clone(), op_type.clone())).copied() {
            if fdepth >= MAX_FUNCTION_DEPTH {
                return Err(OnnxError::invalid(format!(
                    "function '{op_type}' calls nest deeper than {MAX_FUNCTION_DEPTH} (recursive?)"
                )));
            }
            let call = format!("{}{}__{index}/", prefix, if name.is_empty() { &op_type } else { &name });
            let mut inner_rename = HashMap::new();
            for (k, formal) in f.input.iter().enumerate() {
                inner_rename.insert(formal.clone(), inputs.get(k).cloned().unwrap_or_default());
            }
            for (k, formal) in f.output.iter().enumerate() {
                inner_rename.insert(formal.clone(), outputs.get(k).cloned().unwrap_or_default());
            }
            let mut attrs: HashMap<String, proto::AttributeProto> = HashMap::new();
            for a in &f.attribute_proto {
                attrs.insert(a.name.clone().unwrap_or_default(), a.clone());
            }
            for a in resolved_attrs {
                attrs.insert(a.name.clone().unwrap_or_default(), a);
            }
            for (k, inner) in f.node.iter().enumerate() {
                self.flatten_node(inner, k, out, &inner_rename, &attrs, &call, fdepth + 1, outer, names)?;
            }
            return Ok(());
        }

        // Nested graphs see every name visible at this point.
        let has_graph = resolved_attrs.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        let scope = has_graph.then(|| {
            let mut scope: HashSet<String> = outer.keys().cloned().collect();
            scope.extend(names.keys().cloned());
            for o in out.iter() {
                scope.extend(o.outputs.iter().cloned());
            }
            scope.extend(inputs.iter().cloned());
            scope
        });
        out.push(FlatNode {
            name,
            op_type,
            domain,
            inputs,
            outputs,
            raw_attrs: resolved_attrs,
            scope,
            doc_string: n.doc_string.clone().unwrap_or_default(),
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        graph: &mut Graph,
        used: &mut HashSet<String>,
        consts: &mut HashMap<ValueId, Tensor>,
        n: FlatNode,
        attrs: Vec<Attribute>,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<ValueId>>,
    ) -> Result<()> {
        let known_domain = self.opsets.get(&n.domain).copied();
        let schema = known_domain.and_then(|v| schemas::resolve(&n.domain, &n.op_type, v));
        if n.domain.is_empty() && schema.is_none() {
            let opset = known_domain.unwrap_or(0);
            return Err(OnnxError::invalid(format!(
                "node '{}': '{}' is not an ai.onnx operator at opset {opset}{}",
                n.name,
                n.op_type,
                match schemas::versions("", &n.op_type).next() {
                    Some(first) => format!(" (it exists from opset {})", first.since_version),
                    None => String::new(),
                }
            )));
        }
        let version = schema.map(|s| s.since_version);
        if let (Some(version), Some(canon)) = (version, canonicalizer(&n.domain, &n.op_type)) {
            let start = graph.nodes.len();
            let mut ctx = NodeCtx {
                op_type: &n.op_type,
                domain: &n.domain,
                version,
                node_name: n.name.clone(),
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                attrs: attrs.clone(),
                graph,
                used_names: used,
                consts,
                emitted: 0,
            };
            match canon(&mut ctx)? {
                Canon::Done => {
                    if !n.doc_string.is_empty() {
                        if let Some(first) = graph.nodes.get_mut(start) {
                            first.doc_string = n.doc_string;
                        }
                    }
                    return Ok(());
                }
                Canon::KeepOpaque(_) => {
                    debug_assert_eq!(graph.nodes.len(), start, "a canonicalizer emitted before giving up")
                }
            }
        }
        graph.nodes.push(ferry_ir::Node {
            name: n.name,
            op: Op::Opaque(OpaqueOp { domain: n.domain, op_type: n.op_type, version, attributes: attrs }),
            inputs,
            outputs,
            doc_string: n.doc_string,
        });
        Ok(())
    }
}

fn guess_attr_type(a: &proto::AttributeProto) -> proto::attribute_proto::AttributeType {
    use proto::attribute_proto::AttributeType as T;
    if a.f.is_some() {
        T::Float
    } else if a.i.is_some() {
        T::Int
    } else if a.s.is_some() {
        T::String
    } else if a.t.is_some() {
        T::Tensor
    } else if a.g.is_some() {
        T::Graph
    } else if a.sparse_tensor.is_some() {
        T::SparseTensor
    } else if a.tp.is_some() {
        T::TypeProto
    } else if !a.floats.is_empty() {
        T::Floats
    } else if !a.ints.is_empty() {
        T::Ints
    } else if !a.strings.is_empty() {
        T::Strings
    } else if !a.tensors.is_empty() {
        T::Tensors
    } else if !a.graphs.is_empty() {
        T::Graphs
    } else if !a.sparse_tensors.is_empty() {
        T::SparseTensors
    } else if !a.type_protos.is_empty() {
        T::TypeProtos
    } else {
        T::Undefined
    }
}

/// Orders nodes so every input is produced before use; rejects cycles and dangling names.
fn topo_sort(nodes: Vec<FlatNode>, known: &HashMap<String, ValueId>, outer: &Scope) -> Result<Vec<FlatNode>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut dangling = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(p) => deps[i].push(*p),
                None if known.contains_key(inp) || outer.contains_key(inp) => {}
                None => dangling.push(format!("node '{}' ({}) reads '{inp}'", n.name, n.op_type)),
            }
        }
    }
    if !dangling.is_empty() {
        return Err(OnnxError::invalid(format!(
            "{} input(s) name values that no node, graph input or initializer provides: {}",
            dangling.len(),
            dangling.join("; ")
        )));
    }
    // Kahn's algorithm, stable: keeps file order among ready nodes.
    let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, d) in deps.iter().enumerate() {
        for p in d {
            users[*p].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..nodes.len()).filter(|i| indegree[*i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for u in &users[i] {
            indegree[*u] -= 1;
            if indegree[*u] == 0 {
                ready.insert(*u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|i| indegree[*i] > 0)
            .take(5)
            .map(|i| format!("'{}' ({})", nodes[i].name, nodes[i].op_type))
            .collect();
        return Err(OnnxError::invalid(format!("the graph has a cycle through node(s) {}", stuck.join(", "))));
    }
    let mut slots: Vec<Option<FlatNode>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| slots[i].take().expect("each node once")).collect())
}

/// Largest dense tensor a sparse initializer may expand to.
const MAX_DENSIFIED_BYTES: u64 = 1 << 30;

pub(crate) fn densify(s: &SparseTensor) -> std::result::Result<Tensor, String> {
    let dtype = s.values.dtype;
    let numel = ferry_ir::tensor::checked_numel(&s.dims).map_err(|e| e.to_string())?;
    let bits = dtype.bits().ok_or("string sparse tensors are not supported")?;
    if bits % 8 != 0 {
        return Err(format!("sparse {dtype} tensors are not supported"));
    }
    let width = (bits / 8) as u64;
    let bytes = numel.checked_mul(width).filter(|b| *b <= MAX_DENSIFIED_BYTES).ok_or_else(|| {
        format!("expands to {numel} elements, more than the {MAX_DENSIFIED_BYTES}-byte limit for dense initializers")
    })?;
    let nnz = s.values.numel();
    let idx = s.indices.to_i64_vec().map_err(|e| e.to_string())?;
    let rank = s.dims.len() as u64;
    let coords = if idx.len() as u64 == nnz {
        1
    } else if idx.len() as u64 == nnz * rank {
        rank
    } else {
        return Err(format!("{} indices for {nnz} values of a rank-{rank} tensor", idx.len()));
    };
    let mut out = vec![0u8; bytes as usize];
    let src = s.values.raw().ok_or("sparse values must be numeric")?;
    for k in 0..nnz as usize {
        let flat = if coords == 1 {
            idx[k]
        } else {
            let mut f: i64 = 0;
            for (d, size) in s.dims.iter().enumerate() {
                let c = idx[k * rank as usize + d];
                if c < 0 || c as u64 >= *size {
                    return Err(format!("index {c} out of range for dim {d} of size {size}"));
                }
                f = f * *size as i64 + c;
            }
            f
        };
        if flat < 0 || flat as u64 >= numel {
            return Err(format!("index {flat} out of range for {numel} elements"));
        }
        let w = width as usize;
        out[flat as usize * w..(flat as usize + 1) * w].copy_from_slice(&src[k * w..(k + 1) * w]);
    }
    Tensor::from_raw(dtype, s.dims.clone(), bytes::Bytes::from(out)).map_err(|e| e.to_string())
}
