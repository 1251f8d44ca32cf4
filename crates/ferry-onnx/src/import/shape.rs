//! Layout, indexing and source ops: constants, shape queries, reshapes, slicing, gathers and
//! scatters. Old-opset attribute forms (axes, pads, shapes, split sizes) become constant inputs.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use ferry_ir::ops::{AttrValue, PadMode, ScatterReduction};
use ferry_ir::{DType, Op, Tensor, ValueId};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("Constant", constant),
    ("ConstantOfShape", constant_of_shape),
    ("Range", range),
    ("EyeLike", eye_like),
    ("Shape", shape),
    ("Size", |c| simple(c, Op::Size, 1)),
    ("Reshape", reshape),
    ("Transpose", transpose),
    ("Expand", |c| simple(c, Op::Expand, 2)),
    ("Squeeze", |c| axes_op(c, Op::Squeeze)),
    ("Unsqueeze", |c| axes_op(c, Op::Unsqueeze)),
    ("Flatten", flatten),
    ("Concat", concat),
    ("Split", split),
    ("Slice", slice),
    ("Pad", pad),
    ("Tile", tile),
    ("Gather", |c| {
        let axis = c.attr_i("axis", 0)?;
        simple(c, Op::Gather { axis }, 2)
    }),
    ("GatherElements", |c| {
        let axis = c.attr_i("axis", 0)?;
        simple(c, Op::GatherElements { axis }, 2)
    }),
    ("GatherND", |c| {
        let batch_dims = c.attr_i("batch_dims", 0)?;
        let batch_dims = u64::try_from(batch_dims).map_err(|_| c.error("batch_dims must be non-negative"))?;
        simple(c, Op::GatherNd { batch_dims }, 2)
    }),
    ("Scatter", scatter_elements),
    ("ScatterElements", scatter_elements),
    ("ScatterND", scatter_nd),
    ("OneHot", |c| {
        let axis = c.attr_i("axis", -1)?;
        simple(c, Op::OneHot { axis }, 3)
    }),
    ("Trilu", |c| {
        let upper = c.attr_i("upper", 1)? != 0;
        simple(c, Op::Trilu { upper }, 2)
    }),
    ("DepthToSpace", depth_to_space),
    ("SpaceToDepth", space_to_depth),
    ("Compress", |c| {
        let axis = c.attr_i_opt("axis")?;
        simple(c, Op::Compress { axis }, 2)
    }),
    ("NonZero", |c| simple(c, Op::NonZero, 1)),
    ("ReverseSequence", |c| {
        let batch_axis = c.attr_i("batch_axis", 1)?;
        let time_axis = c.attr_i("time_axis", 0)?;
        if !matches!((batch_axis, time_axis), (0, 1) | (1, 0)) {
            return Err(c.error("batch_axis and time_axis must be 0 and 1 in some order"));
        }
        simple(c, Op::ReverseSequence { batch_axis: batch_axis as u64, time_axis: time_axis as u64 }, 2)
    }),
];

/// Emits `op` over the node's first `n` inputs (absent ones stay absent) into output 0.
fn simple(c: &mut NodeCtx, op: Op, n: usize) -> Result<Canon> {
    c.required_input(0)?;
    let inputs = (0..n).map(|i| c.input(i)).collect();
    c.emit_to_output(op, inputs, 0);
    Ok(Canon::Done)
}

fn constant(c: &mut NodeCtx) -> Result<Canon> {
    let set: Vec<&str> = [
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "value_string",
        "value_strings",
        "sparse_value",
    ]
    .into_iter()
    .filter(|n| c.has_attr(n))
    .collect();
    if set.len() != 1 {
        return Err(c.error(format!("exactly one value attribute must be set, found {set:?}")));
    }
    let bad = |c: &NodeCtx, e: ferry_ir::IrError| c.error(e.to_string());
    let t = match (set[0], c.attr(set[0]).expect("present")) {
        ("value", AttrValue::Tensor(t)) => t.clone(),
        ("value_float", AttrValue::Float(f)) => Tensor::scalar_f32(*f),
        ("value_floats", AttrValue::Floats(f)) => Tensor::from_f32(vec![f.len() as u64], f).map_err(|e| bad(c, e))?,
        ("value_int", AttrValue::Int(i)) => Tensor::scalar_i64(*i),
        ("value_ints", AttrValue::Ints(i)) => Tensor::from_i64(vec![i.len() as u64], i).map_err(|e| bad(c, e))?,
        ("value_string", AttrValue::String(s)) => {
            Tensor::from_strings(vec![], vec![s.clone()]).map_err(|e| bad(c, e))?
        }
        ("value_strings", AttrValue::Strings(s)) => {
            Tensor::from_strings(vec![s.len() as u64], s.clone()).map_err(|e| bad(c, e))?
        }
        ("sparse_value", AttrValue::SparseTensor(s)) => {
            super::densify(s).map_err(|e| c.error(format!("sparse_value: {e}")))?
        }
        (name, _) => return Err(c.error(format!("attribute '{name}' has the wrong type"))),
    };
    c.emit_to_output(Op::Constant(t), vec![], 0);
    Ok(Canon::Done)
}

