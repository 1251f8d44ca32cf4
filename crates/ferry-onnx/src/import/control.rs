//! Control flow (If, Loop, Scan, SequenceMap), sequences, optionals and random sources.
//!
//! Bodies are imported (and their ops canonicalized) before the node that owns them; a
//! canonicalizer takes each body out of the node with `take_graph` and moves it into the core op.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use bytes::Bytes;
use ferry_ir::ops::{AttrValue, Scan};
use ferry_ir::{DType, Graph, Node, Op, Shape, Tensor, ValueId, ValueType};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("If", if_),
    ("Loop", loop_),
    ("Scan", scan),
    ("SequenceMap", sequence_map),
    ("SequenceConstruct", |c| all_io(c, Op::SequenceConstruct)),
    ("SequenceEmpty", sequence_empty),
    ("SequenceAt", |c| all_io(c, Op::SequenceAt)),
    ("SequenceInsert", |c| all_io(c, Op::SequenceInsert)),
    ("SequenceErase", |c| all_io(c, Op::SequenceErase)),
    ("SequenceLength", |c| all_io(c, Op::SequenceLength)),
    ("SplitToSequence", split_to_sequence),
    ("ConcatFromSequence", concat_from_sequence),
    ("Optional", optional),
    ("OptionalHasElement", |c| all_io(c, Op::OptionalHasElement)),
    ("OptionalGetElement", |c| all_io(c, Op::OptionalGetElement)),
    ("RandomNormal", |c| random(c, true, false)),
    ("RandomUniform", |c| random(c, false, false)),
    ("RandomNormalLike", |c| random(c, true, true)),
    ("RandomUniformLike", |c| random(c, false, true)),
];

/// One core node with the source node's inputs and outputs as they are.
fn all_io(c: &mut NodeCtx, op: Op) -> Result<Canon> {
    let (inputs, outputs) = (c.inputs.clone(), c.outputs.clone());
    c.emit(op, inputs, outputs);
    Ok(Canon::Done)
}

fn if_(c: &mut NodeCtx) -> Result<Canon> {
    c.required_input(0)?;
    let then_branch = Box::new(take_body(c, "then_branch")?);
    let else_branch = Box::new(take_body(c, "else_branch")?);
    if then_branch.outputs.len() != c.outputs.len() || else_branch.outputs.len() != c.outputs.len() {
        return Err(c.error(format!(
            "the branches have {} and {} outputs but the node has {}",
            then_branch.outputs.len(),
            else_branch.outputs.len(),
            c.outputs.len()
        )));
    }
    all_io(c, Op::If { then_branch, else_branch })
}

fn loop_(c: &mut NodeCtx) -> Result<Canon> {
    let body = Box::new(take_body(c, "body")?);
    let carried = c.inputs.len().saturating_sub(2);
    if body.inputs.len() != carried + 2 || body.outputs.len() < carried + 1 {
        return Err(c.error(format!(
            "the body has {} inputs and {} outputs for {carried} loop-carried values",
            body.inputs.len(),
            body.outputs.len()
        )));
    }
    all_io(c, Op::Loop { body })
}

fn scan(c: &mut NodeCtx) -> Result<Canon> {
    if c.version < 9 {
        return scan8(c);
    }
    let m = c.attr_i("num_scan_inputs", -1)?;
    if m < 1 || m as usize > c.inputs.len() {
        return Err(c.error(format!("num_scan_inputs {m} does not fit {} inputs", c.inputs.len())));
    }
    let m = m as usize;
    let n = c.inputs.len() - m;
    if c.outputs.len() < n {
        return Err(c.error(format!("{} outputs for {n} state variables", c.outputs.len())));
    }
    let k = c.outputs.len() - n;
    let ints = |c: &NodeCtx, name: &str, len: usize| -> Result<Vec<i64>> {
        let v = c.attr_ints(name)?.unwrap_or_else(|| vec![0; len]);
        if v.len() != len {
            return Err(c.error(format!("attribute '{name}' has {} entries, expected {len}", v.len())));
        }
        Ok(v)
    };
    let scan_input_axes = ints(c, "scan_input_axes", m)?;
    let scan_input_reverse = ints(c, "scan_input_directions", m)?.iter().map(|d| *d != 0).collect();
    let scan_output_axes = ints(c, "scan_output_axes", k)?;
    let scan_output_reverse = ints(c, "scan_output_directions", k)?.iter().map(|d| *d != 0).collect();
    let body = Box::new(take_body(c, "body")?);
    if body.inputs.len() != n + m || body.outputs.len() != n + k {
        return Err(c.error(format!(
            "the body has {} inputs and {} outputs; the node needs {} and {}",
            body.inputs.len(),
            body.outputs.len(),
            n + m,
            n + k
        )));
    }
    let op = Op::Scan(Scan {
        body,
        num_scan_inputs: m as u64,
        scan_input_axes,
        scan_input_reverse,
        scan_output_axes,
        scan_output_reverse,
    });
    all_io(c, op)
}

