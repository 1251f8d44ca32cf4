//! The executor: runs nodes in order, frees values after their last use, and runs control-flow
//! bodies with access to the enclosing graphs' values.

use crate::kernels;
use crate::{RunError, Value};
use ferry_ir::{Graph, Model, Op};

/// A model ready to run: checked once, run many times (from many threads at once).
#[derive(Debug)]
pub struct Prepared {
    graph: Graph,
}

impl Prepared {
    pub fn new(model: &Model) -> Result<Prepared, RunError> {
        Ok(Prepared { graph: model.graph.clone() })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Graph inputs the caller must (or may) give: those without an initializer come first.
    pub fn input_names(&self) -> Vec<&str> {
        let g = &self.graph;
        g.inputs.iter().filter(|i| g.initializer(**i).is_none()).map(|i| g.values[*i].name.as_str()).collect()
    }

    /// Runs the model on named inputs; returns the graph outputs in order.
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, RunError> {
        let g = &self.graph;
        let mut given: Vec<Option<Value>> = vec![None; g.inputs.len()];
        for (name, v) in inputs {
            let k = g.inputs.iter().position(|i| g.values[*i].name == name).ok_or_else(|| {
                RunError::Input(format!(
                    "the model has no input named '{name}' (inputs: {})",
                    self.input_names().join(", ")
                ))
            })?;
            given[k] = Some(v);
        }
        for (k, v) in given.iter_mut().enumerate() {
            if v.is_none() {
                let id = g.inputs[k];
                match g.initializer(id) {
                    Some(t) => *v = Some(Value::Tensor(t.clone())),
                    None => {
                        return Err(RunError::Input(format!(
                            "input '{}' ({}) is missing",
                            g.values[id].name, g.values[id].ty
                        )));
                    }
                }
            }
        }
        run_graph(g, given, None)
    }
}

/// The values of one running graph, and the graph around it (for captured names).
pub(crate) struct Frame<'a> {
    graph: &'a Graph,
    values: Vec<Option<Value>>,
    parent: Option<&'a Frame<'a>>,
}

impl Frame<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        let here = self.graph.values.iter().position(|v| v.name == name).and_then(|id| self.values[id].clone());
        here.or_else(|| self.parent.and_then(|p| p.lookup(name)))
    }
}

/// Runs `g` with its inputs given in order; `parent` supplies captured values.
pub(crate) fn run_graph(g: &Graph, inputs: Vec<Option<Value>>, parent: Option<&Frame>) -> Result<Vec<Value>, RunError> {
    let mut frame = Frame { graph: g, values: vec![None; g.values.len()], parent };
    for (id, t) in &g.initializers {
        frame.values[*id] = Some(Value::Tensor(t.clone()));
    }
    for (k, v) in inputs.into_iter().enumerate() {
        if let (Some(id), Some(v)) = (g.inputs.get(k), v) {
            frame.values[*id] = Some(v);
        }
    }
    for cap in &g.captures {
        let name = &g.values[*cap].name;
        let v = parent.and_then(|p| p.lookup(name));
        frame.values[*cap] =
            Some(v.ok_or_else(|| RunError::Input(format!("captured value '{name}' is not available")))?);
    }
    let last_use = last_uses(g);
    for (n, node) in g.nodes.iter().enumerate() {
        let args: Vec<Option<Value>> = node.inputs.iter().map(|i| i.and_then(|i| frame.values[i].clone())).collect();
        let err = |message: String| RunError::Node { node: node.name.clone(), op: node.op.name(), message };
        let outs = match &node.op {
            Op::If { then_branch, else_branch } => {
                let cond = kernels::scalar_bool(args.first().and_then(|a| a.as_ref())).map_err(err)?;
                run_graph(if cond { then_branch } else { else_branch }, vec![], Some(&frame))?
                    .into_iter()
                    .map(Some)
                    .collect()
            }
            Op::Loop { body } => run_loop(body, args, node.outputs.len(), &frame).map_err(|e| match e {
                LoopError::Message(m) => err(m),
                LoopError::Run(r) => r,
            })?,
            op => kernels::run(op, &args, node.outputs.len()).map_err(err)?,
        };
        for (slot, v) in node.outputs.iter().zip(outs) {
            if let Some(id) = slot {
                frame.values[*id] = v;
            }
        }
        for i in node.inputs.iter().flatten() {
            if last_use[*i] == Some(n) && !g.outputs.contains(i) {
                frame.values[*i] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|o| {
            frame.values[*o]
                .clone()
                .ok_or_else(|| RunError::Input(format!("output '{}' was not computed", g.values[*o].name)))
        })
        .collect()
}

/// For each value, the last node reading it (so it can be freed after).
fn last_uses(g: &Graph) -> Vec<Option<usize>> {
    let mut last = vec![None; g.values.len()];
    for (n, node) in g.nodes.iter().enumerate() {
        for i in node.inputs.iter().flatten() {
            last[*i] = Some(n);
        }
        // A body may read any outer value by name: keep everything alive past control flow.
        if !node.op.subgraphs().is_empty() {
            for (v, l) in last.iter_mut().enumerate() {
                let _ = v;
                *l = Some(l.map_or(n, |x| x.max(n)));
            }
        }
    }
    last
}

enum LoopError {
    Message(String),
    Run(RunError),
}

/// ONNX Loop: inputs (M?, cond?, carried...), body (iter, cond, carried...) -> (cond, carried...,
/// scan outputs...); node outputs are the final carried values, then each scan output stacked.
fn run_loop(
    body: &Graph,
    args: Vec<Option<Value>>,
    n_out: usize,
    frame: &Frame,
) -> Result<Vec<Option<Value>>, LoopError> {
    let max_trip = match args.first().and_then(|a| a.as_ref()) {
        Some(v) => Some(kernels::scalar_i64(Some(v)).map_err(LoopError::Message)?),
        None => None,
    };
    let mut cond = match args.get(1).and_then(|a| a.as_ref()) {
        Some(v) => kernels::scalar_bool(Some(v)).map_err(LoopError::Message)?,
        None => true,
    };
    let mut carried: Vec<Option<Value>> = args.into_iter().skip(2).collect();
    let n_carried = carried.len();
    let n_scan = n_out.saturating_sub(n_carried);
    let mut scans: Vec<Vec<Value>> = vec![Vec::new(); n_scan];
    let mut i: i64 = 0;
    while cond && max_trip.is_none_or(|m| i < m) {
        let mut inputs = vec![Some(Value::Tensor(ferry_ir::Tensor::scalar_i64(i))), Some(kernels::bool_value(cond))];
        inputs.extend(carried.iter().cloned());
        let outs = run_graph(body, inputs, Some(frame)).map_err(LoopError::Run)?;
        let mut it = outs.into_iter();
        cond = kernels::scalar_bool(it.next().as_ref()).map_err(LoopError::Message)?;
        for c in carried.iter_mut() {
            *c = it.next();
        }
        for s in scans.iter_mut() {
            s.push(it.next().ok_or_else(|| LoopError::Message("loop body returned too few outputs".into()))?);
        }
        i += 1;
    }
    let mut outs = carried;
    for s in scans {
        outs.push(Some(kernels::stack(&s).map_err(LoopError::Message)?));
    }
    Ok(outs)
}
