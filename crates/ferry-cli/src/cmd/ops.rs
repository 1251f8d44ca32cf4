//! `ferry ops`: the support matrix, read from the code (the ONNX schema table and import tables,
//! the MXNet import tables) — the same source docs/support.md is generated from.

use crate::Refusal;
use ferry_onnx::schema_table::{LATEST_ML_OPSET, LATEST_OPSET, SCHEMAS};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpsFormat {
    Onnx,
    Mxnet,
}

#[derive(clap::Args)]
pub struct Args {
    /// Which format's ops to list (default: both).
    #[arg(long, value_enum)]
    format: Option<OpsFormat>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One op version's type constraints: (constraint name, allowed types).
type Constraints = &'static [(&'static str, &'static [&'static str])];

struct OnnxOp {
    domain: &'static str,
    name: &'static str,
    versions: Vec<u32>,
    deprecated: bool,
    core: bool,
    /// Per version: each type constraint and the element types it allows (ferry reads and
    /// writes all of them; the exporter checks them per target version).
    types: Vec<(u32, Constraints)>,
}

/// `tensor(float)` -> `float`; sequences and optionals keep their wrapper.
fn short_type(t: &str) -> &str {
    t.strip_prefix("tensor(").and_then(|r| r.strip_suffix(')')).unwrap_or(t)
}

fn onnx_ops() -> Vec<OnnxOp> {
    type Entry = (Vec<u32>, bool, Vec<(u32, Constraints)>);
    let mut ops: BTreeMap<(&str, &str), Entry> = BTreeMap::new();
    for s in SCHEMAS {
        let e = ops.entry((s.domain, s.name)).or_default();
        if e.0.iter().all(|v| *v < s.since_version) {
            e.1 = s.deprecated; // the newest version says whether the op is deprecated
        }
        e.0.push(s.since_version);
        e.2.push((s.since_version, s.type_constraints));
    }
    ops.into_iter()
        .map(|((domain, name), (mut versions, deprecated, mut types))| {
            versions.sort_unstable();
            types.sort_by_key(|t| t.0);
            let core = ferry_onnx::import::is_canonicalized(domain, name);
            OnnxOp { domain, name, versions, deprecated, core, types }
        })
        .collect()
}

fn onnx_json() -> serde_json::Value {
    let ops: Vec<serde_json::Value> = onnx_ops()
        .iter()
        .map(|o| {
            json!({
                "domain": if o.domain.is_empty() { "ai.onnx" } else { o.domain },
                "op": o.name,
                "versions": o.versions,
                "status": if o.core { "core" } else { "carried" },
                "deprecated": o.deprecated,
                "types": o.types.iter().map(|(v, constraints)| {
                    let c: serde_json::Map<String, serde_json::Value> = constraints
                        .iter()
                        .map(|(name, allowed)| (name.to_string(), json!(allowed.iter().map(|t| short_type(t)).collect::<Vec<_>>())))
                        .collect();
                    json!({"version": v, "constraints": c})
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "format": "onnx",
        "opsets": {"ai.onnx": LATEST_OPSET, "ai.onnx.ml": LATEST_ML_OPSET},
        "statuses": {
            "core": "canonicalized into ferry's core ops; runs on the reference runtime and is written at any opset where some form of it exists",
            "carried": "kept exactly as written (opaque node); written only to opsets with the same op version",
        },
        "types": "per op version, each type constraint with the element types it allows; ferry reads and writes all of them, and the exporter refuses a node whose types the target version does not allow. Runtime gaps: docs/runtime-conformance.md",
        "ops": ops,
    })
}

fn mxnet_json() -> serde_json::Value {
    let ops: Vec<serde_json::Value> =
        ferry_mxnet::import::supported_ops().iter().map(|op| json!({"op": op, "status": "read"})).collect();
    json!({
        "format": "mxnet",
        "statuses": {"read": "read from symbol JSON + .params and canonicalized into core ops; any other op is refused"},
        "ops": ops,
    })
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let formats = match a.format {
        Some(f) => vec![f],
        None => vec![OpsFormat::Onnx, OpsFormat::Mxnet],
    };
    if a.json {
        let parts: Vec<serde_json::Value> = formats
            .iter()
            .map(|f| match f {
                OpsFormat::Onnx => onnx_json(),
                OpsFormat::Mxnet => mxnet_json(),
            })
            .collect();
        let j = if parts.len() == 1 { parts[0].clone() } else { json!({ "formats": parts }) };
        return Ok(emit(&format!("{j}\n")));
    }
    let mut out = String::new();
    for f in formats {
        match f {
            OpsFormat::Onnx => {
                let ops = onnx_ops();
                out += &format!("ONNX (ai.onnx opsets 1-{LATEST_OPSET}, ai.onnx.ml 1-{LATEST_ML_OPSET})\n");
                out += &format!("{:<26} {:<38} {:<8} versions\n", "domain", "op", "status");
                for o in &ops {
                    let v: Vec<String> = o.versions.iter().map(u32::to_string).collect();
                    let domain = if o.domain.is_empty() { "ai.onnx" } else { o.domain };
                    let status = if o.core { "core" } else { "carried" };
                    let dep = if o.deprecated { " (deprecated)" } else { "" };
                    out += &format!("{domain:<26} {:<38} {status:<8} {}{dep}\n", o.name, v.join(","));
                }
                let core = ops.iter().filter(|o| o.core).count();
                out += &format!("{} ops: {core} core, {} carried\n\n", ops.len(), ops.len() - core);
            }
            OpsFormat::Mxnet => {
                let ops = ferry_mxnet::import::supported_ops();
                out += &format!("MXNet (symbol JSON + .params, MXNet 1.x): {} ops read\n", ops.len());
                for op in &ops {
                    out += &format!("{op}\n");
                }
            }
        }
    }
    Ok(emit(&out))
}

/// Writes at once; a closed pipe (`ferry ops | head`) is not an error.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
