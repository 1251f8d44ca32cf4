//! Validation: every problem found, at once.

use ferry_ir::infer::infer_graph;
use ferry_ir::{Graph, Model, Op};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the model is still valid.
    Note,
    /// Suspicious (e.g. a stale shape annotation); the model is still valid.
    Warning,
    /// The model is wrong.
    Error,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    pub node: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
}

impl CheckReport {
    pub fn is_valid(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Error)
    }
}

/// Checks a loaded model: type/shape consistency, graph outputs, custom and carried ops.
pub fn check(model: &Model) -> CheckReport {
    let mut report = CheckReport::default();
    let mut graph = model.graph.clone();
    for w in infer_graph(&mut graph) {
        let severity = if w.message.contains("annotated") { Severity::Warning } else { Severity::Error };
        report.findings.push(Finding { severity, node: Some(w.node), message: w.message });
    }
    let mut custom: BTreeMap<String, usize> = BTreeMap::new();
    let mut carried: BTreeMap<String, usize> = BTreeMap::new();
    graph.visit(&mut |g: &Graph, _| {
        for n in &g.nodes {
            if let Op::Opaque(o) = &n.op {
                let key = format!("{}::{}", if o.domain.is_empty() { "ai.onnx" } else { &o.domain }, o.op_type);
                if o.domain.is_empty() || o.domain == "ai.onnx.ml" || o.domain.starts_with("ai.onnx.preview") {
                    *carried.entry(format!("{key}-{}", o.version.unwrap_or(0))).or_default() += 1;
                } else {
                    *custom.entry(key).or_default() += 1;
                }
            }
        }
    });
    for (op, count) in custom {
        report.findings.push(Finding {
            severity: Severity::Warning,
            node: None,
            message: format!(
                "custom op {op} ({count} node(s)): kept as an opaque node; ferry cannot run or convert its meaning"
            ),
        });
    }
    for (op, count) in carried {
        report.findings.push(Finding {
            severity: Severity::Note,
            node: None,
            message: format!(
                "{op} ({count} node(s)) has no core-op form in ferry yet: carried as written; it converts only to opsets with the same op version"
            ),
        });
    }
    for what in &model.meta.not_carried {
        report.findings.push(Finding {
            severity: Severity::Warning,
            node: None,
            message: format!("{what}: read but not carried by ferry; a converted model will not have them"),
        });
    }
    for o in &graph.outputs {
        if graph.values[*o].ty.is_unknown() {
            report.findings.push(Finding {
                severity: Severity::Note,
                node: None,
                message: format!("the type of graph output '{}' is not known", graph.values[*o].name),
            });
        }
    }
    report
}
