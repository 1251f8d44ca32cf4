//! What a plan knows about each value before it runs: a constant (weights, and everything computed
//! from constants and input *shapes*, folded here with the reference kernels), a tensor of known
//! element type and shape (it gets arena storage), or nothing fixed (data-dependent shapes, strings,
//! sub-byte types: kept as a reference-runtime value).

use ferry_ir::{DType, Graph, Op, Shape, Tensor, ValueType};
use ferry_runtime::{RunError, Value};

#[derive(Clone, Debug)]
pub(crate) enum Fact {
    Const(Tensor),
    Static { dtype: DType, shape: Vec<usize> },
    Dynamic,
}

impl Fact {
    pub(crate) fn static_f32(&self) -> Option<&[usize]> {
        match self {
            Fact::Static { dtype: DType::F32, shape } => Some(shape),
            _ => None,
        }
    }

    pub(crate) fn konst(&self) -> Option<&Tensor> {
        match self {
            Fact::Const(t) => Some(t),
            _ => None,
        }
    }

    /// Element type and shape when they are fixed (constants included).
    pub(crate) fn dtype_shape(&self) -> Option<(DType, Vec<usize>)> {
        match self {
            Fact::Const(t) => Some((t.dtype, t.shape.iter().map(|d| *d as usize).collect())),
            Fact::Static { dtype, shape } => Some((*dtype, shape.clone())),
            Fact::Dynamic => None,
        }
    }
}

/// Bytes per element when elements are whole bytes (what the arena can hold).
pub(crate) fn elem_bytes(dtype: DType) -> Option<usize> {
    match dtype.bits() {
        Some(b) if b % 8 == 0 && dtype != DType::String => Some(b as usize / 8),
        _ => None,
    }
}

/// Ops that must run every time (random sources) even when all their inputs are constant.
fn never_fold(op: &Op) -> bool {
    matches!(op, Op::RandomNormal { .. } | Op::RandomUniform { .. } | Op::Opaque(_)) || !op.subgraphs().is_empty()
}

/// Computes the facts of every value of `g` for graph inputs of the given element types and shapes.
/// Folding a constant node that fails is the same error the reference runtime would report there.
pub(crate) fn analyze(g: &Graph, inputs: &[(DType, Vec<u64>)]) -> Result<Vec<Fact>, RunError> {
    let mut facts = vec![Fact::Dynamic; g.values.len()];
    for (v, t) in &g.initializers {
        if !g.inputs.contains(v) {
            facts[*v] = Fact::Const(t.clone());
        }
    }
    for (k, (dtype, shape)) in inputs.iter().enumerate() {
        let shape = shape.iter().map(|d| *d as usize).collect();
        facts[g.inputs[k]] = Fact::Static { dtype: *dtype, shape };
    }
    for node in &g.nodes {
        let ins: Vec<Option<&Fact>> = node.inputs.iter().map(|i| i.map(|i| &facts[i])).collect();
        let outs = node_facts(node, &ins)?;
        for (o, f) in node.outputs.iter().zip(outs) {
            if let Some(o) = o {
                facts[*o] = f;
            }
        }
    }
    Ok(facts)
}