fn constant_of_shape(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let value = match c.attr_tensor("value")? {
        Some(t) => {
            if t.numel() != 1 {
                return Err(c.error("value must hold exactly one element"));
            }
            t
        }
        None => Tensor::from_f32(vec![1], &[0.0]).expect("well formed"),
    };
    c.emit_to_output(Op::ConstantOfShape(value), vec![Some(x)], 0);
    Ok(Canon::Done)
}

fn range(c: &mut NodeCtx) -> Result<Canon> {
    // Range-27's stash_type=0 asks for float16/bfloat16 accumulation in the narrow type; the core
    // op computes start + i * delta exactly, as stash_type=1 does.
    if c.attr_i("stash_type", 1)? != 1 && matches!(c.input_dtype(0), Some(DType::F16 | DType::BF16) | None) {
        return Ok(Canon::KeepOpaque("Range with stash_type other than float".into()));
    }
    for i in 0..3 {
        c.required_input(i)?;
    }
    simple(c, Op::Range, 3)
}

fn eye_like(c: &mut NodeCtx) -> Result<Canon> {
    let dtype = c.attr_dtype("dtype")?;
    let k = c.attr_i("k", 0)?;
    simple(c, Op::EyeLike { dtype, k }, 1)
}

fn shape(c: &mut NodeCtx) -> Result<Canon> {
    let start = c.attr_i("start", 0)?;
    let end = c.attr_i_opt("end")?;
    simple(c, Op::Shape { start, end }, 1)
}

fn reshape(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let shape = if c.version < 5 {
        let s = c.attr_ints("shape")?.ok_or_else(|| c.error("attribute 'shape' is required"))?;
        c.const_i64s(&s, "shape")
    } else {
        c.required_input(1)?
    };
    let allowzero = c.attr_i("allowzero", 0)? != 0;
    c.emit_to_output(Op::Reshape { allowzero }, vec![Some(x), Some(shape)], 0);
    Ok(Canon::Done)
}

