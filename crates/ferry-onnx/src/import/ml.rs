//! ai.onnx.ml ops: LabelEncoder and TreeEnsemble as core ops; Binarizer and
//! ArrayFeatureExtractor as compositions.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use super::elementwise::scalar;
use crate::error::Result;
use bytes::Bytes;
use ferry_ir::ops::{AttrValue, BinaryOp, Cast, PostTransform, TreeAggregate, TreeEnsemble};
use ferry_ir::{DType, Op, Tensor};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("LabelEncoder", label_encoder),
    ("TreeEnsemble", tree_ensemble),
    ("Binarizer", binarizer),
    ("ArrayFeatureExtractor", array_feature_extractor),
];

fn strings(v: &[Bytes]) -> Tensor {
    Tensor::from_strings(vec![v.len() as u64], v.to_vec()).expect("length matches")
}

fn floats(v: &[f32]) -> Tensor {
    Tensor::from_f32(vec![v.len() as u64], v).expect("length matches")
}

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_i64(vec![v.len() as u64], v).expect("length matches")
}

/// The one `{prefix}_floats` / `_int64s` / `_strings` (/ `_tensor`) list attribute given.
fn list_attr(c: &NodeCtx, prefix: &str) -> Result<Option<Tensor>> {
    let mut found = Vec::new();
    for suffix in ["floats", "int64s", "strings", "tensor"] {
        let name = format!("{prefix}_{suffix}");
        let t = match c.attr(&name) {
            None => continue,
            Some(AttrValue::Floats(v)) => floats(v),
            Some(AttrValue::Ints(v)) => ints(v),
            Some(AttrValue::Strings(v)) => strings(v),
            Some(AttrValue::Tensor(t)) => {
                let n = t.numel();
                Tensor { shape: vec![n], ..t.clone() }
            }
            Some(_) => return Err(c.error(format!("attribute '{name}' has the wrong type"))),
        };
        found.push(t);
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(c.error(format!("only one of the {prefix}_* attributes may be given"))),
    }
}

fn string_scalar(s: &[u8]) -> Tensor {
    Tensor::from_strings(vec![1], vec![Bytes::copy_from_slice(s)]).expect("one string")
}

fn label_encoder(c: &mut NodeCtx) -> Result<Canon> {
    let (keys, values, default) = if c.version < 2 {
        let classes = match c.attr("classes_strings") {
            Some(AttrValue::Strings(v)) => v.clone(),
            None => Vec::new(),
            Some(_) => return Err(c.error("attribute 'classes_strings' must be a list of strings")),
        };
        let index: Vec<i64> = (0..classes.len() as i64).collect();
        match c.input_dtype(0) {
            Some(DType::String) => (strings(&classes), ints(&index), ints(&[c.attr_i("default_int64", -1)?])),
            Some(DType::I64) => {
                let d = c.attr_s("default_string", "_Unused")?;
                (ints(&index), strings(&classes), string_scalar(d.as_bytes()))
            }
            _ => return Ok(Canon::KeepOpaque("LabelEncoder-1 input type unknown".into())),
        }
    } else {
        let keys = list_attr(c, "keys")?.ok_or_else(|| c.error("one keys_* attribute is required"))?;
        let values = list_attr(c, "values")?.ok_or_else(|| c.error("one values_* attribute is required"))?;
        if keys.numel() != values.numel() {
            return Err(c.error(format!("{} keys but {} values", keys.numel(), values.numel())));
        }
        let default = match c.attr("default_tensor") {
            Some(AttrValue::Tensor(t)) => {
                if t.numel() != 1 || t.dtype != values.dtype {
                    return Err(c.error("default_tensor must hold one element of the values' type"));
                }
                Tensor { shape: vec![1], ..t.clone() }
            }
            Some(_) => return Err(c.error("attribute 'default_tensor' must be a tensor")),
            None => match values.dtype {
                DType::String => string_scalar(c.attr_s("default_string", "_Unused")?.as_bytes()),
                DType::F32 if c.version < 4 || c.has_attr("default_float") => {
                    floats(&[c.attr_f("default_float", -0.0)?])
                }
                DType::I64 if c.version < 4 || c.has_attr("default_int64") => ints(&[c.attr_i("default_int64", -1)?]),
                d if d.is_int() => match scalar(d, -1.0) {
                    Some(t) => Tensor { shape: vec![1], ..t },
                    None => return Ok(Canon::KeepOpaque(format!("no default for {d} values"))),
                },
                d => match scalar(d, -0.0) {
                    Some(t) => Tensor { shape: vec![1], ..t },
                    None => return Ok(Canon::KeepOpaque(format!("no default for {d} values"))),
                },
            },
        };
        (keys, values, default)
    };
    let (x, y) = (c.required_input(0)?, c.outputs.clone());
    c.emit(Op::LabelEncoder { keys, values, default }, vec![Some(x)], y);
    Ok(Canon::Done)
}

