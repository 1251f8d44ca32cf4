use crate::Refusal;
use ferry::Severity;
use serde_json::json;
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

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Note => "note",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

pub fn run(a: Args) -> Result<ExitCode, Refusal> {
    let (valid, findings) = match a.source.load(&a.model) {
        Ok(model) => {
            let r = ferry::check(&model);
            (r.is_valid(), r.findings)
        }
        // A model that cannot be read is invalid: report it like any other finding.
        Err(e) => (false, vec![ferry::Finding { severity: Severity::Error, node: None, message: e.0 }]),
    };
    if a.json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| json!({"severity": severity_name(f.severity), "node": f.node, "message": f.message}))
            .collect();
        println!("{}", json!({"path": a.model.display().to_string(), "valid": valid, "findings": list}));
    } else {
        for f in &findings {
            match &f.node {
                Some(n) => println!("{}: node '{}': {}", severity_name(f.severity), n, f.message),
                None => println!("{}: {}", severity_name(f.severity), f.message),
            }
        }
        let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
        println!(
            "{}: {}",
            a.model.display(),
            if valid { "valid".to_string() } else { format!("invalid ({errors} error(s))") }
        );
    }
    Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
