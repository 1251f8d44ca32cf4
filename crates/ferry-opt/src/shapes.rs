//! Shape-computation folding: `Shape`/`Size` of a value whose dimensions shape inference knows
//! become constants (the usual `Shape -> Gather -> Concat -> Reshape` chains then fold as
//! constants), and `Gather` of known dimensions out of a partly known `Shape` too. Types here come
//! from a fresh inference (see `lib.rs`), never from file annotations alone, which exporters
//! often write stale.

use crate::editor::Editor;
use ferry_ir::shape::normalize_axis;
use ferry_ir::{Op, Shape, Tensor};

pub fn fold_shapes(ed: &mut Editor) -> usize {
    let mut folded = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] {
            continue;
        }
        let node = &ed.g.nodes[n];
        let Some(Some(out)) = node.outputs.first().copied() else { continue };
        if ed.is_output(out) || ed.constant(out).is_some() {
            continue;
        }
        let t = match &node.op {
            Op::Shape { start, end } => node.inputs.first().copied().flatten().and_then(|x| {
                let dims = known_slice(ed.ty(x).shape()?, *start, *end)?;
                Tensor::from_i64(vec![dims.len() as u64], &dims).ok()
            }),
            Op::Size => node.inputs.first().copied().flatten().and_then(|x| {
                let dims = ed.ty(x).shape()?.to_known()?;
                let numel = ferry_ir::tensor::checked_numel(&dims).ok()?;
                Some(Tensor::scalar_i64(i64::try_from(numel).ok()?))
            }),
            Op::Gather { axis } => gather_of_shape(ed, n, *axis),
            Op::Slice => slice_of_shape(ed, n),
            _ => None,
        };
        if let Some(t) = t {
            ed.kill(n);
            ed.set_constant(out, t);
            folded += 1;
        }
    }
    folded
}

/// Dims `[start, end)` of `shape` (ONNX Shape-15 clamping), when all of them are known.
fn known_slice(shape: &Shape, start: i64, end: Option<i64>) -> Option<Vec<i64>> {
    let (lo, hi) = shape_range(shape.rank(), start, end);
    shape.dims()[lo..hi].iter().map(|d| d.known().and_then(|k| i64::try_from(k).ok())).collect()
}

fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) } as usize;
    let (lo, hi) = (clamp(start), clamp(end.unwrap_or(r)));
    (lo, hi.max(lo))
}

/// The dims that `Shape` node `p` returns (some possibly unknown), when x's rank is known.
fn shape_dims<'e>(ed: &'e Editor, data: ferry_ir::ValueId) -> Option<&'e [ferry_ir::Dim]> {
    let p = ed.producer(data)?;
    let Op::Shape { start, end } = &ed.g.nodes[p].op else { return None };
    let x = ed.g.nodes[p].inputs.first().copied().flatten()?;
    let shape = ed.ty(x).shape()?;
    let (lo, hi) = shape_range(shape.rank(), *start, *end);
    Some(&shape.dims()[lo..hi])
}

/// `Gather(Shape(x), indices)` along axis 0 with constant indices that pick only known dims.
fn gather_of_shape(ed: &Editor, n: usize, axis: i64) -> Option<Tensor> {
    let node = &ed.g.nodes[n];
    let (data, indices) = (node.inputs.first().copied().flatten()?, node.inputs.get(1).copied().flatten()?);
    let idx = ed.constant(indices)?;
    let dims = shape_dims(ed, data)?;
    if axis != 0 && axis != -1 {
        return None;
    }
    let picked: Option<Vec<i64>> = idx
        .to_i64_vec()
        .ok()?
        .iter()
        .map(|i| {
            let k = normalize_axis(*i, dims.len()).ok()?;
            dims[k].known().and_then(|d| i64::try_from(d).ok())
        })
        .collect();
    Tensor::from_i64(idx.shape.clone(), &picked?).ok()
}

/// `Slice(Shape(x), starts, ends, axes?, steps?)` with constant parameters that select only
/// known dims (ONNX Slice semantics on the 1-D shape: negative bounds count from the end, bounds
/// are clamped, negative steps walk backwards).
fn slice_of_shape(ed: &Editor, n: usize) -> Option<Tensor> {
    let node = &ed.g.nodes[n];
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let ints = |i: usize| ed.constant(input(i)?)?.to_i64_vec().ok();
    let dims = shape_dims(ed, input(0)?)?;
    let (starts, ends) = (ints(1)?, ints(2)?);
    let axes = match input(3) {
        Some(_) => ints(3)?,
        None => vec![0],
    };
    let steps = match input(4) {
        Some(_) => ints(4)?,
        None => vec![1],
    };
    if starts.len() != 1 || ends.len() != 1 || axes.len() != 1 || steps.len() != 1 || !matches!(axes[0], 0 | -1) {
        return None;
    }
    let picked: Option<Vec<i64>> =
        slice_indices(dims.len() as i128, starts[0] as i128, ends[0] as i128, steps[0] as i128)?
            .into_iter()
            .map(|i| dims[i].known().and_then(|d| i64::try_from(d).ok()))
            .collect();
    let picked = picked?;
    Tensor::from_i64(vec![picked.len() as u64], &picked).ok()
}

/// The indices ONNX Slice selects from an axis of length `len`.
fn slice_indices(len: i128, start: i128, end: i128, step: i128) -> Option<Vec<usize>> {
    if step == 0 {
        return None;
    }
    if len == 0 {
        return Some(Vec::new());
    }
    let (start, end) = (if start < 0 { start + len } else { start }, if end < 0 { end + len } else { end });
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (start.clamp(0, len), end.clamp(0, len));
        while i < end {
            out.push(i as usize);
            i += step;
        }
    } else {
        let (mut i, end) = (start.clamp(0, len - 1), end.clamp(-1, len - 1));
        while i > end {
            out.push(i as usize);
            i += step;
        }
    }
    Some(out)
}
