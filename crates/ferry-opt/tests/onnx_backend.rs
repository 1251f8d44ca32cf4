//! Every case of the onnx backend test data (target/onnx-backend, see
//! tests/onnx_conformance/gen_cases.py) runs on the reference runtime twice: as imported and
//! after `ferry_opt::optimize`. Both must get the same verdict against the recorded outputs.
//! Cases where they differ are listed with a reason in
//! tests/onnx_conformance/expected/optimize-differs.txt (`case<TAB>reason`); an unlisted
//! difference fails the test, and so does a listed case that no longer differs (stale list).

// Only the decoding and comparison helpers are used here.
#[allow(dead_code)]
#[path = "../../ferry-runtime/tests/common/backend.rs"]
mod backend;

use ferry_runtime::Prepared;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The verdict of one model on the case's first data set: Ok, or the first mismatch/error.
fn verdict(model: &ferry_ir::Model, dir: &Path) -> Result<(), String> {
    let prepared = Prepared::new(model).map_err(|e| format!("prepare: {e}"))?;
    let g = prepared.graph();
    let data = dir.join("test_data_set_0");
    let free: Vec<usize> = g.inputs.iter().copied().filter(|i| g.initializer(*i).is_none()).collect();
    let mut inputs = Vec::new();
    for (k, id) in free.iter().enumerate() {
        let Ok(bytes) = std::fs::read(data.join(format!("input_{k}.pb"))) else { continue };
        inputs.push((g.values[*id].name.clone(), backend::decode_value(&bytes, &g.values[*id].ty)?));
    }
    let outputs = prepared.run(inputs).map_err(|e| format!("run: {e}"))?;
    for (k, got) in outputs.iter().enumerate() {
        let id = g.outputs[k];
        let Ok(bytes) = std::fs::read(data.join(format!("output_{k}.pb"))) else { continue };
        let want = backend::decode_value(&bytes, &g.values[id].ty)?;
        backend::close(got, &want, &format!("output {k} ('{}')", g.values[id].name))?;
    }
    Ok(())
}

struct Outcome {
    original: Result<(), String>,
    optimized: Result<(), String>,
    nodes: (usize, usize),
}

fn run_case(dir: &Path) -> Result<Outcome, String> {
    let model = ferry_onnx::load(&dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    let (opt, report) = ferry_opt::optimize(&model, &Default::default()).map_err(|e| format!("optimize: {e}"))?;
    let names = |m: &ferry_ir::Model, ids: &[usize]| -> Vec<String> {
        ids.iter().map(|i| m.graph.values[*i].name.clone()).collect()
    };
    if names(&model, &model.graph.inputs) != names(&opt, &opt.graph.inputs)
        || names(&model, &model.graph.outputs) != names(&opt, &opt.graph.outputs)
    {
        return Err("optimize changed the graph's inputs or outputs".into());
    }
    Ok(Outcome {
        original: verdict(&model, dir),
        optimized: verdict(&opt, dir),
        nodes: (report.nodes_before, report.nodes_after),
    })
}

#[test]
fn optimized_models_get_the_same_verdict_as_the_originals() {
    let root = repo().join("target/onnx-backend");
    if !root.join(".stamp").exists() {
        eprintln!("SKIPPED: no backend test data; run tests/onnx_conformance/gen_cases.py (scripts/test.sh does)");
        return;
    }
    let cases = backend::cases(&root);
    let results: Vec<(String, Result<Outcome, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let chunk: Vec<String> = cases.iter().skip(t).step_by(2).cloned().collect();
                let root = &root;
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|c| {
                            let dir = root.join(&c);
                            let r = std::panic::catch_unwind(|| run_case(&dir))
                                .unwrap_or_else(|_| Err("PANIC (a bug: see the message above)".into()));
                            (c, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let listed: BTreeMap<String, String> =
        std::fs::read_to_string(repo().join("tests/onnx_conformance/expected/optimize-differs.txt"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (c, why) = l.split_once('\t').unwrap_or((l, ""));
                (c.to_string(), why.to_string())
            })
            .collect();
    let (mut nodes_before, mut nodes_after, mut both_pass) = (0, 0, 0);
    let mut differs = Vec::new();
    let mut log = String::new();
    for (c, r) in &results {
        let line = match r {
            Err(e) => {
                differs.push(c.clone());
                format!("{c}\tERROR {e}")
            }
            Ok(o) => {
                nodes_before += o.nodes.0;
                nodes_after += o.nodes.1;
                both_pass += usize::from(o.original.is_ok() && o.optimized.is_ok());
                if o.original.is_ok() != o.optimized.is_ok() {
                    differs.push(c.clone());
                }
                let v = |r: &Result<(), String>| {
                    r.as_ref().err().map_or("ok".to_string(), |e| e.lines().next().unwrap_or("").to_string())
                };
                format!(
                    "{c}\t{} -> {} nodes\toriginal: {}\toptimized: {}",
                    o.nodes.0,
                    o.nodes.1,
                    v(&o.original),
                    v(&o.optimized)
                )
            }
        };
        log.push_str(&line);
        log.push('\n');
    }
    let _ = std::fs::write(repo().join("target/optimize-backend-results.txt"), log);
    let unlisted: Vec<&String> = differs.iter().filter(|c| !listed.contains_key(*c)).collect();
    let stale: Vec<&String> = listed.keys().filter(|c| !differs.contains(c) && cases.contains(c)).collect();
    println!(
        "optimize on the onnx backend data: {} cases, {both_pass} pass before and after, {} differ ({} listed); \
         nodes {nodes_before} -> {nodes_after} (details: target/optimize-backend-results.txt)",
        results.len(),
        differs.len(),
        differs.len() - unlisted.len()
    );
    for c in &unlisted {
        let why = results.iter().find(|(n, _)| n == *c).map(|(_, r)| match r {
            Err(e) => e.clone(),
            Ok(o) => format!("original: {:?}; optimized: {:?}", o.original, o.optimized),
        });
        eprintln!("DIFFERS {c}: {}", why.unwrap_or_default());
    }
    assert!(unlisted.is_empty(), "{} case(s) get another verdict after optimize", unlisted.len());
    // A guard that the passes stay effective (today: about half the nodes go).
    assert!(nodes_after * 10 < nodes_before * 6, "optimize removed less than 40% of the nodes");
    assert!(stale.is_empty(), "listed in optimize-differs.txt but no longer differ: {stale:?}");
}
