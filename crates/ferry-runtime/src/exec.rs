//! The executor: runs nodes in order, frees values after their last use, and runs control-flow
//! bodies with access to the enclosing graphs' values.

use crate::array::Array;
use crate::kernels::{self, indexing};
use crate::{RunError, Value, map_array};
use ferry_ir::ops::Scan;
use ferry_ir::{Graph, Model, Op, ValueType};

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
    // Bytes of the node outputs alive now (inputs and weights are the caller's), for the run ceiling.
    let mut live_bytes = 0u64;
    let mut produced = vec![false; g.values.len()];
    for id in g.nodes.iter().flat_map(|n| n.outputs.iter().flatten()) {
        produced[*id] = true;
    }
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
            Op::Scan(scan) => run_scan(scan, args, node.outputs.len(), &frame).map_err(|e| match e {
                LoopError::Message(m) => err(m),
                LoopError::Run(r) => r,
            })?,
            op => {
                crate::limits::check_node_outputs(node, &args).map_err(err)?;
                kernels::run(op, &args, node.outputs.len()).map_err(err)?
            }
        };
        for (slot, v) in node.outputs.iter().zip(outs) {
            if let Some(id) = slot {
                live_bytes += v.as_ref().map_or(0, value_bytes);
                frame.values[*id] = v;
            }
        }
        crate::limits::check_plan(live_bytes, "this run").map_err(err)?;
        for i in node.inputs.iter().flatten() {
            if last_use[*i] == Some(n) && !g.outputs.contains(i) {
                if produced[*i] {
                    live_bytes -= frame.values[*i].as_ref().map_or(0, value_bytes);
                }
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

/// Bytes a value holds (a sequence: its items').
fn value_bytes(v: &Value) -> u64 {
    match v {
        Value::Tensor(t) => t.byte_len(),
        Value::Sequence(items) => items.iter().map(value_bytes).sum(),
        Value::Optional(inner) => inner.as_deref().map_or(0, value_bytes),
    }
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
    for (k, s) in scans.into_iter().enumerate() {
        let stacked = if s.is_empty() {
            let ty = body.outputs.get(1 + n_carried + k).map(|o| &body.values[*o].ty);
            empty_stack(ty, 0)
        } else {
            kernels::stack(&s)
        };
        outs.push(Some(stacked.map_err(LoopError::Message)?));
    }
    Ok(outs)
}

/// The stack of zero per-iteration values of type `ty` along `axis`: possible only when the
/// body's output type gives the element's dtype and full shape.
fn empty_stack(ty: Option<&ValueType>, axis: i64) -> Result<Value, String> {
    let element = match ty {
        Some(ValueType::Tensor { dtype: Some(d), shape: Some(s) }) => s.to_known().map(|dims| (*d, dims)),
        _ => None,
    };
    let Some((dtype, dims)) = element else {
        return Err(format!(
            "zero iterations, and the body's scan output type ({}) does not give the element shape, so the \
             empty result's shape is unknown",
            ty.map_or("missing".to_string(), |t| t.to_string())
        ));
    };
    let mut shape: Vec<usize> = dims.iter().map(|d| *d as usize).collect();
    shape.insert(indexing::norm_axis(axis, shape.len() + 1)?, 0);
    Ok(kernels::tensor_value(indexing::take(&indexing::zero(dtype)?, &[], &shape, None)?))
}

/// ONNX Scan (9+): inputs (states..., scan_inputs...), body (states..., scan slices...) ->
/// (states..., scan output slices...); node outputs are the final states, then each scan output
/// stacked along its axis (in reverse iteration order when its direction is reversed).
fn run_scan(s: &Scan, args: Vec<Option<Value>>, n_out: usize, frame: &Frame) -> Result<Vec<Option<Value>>, LoopError> {
    let msg = LoopError::Message;
    let m = s.num_scan_inputs as usize;
    let n = args.len().checked_sub(m).ok_or_else(|| msg(format!("Scan has fewer inputs than its {m} scan inputs")))?;
    let n_scan_out = n_out.checked_sub(n).ok_or_else(|| msg("Scan has fewer outputs than states".into()))?;
    let mut states: Vec<Option<Value>> = args[..n].to_vec();
    let mut inputs: Vec<(Array, usize, bool)> = Vec::with_capacity(m);
    for j in 0..m {
        let a = kernels::array(&args, n + j).map_err(msg)?;
        let ax = indexing::norm_axis(s.scan_input_axes.get(j).copied().unwrap_or(0), a.shape().len()).map_err(msg)?;
        inputs.push((a, ax, s.scan_input_reverse.get(j).copied().unwrap_or(false)));
    }
    let iterations = inputs.first().map_or(0, |(a, ax, _)| a.shape()[*ax]);
    if let Some((a, ax, _)) = inputs.iter().find(|(a, ax, _)| a.shape()[*ax] != iterations) {
        return Err(msg(format!("scan inputs differ in length: {iterations} and {} (axis {ax})", a.shape()[*ax])));
    }
    let mut scans: Vec<Vec<Value>> = vec![Vec::new(); n_scan_out];
    for t in 0..iterations {
        let mut body_inputs = states.clone();
        for (a, ax, rev) in &inputs {
            let i = if *rev { iterations - 1 - t } else { t };
            let slice = map_array!(a.clone(), x => x.index_axis(ndarray::Axis(*ax), i).to_owned());
            body_inputs.push(Some(kernels::tensor_value(slice)));
        }
        let outs = run_graph(&s.body, body_inputs, Some(frame)).map_err(LoopError::Run)?;
        if outs.len() != n + n_scan_out {
            return Err(msg(format!("Scan body returned {} outputs, expected {}", outs.len(), n + n_scan_out)));
        }
        let mut it = outs.into_iter();
        for st in states.iter_mut() {
            *st = it.next();
        }
        for (sc, v) in scans.iter_mut().zip(it) {
            sc.push(v);
        }
    }
    let mut outs = states;
    for (k, mut parts) in scans.into_iter().enumerate() {
        let axis = s.scan_output_axes.get(k).copied().unwrap_or(0);
        if s.scan_output_reverse.get(k).copied().unwrap_or(false) {
            parts.reverse();
        }
        let stacked = if parts.is_empty() {
            empty_stack(s.body.outputs.get(n + k).map(|o| &s.body.values[*o].ty), axis)
        } else {
            parts
                .iter()
                .map(|p| {
                    p.tensor().ok_or_else(|| "scan outputs must be tensors".to_string()).and_then(Array::from_tensor)
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|arrays| indexing::stack_along(&arrays, axis))
                .map(kernels::tensor_value)
        };
        outs.push(Some(stacked.map_err(msg)?));
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_ir::graph::Node;
    use ferry_ir::{DType, Shape, Tensor};

    fn f32_ty(dims: &[u64]) -> ValueType {
        ValueType::Tensor { dtype: Some(DType::F32), shape: Some(Shape::known(dims)) }
    }

    fn node(op: Op, inputs: &[usize], outputs: &[usize]) -> Node {
        Node {
            name: String::new(),
            op,
            inputs: inputs.iter().map(|i| Some(*i)).collect(),
            outputs: outputs.iter().map(|o| Some(*o)).collect(),
            doc_string: String::new(),
        }
    }

    /// body(s, x_t) -> (s + x_t, s + x_t)
    fn accumulate_body() -> Graph {
        let mut b = Graph::default();
        let (s, x) = (b.add_value("s", f32_ty(&[2])), b.add_value("x_t", f32_ty(&[2])));
        let (so, y) = (b.add_value("s_out", f32_ty(&[2])), b.add_value("y", f32_ty(&[2])));
        b.nodes.push(node(Op::Binary(ferry_ir::ops::BinaryOp::Add), &[s, x], &[so]));
        b.nodes.push(node(Op::Identity, &[so], &[y]));
        b.inputs = vec![s, x];
        b.outputs = vec![so, y];
        b
    }

    fn values(v: &Value) -> (Vec<u64>, Vec<f64>) {
        let t = v.tensor().unwrap();
        (t.shape.clone(), Array::from_tensor(t).unwrap().to_f64().unwrap().iter().copied().collect())
    }

    #[test]
    fn scan_with_reversed_axes() {
        // Scan-16 spec: the input is read along axis 1 backwards; output slices are prepended
        // (reversed) and stacked along axis 1.
        let mut g = Graph::default();
        let (s0, x) = (g.add_value("s0", f32_ty(&[2])), g.add_value("x", f32_ty(&[2, 3])));
        let (sf, ys) = (g.add_value("sf", ValueType::Unknown), g.add_value("ys", ValueType::Unknown));
        let scan = Scan {
            body: Box::new(accumulate_body()),
            num_scan_inputs: 1,
            scan_input_axes: vec![1],
            scan_input_reverse: vec![true],
            scan_output_axes: vec![1],
            scan_output_reverse: vec![true],
        };
        g.nodes.push(node(Op::Scan(scan), &[s0, x], &[sf, ys]));
        g.inputs = vec![s0, x];
        g.outputs = vec![sf, ys];
        let inputs = vec![
            Some(Value::Tensor(Tensor::from_f32(vec![2], &[0., 10.]).unwrap())),
            Some(Value::Tensor(Tensor::from_f32(vec![2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap())),
        ];
        let out = run_graph(&g, inputs, None).unwrap();
        // Slices [3, 6], [2, 5], [1, 4]: states [3, 16], [5, 21], [6, 25].
        assert_eq!(values(&out[0]), (vec![2], vec![6., 25.]));
        assert_eq!(values(&out[1]), (vec![2, 3], vec![6., 5., 3., 25., 21., 16.]));
    }

    #[test]
    fn loop_with_zero_iterations_gives_empty_scan_outputs() {
        let bool_ty = ValueType::Tensor { dtype: Some(DType::Bool), shape: Some(Shape::known(&[])) };
        let i64_ty = ValueType::Tensor { dtype: Some(DType::I64), shape: Some(Shape::known(&[])) };
        // Loop body: (iter, cond, s) -> (cond, s, s); with M = 0 it never runs.
        let mut b = Graph::default();
        let (it, c, s) = (b.add_value("i", i64_ty), b.add_value("c", bool_ty), b.add_value("s", f32_ty(&[2])));
        let (co, so) = (b.add_value("c_out", ValueType::Unknown), b.add_value("s_out", f32_ty(&[2])));
        b.nodes.push(node(Op::Identity, &[c], &[co]));
        b.nodes.push(node(Op::Identity, &[s], &[so]));
        b.inputs = vec![it, c, s];
        b.outputs = vec![co, so, s];
        let mut g = Graph::default();
        let (m, s0) = (g.add_value("m", ValueType::Unknown), g.add_value("s0", f32_ty(&[2])));
        let (sf, scan) = (g.add_value("sf", ValueType::Unknown), g.add_value("scan", ValueType::Unknown));
        g.nodes.push(Node {
            name: String::new(),
            op: Op::Loop { body: Box::new(b) },
            inputs: vec![Some(m), None, Some(s0)],
            outputs: vec![Some(sf), Some(scan)],
            doc_string: String::new(),
        });
        g.inputs = vec![m, s0];
        g.outputs = vec![sf, scan];
        let inputs = vec![
            Some(Value::Tensor(Tensor::scalar_i64(0))),
            Some(Value::Tensor(Tensor::from_f32(vec![2], &[1., 2.]).unwrap())),
        ];
        let out = run_graph(&g, inputs, None).unwrap();
        assert_eq!(values(&out[0]), (vec![2], vec![1., 2.]));
        assert_eq!(values(&out[1]), (vec![0, 2], vec![]));
    }
}