fn transpose(c: &mut NodeCtx) -> Result<Canon> {
    let perm = match c.attr_ints("perm")? {
        Some(p) => Some(
            p.iter()
                .map(|x| usize::try_from(*x).map_err(|_| c.error(format!("perm has negative entry {x}"))))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    simple(c, Op::Transpose { perm }, 1)
}

/// Squeeze/Unsqueeze: axes were an attribute before opset 13.
fn axes_op(c: &mut NodeCtx, op: Op) -> Result<Canon> {
    let x = c.required_input(0)?;
    let axes = if c.version < 13 {
        match c.attr_ints("axes")? {
            Some(a) => Some(c.const_i64s(&a, "axes")),
            None if matches!(op, Op::Unsqueeze) => return Err(c.error("attribute 'axes' is required")),
            None => None,
        }
    } else {
        c.input(1)
    };
    if matches!(op, Op::Unsqueeze) && axes.is_none() {
        return Err(c.error("input 'axes' is required"));
    }
    c.emit_to_output(op, vec![Some(x), axes], 0);
    Ok(Canon::Done)
}

fn flatten(c: &mut NodeCtx) -> Result<Canon> {
    let axis = c.attr_i("axis", 1)?;
    simple(c, Op::Flatten { axis }, 1)
}

fn concat(c: &mut NodeCtx) -> Result<Canon> {
    // Concat-1 defaulted the axis to 1; later versions require it.
    let axis = match c.attr_i_opt("axis")? {
        Some(a) => a,
        None if c.version < 4 => 1,
        None => return Err(c.error("attribute 'axis' is required")),
    };
    let inputs: Vec<Option<ValueId>> = c.inputs.clone();
    if inputs.iter().all(Option::is_none) {
        return Err(c.error("needs at least one input"));
    }
    c.emit_to_output(Op::Concat { axis }, inputs, 0);
    Ok(Canon::Done)
}

fn split(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let axis = c.attr_i("axis", 0)?;
    let sizes = match c.version {
        // Split-1 took the sizes as an optional second input or as an attribute.
        1 => match c.input(1) {
            Some(s) => Some(s),
            None => c.attr_ints("split")?.map(|s| c.const_i64s(&s, "split")),
        },
        v if v < 13 => c.attr_ints("split")?.map(|s| c.const_i64s(&s, "split")),
        _ => c.input(1),
    };
    let num_outputs = match c.attr_i_opt("num_outputs")? {
        Some(n) if n < 1 => return Err(c.error("num_outputs must be positive")),
        Some(n) => {
            if n as usize != c.outputs.len() {
                return Err(c.error(format!("num_outputs is {n} but the node has {} outputs", c.outputs.len())));
            }
            Some(n as u64)
        }
        None => None,
    };
    let outputs: Vec<Option<ValueId>> =
        (0..c.outputs.len()).map(|i| Some(c.output(i).unwrap_or_else(|| c.temp("unused")))).collect();
    c.emit(Op::Split { axis, num_outputs }, vec![Some(x), sizes], outputs);
    Ok(Canon::Done)
}

fn slice(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    if c.version >= 10 {
        c.required_input(1)?;
        c.required_input(2)?;
        return simple(c, Op::Slice, 5);
    }
    let starts = c.attr_ints("starts")?.ok_or_else(|| c.error("attribute 'starts' is required"))?;
    let ends = c.attr_ints("ends")?.ok_or_else(|| c.error("attribute 'ends' is required"))?;
    let axes = c.attr_ints("axes")?;
    let starts = c.const_i64s(&starts, "starts");
    let ends = c.const_i64s(&ends, "ends");
    let axes = axes.map(|a| c.const_i64s(&a, "axes"));
    c.emit_to_output(Op::Slice, vec![Some(x), Some(starts), Some(ends), axes], 0);
    Ok(Canon::Done)
}

fn pad(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let mode = match c.attr_s("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" if c.version >= 19 => PadMode::Wrap,
        other => return Err(c.error(format!("unknown mode '{other}'"))),
    };
    if c.version >= 11 {
        c.required_input(1)?;
        return simple(c, Op::Pad { mode }, 4);
    }
    let pads_name = if c.version < 2 { "paddings" } else { "pads" };
    let pads = c.attr_ints(pads_name)?.ok_or_else(|| c.error(format!("attribute '{pads_name}' is required")))?;
    let value = c.attr_f("value", 0.0)?;
    let value = if mode == PadMode::Constant && value != 0.0 {
        let Some(t) = c.input_dtype(0).and_then(|d| super::elementwise::scalar(d, value as f64)) else {
            return Ok(Canon::KeepOpaque("pad value needs the data's element type".into()));
        };
        Some(c.constant(t, "constant_value"))
    } else {
        None
    };
    let pads = c.const_i64s(&pads, "pads");
    c.emit_to_output(Op::Pad { mode }, vec![Some(x), Some(pads), value], 0);
    Ok(Canon::Done)
}

fn tile(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    if c.version >= 6 {
        c.required_input(1)?;
        return simple(c, Op::Tile, 2);
    }
    // Tile-1: repeat `tiles` times along `axis` (both scalar inputs).
    let (Some(tiles), Some(axis), Some(rank)) = (
        c.const_input(1).and_then(|t| t.to_i64_vec().ok()),
        c.const_input(2).and_then(|t| t.to_i64_vec().ok()),
        c.input_rank(0),
    ) else {
        return Ok(Canon::KeepOpaque("Tile-1 needs constant tiles and axis and a known rank".into()));
    };
    if tiles.len() != 1 || axis.len() != 1 {
        return Err(c.error("tiles and axis must be scalars"));
    }
    let a = ferry_ir::shape::normalize_axis(axis[0], rank).map_err(|e| c.error(e))?;
    let mut repeats = vec![1i64; rank];
    repeats[a] = tiles[0];
    let repeats = c.const_i64s(&repeats, "repeats");
    c.emit_to_output(Op::Tile, vec![Some(x), Some(repeats)], 0);
    Ok(Canon::Done)
}

fn reduction(c: &NodeCtx) -> Result<ScatterReduction> {
    Ok(match c.attr_s("reduction", "none")?.as_str() {
        "none" => ScatterReduction::None,
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        other => return Err(c.error(format!("unknown reduction '{other}'"))),
    })
}

fn scatter_elements(c: &mut NodeCtx) -> Result<Canon> {
    let axis = c.attr_i("axis", 0)?;
    let reduction = reduction(c)?;
    for i in 0..3 {
        c.required_input(i)?;
    }
    simple(c, Op::ScatterElements { axis, reduction }, 3)
}

fn scatter_nd(c: &mut NodeCtx) -> Result<Canon> {
    let reduction = reduction(c)?;
    for i in 0..3 {
        c.required_input(i)?;
    }
    simple(c, Op::ScatterNd { reduction }, 3)
}

fn blocksize(c: &NodeCtx) -> Result<u64> {
    match c.attr_i_opt("blocksize")? {
        Some(b) if b > 0 => Ok(b as u64),
        Some(b) => Err(c.error(format!("blocksize must be positive, not {b}"))),
        None => Err(c.error("attribute 'blocksize' is required")),
    }
}

fn crd_mode(c: &NodeCtx) -> Result<bool> {
    match c.attr_s("mode", "DCR")?.as_str() {
        "DCR" => Ok(false),
        "CRD" => Ok(true),
        other => Err(c.error(format!("mode must be DCR or CRD, not '{other}'"))),
    }
}

fn depth_to_space(c: &mut NodeCtx) -> Result<Canon> {
    let blocksize = blocksize(c)?;
    let column_row_depth = crd_mode(c)?;
    simple(c, Op::DepthToSpace { blocksize, column_row_depth }, 1)
}

fn space_to_depth(c: &mut NodeCtx) -> Result<Canon> {
    let blocksize = blocksize(c)?;
    let column_row_depth = crd_mode(c)?;
    simple(c, Op::SpaceToDepth { blocksize, column_row_depth }, 1)
}
