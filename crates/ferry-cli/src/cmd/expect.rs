//! `ferry run --expect`: check a run's outputs against outputs recorded elsewhere (by the original
//! framework, say), so a converted model can be proved right against its source's own numbers.

use super::compare::{Row, compare_values};
use super::inputs;
use crate::Refusal;
use crate::npy;
use ferry_runtime::Value;
use serde_json::json;
use std::path::Path;

/// One recorded output: which graph output it is for, and where it came from.
pub struct Expected {
    index: usize,
    name: String,
    source: String,
    value: Value,
}

/// Reads `--expect NAME=FILE.npy` (NAME an output name or `#K`) and `--expect-npz FILE` (keys
/// are output names).
pub fn read(specs: &[String], npz: Option<&Path>, output_names: &[String]) -> Result<Vec<Expected>, Refusal> {
    let find = |key: &str| -> Result<usize, Refusal> {
        let by_index = key.strip_prefix('#').and_then(|k| k.parse::<usize>().ok());
        by_index
            .filter(|k| *k < output_names.len())
            .or_else(|| output_names.iter().position(|n| n == key))
            .ok_or_else(|| Refusal(format!("the model has no output '{key}' (outputs: {})", output_names.join(", "))))
    };
    let mut out = Vec::new();
    for spec in specs {
        let (key, file) = spec
            .split_once('=')
            .ok_or_else(|| Refusal(format!("--expect takes NAME=FILE.npy (or #K=FILE.npy), not '{spec}'")))?;
        let index = find(key)?;
        let t = npy::read_npy(&inputs::read(Path::new(file))?).map_err(|e| Refusal(format!("{file}: {e}")))?;
        out.push(Expected {
            index,
            name: output_names[index].clone(),
            source: file.to_string(),
            value: Value::Tensor(t),
        });
    }
    if let Some(p) = npz {
        let arrays = npy::read_npz(&inputs::read(p)?).map_err(|e| Refusal(format!("{}: {e}", p.display())))?;
        for (key, t) in arrays {
            let index = find(&key)?;
            let source = format!("{}:{key}", p.display());
            out.push(Expected { index, name: output_names[index].clone(), source, value: Value::Tensor(t) });
        }
    }
    Ok(out)
}

/// Compares every expectation with the run's outputs; returns whether all agree, the JSON rows
/// and the text lines to print.
pub fn check(expected: &[Expected], outputs: &[Value], rtol: f64, atol: f64) -> (bool, serde_json::Value, Vec<String>) {
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut all = true;
    for e in expected {
        // The recorded value is the reference: tolerances scale with it.
        let row: Row = compare_values(&e.value, &outputs[e.index], rtol, atol);
        all &= row.pass();
        lines.push(format!(
            "{} output {} '{}' vs {}: {}",
            if row.pass() { "PASS" } else { "FAIL" },
            e.index,
            e.name,
            e.source,
            row.summary(rtol, atol)
        ));
        let mut j = row.to_json();
        j["index"] = json!(e.index);
        j["name"] = json!(e.name);
        j["expected"] = json!(e.source);
        rows.push(j);
    }
    (all, json!({"agree": all, "rtol": rtol, "atol": atol, "outputs": rows}), lines)
}