fn node_facts(node: &ferry_ir::Node, ins: &[Option<&Fact>]) -> Result<Vec<Fact>, RunError> {
    let n_out = node.outputs.len();
    let err = |message: String| RunError::Node { node: node.name.clone(), op: node.op.name(), message };
    // Shape and Size of a value of known shape are constants.
    if let (Op::Shape { start, end }, Some(Some(f))) = (&node.op, ins.first()) {
        if let Some((_, shape)) = f.dtype_shape() {
            return Ok(vec![Fact::Const(shape_slice(&shape, *start, *end))]);
        }
    }
    if let (Op::Size, Some(Some(f))) = (&node.op, ins.first()) {
        if let Some((_, shape)) = f.dtype_shape() {
            return Ok(vec![Fact::Const(Tensor::scalar_i64(shape.iter().product::<usize>() as i64))]);
        }
    }
    let all_const = ins.iter().all(|f| f.is_none_or(|f| matches!(f, Fact::Const(_))));
    if all_const && !never_fold(&node.op) {
        let args: Vec<Option<Value>> =
            ins.iter().map(|f| f.and_then(|f| f.konst()).map(|t| Value::Tensor(t.clone()))).collect();
        check_sizes(node, ins).map_err(err)?;
        let outs = ferry_runtime::kernels::run(&node.op, &args, n_out).map_err(err)?;
        if outs.iter().all(|o| matches!(o, None | Some(Value::Tensor(_)))) {
            let mut facts: Vec<Fact> = outs
                .into_iter()
                .map(|o| o.and_then(|v| v.tensor().cloned()).map_or(Fact::Dynamic, Fact::Const))
                .collect();
            facts.resize(n_out, Fact::Dynamic);
            return Ok(facts);
        }
        return Ok(vec![Fact::Dynamic; n_out]);
    }
    let types: Vec<ValueType> = ins.iter().map(|f| f.map_or(ValueType::Unknown, fact_type)).collect();
    let consts: Vec<Option<&Tensor>> = ins.iter().map(|f| f.and_then(|f| f.konst())).collect();
    let Ok(inferred) = ferry_ir::infer::infer_node(node, &types, &consts) else {
        return Ok(vec![Fact::Dynamic; n_out]);
    };
    let mut facts = Vec::with_capacity(n_out);
    for (k, ty) in inferred.iter().enumerate().take(n_out) {
        let fixed = match (ty.dtype(), ty.shape().and_then(Shape::to_known)) {
            (Some(d), Some(s)) if elem_bytes(d).is_some() => Some((d, s)),
            _ => None,
        };
        match fixed {
            Some((dtype, shape)) => {
                ferry_runtime::limits::check_tensor(dtype, &shape, &format!("output {k}")).map_err(err)?;
                facts.push(Fact::Static { dtype, shape: shape.iter().map(|d| *d as usize).collect() });
            }
            None => facts.push(Fact::Dynamic),
        }
    }
    facts.resize(n_out, Fact::Dynamic);
    Ok(facts)
}

/// The reference runtime's guard against huge outputs, applied before folding a constant node.
fn check_sizes(node: &ferry_ir::Node, ins: &[Option<&Fact>]) -> Result<(), String> {
    let types: Vec<ValueType> = ins.iter().map(|f| f.map_or(ValueType::Unknown, fact_type)).collect();
    let consts: Vec<Option<&Tensor>> = ins.iter().map(|f| f.and_then(|f| f.konst())).collect();
    let Ok(outs) = ferry_ir::infer::infer_node(node, &types, &consts) else { return Ok(()) };
    for (k, o) in outs.iter().enumerate() {
        if let (Some(d), Some(s)) = (o.dtype(), o.shape().and_then(Shape::to_known)) {
            ferry_runtime::limits::check_tensor(d, &s, &format!("output {k}"))?;
        }
    }
    Ok(())
}

fn fact_type(f: &Fact) -> ValueType {
    match f.dtype_shape() {
        Some((d, s)) => ValueType::tensor(d, Shape::known(&s.iter().map(|x| *x as u64).collect::<Vec<_>>())),
        None => ValueType::Unknown,
    }
}

/// ONNX Shape's `start`/`end` (negative counts from the back; both clamped to the rank).
fn shape_slice(shape: &[usize], start: i64, end: Option<i64>) -> Tensor {
    let r = shape.len() as i64;
    let clamp = |x: i64| if x < 0 { (x + r).max(0) } else { x.min(r) };
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = if s < e { shape[s as usize..e as usize].iter().map(|d| *d as i64).collect() } else { vec![] };
    Tensor::from_i64(vec![dims.len() as u64], &dims).expect("a shape vector is well formed")
}
