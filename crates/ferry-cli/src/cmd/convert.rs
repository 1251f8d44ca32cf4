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
    if a.json {
        println!(
            "{}",
            serde_json::json!({"input": a.input.display().to_string(), "output": a.output.display().to_string(), "opset": a.opset, "seconds": secs})
        );
    } else {
        eprintln!("wrote {} ({secs:.2} s)", a.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
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
