//! The `ferry` command line. Exit codes: 0 success, 1 a refusal (one clear message), 2 usage.

mod cmd;
use ferry_cli::npy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Carry neural-network models between frameworks: inspect, check, convert and run ONNX models."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarize a model: format, versions, inputs/outputs, op histogram, parameters, custom ops.
    ///
    /// Example: ferry inspect model.onnx --json
    Inspect(cmd::inspect::Args),
    /// Validate a model and list every problem at once (exit 0 valid, 1 invalid).
    ///
    /// Example: ferry check model.onnx
    Check(cmd::check::Args),
    /// Convert a model to another format or opset (format chosen from the output name).
    ///
    /// Example: ferry convert model.onnx -o model-opset13.onnx --opset 13
    Convert(cmd::convert::Args),
    /// Run a model on the reference runtime; inputs from .npy/.pb/.npz files or random values.
    ///
    /// Example: ferry run model.onnx --input x=x.npy --output-dir out/
    Run(cmd::run::Args),
}

/// A refusal: printed as one message, exit code 1.
pub struct Refusal(pub String);

impl From<ferry::Error> for Refusal {
    fn from(e: ferry::Error) -> Refusal {
        Refusal(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Run(a) => cmd::run::run(a),
    };
    match result {
        Ok(code) => code,
        Err(Refusal(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