/// Takes a body out of the node. Bodies are imported before the nodes around them, so the outer
/// values they read had no types yet: give the captures the types known now and infer again.
fn take_body(c: &mut NodeCtx, name: &str) -> Result<Graph> {
    let mut body = c.take_graph(name)?;
    let outer = c.graph.value_by_name();
    let mut changed = false;
    for cap in body.captures.clone() {
        if let Some(v) = outer.get(body.values[cap].name.as_str()) {
            let ty = &c.graph.values[*v].ty;
            if body.values[cap].ty.is_unknown() && !ty.is_unknown() {
                body.values[cap].ty = ty.clone();
                changed = true;
            }
        }
    }
    if changed {
        ferry_ir::infer::infer_graph(&mut body);
    }
    Ok(body)
}

/// A name no value of the model uses yet (for values of bodies built here).
fn fresh_name(c: &mut NodeCtx, hint: &str) -> String {
    let base = format!("{}/{hint}", if c.node_name.is_empty() { c.op_type } else { &c.node_name });
    let mut name = base.clone();
    let mut k = 1;
    while c.used_names.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    c.used_names.insert(name.clone());
    name
}

/// `ty` without its first dimension (one batch element).
fn drop_leading(ty: &ValueType) -> ValueType {
    match ty {
        ValueType::Tensor { dtype, shape } => ValueType::Tensor {
            dtype: *dtype,
            shape: shape.as_ref().filter(|s| s.rank() > 0).map(|s| Shape(s.0[1..].to_vec())),
        },
        _ => ValueType::Unknown,
    }
}

/// Scan-8 scans axis 1 of batched ([batch, sequence, ...]) inputs. Without `sequence_lens` that
/// is a Scan over the batch axis whose body is a Scan-9 over each batch element's sequence.
fn scan8(c: &mut NodeCtx) -> Result<Canon> {
    if c.input(0).is_some() {
        return Ok(Canon::KeepOpaque("Scan-8 with sequence_lens has no canonical form".into()));
    }
    let m = c.attr_i("num_scan_inputs", -1)?;
    let total = c.inputs.len().saturating_sub(1);
    if m < 1 || m as usize > total {
        return Err(c.error(format!("num_scan_inputs {m} does not fit {total} inputs")));
    }
    let m = m as usize;
    let n = total - m;
    if c.outputs.len() < n {
        return Err(c.error(format!("{} outputs for {n} state variables", c.outputs.len())));
    }
    let k = c.outputs.len() - n;
    let directions = c.attr_ints("directions")?.unwrap_or_else(|| vec![0; m]);
    if directions.len() != m {
        return Err(c.error(format!("attribute 'directions' has {} entries, expected {m}", directions.len())));
    }
    let body = take_body(c, "body")?;
    if body.inputs.len() != n + m || body.outputs.len() != n + k {
        return Err(c.error(format!(
            "the body has {} inputs and {} outputs; the node needs {} and {}",
            body.inputs.len(),
            body.outputs.len(),
            n + m,
            n + k
        )));
    }
    let outer_inputs: Vec<Option<ValueId>> = c.inputs[1..].to_vec();
    if outer_inputs.iter().any(Option::is_none) {
        return Err(c.error("state and scan inputs are required"));
    }
    // The per-batch-element graph: its inputs are one batch element of each outer input.
    let mut per_batch = Graph { name: format!("{}_batch_element", body.name), ..Default::default() };
    for (i, v) in outer_inputs.iter().enumerate() {
        let ty = drop_leading(c.value_type(v.expect("checked")));
        let name = fresh_name(c, &format!("batch_in{i}"));
        let id = per_batch.add_value(name, ty);
        per_batch.inputs.push(id);
    }
    let mut outs = Vec::with_capacity(n + k);
    for i in 0..n + k {
        let name = fresh_name(c, &format!("batch_out{i}"));
        outs.push(per_batch.add_value(name, ValueType::Unknown));
    }
    let inner = Node {
        name: fresh_name(c, "sequence_scan"),
        op: Op::Scan(Scan {
            body: Box::new(body),
            num_scan_inputs: m as u64,
            scan_input_axes: vec![0; m],
            scan_input_reverse: directions.iter().map(|d| *d != 0).collect(),
            scan_output_axes: vec![0; k],
            scan_output_reverse: vec![false; k],
        }),
        inputs: per_batch.inputs.iter().map(|i| Some(*i)).collect(),
        outputs: outs.iter().map(|o| Some(*o)).collect(),
        doc_string: String::new(),
    };
    let in_types: Vec<ValueType> = per_batch.inputs.iter().map(|i| per_batch.values[*i].ty.clone()).collect();
    if let Ok(types) = ferry_ir::infer::infer_node(&inner, &in_types, &vec![None; in_types.len()]) {
        for (o, t) in outs.iter().zip(types) {
            per_batch.values[*o].ty = t;
        }
    }
    per_batch.nodes.push(inner);
    per_batch.outputs = outs;
    let op = Op::Scan(Scan {
        body: Box::new(per_batch),
        num_scan_inputs: (n + m) as u64,
        scan_input_axes: vec![0; n + m],
        scan_input_reverse: vec![false; n + m],
        scan_output_axes: vec![0; n + k],
        scan_output_reverse: vec![false; n + k],
    });
    let outputs = c.outputs.clone();
    c.emit(op, outer_inputs, outputs);
    Ok(Canon::Done)
}

