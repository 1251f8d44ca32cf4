//! After lowering: every ai.onnx node written must accept the element types flowing into it at
//! the op version the target opset selects (e.g. Relu-6 takes only floats; Relu-14 takes ints
//! too). A mismatch is reported with the first opset whose version accepts the type, instead of
//! writing a file the ONNX checker would reject.

use crate::error::ExportProblem;
use crate::proto;
use crate::schema_table::OpSchemaEntry;
use crate::schemas;
use ferry_ir::{DType, ValueType};
use std::collections::HashMap;

/// The ONNX spelling of a tensor type, as schemas list them.
fn tensor_type_name(d: DType) -> &'static str {
    use DType::*;
    match d {
        F32 => "tensor(float)",
        U8 => "tensor(uint8)",
        I8 => "tensor(int8)",
        U16 => "tensor(uint16)",
        I16 => "tensor(int16)",
        I32 => "tensor(int32)",
        I64 => "tensor(int64)",
        String => "tensor(string)",
        Bool => "tensor(bool)",
        F16 => "tensor(float16)",
        F64 => "tensor(double)",
        U32 => "tensor(uint32)",
        U64 => "tensor(uint64)",
        C64 => "tensor(complex64)",
        C128 => "tensor(complex128)",
        BF16 => "tensor(bfloat16)",
        F8E4M3FN => "tensor(float8e4m3fn)",
        F8E4M3FNUZ => "tensor(float8e4m3fnuz)",
        F8E5M2 => "tensor(float8e5m2)",
        F8E5M2FNUZ => "tensor(float8e5m2fnuz)",
        U4 => "tensor(uint4)",
        I4 => "tensor(int4)",
        F4E2M1 => "tensor(float4e2m1)",
        F8E8M0 => "tensor(float8e8m0)",
        U2 => "tensor(uint2)",
        I2 => "tensor(int2)",
        F6E2M3 => "tensor(float6e2m3)",
        F6E3M2 => "tensor(float6e3m2)",
    }
}

/// The ONNX spelling of a value type (`seq(tensor(float))`), when fully known.
pub fn type_name(t: &ValueType) -> Option<String> {
    match t {
        ValueType::Tensor { dtype: Some(d), .. } => Some(tensor_type_name(*d).to_string()),
        ValueType::Sequence(e) => Some(format!("seq({})", type_name(e)?)),
        ValueType::Optional(e) => Some(format!("optional({})", type_name(e)?)),
        _ => None,
    }
}

fn accepts(s: &OpSchemaEntry, input: usize, dtype: &str) -> bool {
    let formal = s.input_types.get(input).or(if s.variadic_input { s.input_types.last() } else { None });
    allowed(s, formal, dtype)
}

fn produces(s: &OpSchemaEntry, output: usize, dtype: &str) -> bool {
    allowed(s, s.output_types.get(output).or(s.output_types.last()), dtype)
}

fn allowed(s: &OpSchemaEntry, formal: Option<&&str>, name: &str) -> bool {
    let Some(formal) = formal else {
        return true;
    };
    match s.type_constraints.iter().find(|(c, _)| c == formal) {
        Some((_, allowed)) => allowed.contains(&name),
        None => *formal == name,
    }
}

/// Checks one graph (and nested graphs) given the element types known by value name.
pub fn check_graph(
    g: &proto::GraphProto,
    opset: u32,
    dtypes: &HashMap<String, String>,
    problems: &mut Vec<ExportProblem>,
) {
    for n in &g.node {
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                check_graph(sub, opset, dtypes, problems);
            }
            for sub in &a.graphs {
                check_graph(sub, opset, dtypes, problems);
            }
        }
        if n.domain.as_deref().is_some_and(|d| !d.is_empty() && d != "ai.onnx") {
            continue;
        }
        let op_type = n.op_type.as_deref().unwrap_or("");
        let Some(schema) = schemas::resolve("", op_type, opset) else { continue };
        let node_name = match n.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!("producing '{}'", n.output.first().map(String::as_str).unwrap_or("")),
        };
        let inputs = n.input.iter().enumerate().map(|(k, v)| (k, v, "input"));
        let outputs = n.output.iter().enumerate().map(|(k, v)| (k, v, "output"));
        for (k, value, role) in inputs.chain(outputs) {
            let Some(d) = dtypes.get(value) else { continue };
            let ok = |s: &OpSchemaEntry| if role == "input" { accepts(s, k, d) } else { produces(s, k, d) };
            if ok(schema) {
                continue;
            }
            let first_ok = schemas::versions("", op_type).find(|s| s.since_version > schema.since_version && ok(s));
            problems.push(ExportProblem {
                node: node_name.clone(),
                op: op_type.to_string(),
                message: format!(
                    "{op_type}-{} (the version in opset {opset}) does not accept {d} for {role} {k} ('{value}')",
                    schema.since_version
                ),
                min_opset: first_ok.map(|s| s.since_version),
            });
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_accepts_ints_only_from_14() {
        let relu6 = schemas::resolve("", "Relu", 13).unwrap();
        let relu14 = schemas::resolve("", "Relu", 14).unwrap();
        assert!(accepts(relu6, 0, "tensor(float)"));
        assert!(!accepts(relu6, 0, "tensor(int32)"));
        assert!(accepts(relu14, 0, "tensor(int32)"));
        let concat = schemas::resolve("", "Concat", 13).unwrap();
        assert!(accepts(concat, 5, "tensor(int64)"), "variadic inputs repeat the last formal type");
        let reshape = schemas::resolve("", "Reshape", 13).unwrap();
        assert!(!accepts(reshape, 1, "tensor(int32)"), "shape input is tensor(int64) only");
        let identity13 = schemas::resolve("", "Identity", 13).unwrap();
        let seq = type_name(&ValueType::Sequence(Box::new(ValueType::Tensor { dtype: Some(DType::F32), shape: None })))
            .unwrap();
        assert_eq!(seq, "seq(tensor(float))");
        assert!(!accepts(identity13, 0, &seq));
        assert!(accepts(schemas::resolve("", "Identity", 14).unwrap(), 0, &seq));
    }
}
