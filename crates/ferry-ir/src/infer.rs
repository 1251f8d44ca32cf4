//! Shape and type inference over the core ops, symbolic where sizes are unknown.
//!
//! Annotations found in files are often stale: the inferred type replaces an annotation whenever
//! inference knows more, and a disagreement between two known facts is reported as a warning
//! rather than stopping the load.

use crate::dtype::DType;
use crate::graph::{Graph, Node, ValueId};
use crate::ops::{Attention, AutoPad, BinaryOp, ConvTranspose, Op, Resize, Rnn, RnnDirection, UnaryOp};
use crate::shape::{Dim, Shape, normalize_axis};
use crate::tensor::Tensor;
use crate::value::ValueType;
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct InferWarning {
    pub node: String,
    pub message: String,
}

/// Infers every value's type in `graph` (and nested graphs), in node order.
pub fn infer_graph(graph: &mut Graph) -> Vec<InferWarning> {
    let mut warnings = Vec::new();
    infer_scope(graph, &HashMap::new(), &mut warnings);
    warnings
}

fn infer_scope(graph: &mut Graph, outer: &HashMap<String, ValueType>, warnings: &mut Vec<InferWarning>) {
    for cap in graph.captures.clone() {
        if let Some(t) = outer.get(&graph.values[cap].name) {
            if graph.values[cap].ty.is_unknown() {
                graph.values[cap].ty = t.clone();
            }
        }
    }
    let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
    for (v, t) in &graph.initializers {
        if !graph.inputs.contains(v) {
            consts.insert(*v, t.clone());
        }
        let ty = ValueType::tensor(t.dtype, Shape::known(&t.shape));
        if graph.values[*v].ty.is_unknown() || !graph.inputs.contains(v) {
            graph.values[*v].ty = ty;
        }
    }
    for n in 0..graph.nodes.len() {
        // Nested graphs see everything visible here.
        if !graph.nodes[n].op.subgraphs().is_empty() {
            let mut scope = outer.clone();
            for v in &graph.values {
                scope.insert(v.name.clone(), v.ty.clone());
            }
            for sub in graph.nodes[n].op.subgraphs_mut() {
                infer_scope(sub, &scope, warnings);
            }
        }
        let node = &graph.nodes[n];
        let inputs: Vec<ValueType> =
            node.inputs.iter().map(|i| i.map_or(ValueType::Unknown, |i| graph.values[i].ty.clone())).collect();
        let const_inputs: Vec<Option<&Tensor>> = node.inputs.iter().map(|i| i.and_then(|i| consts.get(&i))).collect();
        let result = infer_node(node, &inputs, &const_inputs);
        let outputs = node.outputs.clone();
        let node_name = node.name.clone();
        if let Op::Constant(t) = &node.op {
            if let Some(Some(o)) = outputs.first() {
                consts.insert(*o, t.clone());
            }
        }
        match result {
            Ok(types) => {
                for (o, ty) in outputs.iter().zip(types) {
                    if let Some(o) = o {
                        let old = &graph.values[*o].ty;
                        if let Some(msg) = conflict(old, &ty) {
                            warnings.push(InferWarning {
                                node: node_name.clone(),
                                message: format!("value '{}': {msg}", graph.values[*o].name),
                            });
                        }
                        graph.values[*o].ty = merge(old, ty);
                    }
                }
            }
            Err(message) => warnings.push(InferWarning { node: node_name, message }),
        }
    }
}

/// Keeps what is known on either side, preferring the inferred fact.
pub fn merge(annotated: &ValueType, inferred: ValueType) -> ValueType {
    match (annotated, inferred) {
        (a, ValueType::Unknown) => a.clone(),
        (ValueType::Tensor { dtype: ad, shape: ash }, ValueType::Tensor { dtype, shape }) => {
            let shape = match (ash, shape) {
                (Some(a), Some(i)) if a.rank() == i.rank() => Some(Shape(
                    a.0.iter()
                        .zip(i.0)
                        .map(|(a, i)| if i.is_known() || !a.is_known() { i } else { a.clone() })
                        .collect(),
                )),
                (a, None) => a.clone(),
                (_, Some(i)) => Some(i),
            };
            ValueType::Tensor { dtype: dtype.or(*ad), shape }
        }
        (_, i) => i,
    }
}

fn conflict(annotated: &ValueType, inferred: &ValueType) -> Option<String> {
    let (ValueType::Tensor { dtype: ad, shape: ash }, ValueType::Tensor { dtype: id, shape: ish }) =
        (annotated, inferred)
    else {
        return None;
    };
    if let (Some(a), Some(i)) = (ad, id) {
        if a != i {
            return Some(format!("annotated as {a} but computes {i}"));
        }
    }
    if let (Some(a), Some(i)) = (ash, ish) {
        let clash = a.rank() != i.rank()
            || a.0.iter().zip(&i.0).any(|(a, i)| matches!((a, i), (Dim::Known(x), Dim::Known(y)) if x != y));
        if clash {
            return Some(format!("annotated shape {a} but computes {i}"));
        }
    }
    None
}

fn tensor(dtype: Option<DType>, shape: Option<Shape>) -> ValueType {
    ValueType::Tensor { dtype, shape }
}

/// Einsum's output shape: each output letter takes its size in the inputs (a size 1 gives way to any other, as
/// it broadcasts; two different unknowns make it unknown); an ellipsis takes the broadcast of the inputs'.
/// None where the equation does not parse or does not fit the ranks (the runtime reports that).
fn einsum_shape(equation: &str, inputs: &[Shape]) -> Option<Shape> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r.to_string())),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() {
        return None;
    }
    let mut sizes: HashMap<char, Dim> = HashMap::new();
    let mut ellipsis: Option<Shape> = None;
    for (term, shape) in terms.iter().zip(inputs) {
        let letters: Vec<char> = term.replace("...", "").chars().collect();
        if !letters.iter().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        let n_ell = shape.rank().checked_sub(letters.len())?;
        let (before, _) = term.split_once("...").unwrap_or((term, ""));
        let at = if term.contains("...") { before.len() } else { letters.len() };
        if !term.contains("...") && n_ell != 0 {
            return None;
        }
        let ell = Shape(shape.0[at..at + n_ell].to_vec());
        ellipsis = Some(match ellipsis {
            Some(e) => e.broadcast(&ell).ok()?,
            None => ell,
        });
        for (k, c) in letters.iter().enumerate() {
            let d = shape.0[if k < at { k } else { k + n_ell }].clone();
            let merged = match sizes.remove(c) {
                None | Some(Dim::Known(1)) => d,
                Some(old) if d == Dim::Known(1) || old == d => old,
                Some(Dim::Known(n)) => Dim::Known(n),
                Some(_) if d.is_known() => d,
                Some(_) => Dim::Unknown,
            };
            sizes.insert(*c, merged);
        }
    }
    let rhs = rhs.unwrap_or_else(|| {
        // Implicit output: the ellipsis, then the letters used once, in alphabetical order.
        let mut once: Vec<char> =
            sizes.keys().copied().filter(|c| lhs.chars().filter(|x| x == c).count() == 1).collect();
        once.sort_unstable();
        format!("{}{}", if lhs.contains("...") { "..." } else { "" }, once.into_iter().collect::<String>())
    });
    let (before, after) = rhs.split_once("...").unwrap_or(("", &rhs));
    let mut dims = Vec::new();
    for c in before.chars() {
        dims.push(sizes.get(&c)?.clone());
    }
    if rhs.contains("...") {
        dims.extend(ellipsis.map(|e| e.0).unwrap_or_default());
    }
    for c in after.chars() {
        dims.push(sizes.get(&c)?.clone());
    }
    Some(Shape(dims))
}

/// The length of a 1-D shape operand whose values are not constant: the rank it gives.
fn rank_from_shape_input(operand: Option<Shape>) -> Option<usize> {
    match operand?.0.as_slice() {
        [Dim::Known(k)] => usize::try_from(*k).ok(),
        _ => None,
    }
}

fn unknown_dims(rank: usize) -> Shape {
    Shape(vec![Dim::Unknown; rank])
}

fn const_ints(t: Option<&Tensor>) -> Option<Vec<i64>> {
    t.and_then(|t| t.to_i64_vec().ok())
}