/// SequenceMap is a Loop over the first sequence's positions (its ONNX function body): each
/// iteration reads element `i` of every sequence input (tensor inputs are passed whole), runs the
/// body and appends each body output to an output sequence.
fn sequence_map(c: &mut NodeCtx) -> Result<Canon> {
    let seq0 = c.required_input(0)?;
    let mut is_seq = Vec::with_capacity(c.inputs.len());
    for (i, v) in c.inputs.iter().enumerate() {
        let Some(v) = v else {
            return Err(c.error(format!("input {i} is absent")));
        };
        match c.value_type(*v) {
            ValueType::Sequence(_) => is_seq.push(true),
            ValueType::Tensor { .. } if i > 0 => is_seq.push(false),
            _ => return Ok(Canon::KeepOpaque(format!("the type of input {i} is not known"))),
        }
    }
    let Some(AttrValue::Graph(body)) = c.attr("body") else {
        return Err(c.error("attribute 'body' is required and must be a graph"));
    };
    if body.inputs.len() != c.inputs.len() || body.outputs.len() != c.outputs.len() {
        return Err(c.error(format!(
            "the body has {} inputs and {} outputs; the node has {} and {}",
            body.inputs.len(),
            body.outputs.len(),
            c.inputs.len(),
            c.outputs.len()
        )));
    }
    let mut out_dtypes = Vec::new();
    for (k, o) in body.outputs.iter().enumerate() {
        match body.values[*o].ty.dtype() {
            Some(d) => out_dtypes.push(d),
            None => return Ok(Canon::KeepOpaque(format!("the element type of body output {k} is not known"))),
        }
    }
    let mut body = take_body(c, "body")?;
    let bool_scalar = ValueType::tensor(DType::Bool, Shape::scalar());
    let seq_of = |d: DType| ValueType::Sequence(Box::new(ValueType::Tensor { dtype: Some(d), shape: None }));

    let iter_name = fresh_name(c, "iter");
    let iter = body.add_value(iter_name, ValueType::tensor(DType::I64, Shape::scalar()));
    let cond_in_name = fresh_name(c, "cond_in");
    let cond_in = body.add_value(cond_in_name, bool_scalar.clone());
    let cond_out_name = fresh_name(c, "cond_out");
    let cond_out = body.add_value(cond_out_name, bool_scalar.clone());
    let mut acc_in = Vec::new();
    let mut acc_out = Vec::new();
    for (k, d) in out_dtypes.iter().enumerate() {
        let name = fresh_name(c, &format!("acc{k}_in"));
        acc_in.push(body.add_value(name, seq_of(*d)));
        let name = fresh_name(c, &format!("acc{k}_out"));
        acc_out.push(body.add_value(name, seq_of(*d)));
    }
    let mut prefix = vec![Node {
        name: String::new(),
        op: Op::Identity,
        inputs: vec![Some(cond_in)],
        outputs: vec![Some(cond_out)],
        doc_string: String::new(),
    }];
    for (j, outer) in c.inputs.clone().iter().enumerate() {
        let outer = outer.expect("checked above");
        let name = c.graph.values[outer].name.clone();
        let cap = match body.captures.iter().find(|v| body.values[**v].name == name) {
            Some(v) => *v,
            None => {
                let ty = c.graph.values[outer].ty.clone();
                let v = body.add_value(name, ty);
                body.captures.push(v);
                v
            }
        };
        let (op, inputs) =
            if is_seq[j] { (Op::SequenceAt, vec![Some(cap), Some(iter)]) } else { (Op::Identity, vec![Some(cap)]) };
        prefix.push(Node {
            name: String::new(),
            op,
            inputs,
            outputs: vec![Some(body.inputs[j])],
            doc_string: String::new(),
        });
    }
    let suffix: Vec<Node> = body
        .outputs
        .iter()
        .enumerate()
        .map(|(k, y)| Node {
            name: String::new(),
            op: Op::SequenceInsert,
            inputs: vec![Some(acc_in[k]), Some(*y)],
            outputs: vec![Some(acc_out[k])],
            doc_string: String::new(),
        })
        .collect();
    let old_nodes = std::mem::take(&mut body.nodes);
    body.nodes = prefix.into_iter().chain(old_nodes).chain(suffix).collect();
    body.inputs = [iter, cond_in].into_iter().chain(acc_in).collect();
    body.outputs = std::iter::once(cond_out).chain(acc_out).collect();

    let len = c.emit_temp(Op::SequenceLength, vec![Some(seq0)], "length");
    let t = Tensor::from_raw(DType::Bool, vec![], Bytes::from_static(&[1])).expect("bool scalar");
    let cond = c.constant(t, "cond");
    let mut loop_inputs = vec![Some(len), Some(cond)];
    for d in out_dtypes {
        loop_inputs.push(Some(c.emit_temp(Op::SequenceEmpty { dtype: d }, vec![], "empty")));
    }
    let outputs = c.outputs.clone();
    c.emit(Op::Loop { body: Box::new(body) }, loop_inputs, outputs);
    Ok(Canon::Done)
}

