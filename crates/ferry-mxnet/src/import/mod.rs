//! MXNet graph -> core IR. Variables (`op: "null"`) become initializers when the `.params` file
//! holds them (`arg:`/`aux:` names) and graph inputs otherwise; op nodes are canonicalized into
//! core ops through per-family tables. Ops without a canonicalizer are all reported at once.

pub mod ctx;
mod detection;
mod elementwise;
mod index;
mod multibox;
mod nn;
mod proposal;
mod regions;
mod rnn;
mod shape;

use crate::error::{MxnetError, Result};
use crate::symbol::Symbol;
use ctx::NodeCtx;
use ferry_ir::{DType, Dim, Graph, Model, ModelMeta, Shape, Tensor, ValueId, ValueType};
use std::collections::{BTreeMap, HashMap, HashSet};

pub type Canonicalizer = fn(&mut NodeCtx) -> Result<()>;

fn canonicalizer(op: &str) -> Option<Canonicalizer> {
    let families: &[&[(&str, Canonicalizer)]] = &[
        nn::OPS,
        elementwise::OPS,
        shape::OPS,
        index::OPS,
        rnn::OPS,
        detection::OPS,
        regions::OPS,
        multibox::OPS,
        proposal::OPS,
    ];
    families.iter().flat_map(|f| f.iter()).find(|(name, _)| *name == op).map(|(_, f)| *f)
}

/// Every MXNet op name ferry canonicalizes.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        nn::OPS,
        elementwise::OPS,
        shape::OPS,
        index::OPS,
        rnn::OPS,
        detection::OPS,
        regions::OPS,
        multibox::OPS,
        proposal::OPS,
    ]
    .iter()
    .flat_map(|f| f.iter().map(|(n, _)| *n))
    .collect();
    v.sort();
    v
}

/// Names of an op's outputs as `list_outputs` spells them (after `<node>_`).
fn output_name(op: &str, idx: usize, multi: bool) -> String {
    match op {
        "RNN" => {
            ["output", "state_output", "statecell_output"].get(idx).map_or(format!("output{idx}"), |s| s.to_string())
        }
        "_contrib_Proposal" | "_contrib_MultiProposal" => {
            ["output", "score"].get(idx).map_or(format!("output{idx}"), |s| s.to_string())
        }
        _ if multi => format!("output{idx}"),
        _ if idx == 0 => "output".into(),
        _ => format!("output{idx}"),
    }
}

/// Ops whose visible outputs are numbered (`output0`, `output1`, ...).
fn numbered_outputs(op: &str, attrs: &[(String, String)]) -> bool {
    let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    match op {
        "SliceChannel" | "split" | "_split_v2" | "_split_v2_backward" | "_contrib_box_nms" | "box_nms" => true,
        "topk" => matches!(get("ret_typ"), Some("value" | "both")),
        "sort" => true,
        _ => false,
    }
}

/// Parses an MXNet shape attribute like "(64, 0, 7, 7)"; 0 is unknown in legacy semantics.
fn var_shape(s: &str) -> Option<Shape> {
    let dims = ctx::parse_tuple(s)?;
    Some(Shape(
        dims.into_iter()
            .map(|d| match d {
                Some(d) if d > 0 => Dim::Known(d as u64),
                _ => Dim::Unknown,
            })
            .collect(),
    ))
}

/// The most outputs one node may have read (SliceChannel's `num_outputs` is the widest use).
const MAX_NODE_OUTPUTS: usize = 1 << 16;

/// Imports a symbol with its parameters. `params` maps variable names (prefix removed) to
/// tensors; `input_shapes` binds graph inputs (data) to shapes.
pub fn import_symbol(
    sym: &Symbol,
    params: &HashMap<String, Tensor>,
    input_shapes: &HashMap<String, Vec<u64>>,
) -> Result<Model> {
    import_symbol_typed(sym, params, input_shapes, &HashMap::new())
}

