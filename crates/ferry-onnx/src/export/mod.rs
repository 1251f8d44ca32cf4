//! Core IR -> ONNX at a chosen opset. Each core op picks the form that opset has; ops whose
//! source version is not expressible are collected, all of them, into one error.

mod attention;
mod control;
pub mod ctx;
mod elementwise;
mod lower;
mod misc;
mod ml;
mod nn;
mod reduce;
mod shape;
mod strings;
mod typecheck;
mod vision;

use crate::error::{ExportProblem, OnnxError, Result};
use crate::proto;
use crate::schema_table::LATEST_OPSET;
use crate::schemas;
use crate::tensor::tensor_to_proto;
use crate::types::type_to_proto;
use ctx::LowerCtx;
use ferry_ir::{DType, Graph, Model, Op, Tensor, ValueId, ValueType};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Target ai.onnx opset; `None` means the newest ferry supports.
    pub opset: Option<u32>,
}

pub const MIN_EXPORT_OPSET: u32 = 1;

pub fn export_model(model: &Model, opts: &ExportOptions) -> Result<proto::ModelProto> {
    let opset = opts.opset.unwrap_or(LATEST_OPSET);
    if !(MIN_EXPORT_OPSET..=LATEST_OPSET).contains(&opset) {
        return Err(OnnxError::invalid(format!("opset {opset} is not one ferry can write (1..={LATEST_OPSET})")));
    }
    let mut used: HashSet<String> = HashSet::new();
    model.graph.visit(&mut |g, _| used.extend(g.values.iter().map(|v| v.name.clone())));
    let mut exporter = Exporter { opset, used, domains: BTreeMap::new(), source_opsets: source_opsets(model) };
    let graph = exporter.graph(&model.graph).map_err(OnnxError::Export)?;
    let mut dtypes = HashMap::new();
    model.graph.visit(&mut |g, _| {
        for v in &g.values {
            if let Some(t) = typecheck::type_name(&v.ty) {
                dtypes.insert(v.name.clone(), t);
            }
        }
    });
    let mut problems = Vec::new();
    typecheck::check_graph(&graph, opset, &dtypes, &mut problems);
    if !problems.is_empty() {
        return Err(OnnxError::Export(problems));
    }
    let mut ir_version = schemas::ir_version_for_opset(opset);
    model.graph.visit(&mut |g, _| {
        for v in &g.values {
            visit_dtypes(&v.ty, &mut |d| ir_version = ir_version.max(min_ir_for_dtype(d)));
        }
        for (_, t) in &g.initializers {
            ir_version = ir_version.max(min_ir_for_dtype(t.dtype));
        }
    });
    let mut opset_import = vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(opset as i64) }];
    for (d, v) in &exporter.domains {
        opset_import.push(proto::OperatorSetIdProto { domain: Some(d.clone()), version: Some(*v as i64) });
    }
    let m = &model.meta;
    Ok(proto::ModelProto {
        ir_version: Some(ir_version as i64),
        opset_import,
        producer_name: Some(if m.producer_name.is_empty() { "ferry".into() } else { m.producer_name.clone() }),
        producer_version: Some(if m.producer_name.is_empty() {
            env!("CARGO_PKG_VERSION").into()
        } else {
            m.producer_version.clone()
        }),
        domain: (!m.domain.is_empty()).then(|| m.domain.clone()),
        model_version: (m.model_version != 0).then_some(m.model_version),
        doc_string: (!m.doc_string.is_empty()).then(|| m.doc_string.clone()),
        graph: Some(graph),
        metadata_props: m
            .metadata_props
            .iter()
            .map(|(k, v)| proto::StringStringEntryProto { key: Some(k.clone()), value: Some(v.clone()) })
            .collect(),
        ..Default::default()
    })
}

fn source_opsets(model: &Model) -> HashMap<String, u32> {
    model
        .meta
        .source_versions
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("opset:").map(|d| (schemas::normalize_domain(d).to_string(), *v as u32)))
        .collect()
}

/// The first IR version that can store a dtype.
fn min_ir_for_dtype(d: DType) -> u32 {
    use DType::*;
    match d {
        BF16 => 4,
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ => 9,
        U4 | I4 => 10,
        F4E2M1 => 11,
        F8E8M0 => 12,
        U2 | I2 => 13,
        F6E2M3 | F6E3M2 => 14,
        _ => 3,
    }
}

fn visit_dtypes(t: &ValueType, f: &mut dyn FnMut(DType)) {
    match t {
        ValueType::Tensor { dtype: Some(d), .. } | ValueType::SparseTensor { dtype: Some(d), .. } => f(*d),
        ValueType::Sequence(e) | ValueType::Optional(e) => visit_dtypes(e, f),
        ValueType::Map { key, value } => {
            f(*key);
            visit_dtypes(value, f)
        }
        _ => {}
    }
}

pub(crate) struct Exporter {
    opset: u32,
    pub(crate) used: HashSet<String>,
    /// Non-default domains written, with their opset versions.
    pub(crate) domains: BTreeMap<String, u32>,
    pub(crate) source_opsets: HashMap<String, u32>,
}

impl Exporter {
    pub(crate) fn graph(&mut self, g: &Graph) -> std::result::Result<proto::GraphProto, Vec<ExportProblem>> {
        let consts = g.constants();
        let mut problems = Vec::new();
        let mut nodes = Vec::new();
        for node in &g.nodes {
            if let Op::Opaque(o) = &node.op {
                if !o.domain.is_empty() {
                    let v = self.source_opsets.get(&o.domain).copied().unwrap_or(1);
                    self.domains.insert(o.domain.clone(), v);
                }
            }
            let mut ctx = LowerCtx {
                opset: self.opset,
                graph: g,
                node,
                consts: &consts,
                exporter: self,
                out: Vec::new(),
                nested_problems: Vec::new(),
            };
            let result = lower::lower_node(&mut ctx);
            let (emitted, nested_problems) = (ctx.out, ctx.nested_problems);
            problems.extend(nested_problems);
            match result {
                Ok(()) => nodes.extend(emitted),
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let value_info = |id: ValueId| proto::ValueInfoProto {
            name: Some(g.values[id].name.clone()),
            r#type: type_to_proto(&g.values[id].ty),
            doc_string: (!g.values[id].doc_string.is_empty()).then(|| g.values[id].doc_string.clone()),
            ..Default::default()
        };
        let initializer = |(id, t): &(ValueId, Tensor)| tensor_to_proto(&g.values[*id].name, t);
        // IR version 3 (the oldest opsets) requires every initializer to be a graph input too:
        // constants that are not (e.g. folded by ferry-opt) are listed as inputs there.
        let initializer_inputs = g
            .initializers
            .iter()
            .filter(|(id, _)| schemas::ir_version_for_opset(self.opset) < 4 && !g.inputs.contains(id))
            .map(|(id, t)| proto::ValueInfoProto {
                name: Some(g.values[*id].name.clone()),
                r#type: type_to_proto(&ValueType::tensor(t.dtype, ferry_ir::Shape::known(&t.shape))),
                ..Default::default()
            });
        Ok(proto::GraphProto {
            node: nodes,
            name: Some(if g.name.is_empty() { "graph".into() } else { g.name.clone() }),
            initializer: g.initializers.iter().map(initializer).collect(),
            doc_string: (!g.doc_string.is_empty()).then(|| g.doc_string.clone()),
            input: g.inputs.iter().map(|i| value_info(*i)).chain(initializer_inputs).collect(),
            output: g.outputs.iter().map(|i| value_info(*i)).collect(),
            ..Default::default()
        })
    }
}