fn tree_ensemble(c: &mut NodeCtx) -> Result<Canon> {
    let req_ints = |c: &NodeCtx, name: &str| -> Result<Vec<i64>> {
        c.attr_ints(name)?.ok_or_else(|| c.error(format!("attribute '{name}' is required")))
    };
    let req_tensor = |c: &NodeCtx, name: &str| -> Result<Tensor> {
        c.attr_tensor(name)?.ok_or_else(|| c.error(format!("attribute '{name}' is required")))
    };
    let bools = |v: Vec<i64>| v.into_iter().map(|b| b != 0).collect::<Vec<_>>();
    let aggregate_function = match c.attr_i("aggregate_function", 1)? {
        0 => TreeAggregate::Average,
        1 => TreeAggregate::Sum,
        2 => TreeAggregate::Min,
        3 => TreeAggregate::Max,
        other => return Err(c.error(format!("aggregate_function {other} is not 0..=3"))),
    };
    let post_transform = match c.attr_i("post_transform", 0)? {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => return Err(c.error(format!("post_transform {other} is not 0..=4"))),
    };
    let n_targets = u64::try_from(c.attr_i("n_targets", -1)?)
        .map_err(|_| c.error("attribute 'n_targets' is required and non-negative"))?;
    let modes = req_tensor(c, "nodes_modes")?;
    let nodes_modes: Vec<u8> = modes
        .to_i64_vec()
        .map_err(|e| c.error(format!("nodes_modes: {e}")))?
        .into_iter()
        .map(|m| u8::try_from(m).ok().filter(|m| *m <= 6).ok_or_else(|| c.error(format!("node mode {m} is not 0..=6"))))
        .collect::<Result<_>>()?;
    let t = TreeEnsemble {
        aggregate_function,
        post_transform,
        n_targets,
        tree_roots: req_ints(c, "tree_roots")?,
        nodes_featureids: req_ints(c, "nodes_featureids")?,
        nodes_modes,
        nodes_splits: req_tensor(c, "nodes_splits")?,
        nodes_truenodeids: req_ints(c, "nodes_truenodeids")?,
        nodes_trueleafs: bools(req_ints(c, "nodes_trueleafs")?),
        nodes_falsenodeids: req_ints(c, "nodes_falsenodeids")?,
        nodes_falseleafs: bools(req_ints(c, "nodes_falseleafs")?),
        nodes_missing_value_tracks_true: bools(c.attr_ints("nodes_missing_value_tracks_true")?.unwrap_or_default()),
        nodes_hitrates: c.attr_tensor("nodes_hitrates")?,
        membership_values: c.attr_tensor("membership_values")?,
        leaf_targetids: req_ints(c, "leaf_targetids")?,
        leaf_weights: req_tensor(c, "leaf_weights")?,
    };
    let n = t.nodes_featureids.len();
    let node_lists = [t.nodes_modes.len(), t.nodes_truenodeids.len(), t.nodes_trueleafs.len()];
    let more = [t.nodes_falsenodeids.len(), t.nodes_falseleafs.len(), t.nodes_splits.numel() as usize];
    if node_lists.iter().chain(&more).any(|l| *l != n) {
        return Err(c.error("the nodes_* attributes must all have one entry per node"));
    }
    if t.leaf_targetids.len() as u64 != t.leaf_weights.numel() {
        return Err(c.error("leaf_targetids and leaf_weights must have one entry per leaf"));
    }
    let (x, y) = (c.required_input(0)?, c.outputs.clone());
    c.emit(Op::TreeEnsemble(Box::new(t)), vec![Some(x)], y);
    Ok(Canon::Done)
}

/// `Cast(X > threshold, X's type)`. For integer inputs `x > t` is `x > floor(t)`.
fn binarizer(c: &mut NodeCtx) -> Result<Canon> {
    let x = c.required_input(0)?;
    let threshold = c.attr_f("threshold", 0.0)? as f64;
    let Some(dtype) = c.input_dtype(0).filter(|d| matches!(d, DType::F32 | DType::F64 | DType::I32 | DType::I64))
    else {
        return Ok(Canon::KeepOpaque("Binarizer input type unknown".into()));
    };
    let t = if dtype.is_int() { threshold.floor() } else { threshold };
    let t = match dtype {
        DType::I32 => t.clamp(i32::MIN as f64, i32::MAX as f64),
        DType::I64 => t.clamp(i64::MIN as f64, i64::MAX as f64),
        _ => t,
    };
    let t = c.constant(scalar(dtype, t).expect("numeric dtype"), "threshold");
    let above = c.emit_temp(Op::Binary(BinaryOp::Greater), vec![Some(x), Some(t)], "above");
    let cast = Cast { to: dtype, saturate: true, round_mode: "up".into() };
    c.emit_to_output(Op::Cast(cast), vec![Some(above)], 0);
    Ok(Canon::Done)
}

/// `Gather(X, flatten(indices), last axis)`; a 1-D `X` gives a `[1, n]` result (as onnxruntime).
fn array_feature_extractor(c: &mut NodeCtx) -> Result<Canon> {
    let (x, indices) = (c.required_input(0)?, c.required_input(1)?);
    let Some(rank) = c.input_rank(0).filter(|r| *r >= 1) else {
        return Ok(Canon::KeepOpaque("ArrayFeatureExtractor input rank unknown".into()));
    };
    let flat_shape = c.const_i64s(&[-1], "flat_shape");
    let flat = c.emit_temp(Op::Reshape { allowzero: false }, vec![Some(indices), Some(flat_shape)], "flat_indices");
    let axis = rank as i64 - 1;
    if rank == 1 {
        let picked = c.emit_temp(Op::Gather { axis }, vec![Some(x), Some(flat)], "picked");
        let zero = c.const_i64s(&[0], "row_axis");
        c.emit_to_output(Op::Unsqueeze, vec![Some(picked), Some(zero)], 0);
    } else {
        c.emit_to_output(Op::Gather { axis }, vec![Some(x), Some(flat)], 0);
    }
    Ok(Canon::Done)
}