/// Output types of one node from its input types and whichever inputs are constants.
pub fn infer_node(node: &Node, inputs: &[ValueType], consts: &[Option<&Tensor>]) -> Result<Vec<ValueType>, String> {
    let input = |i: usize| inputs.get(i).cloned().unwrap_or_default();
    let dtype = |i: usize| input(i).dtype();
    let shape = |i: usize| input(i).shape().cloned();
    let konst = |i: usize| consts.get(i).copied().flatten();
    let n_out = node.outputs.len();
    let same_as_input = |i: usize| Ok(vec![input(i); n_out.max(1)]);
    let unknown = || Ok(vec![ValueType::Unknown; n_out]);

    match &node.op {
        Op::Constant(t) => Ok(vec![ValueType::tensor(t.dtype, Shape::known(&t.shape))]),
        Op::ConstantOfShape(value) => {
            let shape = const_ints(konst(0))
                .map(|d| Shape::known(&d.iter().map(|x| *x as u64).collect::<Vec<_>>()))
                .or_else(|| rank_from_shape_input(shape(0)).map(unknown_dims));
            Ok(vec![tensor(Some(value.dtype), shape)])
        }
        Op::Range => {
            let scalar = |i: usize| konst(i).and_then(|t| t.to_f64_vec().ok()).and_then(|v| v.first().copied());
            // Exact only for integers; float rounding of the count is left to the runtime.
            let exact = dtype(0).is_some_and(|d| d.is_int());
            let len = match (scalar(0), scalar(1), scalar(2)) {
                _ if !exact => Dim::Unknown,
                (Some(start), Some(limit), Some(delta)) if delta != 0.0 => {
                    let n = ((limit - start) / delta).ceil().max(0.0);
                    if n.is_finite() && n < u64::MAX as f64 { Dim::Known(n as u64) } else { Dim::Unknown }
                }
                _ => Dim::Unknown,
            };
            Ok(vec![tensor(dtype(0), Some(Shape(vec![len])))])
        }
        Op::EyeLike { dtype: d, .. } => Ok(vec![tensor(d.or(dtype(0)), shape(0))]),
        Op::RandomNormal { shape: s, dtype: d, .. } | Op::RandomUniform { shape: s, dtype: d, .. } => {
            Ok(vec![tensor(Some(*d), s.as_ref().map(|s| Shape::known(s)).or_else(|| shape(0)))])
        }
        Op::Unary(u) => {
            let d = match u {
                UnaryOp::IsNaN => Some(DType::Bool),
                _ => dtype(0),
            };
            Ok(vec![tensor(d, shape(0))])
        }
        Op::IsInf { .. } => Ok(vec![tensor(Some(DType::Bool), shape(0))]),
        Op::Binary(b) => {
            let s = match (shape(0), shape(1)) {
                (Some(a), Some(b)) => Some(a.broadcast(&b)?),
                _ => None,
            };
            let d = match b {
                BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual => Some(DType::Bool),
                _ => dtype(0).or(dtype(1)),
            };
            Ok(vec![tensor(d, s)])
        }
        Op::Where => {
            let s = match (shape(0), shape(1), shape(2)) {
                (Some(a), Some(b), Some(c)) => Some(a.broadcast(&b)?.broadcast(&c)?),
                _ => None,
            };
            Ok(vec![tensor(dtype(1).or(dtype(2)), s)])
        }
        Op::Cast(c) => Ok(vec![tensor(Some(c.to), shape(0))]),
        Op::Identity => same_as_input(0),
        Op::Shape { start, end } => {
            let len = shape(0).map(|s| {
                let r = s.rank() as i64;
                let clamp = |x: i64| if x < 0 { (x + r).max(0) } else { x.min(r) };
                let (a, b) = (clamp(*start), clamp(end.unwrap_or(r)));
                (b - a).max(0) as u64
            });
            Ok(vec![tensor(Some(DType::I64), Some(Shape(vec![len.map_or(Dim::Unknown, Dim::Known)])))])
        }
        Op::Size => Ok(vec![ValueType::tensor(DType::I64, Shape::scalar())]),
        Op::Reshape { allowzero } => {
            let out = match (const_ints(konst(1)), shape(0)) {
                (Some(target), data) => Some(reshape(&target, data.as_ref(), *allowzero)?),
                // A computed target (torch writes Concat(Shape(x)[0:1], [-1, 64])) still fixes the rank.
                _ => rank_from_shape_input(shape(1)).map(unknown_dims),
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Transpose { perm } => {
            let out = shape(0).map(|s| {
                let perm: Vec<usize> = perm.clone().unwrap_or_else(|| (0..s.rank()).rev().collect());
                if perm.len() != s.rank() || perm.iter().any(|p| *p >= s.rank()) {
                    return Err(format!("perm {perm:?} does not fit rank {}", s.rank()));
                }
                Ok(Shape(perm.iter().map(|p| s.0[*p].clone()).collect()))
            });
            Ok(vec![tensor(dtype(0), out.transpose()?)])
        }
        Op::Expand => {
            let out = match (shape(0), const_ints(konst(1))) {
                (Some(s), Some(t)) => {
                    Some(s.broadcast(&Shape::known(&t.iter().map(|x| *x as u64).collect::<Vec<_>>()))?)
                }
                // A computed shape: the rank is the larger one; a dim is unknown unless the input's is > 1
                // (then the target's must be 1 or equal to it).
                (Some(s), None) => rank_from_shape_input(shape(1)).map(|k| {
                    let rank = k.max(s.rank());
                    let lead = rank - s.rank();
                    Shape(
                        (0..rank)
                            .map(|i| match i.checked_sub(lead).map(|j| &s.0[j]) {
                                Some(d @ Dim::Known(n)) if *n > 1 => d.clone(),
                                _ => Dim::Unknown,
                            })
                            .collect(),
                    )
                }),
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Squeeze => {
            let axes =
                if node.inputs.get(1).copied().flatten().is_some() { const_ints(konst(1)) } else { Some(vec![]) };
            let out = match (shape(0), axes) {
                (Some(s), Some(axes)) if axes.is_empty() => {
                    if s.0.iter().all(Dim::is_known) {
                        Some(Shape(s.0.into_iter().filter(|d| *d != Dim::Known(1)).collect()))
                    } else {
                        None
                    }
                }
                (Some(s), Some(axes)) => {
                    let axes: Vec<usize> =
                        axes.iter().map(|a| normalize_axis(*a, s.rank())).collect::<Result<_, _>>()?;
                    Some(Shape(
                        s.0.into_iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d).collect(),
                    ))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Unsqueeze => {
            let out = match (shape(0), const_ints(konst(1))) {
                (Some(s), Some(axes)) => {
                    let rank = s.rank() + axes.len();
                    let axes: Vec<usize> = axes.iter().map(|a| normalize_axis(*a, rank)).collect::<Result<_, _>>()?;
                    let mut it = s.0.into_iter();
                    Some(Shape(
                        (0..rank)
                            .map(|i| if axes.contains(&i) { Dim::Known(1) } else { it.next().unwrap_or(Dim::Unknown) })
                            .collect(),
                    ))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Flatten { axis } => {
            let out = shape(0)
                .map(|s| {
                    let r = s.rank() as i64;
                    let a = if *axis < 0 { axis + r } else { *axis };
                    if a < 0 || a > r {
                        return Err(format!("Flatten axis {axis} out of range for rank {r}"));
                    }
                    let (l, rr) = s.0.split_at(a as usize);
                    Ok(Shape(vec![Shape(l.to_vec()).numel(), Shape(rr.to_vec()).numel()]))
                })
                .transpose()?;
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Concat { axis } => {
            let shapes: Option<Vec<Shape>> = (0..inputs.len()).map(shape).collect();
            let out = shapes
                .filter(|s| !s.is_empty())
                .map(|shapes| {
                    let a = normalize_axis(*axis, shapes[0].rank())?;
                    let mut out = shapes[0].clone();
                    for s in &shapes[1..] {
                        if s.rank() != out.rank() {
                            return Err(format!("Concat inputs have ranks {} and {}", out.rank(), s.rank()));
                        }
                        out.0[a] = out.0[a].add(&s.0[a]);
                    }
                    Ok(out)
                })
                .transpose()?;
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Split { axis, num_outputs: _ } => {
            let has_splits = node.inputs.get(1).copied().flatten().is_some();
            let splits = const_ints(konst(1));
            let outs = (0..n_out)
                .map(|k| {
                    let s = shape(0).and_then(|s| {
                        let a = normalize_axis(*axis, s.rank()).ok()?;
                        let mut out = s.clone();
                        out.0[a] = match &splits {
                            Some(sp) => Dim::Known(u64::try_from(*sp.get(k)?).ok()?),
                            // A split input computed at run time: sizes unknown here.
                            None if has_splits => Dim::Unknown,
                            None => {
                                // Equal chunks of ceil(total/n), the last one smaller; a split
                                // that leaves the last chunk empty or negative is left unknown.
                                let total = s.0[a].known()?;
                                let n = n_out as u64;
                                let chunk = total.div_ceil(n);
                                let last = total.checked_sub(chunk * (n - 1))?;
                                Dim::Known(if k as u64 == n - 1 { last } else { chunk })
                            }
                        };
                        Some(out)
                    });
                    tensor(dtype(0), s)
                })
                .collect();
            Ok(outs)
        }
        Op::Slice => {
            let out = match (shape(0), const_ints(konst(1)), const_ints(konst(2))) {
                (Some(s), Some(starts), Some(ends)) => {
                    let axes = match node.inputs.get(3).copied().flatten() {
                        Some(_) => const_ints(konst(3)),
                        None => Some((0..starts.len() as i64).collect()),
                    };
                    let steps = match node.inputs.get(4).copied().flatten() {
                        Some(_) => const_ints(konst(4)),
                        None => Some(vec![1; starts.len()]),
                    };
                    match (axes, steps) {
                        (Some(axes), Some(steps)) => slice_shape(&s, &starts, &ends, &axes, &steps)?,
                        _ => Some(unknown_dims(s.rank())),
                    }
                }
                // Computed starts or ends (torch slices by Shape arithmetic): the rank stays, and with constant
                // axes so do the dims of the axes not sliced.
                (Some(s), _, _) => Some(match node.inputs.get(3).copied().flatten().map(|_| const_ints(konst(3))) {
                    Some(Some(axes)) => {
                        let mut dims = s.0.clone();
                        for a in axes {
                            dims[normalize_axis(a, s.rank())?] = Dim::Unknown;
                        }
                        Shape(dims)
                    }
                    _ => unknown_dims(s.rank()),
                }),
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Gather { axis } => {
            let out = match (shape(0), shape(1)) {
                (Some(d), Some(i)) => {
                    let a = normalize_axis(*axis, d.rank())?;
                    let mut dims = d.0[..a].to_vec();
                    dims.extend(i.0.iter().cloned());
                    dims.extend(d.0[a + 1..].iter().cloned());
                    Some(Shape(dims))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::GatherElements { .. } => Ok(vec![tensor(dtype(0), shape(1))]),
        Op::ScatterElements { .. } | Op::ScatterNd { .. } => same_as_input(0),
        Op::Trilu { .. } | Op::ReverseSequence { .. } => same_as_input(0),
        Op::Reduce { keepdims, noop_with_empty_axes, .. } => {
            let has_axes = node.inputs.get(1).copied().flatten().is_some();
            let axes = if has_axes { const_ints(konst(1)) } else { Some(vec![]) };
            let out = match (shape(0), axes) {
                (Some(s), Some(axes)) => {
                    if axes.is_empty() && *noop_with_empty_axes {
                        Some(s)
                    } else {
                        let all = axes.is_empty();
                        let axes: Vec<usize> =
                            axes.iter().map(|a| normalize_axis(*a, s.rank())).collect::<Result<_, _>>()?;
                        Some(reduce_shape(&s, |i| all || axes.contains(&i), *keepdims))
                    }
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            let out = shape(0)
                .map(|s| -> Result<Shape, String> {
                    let a = normalize_axis(*axis, s.rank())?;
                    Ok(reduce_shape(&s, |i| i == a, *keepdims))
                })
                .transpose()?;
            Ok(vec![tensor(Some(DType::I64), out)])
        }
        Op::TopK { axis, .. } => {
            let out = match (shape(0), const_ints(konst(1))) {
                (Some(mut s), Some(k)) if k.len() == 1 => {
                    let a = normalize_axis(*axis, s.rank())?;
                    s.0[a] = Dim::Known(k[0].max(0) as u64);
                    Some(s)
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out.clone()), tensor(Some(DType::I64), out)])
        }
        Op::CumSum { .. } | Op::Softmax { .. } | Op::LogSoftmax { .. } | Op::Lrn { .. } => same_as_input(0),
        Op::MatMul => {
            let out = match (shape(0), shape(1)) {
                (Some(a), Some(b)) => Some(matmul_shape(&a, &b)?),
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::MatMulInteger => {
            let out = match (shape(0), shape(1)) {
                (Some(a), Some(b)) => Some(matmul_shape(&a, &b)?),
                _ => None,
            };
            Ok(vec![tensor(Some(DType::I32), out)])
        }
        Op::Conv(c) => {
            let out = match (shape(0), shape(1)) {
                (Some(x), Some(w)) if x.rank() >= 3 && w.rank() == x.rank() => {
                    let spatial = x.rank() - 2;
                    let kernel: Vec<Dim> = match &c.kernel_shape {
                        Some(k) if k.len() == spatial => k.iter().map(|k| Dim::Known(*k)).collect(),
                        Some(k) => return Err(format!("kernel_shape {k:?} does not have {spatial} spatial sizes")),
                        None => w.0[2..].to_vec(),
                    };
                    let mut dims = vec![x.0[0].clone(), w.0[0].clone()];
                    for i in 0..spatial {
                        let s = *c.strides.get(i).unwrap_or(&1);
                        let d = *c.dilations.get(i).unwrap_or(&1);
                        dims.push(window_out(&x.0[2 + i], &kernel[i], s, d, &c.pads, i, spatial, false));
                    }
                    Some(Shape(dims))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Pool(p) => {
            let out = shape(0).filter(|x| x.rank() >= 3).map(|x| {
                let spatial = x.rank() - 2;
                let mut dims = vec![x.0[0].clone(), x.0[1].clone()];
                for i in 0..spatial {
                    let k = Dim::Known(*p.kernel_shape.get(i).unwrap_or(&1));
                    let s = *p.strides.get(i).unwrap_or(&1);
                    let d = *p.dilations.get(i).unwrap_or(&1);
                    dims.push(window_out(&x.0[2 + i], &k, s, d, &p.pads, i, spatial, p.ceil_mode));
                }
                Shape(dims)
            });
            let mut outs = vec![tensor(dtype(0), out.clone())];
            if n_out > 1 {
                outs.push(tensor(Some(DType::I64), out));
            }
            Ok(outs)
        }
        Op::GlobalPool { kind: _ } => {
            let out = shape(0).map(|x| {
                Shape(x.0.iter().enumerate().map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) }).collect())
            });
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::NonZero => {
            Ok(vec![tensor(Some(DType::I64), shape(0).map(|s| Shape(vec![Dim::Known(s.rank() as u64), Dim::Unknown])))])
        }
        Op::NonMaxSuppression { .. } => {
            Ok(vec![tensor(Some(DType::I64), Some(Shape(vec![Dim::Unknown, Dim::Known(3)])))])
        }
        Op::QuantizeLinear { output_dtype, .. } => {
            Ok(vec![tensor(output_dtype.or(dtype(2)).or(Some(DType::U8)), shape(0))])
        }
        Op::DequantizeLinear { .. } => Ok(vec![tensor(dtype(1), shape(0))]),
        Op::SequenceLength => Ok(vec![ValueType::tensor(DType::I64, Shape::scalar())]),
        Op::OptionalHasElement => Ok(vec![ValueType::tensor(DType::Bool, Shape::scalar())]),
        Op::SequenceConstruct => Ok(vec![ValueType::Sequence(Box::new(tensor(dtype(0), None)))]),
        Op::SequenceEmpty { dtype } => Ok(vec![ValueType::Sequence(Box::new(tensor(Some(*dtype), None)))]),
        Op::SequenceInsert | Op::SequenceErase => same_as_input(0),
        Op::SequenceAt => match input(0) {
            ValueType::Sequence(t) => Ok(vec![match *t {
                ValueType::Tensor { dtype, .. } => tensor(dtype, None),
                other => other,
            }]),
            _ => unknown(),
        },
        Op::OptionalGetElement => match input(0) {
            ValueType::Optional(t) => Ok(vec![*t]),
            ValueType::Sequence(_) | ValueType::Tensor { .. } => same_as_input(0),
            _ => unknown(),
        },
        Op::OptionalConstruct { ty } => Ok(vec![ValueType::Optional(Box::new(ty.clone().unwrap_or_else(|| input(0))))]),
        Op::SplitToSequence { .. } => Ok(vec![ValueType::Sequence(Box::new(tensor(dtype(0), None)))]),
        Op::ConcatFromSequence { .. } => match input(0) {
            ValueType::Sequence(t) => Ok(vec![tensor(t.dtype(), None)]),
            _ => unknown(),
        },
        Op::Pad { .. } => {
            let has_axes = node.inputs.get(3).copied().flatten().is_some();
            let out = shape(0).map(|s| {
                let r = s.rank();
                let axes = if has_axes { const_ints(konst(3)) } else { Some((0..r as i64).collect()) };
                match (const_ints(konst(1)), axes) {
                    (Some(pads), Some(axes)) if pads.len() == 2 * axes.len() => {
                        let mut out = s.clone();
                        for (k, a) in axes.iter().enumerate() {
                            let a = normalize_axis(*a, r)?;
                            let total = pads[k] + pads[k + axes.len()];
                            out.0[a] = match s.0[a].known() {
                                Some(d) if d as i64 + total >= 0 => Dim::Known((d as i64 + total) as u64),
                                Some(_) => return Err("Pad removes more than the axis has".to_string()),
                                None if total == 0 => s.0[a].clone(),
                                None => Dim::Unknown,
                            };
                        }
                        Ok(out)
                    }
                    (Some(_), Some(_)) => Err("Pad pads length is not twice the number of axes".to_string()),
                    _ => Ok(Shape(vec![Dim::Unknown; r])),
                }
            });
            Ok(vec![tensor(dtype(0), out.transpose()?)])
        }
        Op::Tile => {
            let out = shape(0).map(|s| match const_ints(konst(1)) {
                Some(reps) if reps.len() == s.rank() => {
                    Shape(s.0.iter().zip(&reps).map(|(d, r)| d.mul(&Dim::Known((*r).max(0) as u64))).collect())
                }
                _ => Shape(vec![Dim::Unknown; s.rank()]),
            });
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::DepthToSpace { blocksize, .. } => {
            let b = Dim::Known(*blocksize);
            let out = shape(0)
                .filter(|s| s.rank() == 4)
                .map(|s| Shape(vec![s.0[0].clone(), s.0[1].floor_div(&b.mul(&b)), s.0[2].mul(&b), s.0[3].mul(&b)]));
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::SpaceToDepth { blocksize, .. } => {
            let b = Dim::Known(*blocksize);
            let out = shape(0).filter(|s| s.rank() == 4).map(|s| {
                Shape(vec![s.0[0].clone(), s.0[1].mul(&b.mul(&b)), s.0[2].floor_div(&b), s.0[3].floor_div(&b)])
            });
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Resize(r) => Ok(vec![tensor(dtype(0), resize_shape(r, shape(0), konst(2), konst(3)))]),
        Op::GatherNd { batch_dims } => {
            let out = match (shape(0), shape(1)) {
                (Some(d), Some(i)) if i.rank() >= 1 => i.0[i.rank() - 1].known().and_then(|k| {
                    let start = *batch_dims as usize + k as usize;
                    (start <= d.rank()).then(|| {
                        let mut dims = i.0[..i.rank() - 1].to_vec();
                        dims.extend(d.0[start..].iter().cloned());
                        Shape(dims)
                    })
                }),
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Compress { axis } => {
            let out = match axis {
                None => Some(Shape(vec![Dim::Unknown])),
                Some(a) => shape(0)
                    .map(|mut s| -> Result<Shape, String> {
                        let a = normalize_axis(*a, s.rank())?;
                        s.0[a] = Dim::Unknown;
                        Ok(s)
                    })
                    .transpose()?,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::ConvTranspose(ct) => Ok(vec![tensor(dtype(0), conv_transpose_shape(ct, shape(0), shape(1)))]),
        Op::Einsum { equation } => {
            let shapes: Option<Vec<Shape>> = (0..inputs.len()).map(shape).collect();
            Ok(vec![tensor(dtype(0), shapes.and_then(|s| einsum_shape(equation, &s)))])
        }
        Op::OneHot { axis } => {
            let depth = konst(1).and_then(|t| t.to_f64_vec().ok()).and_then(|v| v.first().copied());
            let out = shape(0)
                .map(|s| -> Result<Shape, String> {
                    let a = normalize_axis(*axis, s.rank() + 1)?;
                    let mut dims = s.0.clone();
                    dims.insert(a, depth.filter(|d| *d >= 0.0).map_or(Dim::Unknown, |d| Dim::Known(d as u64)));
                    Ok(Shape(dims))
                })
                .transpose()?;
            Ok(vec![tensor(dtype(2), out)])
        }
        Op::Unique { .. } => {
            let mut outs = vec![tensor(dtype(0), None)];
            outs.extend((1..n_out).map(|_| tensor(Some(DType::I64), Some(Shape(vec![Dim::Unknown])))));
            Ok(outs)
        }
        Op::Rnn(r) => Ok(rnn_shapes(r, shape(0), n_out).into_iter().map(|s| tensor(dtype(0), s)).collect()),
        Op::Attention(a) => {
            let [y, pk, pv, qk] = attention_shapes(a, [shape(0), shape(1), shape(2), shape(4), shape(5)])?;
            let outs = [tensor(dtype(0), y), tensor(dtype(0), pk), tensor(dtype(2), pv), tensor(dtype(0), qk)];
            Ok(outs.into_iter().take(n_out.max(1)).collect())
        }
        // Control flow: output types come from the bodies; the runtime checks them per call.
        Op::If { then_branch, else_branch } => Ok(then_branch
            .outputs
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let t = &then_branch.values[*o].ty;
                match else_branch.outputs.get(k) {
                    Some(e) => join(t, &else_branch.values[*e].ty),
                    None => t.clone(),
                }
            })
            .collect()),
        Op::Loop { body } => {
            // Inputs: M, cond, carried...; body outputs: cond, carried..., scan outputs...
            let carried = inputs.len().saturating_sub(2);
            let body_out = |k: usize| body.outputs.get(k).map_or(ValueType::Unknown, |o| body.values[*o].ty.clone());
            Ok((0..n_out)
                .map(|k| {
                    if k < carried {
                        // The body output decides the kind (an optional may carry in and a sequence out).
                        join(&body_out(k + 1), &input(k + 2))
                    } else {
                        match body_out(k + 1) {
                            ValueType::Tensor { dtype, shape } => {
                                tensor(dtype, shape.map(|s| Shape(std::iter::once(Dim::Unknown).chain(s.0).collect())))
                            }
                            _ => ValueType::Unknown,
                        }
                    }
                })
                .collect())
        }
        Op::Scan(sc) => {
            let m = sc.num_scan_inputs as usize;
            let n = inputs.len().saturating_sub(m);
            let body_out =
                |k: usize| sc.body.outputs.get(k).map_or(ValueType::Unknown, |o| sc.body.values[*o].ty.clone());
            // The number of iterations: the first scan input's length along its scan axis.
            let len = shape(n)
                .and_then(|s| {
                    let a = normalize_axis(*sc.scan_input_axes.first().unwrap_or(&0), s.rank()).ok()?;
                    Some(s.0[a].clone())
                })
                .unwrap_or(Dim::Unknown);
            Ok((0..n_out)
                .map(|k| {
                    if k < n {
                        return join(&input(k), &body_out(k));
                    }
                    match body_out(k) {
                        ValueType::Tensor { dtype, shape } => {
                            let axis = *sc.scan_output_axes.get(k - n).unwrap_or(&0);
                            let shape = shape.and_then(|s| {
                                let a = normalize_axis(axis, s.rank() + 1).ok()?;
                                let mut d = s.0;
                                d.insert(a, len.clone());
                                Some(Shape(d))
                            });
                            tensor(dtype, shape)
                        }
                        _ => ValueType::Unknown,
                    }
                })
                .collect())
        }
        Op::Dft { inverse, onesided } => {
            let n = const_ints(konst(1)).and_then(|v| v.first().copied());
            let axis = const_ints(konst(2)).and_then(|v| v.first().copied());
            Ok(vec![tensor(dtype(0), shape(0).and_then(|s| dft_shape(&s, n, axis?, *inverse, *onesided)))])
        }
        Op::Stft { onesided } => {
            let scalar = |i: usize| const_ints(konst(i)).and_then(|v| v.first().copied());
            let frame_length = scalar(3).or_else(|| shape(2).and_then(|s| s.0.first()?.known()).map(|d| d as i64));
            let s = shape(0).filter(|s| s.rank() == 3).map(|s| {
                let frames = match (s.0[1].known(), frame_length, scalar(1)) {
                    (Some(len), Some(fl), Some(step)) if step > 0 && len as i64 >= fl => {
                        Dim::Known(((len as i64 - fl) / step + 1) as u64)
                    }
                    _ => Dim::Unknown,
                };
                let bins = match frame_length {
                    Some(fl) if fl >= 0 => Dim::Known(if *onesided { fl as u64 / 2 + 1 } else { fl as u64 }),
                    _ => Dim::Unknown,
                };
                Shape(vec![s.0[0].clone(), frames, bins, Dim::Known(2)])
            });
            Ok(vec![tensor(dtype(0), s)])
        }
        Op::MelWeightMatrix { dtype: d } => {
            let n = const_ints(konst(1)).and_then(|v| v.first().copied()).filter(|n| *n >= 0);
            let bins = const_ints(konst(0)).and_then(|v| v.first().copied()).filter(|n| *n >= 0);
            let dim = |v: Option<i64>| v.map_or(Dim::Unknown, |v| Dim::Known(v as u64));
            Ok(vec![tensor(Some(*d), Some(Shape(vec![dim(n.map(|n| n / 2 + 1)), dim(bins)])))])
        }
        Op::GridSample { .. } => {
            let out = match (shape(0), shape(1)) {
                (Some(x), Some(g)) if x.rank() >= 2 && g.rank() >= 2 => {
                    let mut dims = vec![x.0[0].clone(), x.0[1].clone()];
                    dims.extend(g.0[1..g.rank() - 1].iter().cloned());
                    Some(Shape(dims))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::Col2Im { .. } => {
            let out = match (shape(0), const_ints(konst(1)), const_ints(konst(2))) {
                (Some(x), Some(img), Some(block)) if x.rank() == 3 && block.iter().all(|b| *b > 0) => {
                    let n: u64 = block.iter().map(|b| *b as u64).product();
                    let c = match &x.0[1] {
                        Dim::Known(cb) if cb % n == 0 => Dim::Known(cb / n),
                        Dim::Known(cb) => return Err(format!("{cb} columns are not a multiple of the block size {n}")),
                        _ => Dim::Unknown,
                    };
                    let mut dims = vec![x.0[0].clone(), c];
                    dims.extend(img.iter().map(|d| Dim::Known((*d).max(0) as u64)));
                    Some(Shape(dims))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::RoiAlign { output_height, output_width, .. } => {
            let r = shape(1).filter(|s| s.rank() == 2).map(|s| s.0[0].clone()).unwrap_or(Dim::Unknown);
            let c = shape(0).filter(|s| s.rank() == 4).map(|s| s.0[1].clone()).unwrap_or(Dim::Unknown);
            let dims = vec![r, c, Dim::Known(*output_height), Dim::Known(*output_width)];
            Ok(vec![tensor(dtype(0), Some(Shape(dims)))])
        }
        Op::MaxRoiPool { pooled_shape, .. } => {
            let r = shape(1).filter(|s| s.rank() == 2).map(|s| s.0[0].clone()).unwrap_or(Dim::Unknown);
            let c = shape(0).filter(|s| s.rank() == 4).map(|s| s.0[1].clone()).unwrap_or(Dim::Unknown);
            let dims = vec![r, c, Dim::Known(pooled_shape[0]), Dim::Known(pooled_shape[1])];
            Ok(vec![tensor(dtype(0), Some(Shape(dims)))])
        }
        Op::MaxUnpool { kernel_shape, strides, pads } => {
            let out = match (shape(0), konst(2)) {
                (_, Some(t)) => {
                    const_ints(Some(t)).map(|v| Shape(v.iter().map(|d| Dim::Known((*d).max(0) as u64)).collect()))
                }
                (Some(x), None) if x.rank() >= 3 => {
                    let spatial = x.rank() - 2;
                    let mut dims = vec![x.0[0].clone(), x.0[1].clone()];
                    for i in 0..spatial {
                        let k = *kernel_shape.get(i).unwrap_or(&1);
                        let s = *strides.get(i).unwrap_or(&1);
                        let p = pads.get(i).unwrap_or(&0) + pads.get(i + spatial).unwrap_or(&0);
                        dims.push(match &x.0[2 + i] {
                            Dim::Known(d) => Dim::Known(((d.saturating_sub(1)) * s + k).saturating_sub(p)),
                            _ => Dim::Unknown,
                        });
                    }
                    Some(Shape(dims))
                }
                _ => None,
            };
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::DeformConv { conv, .. } => {
            let mut plain = node.clone();
            plain.op = Op::Conv(conv.clone());
            infer_node(&plain, &inputs[..inputs.len().min(2)], &consts[..consts.len().min(2)])
        }
        Op::Det => {
            let out = shape(0).filter(|s| s.rank() >= 2).map(|s| Shape(s.0[..s.rank() - 2].to_vec()));
            Ok(vec![tensor(dtype(0), out)])
        }
        Op::BitCast { to } => {
            if let Some(from) = dtype(0) {
                if from.bits() != to.bits() {
                    return Err(format!("BitCast from {from} to {to} changes the bit width"));
                }
            }
            Ok(vec![tensor(Some(*to), shape(0))])
        }
        Op::StringConcat => {
            let s = match (shape(0), shape(1)) {
                (Some(a), Some(b)) => Some(a.broadcast(&b)?),
                _ => None,
            };
            Ok(vec![tensor(Some(DType::String), s)])
        }
        Op::RegexFullMatch { .. } => Ok(vec![tensor(Some(DType::Bool), shape(0))]),
        Op::StringSplit { .. } => {
            let mut parts = shape(0);
            if let Some(p) = &mut parts {
                p.0.push(Dim::Unknown);
            }
            Ok(vec![tensor(Some(DType::String), parts), tensor(Some(DType::I64), shape(0))])
        }
        Op::StringNormalizer(sn) => {
            // Stop words remove elements of the last axis ([C] or [1, C]).
            let s = shape(0).map(|mut s| {
                if !sn.stopwords.is_empty() {
                    if let Some(last) = s.0.last_mut() {
                        *last = Dim::Unknown;
                    }
                }
                s
            });
            Ok(vec![tensor(Some(DType::String), s)])
        }
        Op::TfIdfVectorizer(t) => {
            let width =
                t.ngram_indexes.iter().copied().max().map_or(Dim::Unknown, |m| Dim::Known((m.max(-1) + 1) as u64));
            let s = shape(0).and_then(|s| match s.rank() {
                0 | 1 => Some(Shape(vec![width.clone()])),
                2 => Some(Shape(vec![s.0[0].clone(), width.clone()])),
                _ => None,
            });
            Ok(vec![tensor(Some(DType::F32), s)])
        }
        Op::LabelEncoder { values, .. } => Ok(vec![tensor(Some(values.dtype), shape(0))]),
        Op::TreeEnsemble(t) => {
            let rows = shape(0).filter(|s| s.rank() == 2).map_or(Dim::Unknown, |s| s.0[0].clone());
            Ok(vec![tensor(dtype(0), Some(Shape(vec![rows, Dim::Known(t.n_targets)])))])
        }
        Op::Opaque(_) => unknown(),
    }
}

/// What two types that may flow into the same place (If branches, a loop-carried value before and
/// after an iteration) have in common.
fn join(a: &ValueType, b: &ValueType) -> ValueType {
    match (a, b) {
        (ValueType::Unknown, x) | (x, ValueType::Unknown) => x.clone(),
        (ValueType::Tensor { dtype: ad, shape: ash }, ValueType::Tensor { dtype: bd, shape: bsh }) => {
            let shape = match (ash, bsh) {
                (Some(x), Some(y)) if x.rank() == y.rank() => Some(Shape(
                    x.0.iter().zip(&y.0).map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown }).collect(),
                )),
                _ => None,
            };
            ValueType::Tensor { dtype: ad.or(*bd), shape }
        }
        (ValueType::Sequence(x), ValueType::Sequence(y)) => ValueType::Sequence(Box::new(join(x, y))),
        (ValueType::Optional(x), ValueType::Optional(y)) => ValueType::Optional(Box::new(join(x, y))),
        (x, _) => x.clone(),
    }
}

fn reduce_shape(s: &Shape, reduced: impl Fn(usize) -> bool, keepdims: bool) -> Shape {
    Shape(
        s.0.iter()
            .enumerate()
            .filter_map(|(i, d)| match (reduced(i), keepdims) {
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
                (false, _) => Some(d.clone()),
            })
            .collect(),
    )
}

fn reshape(target: &[i64], data: Option<&Shape>, allowzero: bool) -> Result<Shape, String> {
    let mut dims = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match *t {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                dims.push(Dim::Unknown);
            }
            -1 => return Err("Reshape target has more than one -1".into()),
            0 if !allowzero => match data {
                Some(d) => dims
                    .push(d.0.get(i).cloned().ok_or_else(|| format!("Reshape copies dim {i} that the input lacks"))?),
                None => dims.push(Dim::Unknown),
            },
            t if t < 0 => return Err(format!("Reshape target has invalid dim {t}")),
            t => dims.push(Dim::Known(t as u64)),
        }
    }
    if let (Some(at), Some(data)) = (infer_at, data) {
        let total = data.numel();
        let rest = dims.iter().enumerate().filter(|(i, _)| *i != at).fold(Dim::Known(1), |acc, (_, d)| acc.mul(d));
        dims[at] = match (total.known(), rest.known()) {
            (Some(t), Some(r)) if r != 0 && t % r == 0 => Dim::Known(t / r),
            (Some(t), Some(r)) if r != 0 => return Err(format!("cannot reshape {t} elements into groups of {r}")),
            _ if total == rest && total != Dim::Unknown => Dim::Known(1),
            _ => total.floor_div(&rest),
        };
    }
    Ok(Shape(dims))
}

fn slice_shape(s: &Shape, starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]) -> Result<Option<Shape>, String> {
    let mut out = s.clone();
    for (k, axis) in axes.iter().enumerate() {
        let a = normalize_axis(*axis, s.rank())?;
        let (Some(&start), Some(&end), Some(&step)) = (starts.get(k), ends.get(k), steps.get(k)) else {
            return Err("Slice starts/ends/axes/steps lengths differ".into());
        };
        if step == 0 {
            return Err("Slice step is 0".into());
        }
        let Some(dim) = s.0[a].known() else {
            out.0[a] = Dim::Unknown;
            continue;
        };
        let d = dim as i64;
        let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let len = if step > 0 {
            let (b, e) = (clamp(norm(start), 0, d), clamp(norm(end), 0, d));
            if e > b { (e - b + step - 1) / step } else { 0 }
        } else {
            let (b, e) = (clamp(norm(start), -1, d - 1), clamp(norm(end), -1, d - 1));
            if b > e { (b - e + (-step) - 1) / (-step) } else { 0 }
        };
        out.0[a] = Dim::Known(len as u64);
    }
    Ok(Some(out))
}

fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, String> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err("MatMul of a scalar".into());
    }
    let a2 = if a.rank() == 1 { Shape(vec![Dim::Known(1), a.0[0].clone()]) } else { a.clone() };
    let b2 = if b.rank() == 1 { Shape(vec![b.0[0].clone(), Dim::Known(1)]) } else { b.clone() };
    let (ar, br) = (a2.rank(), b2.rank());
    if let (Some(k1), Some(k2)) = (a2.0[ar - 1].known(), b2.0[br - 2].known()) {
        if k1 != k2 {
            return Err(format!("MatMul inner dimensions differ: {a} x {b}"));
        }
    }
    let batch = Shape(a2.0[..ar - 2].to_vec()).broadcast(&Shape(b2.0[..br - 2].to_vec()))?;
    let mut dims = batch.0;
    if a.rank() > 1 {
        dims.push(a2.0[ar - 2].clone());
    }
    if b.rank() > 1 {
        dims.push(b2.0[br - 1].clone());
    }
    Ok(Shape(dims))
}

#[allow(clippy::too_many_arguments)]
fn window_out(
    input: &Dim,
    kernel: &Dim,
    stride: u64,
    dilation: u64,
    pads: &AutoPad,
    i: usize,
    spatial: usize,
    ceil: bool,
) -> Dim {
    let stride_d = Dim::Known(stride.max(1));
    match pads {
        AutoPad::SameUpper | AutoPad::SameLower => input.ceil_div(&stride_d),
        _ => {
            let (pb, pe) = match pads {
                AutoPad::Explicit(p) => (*p.get(i).unwrap_or(&0), *p.get(i + spatial).unwrap_or(&0)),
                _ => (0, 0),
            };
            let eff_kernel = kernel.sub(&Dim::Known(1)).mul(&Dim::Known(dilation)).add(&Dim::Known(1));
            let span = input.add(&Dim::Known(pb + pe)).sub(&eff_kernel);
            let n = if ceil { span.ceil_div(&stride_d) } else { span.floor_div(&stride_d) };
            let out = n.add(&Dim::Known(1));
            // ceil_mode: the last window must start inside the (left-padded) input.
            if let (true, Some(o), Some(inp)) = (ceil, out.known(), input.known()) {
                if (o - 1) * stride >= inp + pb {
                    return Dim::Known(o - 1);
                }
            }
            out
        }
    }
}

/// ConvTranspose output: `stride*(in-1) + output_padding + (k-1)*dilation + 1 - pads`, or the
/// requested `output_shape`; channels are `W[1] * group`.
fn conv_transpose_shape(ct: &ConvTranspose, x: Option<Shape>, w: Option<Shape>) -> Option<Shape> {
    let x = x.filter(|x| x.rank() >= 3)?;
    let spatial = x.rank() - 2;
    let channels =
        w.as_ref().filter(|w| w.rank() == x.rank()).map_or(Dim::Unknown, |w| w.0[1].mul(&Dim::Known(ct.conv.group)));
    let mut dims = vec![x.0[0].clone(), channels];
    for i in 0..spatial {
        if let Some(os) = &ct.output_shape {
            // output_shape may list only the spatial sizes or the whole shape.
            let off = os.len().saturating_sub(spatial);
            dims.push(os.get(off + i).map_or(Dim::Unknown, |v| Dim::Known(*v)));
            continue;
        }
        let kernel = match &ct.conv.kernel_shape {
            Some(k) => k.get(i).map_or(Dim::Unknown, |k| Dim::Known(*k)),
            None => w.as_ref().and_then(|w| w.0.get(2 + i).cloned()).unwrap_or(Dim::Unknown),
        };
        let s = *ct.conv.strides.get(i).unwrap_or(&1);
        let d = *ct.conv.dilations.get(i).unwrap_or(&1);
        let op = *ct.output_padding.get(i).unwrap_or(&0);
        let input = &x.0[2 + i];
        let out = match &ct.conv.pads {
            AutoPad::SameUpper | AutoPad::SameLower => input.mul(&Dim::Known(s)),
            pads => {
                let (pb, pe) = match pads {
                    AutoPad::Explicit(p) => (*p.get(i).unwrap_or(&0), *p.get(i + spatial).unwrap_or(&0)),
                    _ => (0, 0),
                };
                let eff_kernel = kernel.sub(&Dim::Known(1)).mul(&Dim::Known(d)).add(&Dim::Known(1));
                let base = input.sub(&Dim::Known(1)).mul(&Dim::Known(s)).add(&Dim::Known(op)).add(&eff_kernel);
                match base.known() {
                    Some(b) if b < pb + pe => return None,
                    _ => base.sub(&Dim::Known(pb + pe)),
                }
            }
        };
        dims.push(out);
    }
    Some(Shape(dims))
}

/// Resize output sizes from constant `scales` (floor(in * scale)) or `sizes`, for the stretch
/// policy; the other policies depend on all sizes at once and are left unknown.
fn resize_shape(r: &Resize, x: Option<Shape>, scales: Option<&Tensor>, sizes: Option<&Tensor>) -> Option<Shape> {
    let x = x?;
    let rank = x.rank();
    let axes: Vec<usize> = match &r.axes {
        Some(a) => a.iter().map(|a| normalize_axis(*a, rank)).collect::<Result<_, _>>().ok()?,
        None => (0..rank).collect(),
    };
    let mut out = Shape(vec![Dim::Unknown; rank]);
    for (i, d) in x.0.iter().enumerate() {
        if !axes.contains(&i) {
            out.0[i] = d.clone();
        }
    }
    if let Some(sizes) = sizes.and_then(|t| t.to_i64_vec().ok()).filter(|v| v.len() == axes.len()) {
        if r.keep_aspect_ratio_policy == "stretch" {
            for (k, a) in axes.iter().enumerate() {
                out.0[*a] = Dim::Known(sizes[k].max(0) as u64);
            }
        }
        return Some(out);
    }
    // With tf_crop_and_resize the output also scales by the roi's extent.
    let crop = r.coordinate_transformation_mode == "tf_crop_and_resize";
    if let Some(scales) = scales.and_then(|t| t.to_f64_vec().ok()).filter(|v| v.len() == axes.len() && !crop) {
        for (k, a) in axes.iter().enumerate() {
            if let Some(n) = x.0[*a].known() {
                // Scales are float32 in practice: multiply in that precision, as runtimes do.
                out.0[*a] = Dim::Known(((n as f32) * scales[k] as f32).floor().max(0.0) as u64);
            }
        }
    }
    Some(out)
}

/// Y, present_key, present_value and qk_matmul_output of Attention from the shapes of Q, K, V,
/// past_key and past_value.
fn attention_shapes(a: &Attention, s: [Option<Shape>; 5]) -> Result<[Option<Shape>; 4], String> {
    let [q, k, v, past_k, past_v] = s;
    let rank = q.as_ref().or(k.as_ref()).or(v.as_ref()).map(Shape::rank);
    for x in [&q, &k, &v].into_iter().flatten() {
        if Some(x.rank()) != rank || !(x.rank() == 3 || x.rank() == 4) {
            return Err("Attention's Q, K and V must all be 3-D or all 4-D".into());
        }
    }
    // Heads-major 4-D views: [batch, heads, seq, size].
    let heads_major = |x: &Option<Shape>, heads: Option<u64>| -> Result<Option<Shape>, String> {
        let Some(x) = x else { return Ok(None) };
        if x.rank() == 4 {
            return Ok(Some(x.clone()));
        }
        let h = heads.ok_or("3-D Attention inputs need q_num_heads and kv_num_heads")?;
        let (b, seq, hidden) = (&x.0[0], &x.0[1], &x.0[2]);
        if let Some(n) = hidden.known() {
            if h == 0 || n % h != 0 {
                return Err(format!("hidden size {n} is not a multiple of the head count {h}"));
            }
        }
        Ok(Some(Shape(vec![b.clone(), Dim::Known(h), seq.clone(), hidden.floor_div(&Dim::Known(h))])))
    };
    let q4 = heads_major(&q, a.q_num_heads)?;
    let k4 = heads_major(&k, a.kv_num_heads)?;
    let v4 = heads_major(&v, a.kv_num_heads)?;
    let append = |x: Option<Shape>, past: &Option<Shape>| -> Option<Shape> {
        let mut x = x?;
        if let Some(p) = past {
            let p = p.0.get(2)?;
            x.0[2] = p.add(&x.0[2]);
        }
        Some(x)
    };
    let present_k = append(k4, &past_k);
    let present_v = append(v4, &past_v);
    let dim = |x: &Option<Shape>, i: usize| x.as_ref().map_or(Dim::Unknown, |x| x.0[i].clone());
    let y4 = [dim(&q4, 0), dim(&q4, 1), dim(&q4, 2), dim(&present_v, 3)];
    let y = match rank {
        Some(3) => Some(Shape(vec![y4[0].clone(), y4[2].clone(), y4[1].mul(&y4[3])])),
        Some(_) => Some(Shape(y4.to_vec())),
        None => None,
    };
    let scores = rank.map(|_| Shape(vec![dim(&q4, 0), dim(&q4, 1), dim(&q4, 2), dim(&present_k, 2)]));
    Ok([y, present_k, present_v, scores])
}

/// Y, Y_h (and LSTM's Y_c) of a recurrent op.
fn rnn_shapes(r: &Rnn, x: Option<Shape>, n_out: usize) -> Vec<Option<Shape>> {
    let dirs = Dim::Known(if r.direction == RnnDirection::Bidirectional { 2 } else { 1 });
    let hidden = Dim::Known(r.hidden_size);
    let x = x.filter(|x| x.rank() == 3);
    let (seq, batch) = match &x {
        Some(x) if r.batch_first => (x.0[1].clone(), x.0[0].clone()),
        Some(x) => (x.0[0].clone(), x.0[1].clone()),
        None => (Dim::Unknown, Dim::Unknown),
    };
    let y = if r.batch_first {
        Shape(vec![batch.clone(), seq, dirs.clone(), hidden.clone()])
    } else {
        Shape(vec![seq, dirs.clone(), batch.clone(), hidden.clone()])
    };
    let state = if r.batch_first { Shape(vec![batch, dirs, hidden]) } else { Shape(vec![dirs, batch, hidden]) };
    (0..n_out).map(|k| Some(if k == 0 { y.clone() } else { state.clone() })).collect()
}

#[cfg(test)]
mod control_flow_tests {
    use super::*;
    use crate::ops::Scan;

    /// Scan-11 with scan_output_axes [-1]: a body output of shape [3] over 4 iterations is
    /// stacked into [3, 4] (the ONNX spec's scan_output_axes semantics).
    #[test]
    fn scan_output_axis_is_inserted() {
        let mut body = Graph::default();
        let s = body.add_value("s", ValueType::tensor(DType::F32, Shape::known(&[3])));
        let a = body.add_value("a", ValueType::tensor(DType::F32, Shape::known(&[3])));
        let o = body.add_value("o", ValueType::tensor(DType::F32, Shape::known(&[3])));
        body.inputs = vec![s, a];
        body.outputs = vec![s, o];
        let node = Node {
            name: String::new(),
            op: Op::Scan(Scan {
                body: Box::new(body),
                num_scan_inputs: 1,
                scan_input_axes: vec![-1],
                scan_input_reverse: vec![false],
                scan_output_axes: vec![-1],
                scan_output_reverse: vec![false],
            }),
            inputs: vec![Some(0), Some(1)],
            outputs: vec![Some(2), Some(3)],
            doc_string: String::new(),
        };
        let inputs =
            [ValueType::tensor(DType::F32, Shape::known(&[3])), ValueType::tensor(DType::F32, Shape::known(&[3, 4]))];
        let out = infer_node(&node, &inputs, &[None, None]).unwrap();
        assert_eq!(out[0], ValueType::tensor(DType::F32, Shape::known(&[3])));
        assert_eq!(out[1], ValueType::tensor(DType::F32, Shape::known(&[3, 4])));
    }

    /// Loop scan outputs gain a leading axis of unknown length; carried values keep what the
    /// initial value and the body output agree on.
    #[test]
    fn loop_outputs() {
        let mut body = Graph::default();
        let i = body.add_value("i", ValueType::tensor(DType::I64, Shape::scalar()));
        let c = body.add_value("c", ValueType::tensor(DType::Bool, Shape::scalar()));
        let v = body.add_value("v", ValueType::tensor(DType::F32, Shape(vec![Dim::Known(2), Dim::Unknown])));
        let v1 = body.add_value("v1", ValueType::tensor(DType::F32, Shape::known(&[2, 5])));
        body.inputs = vec![i, c, v];
        body.outputs = vec![c, v1, v1];
        let node = Node {
            name: String::new(),
            op: Op::Loop { body: Box::new(body) },
            inputs: vec![None, None, Some(0)],
            outputs: vec![Some(1), Some(2)],
            doc_string: String::new(),
        };
        let inputs = [ValueType::Unknown, ValueType::Unknown, ValueType::tensor(DType::F32, Shape::known(&[2, 3]))];
        let out = infer_node(&node, &inputs, &[None, None, None]).unwrap();
        assert_eq!(out[0], ValueType::tensor(DType::F32, Shape(vec![Dim::Known(2), Dim::Unknown])));
        assert_eq!(out[1], ValueType::tensor(DType::F32, Shape(vec![Dim::Unknown, Dim::Known(2), Dim::Known(5)])));
    }
}

#[cfg(test)]
mod shape_family_tests {
    use super::*;

    fn out_shape(op: Op, inputs: &[ValueType], consts: &[Option<&Tensor>]) -> Option<Shape> {
        let node = Node {
            name: String::new(),
            op,
            inputs: (0..inputs.len()).map(Some).collect(),
            outputs: vec![Some(inputs.len())],
            doc_string: String::new(),
        };
        infer_node(&node, inputs, consts).unwrap()[0].shape().cloned()
    }

    fn f32s(dims: &[u64]) -> ValueType {
        ValueType::tensor(DType::F32, Shape::known(dims))
    }

    #[test]
    fn gather_nd_shapes() {
        // ONNX GatherND spec, example 5 (batch_dims=1): data [2,2,2], indices [2,1] -> [2,2].
        let s = out_shape(Op::GatherNd { batch_dims: 1 }, &[f32s(&[2, 2, 2]), f32s(&[2, 1])], &[None, None]);
        assert_eq!(s, Some(Shape::known(&[2, 2])));
        // Example 3: data [2,2,2], indices [[1]] -> [1,2,2].
        let s = out_shape(Op::GatherNd { batch_dims: 0 }, &[f32s(&[2, 2, 2]), f32s(&[1, 1])], &[None, None]);
        assert_eq!(s, Some(Shape::known(&[1, 2, 2])));
    }

    #[test]
    fn pad_with_axes() {
        // test_constant_pad_axes: x [1,3,4,5], pads [0,3,0,4] on axes [1,3] -> [1,3,4,12].
        let pads = Tensor::from_i64(vec![4], &[0, 3, 0, 4]).unwrap();
        let axes = Tensor::from_i64(vec![2], &[1, 3]).unwrap();
        let i64s = ValueType::tensor(DType::I64, Shape::known(&[4]));
        let s = out_shape(
            Op::Pad { mode: crate::ops::PadMode::Constant },
            &[f32s(&[1, 3, 4, 5]), i64s.clone(), ValueType::Unknown, i64s],
            &[None, Some(&pads), None, Some(&axes)],
        );
        assert_eq!(s, Some(Shape::known(&[1, 3, 4, 12])));
    }

    #[test]
    fn space_depth_and_range() {
        // test_spacetodepth_example: [1,2,4,6] blocksize 2 -> [1,8,2,3]; DepthToSpace inverts it.
        let op = Op::SpaceToDepth { blocksize: 2, column_row_depth: true };
        assert_eq!(out_shape(op, &[f32s(&[1, 2, 4, 6])], &[None]), Some(Shape::known(&[1, 8, 2, 3])));
        let op = Op::DepthToSpace { blocksize: 2, column_row_depth: false };
        assert_eq!(out_shape(op, &[f32s(&[1, 8, 2, 3])], &[None]), Some(Shape::known(&[1, 2, 4, 6])));
        // Range spec example 2: start 10, limit 4, delta -2 -> [10, 8, 6].
        let (a, b, d) = (Tensor::scalar_i64(10), Tensor::scalar_i64(4), Tensor::scalar_i64(-2));
        let sc = ValueType::tensor(DType::I64, Shape::scalar());
        let s = out_shape(Op::Range, &[sc.clone(), sc.clone(), sc], &[Some(&a), Some(&b), Some(&d)]);
        assert_eq!(s, Some(Shape::known(&[3])));
    }

    #[test]
    fn signal_processing_shapes() {
        // test_dft_rfft: [1,10,10,1] axis 1 one-sided -> [1,6,10,2]; test_dft_irfft inverts it.
        let axis = Tensor::scalar_i64(1);
        let i64s = ValueType::tensor(DType::I64, Shape::scalar());
        let dft = |inverse, onesided| Op::Dft { inverse, onesided };
        let ins = [f32s(&[1, 10, 10, 1]), ValueType::Unknown, i64s.clone()];
        let s = out_shape(dft(false, true), &ins, &[None, None, Some(&axis)]);
        assert_eq!(s, Some(Shape::known(&[1, 6, 10, 2])));
        let ins = [f32s(&[1, 6, 10, 2]), ValueType::Unknown, i64s.clone()];
        let s = out_shape(dft(true, true), &ins, &[None, None, Some(&axis)]);
        assert_eq!(s, Some(Shape::known(&[1, 10, 10, 1])));
        // test_stft: signal [1,128,1], frame_step 8, frame_length 16, one-sided -> [1,15,9,2].
        let (step, len) = (Tensor::scalar_i64(8), Tensor::scalar_i64(16));
        let ins = [f32s(&[1, 128, 1]), i64s.clone(), ValueType::Unknown, i64s.clone()];
        let s = out_shape(Op::Stft { onesided: true }, &ins, &[None, Some(&step), None, Some(&len)]);
        assert_eq!(s, Some(Shape::known(&[1, 15, 9, 2])));
        // test_melweightmatrix: 8 mel bins, dft_length 16 -> [9, 8].
        let (bins, n) = (Tensor::scalar_i64(8), Tensor::scalar_i64(16));
        let ins = vec![i64s; 5];
        let s = out_shape(Op::MelWeightMatrix { dtype: DType::F32 }, &ins, &[Some(&bins), Some(&n), None, None, None]);
        assert_eq!(s, Some(Shape::known(&[9, 8])));
    }
}

/// DFT output shape: the transformed axis becomes the DFT length (halved plus one for a
/// one-sided forward transform), the trailing dim 2 (1 for a one-sided inverse, a real signal).
fn dft_shape(s: &Shape, n: Option<i64>, axis: i64, inverse: bool, onesided: bool) -> Option<Shape> {
    let r = s.rank();
    if r < 2 {
        return None;
    }
    let a = normalize_axis(axis, r).ok()?;
    if a == r - 1 {
        return None;
    }
    let n = match n {
        Some(n) => Some(n.max(0) as u64),
        None if inverse && onesided => s.0[a].known().map(|d| 2 * d.saturating_sub(1)),
        None => s.0[a].known(),
    };
    let mut out = s.clone();
    out.0[a] = match n {
        Some(n) if onesided && !inverse => Dim::Known(n / 2 + 1),
        Some(n) => Dim::Known(n),
        None => Dim::Unknown,
    };
    out.0[r - 1] = Dim::Known(if inverse && onesided { 1 } else { 2 });
    Some(out)
}

#[cfg(test)]
mod robustness_tests {
    use super::*;
    use crate::ops::Conv;

    fn node(op: Op, n_in: usize, n_out: usize) -> Node {
        Node {
            name: String::new(),
            op,
            inputs: (0..n_in).map(Some).collect(),
            outputs: (0..n_out).map(|k| Some(n_in + k)).collect(),
            doc_string: String::new(),
        }
    }

    /// Inputs that describe impossible or unknowable shapes give errors or unknowns, never panics.
    #[test]
    fn impossible_shapes_do_not_panic() {
        let x = ValueType::tensor(DType::F32, Shape::known(&[5]));
        let split = node(Op::Split { axis: 0, num_outputs: Some(4) }, 1, 4);
        let out = infer_node(&split, std::slice::from_ref(&x), &[None]).unwrap();
        assert_eq!(out[3].shape(), None, "5 into 4 equal chunks leaves no valid last chunk");

        let runtime_split = node(Op::Split { axis: 0, num_outputs: None }, 2, 2);
        let out = infer_node(&runtime_split, &[x.clone(), ValueType::Unknown], &[None, None]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Unknown])));

        let target = Tensor::from_i64(vec![2], &[0, -1]).unwrap();
        let reshape = node(Op::Reshape { allowzero: false }, 2, 1);
        let unranked = ValueType::Tensor { dtype: Some(DType::F32), shape: None };
        assert!(infer_node(&reshape, &[unranked, ValueType::Unknown], &[None, Some(&target)]).is_ok());

        // Two unknown sizes are not the same size: [?, 8] reshaped to [0, -1] keeps -1 unknown.
        let partly = ValueType::tensor(DType::F32, Shape(vec![Dim::Unknown, Dim::Known(8)]));
        let target = Tensor::from_i64(vec![2], &[0, -1]).unwrap();
        let out = infer_node(&reshape, &[partly, ValueType::Unknown], &[None, Some(&target)]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Unknown, Dim::Unknown])));

        let conv = Op::Conv(Conv {
            kernel_shape: Some(vec![3]),
            strides: vec![],
            dilations: vec![],
            pads: AutoPad::Explicit(vec![]),
            group: 1,
        });
        let x4 = ValueType::tensor(DType::F32, Shape::known(&[1, 1, 8, 8]));
        let w4 = ValueType::tensor(DType::F32, Shape::known(&[1, 1, 3, 3]));
        assert!(infer_node(&node(conv, 2, 1), &[x4, w4], &[None, None]).is_err());
    }
}

#[cfg(test)]
mod attention_tests {
    use super::*;
    use crate::ops::{Attention, QkMatmulOutputMode};

    fn attention(q_heads: Option<u64>, kv_heads: Option<u64>) -> Op {
        Op::Attention(Attention {
            is_causal: false,
            q_num_heads: q_heads,
            kv_num_heads: kv_heads,
            qk_matmul_output_mode: QkMatmulOutputMode::Raw,
            scale: None,
            softcap: 0.0,
            softmax_precision: None,
            left_window_size: None,
            right_window_size: None,
        })
    }

    fn shapes(op: Op, inputs: &[Option<&[u64]>]) -> Vec<Option<Shape>> {
        let types: Vec<ValueType> = inputs
            .iter()
            .map(|s| s.map_or(ValueType::Unknown, |s| ValueType::tensor(DType::F32, Shape::known(s))))
            .collect();
        let node = Node {
            name: String::new(),
            op,
            inputs: inputs.iter().enumerate().map(|(i, s)| s.map(|_| i)).collect(),
            outputs: (0..4).map(|i| Some(10 + i)).collect(),
            doc_string: String::new(),
        };
        let consts = vec![None; inputs.len()];
        infer_node(&node, &types, &consts).unwrap().iter().map(|t| t.shape().cloned()).collect()
    }

    /// Shapes of the ONNX backend cases test_attention_3d_gqa_with_past_and_present and
    /// test_attention_3d_with_past_and_present_qk_matmul (3-D inputs, 4-D cache).
    #[test]
    fn three_d_with_cache() {
        let (pk, pv): (&[u64], &[u64]) = (&[2, 3, 12, 8], &[2, 3, 12, 8]);
        let s = shapes(
            attention(Some(9), Some(3)),
            &[Some(&[2, 4, 72]), Some(&[2, 6, 24]), Some(&[2, 6, 24]), Some(&[4, 18]), Some(pk), Some(pv)],
        );
        assert_eq!(s[0], Some(Shape::known(&[2, 4, 72])));
        assert_eq!(s[1], Some(Shape::known(&[2, 3, 18, 8])));
        assert_eq!(s[2], Some(Shape::known(&[2, 3, 18, 8])));
        assert_eq!(s[3], Some(Shape::known(&[2, 9, 4, 18])));
        let s = shapes(
            attention(Some(3), Some(3)),
            &[Some(&[2, 4, 24]), Some(&[2, 6, 24]), Some(&[2, 6, 24]), Some(&[4, 18]), Some(pk), Some(pv)],
        );
        assert_eq!(s[0], Some(Shape::known(&[2, 4, 24])));
        assert_eq!(s[3], Some(Shape::known(&[2, 3, 4, 18])));
    }

    /// test_attention_4d_diff_heads_with_past_and_present: V's head size differs from Q/K's.
    #[test]
    fn four_d_value_head_size() {
        let s = shapes(
            attention(None, None),
            &[
                Some(&[2, 3, 4, 8]),
                Some(&[2, 3, 6, 8]),
                Some(&[2, 3, 6, 10]),
                None,
                Some(&[2, 3, 12, 8]),
                Some(&[2, 3, 12, 10]),
            ],
        );
        assert_eq!(s[0], Some(Shape::known(&[2, 3, 4, 10])));
        assert_eq!(s[1], Some(Shape::known(&[2, 3, 18, 8])));
        assert_eq!(s[2], Some(Shape::known(&[2, 3, 18, 10])));
    }

    #[test]
    fn three_d_needs_head_counts() {
        let types = vec![ValueType::tensor(DType::F32, Shape::known(&[2, 4, 24])); 3];
        let node = Node {
            name: String::new(),
            op: attention(None, None),
            inputs: vec![Some(0), Some(1), Some(2)],
            outputs: vec![Some(3)],
            doc_string: String::new(),
        };
        assert!(infer_node(&node, &types, &[None, None, None]).is_err());
    }
}

#[cfg(test)]
mod computed_shape_tests {
    use super::*;

    fn node(op: Op, n_in: usize) -> Node {
        Node {
            name: String::new(),
            op,
            inputs: (0..n_in).map(Some).collect(),
            outputs: vec![Some(n_in)],
            doc_string: String::new(),
        }
    }

    fn shape_operand(len: u64) -> ValueType {
        ValueType::tensor(DType::I64, Shape::known(&[len]))
    }

    /// torch writes `x.view(b, h, -1, d)` with a target computed by Concat(Shape(x)...): its values are unknown,
    /// but its length fixes the rank, which later canonicalizers (BatchNormalization, Softmax) need.
    #[test]
    fn a_computed_reshape_target_gives_the_rank() {
        let x = ValueType::tensor(DType::F32, Shape(vec![Dim::param("N"), Dim::Known(64), Dim::Known(56)]));
        let out = infer_node(&node(Op::Reshape { allowzero: false }, 2), &[x, shape_operand(6)], &[None, None]);
        assert_eq!(out.unwrap()[0], ValueType::tensor(DType::F32, Shape(vec![Dim::Unknown; 6])));
        // A target of unknown length says nothing.
        let x = ValueType::tensor(DType::F32, Shape::known(&[4]));
        let any_len = ValueType::tensor(DType::I64, Shape(vec![Dim::Unknown]));
        let out = infer_node(&node(Op::Reshape { allowzero: false }, 2), &[x, any_len], &[None, None]);
        assert_eq!(out.unwrap()[0].shape(), None);
    }

    #[test]
    fn a_computed_expand_shape_gives_the_rank_and_keeps_dims_over_one() {
        let x = ValueType::tensor(DType::F32, Shape::known(&[1, 5]));
        let out = infer_node(&node(Op::Expand, 2), &[x, shape_operand(3)], &[None, None]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Unknown, Dim::Unknown, Dim::Known(5)])));
        // The input's rank wins over a shorter target.
        let x = ValueType::tensor(DType::F32, Shape::known(&[2, 3, 1]));
        let out = infer_node(&node(Op::Expand, 2), &[x, shape_operand(1)], &[None, None]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Known(2), Dim::Known(3), Dim::Unknown])));
    }

    #[test]
    fn a_computed_constant_of_shape_gives_the_rank() {
        let fill = Tensor::from_i64(vec![1], &[0]).unwrap();
        let out = infer_node(&node(Op::ConstantOfShape(fill), 1), &[shape_operand(2)], &[None]).unwrap();
        assert_eq!(out[0], ValueType::tensor(DType::I64, Shape(vec![Dim::Unknown; 2])));
    }
}

#[cfg(test)]
mod einsum_and_slice_tests {
    use super::*;

    fn node(op: Op, n_in: usize) -> Node {
        Node {
            name: String::new(),
            op,
            inputs: (0..n_in).map(Some).collect(),
            outputs: vec![Some(n_in)],
            doc_string: String::new(),
        }
    }

    fn f32s(dims: &[u64]) -> ValueType {
        ValueType::tensor(DType::F32, Shape::known(dims))
    }

    fn einsum(eq: &str, ins: &[ValueType]) -> Option<Shape> {
        let out = infer_node(&node(Op::Einsum { equation: eq.into() }, ins.len()), ins, &vec![None; ins.len()]);
        out.unwrap()[0].shape().cloned()
    }

    #[test]
    fn einsum_output_shapes_follow_the_equation() {
        // torchvision's MaxViT attention: batched q @ k^T over five axes.
        let q = f32s(&[1, 2, 49, 4, 32]);
        let k = f32s(&[1, 2, 49, 4, 32]);
        assert_eq!(einsum("B G P H D, B G Q H D -> B G H P Q", &[q, k]), Some(Shape::known(&[1, 2, 4, 49, 49])));
        // Implicit output: letters used once, sorted; a letter of size 1 broadcasts against a known size.
        assert_eq!(einsum("ij,jk", &[f32s(&[2, 3]), f32s(&[3, 5])]), Some(Shape::known(&[2, 5])));
        assert_eq!(einsum("ij,ij->ij", &[f32s(&[1, 3]), f32s(&[4, 3])]), Some(Shape::known(&[4, 3])));
        // Ellipsis dims broadcast and lead the implicit output.
        assert_eq!(einsum("...ij,...jk", &[f32s(&[7, 1, 2, 3]), f32s(&[5, 3, 4])]), Some(Shape::known(&[7, 5, 2, 4])));
        assert_eq!(einsum("bij->bji", &[f32s(&[2, 3, 4])]), Some(Shape::known(&[2, 4, 3])));
        // A size 1 against an unknown size: unknown, not 1.
        let n = ValueType::tensor(DType::F32, Shape(vec![Dim::Unknown, Dim::Known(3)]));
        assert_eq!(einsum("ij,ij->ij", &[f32s(&[1, 3]), n]), Some(Shape(vec![Dim::Unknown, Dim::Known(3)])));
        // Equations that do not fit the ranks give no shape (the runtime reports them), never a panic.
        assert_eq!(einsum("ij->ij", &[f32s(&[2, 3, 4])]), None);
        assert_eq!(einsum("ijk->ij", &[f32s(&[2])]), None);
        assert_eq!(einsum("ij->iz", &[f32s(&[2, 3])]), None);
    }

    #[test]
    fn a_slice_with_computed_bounds_keeps_the_rank_and_the_unsliced_dims() {
        let x = f32s(&[2, 49, 192]);
        let i64s = ValueType::tensor(DType::I64, Shape::known(&[1]));
        let axes = Tensor::from_i64(vec![1], &[-1]).unwrap();
        let ins = [x.clone(), i64s.clone(), i64s.clone(), i64s.clone()];
        let out = infer_node(&node(Op::Slice, 4), &ins, &[None, None, None, Some(&axes)]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Known(2), Dim::Known(49), Dim::Unknown])));
        let out = infer_node(&node(Op::Slice, 3), &[x, i64s.clone(), i64s], &[None, None, None]).unwrap();
        assert_eq!(out[0].shape(), Some(&Shape(vec![Dim::Unknown; 3])));
    }
}
