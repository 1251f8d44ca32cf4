//! `ferry optimize`: graph simplification (crate ferry-opt), written back in the model's format.

use crate::Refusal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OutFormat {
    Onnx,
    Mxnet,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  ferry optimize model.onnx -o model-opt.onnx\n  \
    ferry optimize bert.onnx -o bert-opt.onnx --input-shape input_ids=1,128 --input-shape attention_mask=1,128 --json\n  \
    ferry optimize resnet-symbol.json -o resnet-opt-symbol.json --input-shape data=1,3,224,224\n")]
pub struct Args {
    /// The model to optimize (.onnx, or MXNet prefix-symbol.json).
    input: PathBuf,
    /// Where to write the optimized model (written to a temporary file, then renamed).
    #[arg(short, long)]
    output: PathBuf,
    /// Output format (default: the input's).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// ONNX: ai.onnx opset to write (default: the input model's, else the newest ferry writes).
    #[arg(long)]
    opset: Option<u32>,
    /// Bind a graph input's shape, e.g. input=1,3,224,224 (repeatable): shape computations on
    /// it then fold to constants. The input's declared shape becomes this one.
    #[arg(long = "input-shape", value_name = "NAME=D1,D2,...")]
    input_shape: Vec<String>,
    /// MXNet: the .params file (default: prefix-0000.params beside prefix-symbol.json).
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// Largest constant that folding may create, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    max_fold_mib: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    if super::convert::same_file(&a.input, &a.output) {
        return Err(Refusal(format!("output {} is the input file; choose another name", a.output.display())));
    }
    let start = Instant::now();
    let input_format = ferry::Format::detect(&a.input)?;
    let input_shapes = super::source::parse_input_shapes(&a.input_shape)?;
    // MXNet symbols usually carry no shapes: the importer needs them; ONNX declares its own.
    let load_opts = ferry::LoadOptions {
        params: a.params.clone(),
        input_shapes: if input_format == ferry::Format::MxNet { input_shapes.clone() } else { Vec::new() },
        input_types: Vec::new(),
    };
    let model = ferry::load_with(&a.input, &load_opts)?;
    for what in &model.meta.not_carried {
        eprintln!("warning: {what} in the input are not carried into the output");
    }
    let loaded = start.elapsed().as_secs_f64();
    let opts = ferry_opt::OptimizeOptions {
        max_folded_bytes: a.max_fold_mib.saturating_mul(1 << 20),
        input_shapes,
        ..Default::default()
    };
    let t = Instant::now();
    let (optimized, report) = ferry_opt::optimize(&model, &opts).map_err(|e| Refusal(e.to_string()))?;
    let optimize_secs = t.elapsed().as_secs_f64();
    let format = match a.format {
        Some(OutFormat::Onnx) => ferry::Format::Onnx,
        Some(OutFormat::Mxnet) => ferry::Format::MxNet,
        None => input_format,
    };
    let mut opset = a.opset.or_else(|| if format == ferry::Format::Onnx { source_opset(&model) } else { None });
    let save = ferry::SaveOptions { format: Some(format), opset, ..Default::default() };
    match ferry::save(&optimized, &a.output, &save) {
        // The input's own opset is only a preference: core ops that old opsets lack (e.g. the
        // Where that LeakyRelu becomes) cannot be written there, whether optimized or not.
        Err(e) if a.opset.is_none() && opset.is_some() => {
            let why = e.to_string();
            eprintln!(
                "note: not writable at the input's opset {} ({}); writing the newest opset instead",
                opset.unwrap_or(0),
                why.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
            );
            opset = None;
            ferry::save(&optimized, &a.output, &ferry::SaveOptions { format: Some(format), ..Default::default() })?;
        }
        r => r?,
    }
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        let summary = serde_json::json!({
            "input": a.input.display().to_string(),
            "output": a.output.display().to_string(),
            "format": format.name(),
            "opset": opset,
            "nodes_before": report.nodes_before,
            "nodes_after": report.nodes_after,
            "initializer_bytes_before": report.initializer_bytes_before,
            "initializer_bytes_after": report.initializer_bytes_after,
            "passes": report.passes,
            "rounds": report.rounds,
            "load_seconds": loaded,
            "optimize_seconds": optimize_secs,
            "seconds": secs,
        });
        println!("{summary}");
    } else {
        print_report(&a, &report, optimize_secs, secs);
    }
    Ok(ExitCode::SUCCESS)
}

/// The ai.onnx opset the input model imported, when it was ONNX.
fn source_opset(model: &ferry::Model) -> Option<u32> {
    model
        .meta
        .source_versions
        .iter()
        .find(|(k, _)| k == "opset:ai.onnx" || k == "opset:")
        .and_then(|(_, v)| u32::try_from(*v).ok())
}

fn print_report(a: &Args, r: &ferry_opt::OptimizeReport, optimize_secs: f64, secs: f64) {
    let bytes = super::inspect::human_bytes;
    println!("optimized {} -> {}", a.input.display(), a.output.display());
    println!("  nodes:             {} -> {}", r.nodes_before, r.nodes_after);
    println!("  initializer bytes: {} -> {}", bytes(r.initializer_bytes_before), bytes(r.initializer_bytes_after));
    println!("  passes ({} rounds, {optimize_secs:.3} s; {secs:.2} s with reading and writing):", r.rounds);
    for p in ferry_opt::PASSES {
        println!("    {p:<26} {}", r.passes.get(p).copied().unwrap_or(0));
    }
}
