//! The `ferry` command line. Exit codes: 0 success, 1 a refusal (one clear message), 2 usage.

mod cmd;
use ferry_cli::npy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Carry neural-network models between frameworks: inspect, check, convert, run and compare ONNX and MXNet models.",
    after_help = "Example: ferry convert resnet-symbol.json -o resnet.onnx --input-shape data=1,3,224,224 --verify\nGuide: docs/user-guide.md"
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
    /// Convert a model to another format or opset (format chosen from the output name);
    /// --verify then runs both on the same random inputs and compares the outputs.
    ///
    /// Example: ferry convert model-symbol.json -o model.onnx --input-shape data=1,3,32,32 --verify
    Convert(cmd::convert::Args),
    /// Run a model (reference runtime or optimized engine: --path); inputs from .npy/.pb/.npz files
    /// or random values.
    ///
    /// Example: ferry run model.onnx --input x=x.npy --output-dir out/ --expect #0=reference_output.npy
    Run(cmd::run::Args),
    /// Run two models on the same inputs (each on its --path-a/--path-b) and compare their outputs: dtype,
    /// shape, max abs/rel error and the worst element per output. Outputs are paired by name, or by
    /// position when the names differ. Exit 0 when all agree, 1 when any differs.
    ///
    /// Example: ferry compare model-symbol.json model.onnx --input-shape data=1,3,32,32 --seed 1
    Compare(cmd::compare::Args),
    /// List the supported ops (the support matrix, read from the code): ONNX ops with their
    /// versions and status (core or carried), MXNet ops read.
    ///
    /// Example: ferry ops --format onnx --json
    Ops(cmd::ops::Args),
    /// Simplify a model and write it back in its format: fold constants and shape computations,
    /// remove identities, dead and duplicate nodes, merge layout chains, fold BatchNorm into
    /// Conv/MatMul weights. Prints nodes and weight bytes before/after and what each pass did.
    ///
    /// Example: ferry optimize model.onnx -o model-opt.onnx --input-shape input=1,3,224,224
    Optimize(cmd::optimize::Args),
    /// Time a model: load + prepare time, per-run latency (min/median/p90/mean over --runs after
    /// --warmup untimed runs) and peak resident memory. Progress goes to stderr on long runs.
    ///
    /// Example: ferry bench resnet50.onnx --inputs resnet50.inputs.npz --threads 2 --runs 20 --json
    Bench(cmd::bench::Args),
}

/// A refusal: printed as one message, exit code 1.
pub struct Refusal(pub String);

impl From<ferry::Error> for Refusal {
    fn from(e: ferry::Error) -> Refusal {
        Refusal(e.to_string())
    }
}

fn main() -> ExitCode {
    // Piped into `head` and the like, end quietly as other command-line tools do, instead of
    // failing on the closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread or I/O starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Ops(a) => cmd::ops::run(a),
        Command::Optimize(a) => cmd::optimize::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(Refusal(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
