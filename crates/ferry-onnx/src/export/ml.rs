//! ai.onnx.ml core ops -> ONNX, written in the ai.onnx.ml domain at the model's ml opset (the
//! newest ferry knows when the model came without one).

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_i, attr_ints, attr_s, attr_tensor};
use super::strings::attr_bytes;
use crate::error::ExportProblem;
use crate::proto;
use crate::schema_table::LATEST_ML_OPSET;
use crate::schemas;
use ferry_ir::ops::{PostTransform, TreeAggregate, TreeEnsemble};
use ferry_ir::{DType, Tensor, TensorData};

const ML: &str = "ai.onnx.ml";

/// The ml opset written, and the version of `op_type` it selects.
fn ml_version(c: &mut LowerCtx, op_type: &str) -> std::result::Result<u32, ExportProblem> {
    let opset = c.exporter.source_opsets.get(ML).copied().unwrap_or(LATEST_ML_OPSET);
    match schemas::resolve(ML, op_type, opset) {
        Some(s) => {
            c.exporter.domains.insert(ML.to_string(), opset);
            Ok(s.since_version)
        }
        None => Err(c.problem(format!("ai.onnx.ml opset {opset} has no {op_type}"), None)),
    }
}

/// A 1-D tensor as a `_floats` / `_int64s` / `_strings` list attribute, when its type has one.
fn list(name: &str, t: &Tensor) -> Option<proto::AttributeProto> {
    match (t.dtype, &t.data) {
        (DType::String, TensorData::Strings(s)) => Some(attr_bytes(&format!("{name}_strings"), s)),
        (DType::I64, _) => Some(attr_ints(&format!("{name}_int64s"), &t.to_i64_vec().ok()?)),
        (DType::F32, _) => {
            let v: Vec<f32> = t.to_f64_vec().ok()?.into_iter().map(|x| x as f32).collect();
            Some(super::ctx::attr_floats(&format!("{name}_floats"), &v))
        }
        _ => None,
    }
}

fn default_attr(t: &Tensor) -> Option<proto::AttributeProto> {
    match (t.dtype, &t.data) {
        (DType::String, TensorData::Strings(s)) => {
            let s = s.first()?;
            Some(proto::AttributeProto { s: Some(s.clone()), ..attr_s("default_string", "") })
        }
        (DType::I64, _) => Some(attr_i("default_int64", *t.to_i64_vec().ok()?.first()?)),
        (DType::F32, _) => Some(attr_f("default_float", *t.to_f64_vec().ok()?.first()? as f32)),
        _ => None,
    }
}

pub fn label_encoder(c: &mut LowerCtx, keys: &Tensor, values: &Tensor, default: &Tensor) -> LowerResult {
    let version = ml_version(c, "LabelEncoder")?;
    let attrs = if version == 1 {
        // classes_strings: string -> its index, or index -> string.
        let index: Vec<i64> = (0..keys.numel() as i64).collect();
        let (classes, ok) = match (keys.dtype, values.dtype) {
            (DType::String, DType::I64) => (keys, values.to_i64_vec().is_ok_and(|v| v == index)),
            (DType::I64, DType::String) => (values, keys.to_i64_vec().is_ok_and(|v| v == index)),
            _ => (keys, false),
        };
        let (TensorData::Strings(s), true, Some(d)) = (&classes.data, ok, default_attr(default)) else {
            return Err(c.problem("LabelEncoder-1 maps only strings to their index or back", Some(2)));
        };
        vec![attr_bytes("classes_strings", s), d]
    } else {
        match (list("keys", keys), list("values", values), default_attr(default)) {
            (Some(k), Some(v), Some(d)) => vec![k, v, d],
            _ if version >= 4 => vec![
                attr_tensor("keys_tensor", keys),
                attr_tensor("values_tensor", values),
                attr_tensor("default_tensor", default),
            ],
            _ => {
                return Err(c.problem(
                    format!("LabelEncoder-{version} maps only float, int64 and string keys and values"),
                    None,
                ));
            }
        }
    };
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit_in(ML, "LabelEncoder", inputs, outputs, attrs);
    Ok(())
}

pub fn tree_ensemble(c: &mut LowerCtx, t: &TreeEnsemble) -> LowerResult {
    ml_version(c, "TreeEnsemble")?;
    let aggregate = match t.aggregate_function {
        TreeAggregate::Average => 0,
        TreeAggregate::Sum => 1,
        TreeAggregate::Min => 2,
        TreeAggregate::Max => 3,
    };
    let post = match t.post_transform {
        PostTransform::None => 0,
        PostTransform::Softmax => 1,
        PostTransform::Logistic => 2,
        PostTransform::SoftmaxZero => 3,
        PostTransform::Probit => 4,
    };
    let bools = |v: &[bool]| v.iter().map(|b| *b as i64).collect::<Vec<_>>();
    let modes =
        Tensor::from_raw(DType::U8, vec![t.nodes_modes.len() as u64], bytes::Bytes::from(t.nodes_modes.clone()))
            .map_err(|e| c.problem(format!("nodes_modes: {e}"), None))?;
    let mut attrs = vec![
        attr_i("aggregate_function", aggregate),
        attr_i("post_transform", post),
        attr_i("n_targets", t.n_targets as i64),
        attr_ints("tree_roots", &t.tree_roots),
        attr_ints("nodes_featureids", &t.nodes_featureids),
        attr_tensor("nodes_modes", &modes),
        attr_tensor("nodes_splits", &t.nodes_splits),
        attr_ints("nodes_truenodeids", &t.nodes_truenodeids),
        attr_ints("nodes_trueleafs", &bools(&t.nodes_trueleafs)),
        attr_ints("nodes_falsenodeids", &t.nodes_falsenodeids),
        attr_ints("nodes_falseleafs", &bools(&t.nodes_falseleafs)),
        attr_ints("leaf_targetids", &t.leaf_targetids),
        attr_tensor("leaf_weights", &t.leaf_weights),
    ];
    if !t.nodes_missing_value_tracks_true.is_empty() {
        attrs.push(attr_ints("nodes_missing_value_tracks_true", &bools(&t.nodes_missing_value_tracks_true)));
    }
    if let Some(h) = &t.nodes_hitrates {
        attrs.push(attr_tensor("nodes_hitrates", h));
    }
    if let Some(m) = &t.membership_values {
        attrs.push(attr_tensor("membership_values", m));
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit_in(ML, "TreeEnsemble", inputs, outputs, attrs);
    Ok(())
}
