use crate::Refusal;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The model to convert (.onnx, or MXNet prefix-symbol.json).
    input: PathBuf,
    /// Where to write the result; the format comes from its name (.onnx).
    #[arg(short, long)]
    output: PathBuf,
    /// ONNX: target ai.onnx opset (default: the newest ferry supports).
    #[arg(long)]
    opset: Option<u32>,
    /// ONNX: store weights in a .data file beside the output.
    #[arg(long)]
    external_data: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// After writing, run the source and the result on the same random inputs (reference
    /// runtime) and compare the outputs; exit 1 when they differ (the file is kept).
    #[arg(long)]
    verify: bool,
    /// Seed for the --verify inputs.
    #[arg(long, default_value_t = 0, requires = "verify")]
    seed: u64,
    /// Relative tolerance for --verify.
    #[arg(long, default_value_t = super::compare::RTOL, requires = "verify")]
    rtol: f64,
    /// Absolute tolerance for --verify.
    #[arg(long, default_value_t = super::compare::ATOL, requires = "verify")]
    atol: f64,
    #[command(flatten)]
    source: super::source::SourceArgs,
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    if same_file(&a.input, &a.output) {
        return Err(Refusal(format!("output {} is the input file; choose another name", a.output.display())));
    }
    let start = Instant::now();
    let model = a.source.load(&a.input)?;
    for what in &model.meta.not_carried {
        eprintln!("warning: {what} in the input are not carried into the output");
    }
    let progress = std::io::stderr().is_terminal().then_some(show_progress as fn(u64, u64));
    let opts = ferry::SaveOptions { format: None, opset: a.opset, external_data: a.external_data, progress };
    ferry::save(&model, &a.output, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({"input": a.input.display().to_string(), "output": a.output.display().to_string(), "opset": a.opset, "seconds": secs});
    if !a.json {
        eprintln!("wrote {} ({secs:.2} s)", a.output.display());
    }
    if a.verify {
        return verify(&a, &model, summary);
    }
    if a.json {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Compares the written file with the source model on random inputs (seeded).
fn verify(a: &Args, model: &ferry::Model, mut summary: serde_json::Value) -> Result<ExitCode, Refusal> {
    let written =
        ferry::load(&a.output).map_err(|e| Refusal(format!("--verify: reading back {}: {e}", a.output.display())))?;
    let spec = super::inputs::InputSpec {
        random_inputs: true,
        seed: a.seed,
        input_shapes: &a.source.input_shape,
        ..Default::default()
    };
    let side = super::compare::Side { path: &a.output, params: None, model: Some(written) };
    let report = super::compare::compare_with(model, side, &spec, a.rtol, a.atol, &Default::default())
        .map_err(|Refusal(m)| Refusal(format!("--verify: {m} (the converted file was written)")))?;
    if a.json {
        summary["verify"] = report.to_json();
        println!("{summary}");
    } else {
        report.print(&a.input, &a.output, false);
    }
    if report.agree() {
        eprintln!("verified: {} agrees with {} (seed {})", a.output.display(), a.input.display(), a.seed);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} differs from {}; the file was kept", a.output.display(), a.input.display());
        Ok(ExitCode::from(1))
    }
}

pub(super) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A one-line progress bar on the terminal while large weights are written.
fn show_progress(done: u64, total: u64) {
    const MIB: f64 = (1u64 << 20) as f64;
    if total < (64 << 20) {
        return;
    }
    let frac = (done as f64 / total as f64).min(1.0);
    let filled = (frac * 30.0) as usize;
    eprint!(
        "\rwriting weights [{}{}] {:.0}/{:.0} MiB",
        "#".repeat(filled),
        " ".repeat(30 - filled),
        done as f64 / MIB,
        total as f64 / MIB
    );
    if done >= total {
        eprintln!();
    }
}
