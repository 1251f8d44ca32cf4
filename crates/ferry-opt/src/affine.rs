//! Folding per-channel affine constants into the contraction before them. Importers decompose
//! BatchNormalization into `(y - mean) / std * scale + bias` (ONNX) or `(y - mean) * scale + beta`
//! (MXNet) of constants; after constant folding those are per-channel constants after a Conv or a
//! MatMul. A chain of Add/Sub/Mul/Div by per-channel constants is `y * s + b`; it is folded into
//! a Conv's weights (`W[o] * s[o]`) and bias (`B * s + b`), or into a MatMul's constant right-hand
//! side (`W[:, j] * s[j]`) plus one bias Add (the chain's last node, rewritten).

use crate::editor::Editor;
use ferry_ir::ops::BinaryOp;
use ferry_ir::{DType, Op, Tensor, ValueId};

pub fn fold_affine(ed: &mut Editor) -> usize {
    let mut folded = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] {
            continue;
        }
        let done = match &ed.g.nodes[n].op {
            Op::Conv(_) => fold_into_conv(ed, n),
            Op::MatMul => fold_into_matmul(ed, n),
            _ => false,
        };
        folded += usize::from(done);
    }
    folded
}

/// `y * s + b` per channel.
struct Affine {
    scale: Vec<f64>,
    bias: Vec<f64>,
    /// The chain's nodes, in order, and the value the last one computes.
    nodes: Vec<usize>,
    result: ValueId,
    scales: bool,
}

