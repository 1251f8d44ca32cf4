use crate::Refusal;
use ferry::ir::{Graph, Op};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The model file (.onnx).
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: super::source::SourceArgs,
}

fn io_json(g: &Graph, ids: &[usize]) -> Vec<Value> {
    ids.iter()
        .map(|i| {
            let v = &g.values[*i];
            json!({
                "name": v.name,
                "dtype": v.ty.dtype().map(|d| d.to_string()),
                "shape": v.ty.shape().map(|s| s.0.iter().map(|d| match d.known() { Some(n) => json!(n), None => json!(d.to_string()) }).collect::<Vec<_>>()),
                "type": v.ty.to_string(),
            })
        })
        .collect()
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let model = a.source.load(&a.model)?;
    let g = &model.graph;
    // Graph inputs that have an initializer are optional overrides, not real inputs.
    let inputs: Vec<usize> = g.inputs.iter().copied().filter(|i| g.initializer(*i).is_none()).collect();
    let (param_count, param_bytes) = g.parameter_totals();
    let histogram = g.op_histogram();
    let mut custom: BTreeMap<String, usize> = BTreeMap::new();
    g.visit(&mut |sub, _| {
        for n in &sub.nodes {
            if let Op::Opaque(o) = &n.op {
                if !o.domain.is_empty() && o.domain != "ai.onnx.ml" && !o.domain.starts_with("ai.onnx.preview") {
                    *custom.entry(format!("{}::{}", o.domain, o.op_type)).or_default() += 1;
                }
            }
        }
    });
    let node_count: usize = histogram.values().sum();
    let versions: BTreeMap<&str, i64> = model.meta.source_versions.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    if a.json {
        let out = json!({
            "path": a.model.display().to_string(),
            "format": model.meta.source_format,
            "versions": versions,
            "producer": {"name": model.meta.producer_name, "version": model.meta.producer_version},
            "graph_name": g.name,
            "inputs": io_json(g, &inputs),
            "outputs": io_json(g, &g.outputs),
            "nodes": node_count,
            "op_histogram": histogram,
            "parameters": {"count": param_count, "bytes": param_bytes},
            "custom_ops": custom,
            "metadata": model.meta.metadata_props.iter().cloned().collect::<BTreeMap<_, _>>(),
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}  ({})", a.model.display(), model.meta.source_format);
    let vs: Vec<String> = versions.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  versions:   {}", vs.join(", "));
    if !model.meta.producer_name.is_empty() {
        println!("  producer:   {} {}", model.meta.producer_name, model.meta.producer_version);
    }
    println!("  inputs:");
    for i in &inputs {
        println!("    {:<24} {}", g.values[*i].name, g.values[*i].ty);
    }
    println!("  outputs:");
    for o in &g.outputs {
        println!("    {:<24} {}", g.values[*o].name, g.values[*o].ty);
    }
    println!("  parameters: {param_count} ({})", human_bytes(param_bytes));
    println!("  nodes:      {node_count}");
    let mut ops: Vec<_> = histogram.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        println!("    {n:>6}  {op}");
    }
    if !custom.is_empty() {
        println!("  custom ops (kept opaque):");
        for (op, n) in &custom {
            println!("    {n:>6}  {op}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