fn sequence_empty(c: &mut NodeCtx) -> Result<Canon> {
    let dtype = c.attr_dtype("dtype")?.unwrap_or(DType::F32);
    c.emit_to_output(Op::SequenceEmpty { dtype }, vec![], 0);
    Ok(Canon::Done)
}

fn split_to_sequence(c: &mut NodeCtx) -> Result<Canon> {
    c.required_input(0)?;
    let axis = c.attr_i("axis", 0)?;
    let keepdims = c.attr_i("keepdims", 1)? != 0;
    all_io(c, Op::SplitToSequence { axis, keepdims })
}

fn concat_from_sequence(c: &mut NodeCtx) -> Result<Canon> {
    c.required_input(0)?;
    let axis = c.attr_i_opt("axis")?.ok_or_else(|| c.error("attribute 'axis' is required"))?;
    let new_axis = c.attr_i("new_axis", 0)? != 0;
    all_io(c, Op::ConcatFromSequence { axis, new_axis })
}

fn optional(c: &mut NodeCtx) -> Result<Canon> {
    let ty = match c.attr("type") {
        None => None,
        Some(AttrValue::Type(t)) => Some(t.clone()),
        Some(_) => return Err(c.error("attribute 'type' must be a type")),
    };
    if ty.is_none() && c.input(0).is_none() {
        return Err(c.error("an empty optional needs the 'type' attribute"));
    }
    all_io(c, Op::OptionalConstruct { ty })
}

/// RandomNormal/RandomUniform (shape from the attribute) and their *Like forms (shape, and by
/// default the element type, from the input): one core op each, `shape: None` for the *Like form.
fn random(c: &mut NodeCtx, normal: bool, like: bool) -> Result<Canon> {
    let (shape, dtype) = if like {
        c.required_input(0)?;
        let dtype = match c.attr_dtype("dtype")?.or_else(|| c.input_dtype(0)) {
            Some(d) => d,
            None => return Ok(Canon::KeepOpaque("the input's element type is not known".into())),
        };
        (None, dtype)
    } else {
        let shape = c.attr_sizes("shape")?.ok_or_else(|| c.error("attribute 'shape' is required"))?;
        (Some(shape), c.attr_dtype("dtype")?.unwrap_or(DType::F32))
    };
    let seed = c.attr_f_opt("seed")?;
    let op = if normal {
        Op::RandomNormal { shape, dtype, mean: c.attr_f("mean", 0.0)?, scale: c.attr_f("scale", 1.0)?, seed }
    } else {
        Op::RandomUniform { shape, dtype, low: c.attr_f("low", 0.0)?, high: c.attr_f("high", 1.0)?, seed }
    };
    let inputs = if like { vec![c.input(0)] } else { vec![] };
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}