/// [`import_symbol`] with element types for graph inputs (default: the variable's `__dtype__`,
/// else float32).
pub fn import_symbol_typed(
    sym: &Symbol,
    params: &HashMap<String, Tensor>,
    input_shapes: &HashMap<String, Vec<u64>>,
    input_types: &HashMap<String, DType>,
) -> Result<Model> {
    let mut graph = Graph { name: "mxnet".into(), ..Default::default() };
    let mut used_names: HashSet<String> = HashSet::new();
    let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
    // Which outputs of each node are read.
    let mut read: Vec<BTreeMap<usize, ()>> = vec![BTreeMap::new(); sym.nodes.len()];
    for n in &sym.nodes {
        for e in &n.inputs {
            read[e.node].insert(e.index, ());
        }
    }
    for e in &sym.heads {
        read[e.node].insert(e.index, ());
    }
    let mut values: HashMap<(usize, usize), ValueId> = HashMap::new();
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    for (nid, n) in sym.nodes.iter().enumerate() {
        let attrs = n.effective_attrs();
        if n.op == "null" {
            if used_names.contains(&n.name) {
                return Err(MxnetError::invalid(format!("two variables are named '{}'", n.name)));
            }
            used_names.insert(n.name.clone());
            if let Some(t) = params.get(&n.name) {
                let id = graph.add_value(&n.name, ValueType::tensor(t.dtype, Shape::known(&t.shape)));
                consts.insert(id, t.clone());
                graph.initializers.push((id, t.clone()));
                values.insert((nid, 0), id);
            } else {
                let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
                let dtype = match input_types.get(&n.name) {
                    Some(t) => *t,
                    None => match get("__dtype__").and_then(|f| f.parse::<i32>().ok()) {
                        Some(f) => crate::params::dtype_from_flag(f).ok_or_else(|| {
                            MxnetError::invalid(format!("variable '{}' has unknown dtype {f}", n.name))
                        })?,
                        None => DType::F32,
                    },
                };
                let shape = match input_shapes.get(&n.name) {
                    Some(s) => Some(Shape::known(s)),
                    None => get("__shape__").and_then(var_shape),
                };
                let id = graph.add_value(&n.name, ValueType::Tensor { dtype: Some(dtype), shape });
                graph.inputs.push(id);
                values.insert((nid, 0), id);
            }
            continue;
        }
        let multi = numbered_outputs(&n.op, &attrs);
        let n_out = read[nid].keys().next_back().map_or(1, |m| m.saturating_add(1));
        if n_out > MAX_NODE_OUTPUTS {
            return Err(MxnetError::invalid(format!(
                "node '{}' is read at output {}; ferry reads at most {MAX_NODE_OUTPUTS} outputs of one node",
                n.name,
                n_out - 1
            )));
        }
        let mut outputs = Vec::with_capacity(n_out);
        for idx in 0..n_out {
            if read[nid].contains_key(&idx) {
                let mut name = format!("{}_{}", n.name, output_name(&n.op, idx, multi));
                let mut k = 1;
                while used_names.contains(&name) {
                    name = format!("{}_{}_{k}", n.name, output_name(&n.op, idx, multi));
                    k += 1;
                }
                used_names.insert(name.clone());
                let id = graph.add_value(name, ValueType::Unknown);
                values.insert((nid, idx), id);
                outputs.push(Some(id));
            } else {
                outputs.push(None);
            }
        }
        let mut inputs = Vec::with_capacity(n.inputs.len());
        for e in &n.inputs {
            let v = values.get(&(e.node, e.index)).copied().ok_or_else(|| {
                MxnetError::invalid(format!(
                    "node '{}' reads output {} of node {}, which it does not have",
                    n.name, e.index, e.node
                ))
            })?;
            inputs.push(v);
        }
        let Some(canon) = canonicalizer(&n.op) else {
            *unknown.entry(n.op.clone()).or_default() += 1;
            continue;
        };
        if !unknown.is_empty() {
            // Keep collecting unknown ops; nothing after the first one can be trusted.
            continue;
        }
        let mut c = NodeCtx {
            op_type: &n.op,
            node_name: n.name.clone(),
            inputs,
            outputs,
            attrs: &attrs,
            graph: &mut graph,
            used_names: &mut used_names,
            consts: &mut consts,
            emitted: 0,
        };
        canon(&mut c)?;
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|(op, n)| format!("{op} ({n})")).collect();
        return Err(MxnetError::invalid(format!(
            "the graph uses {} MXNet op(s) ferry cannot convert yet: {}",
            unknown.len(),
            list.join(", ")
        )));
    }
    for e in &sym.heads {
        let v = values.get(&(e.node, e.index)).copied().ok_or_else(|| {
            MxnetError::invalid(format!("graph output {} of node {} does not exist", e.index, e.node))
        })?;
        graph.outputs.push(v);
    }
    let meta = ModelMeta {
        producer_name: "mxnet".into(),
        source_format: "mxnet".into(),
        source_versions: vec![("mxnet_version".into(), sym.mxnet_version())],
        ..Default::default()
    };
    Ok(Model { graph, meta })
}