fn float_type(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// Follows the single-reader chain of per-channel affine ops after `y` (channel axis `axis`
/// counted from the end of the output, whose rank is `rank`, with `channels` channels).
fn follow_chain(ed: &Editor, y: ValueId, rank: usize, axis_from_end: usize, channels: usize, init: Affine) -> Affine {
    let mut a = init;
    let mut cur = y;
    loop {
        if ed.uses(cur) != 1 || !ed.is_private(cur) {
            break;
        }
        let c = ed.consumers(cur)[0];
        let node = &ed.g.nodes[c];
        let Op::Binary(op) = node.op else { break };
        let (Some(Some(l)), Some(Some(r)), Some(Some(out))) =
            (node.inputs.first().copied(), node.inputs.get(1).copied(), node.outputs.first().copied())
        else {
            break;
        };
        let (konst, const_first) = if l == cur && r != cur {
            (r, false)
        } else if r == cur {
            (l, true)
        } else {
            break;
        };
        let Some(k) = ed.constant(konst).and_then(|t| per_channel(t, rank, axis_from_end, channels)) else { break };
        let step = match (op, const_first) {
            (BinaryOp::Add, _) => Some((vec![1.0; channels], k)),
            (BinaryOp::Sub, false) => Some((vec![1.0; channels], k.iter().map(|x| -x).collect())),
            (BinaryOp::Sub, true) => Some((vec![-1.0; channels], k)),
            (BinaryOp::Mul, _) => Some((k, vec![0.0; channels])),
            (BinaryOp::Div, false) if k.iter().all(|x| *x != 0.0) => {
                Some((k.iter().map(|x| 1.0 / x).collect(), vec![0.0; channels]))
            }
            _ => None,
        };
        let Some((s, b)) = step else { break };
        // (y * s0 + b0) * s + b
        for j in 0..channels {
            a.scale[j] *= s[j];
            a.bias[j] = a.bias[j] * s[j] + b[j];
        }
        // Only adding a constant leaves the scale at 1.
        a.scales |= s.iter().any(|x| *x != 1.0);
        a.nodes.push(c);
        a.result = out;
        cur = out;
    }
    a
}

/// A constant's values per channel, when it broadcasts along one channel axis only (or is a
/// scalar) and does not add axes to the output of rank `rank`.
fn per_channel(t: &Tensor, rank: usize, axis_from_end: usize, channels: usize) -> Option<Vec<f64>> {
    if !float_type(t.dtype) || t.shape.len() > rank {
        return None;
    }
    let values = t.to_f64_vec().ok()?;
    if values.len() == 1 {
        return Some(vec![values[0]; channels]);
    }
    let r = t.shape.len();
    let ok = t
        .shape
        .iter()
        .enumerate()
        .all(|(i, d)| if r - 1 - i == axis_from_end { *d as usize == channels } else { *d == 1 });
    (ok && values.len() == channels).then_some(values)
}

fn fold_into_conv(ed: &mut Editor, n: usize) -> bool {
    let node = &ed.g.nodes[n];
    let (Some(Some(w)), Some(Some(y))) = (node.inputs.get(1), node.outputs.first()) else { return false };
    let (w, y) = (*w, *y);
    let bias_in = node.inputs.get(2).copied().flatten();
    let Some(weight) = ed.constant(w).cloned() else { return false };
    if !float_type(weight.dtype) || weight.shape.len() < 3 {
        return false;
    }
    let channels = weight.shape[0] as usize;
    let bias = match bias_in {
        Some(b) => {
            match ed.constant(b).and_then(|t| (t.dtype == weight.dtype).then(|| t.to_f64_vec().ok()).flatten()) {
                Some(v) if v.len() == channels => v,
                _ => return false,
            }
        }
        None => vec![0.0; channels],
    };
    let rank = weight.shape.len();
    let init = Affine { scale: vec![1.0; channels], bias, nodes: Vec::new(), result: y, scales: false };
    let a = follow_chain(ed, y, rank, rank - 2, channels, init);
    if a.nodes.is_empty() {
        return false;
    }
    let per_out = weight.numel() as usize / channels.max(1);
    let Ok(wv) = weight.to_f64_vec() else { return false };
    let scaled: Vec<f64> = wv.iter().enumerate().map(|(i, x)| x * a.scale[i / per_out.max(1)]).collect();
    let (Some(new_w), Some(new_b)) = (
        tensor_f64(weight.dtype, weight.shape.clone(), &scaled),
        tensor_f64(weight.dtype, vec![channels as u64], &a.bias),
    ) else {
        return false;
    };
    let wname = ed.g.values[w].name.clone();
    let new_w = ed.add_constant(new_w, &wname);
    let new_b = ed.add_constant(new_b, &format!("{wname}_bias"));
    for c in &a.nodes {
        ed.kill(*c);
    }
    ed.set_input(n, 1, Some(new_w));
    if ed.g.nodes[n].inputs.len() < 3 {
        ed.g.nodes[n].inputs.push(None);
    }
    ed.set_input(n, 2, Some(new_b));
    ed.set_output(n, 0, a.result);
    true
}

fn fold_into_matmul(ed: &mut Editor, n: usize) -> bool {
    let node = &ed.g.nodes[n];
    let (Some(Some(w)), Some(Some(y))) = (node.inputs.get(1), node.outputs.first()) else { return false };
    let (w, y) = (*w, *y);
    let Some(weight) = ed.constant(w).cloned() else { return false };
    if !float_type(weight.dtype) || weight.shape.len() != 2 {
        return false;
    }
    let channels = weight.shape[1] as usize;
    // The product's rank bounds the constants' ranks; unknown: only rank <= 1 constants.
    let rank = ed.ty(y).shape().map_or(1, |s| s.rank()).max(1);
    let init =
        Affine { scale: vec![1.0; channels], bias: vec![0.0; channels], nodes: Vec::new(), result: y, scales: false };
    let a = follow_chain(ed, y, rank, 0, channels, init);
    let has_bias = a.bias.iter().any(|b| *b != 0.0);
    // Worth it only when a node goes: a scale folds away, or several ops become one Add.
    if a.nodes.is_empty() || (!a.scales && a.nodes.len() == 1) {
        return false;
    }
    if a.nodes.len() == 1 && has_bias {
        return false;
    }
    let Ok(wv) = weight.to_f64_vec() else { return false };
    let scaled: Vec<f64> = wv.iter().enumerate().map(|(i, x)| x * a.scale[i % channels.max(1)]).collect();
    let Some(new_w) = tensor_f64(weight.dtype, weight.shape.clone(), &scaled) else { return false };
    let wname = ed.g.values[w].name.clone();
    let new_w = ed.add_constant(new_w, &wname);
    ed.set_input(n, 1, Some(new_w));
    let (last, rest) = a.nodes.split_last().expect("non-empty");
    for c in rest {
        ed.kill(*c);
    }
    if has_bias {
        let Some(b) = tensor_f64(weight.dtype, vec![channels as u64], &a.bias) else { return false };
        let b = ed.add_constant(b, &format!("{wname}_bias"));
        // The chain's last node becomes `y + b`; it already sits after the MatMul.
        let last = *last;
        ed.g.nodes[last].op = Op::Binary(BinaryOp::Add);
        ed.set_input(last, 0, Some(y));
        ed.set_input(last, 1, Some(b));
    } else {
        ed.kill(*last);
        ed.set_output(n, 0, a.result);
    }
    true
}

/// A tensor of a float `dtype` from f64 values (rounded to nearest).
pub fn tensor_f64(dtype: DType, shape: Vec<u64>, values: &[f64]) -> Option<Tensor> {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
        DType::F64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => values.iter().flat_map(|v| half::f16::from_f64(*v).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|v| half::bf16::from_f64(*v).to_le_bytes()).collect(),
        _ => return None,
    };
    Tensor::from_raw(dtype, shape, bytes::Bytes::from(bytes)).ok()
}
