//! Graph optimizations over the core IR: IR in, IR out, every result made of core ops (so it
//! exports to any format that could take the input). The passes, run in rounds until nothing
//! changes: shape-computation folding, bounded constant folding, identity elimination,
//! transpose/reshape/squeeze chains, per-channel affine (BatchNorm) folding into Conv/MatMul,
//! common-subexpression elimination and dead-code elimination.
//!
//! What never changes: graph inputs and outputs (names, order, types), values that nested graphs
//! read by name, random and custom ops. Nested graphs (If/Loop/Scan bodies) are left as they are.
//! Kernel-level fusion (epilogues, GELU/LayerNorm recognition) belongs to the execution engine.
//!
//! ```no_run
//! # fn demo(model: &ferry_ir::Model) -> Result<(), ferry_opt::OptError> {
//! let (optimized, report) = ferry_opt::optimize(model, &ferry_opt::OptimizeOptions::default())?;
//! println!("{} nodes -> {}", report.nodes_before, report.nodes_after);
//! # Ok(()) }
//! ```

mod affine;
mod chains;
mod cse;
mod dce;
pub mod editor;
mod fold;
mod identity;
mod shapes;

use editor::Editor;
use ferry_ir::{Graph, Model, Op, Shape, ValueType};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct OptimizeOptions {
    /// No folded constant is larger than this (bytes).
    pub max_folded_bytes: u64,
    /// A folded constant over 1 MiB may be at most this many times its inputs' total size.
    pub max_growth: u64,
    /// Binds graph inputs' shapes (by name) before optimizing, so that shape computations on
    /// them fold. The inputs' declared types change accordingly.
    pub input_shapes: Vec<(String, Vec<u64>)>,
    /// Rounds of all passes at most (each round runs every pass once).
    pub max_rounds: usize,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions { max_folded_bytes: 64 << 20, max_growth: 16, input_shapes: Vec::new(), max_rounds: 16 }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizeReport {
    /// Nodes, nested graphs included.
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub initializer_bytes_before: u64,
    pub initializer_bytes_after: u64,
    /// Changes made by each pass, by pass name.
    pub passes: BTreeMap<&'static str, usize>,
    pub rounds: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("--input-shape: {0}")]
    InputShape(String),
}

/// The pass names, in the order each round runs them.
pub const PASSES: [&str; 9] = [
    "constants_to_initializers",
    "shape_folding",
    "constant_folding",
    "identity_elimination",
    "chain_merging",
    "affine_folding",
    "constant_merging",
    "common_subexpressions",
    "dead_code",
];

pub fn optimize(model: &Model, opts: &OptimizeOptions) -> Result<(Model, OptimizeReport), OptError> {
    let mut out = model.clone();
    let g = &mut out.graph;
    let mut report = OptimizeReport {
        nodes_before: node_count(&model.graph),
        initializer_bytes_before: model.graph.parameter_totals().1,
        ..Default::default()
    };
    for p in PASSES {
        report.passes.insert(p, 0);
    }
    bind_input_shapes(g, &opts.input_shapes)?;
    let output_types: Vec<ValueType> = g.outputs.iter().map(|o| g.values[*o].ty.clone()).collect();
    let mut changes_total = 0;
    for round in 0..opts.max_rounds.max(1) {
        fresh_inference(g);
        let mut ed = Editor::new(g);
        let counts = [
            constants_to_initializers(&mut ed),
            shapes::fold_shapes(&mut ed),
            fold::fold_constants(&mut ed, opts),
            identity::eliminate_identities(&mut ed),
            chains::merge_chains(&mut ed),
            affine::fold_affine(&mut ed),
            cse::merge_constants(&mut ed),
            cse::eliminate_common(&mut ed),
            dce::eliminate_dead(&mut ed),
        ];
        ed.finish();
        report.rounds = round + 1;
        for (p, c) in PASSES.iter().zip(counts) {
            *report.passes.get_mut(p).expect("listed") += c;
        }
        let changes: usize = counts.iter().sum();
        changes_total += changes;
        if changes == 0 {
            break;
        }
    }
    if changes_total > 0 {
        fresh_inference(g);
    }
    // Graph outputs keep their declared types.
    for (o, ty) in g.outputs.clone().into_iter().zip(output_types) {
        g.values[o].ty = ty;
    }
    report.nodes_after = node_count(&out.graph);
    report.initializer_bytes_after = out.graph.parameter_totals().1;
    Ok((out, report))
}

fn node_count(g: &Graph) -> usize {
    let mut n = 0;
    g.visit(&mut |g, _| n += g.nodes.len());
    n
}

/// Types of values computed in this graph are inferred again from the inputs and constants
/// only: annotations that files carry for intermediate values are often stale, and folding a
/// Shape on a stale annotation would change the results. Nested graphs keep theirs.
fn fresh_inference(g: &mut Graph) {
    let produced = g.producers();
    for (v, p) in produced.iter().enumerate() {
        if p.is_some() && !g.outputs.contains(&v) {
            g.values[v].ty = ValueType::Unknown;
        }
    }
    let _ = ferry_ir::infer::infer_graph(g);
}

/// Sets the shapes that `--input-shape` binds, checking them against the declared ones.
fn bind_input_shapes(g: &mut Graph, shapes: &[(String, Vec<u64>)]) -> Result<(), OptError> {
    for (name, dims) in shapes {
        let Some(&id) = g.inputs.iter().find(|i| g.values[**i].name == *name) else {
            let names: Vec<&str> = g.inputs.iter().map(|i| g.values[*i].name.as_str()).collect();
            return Err(OptError::InputShape(format!(
                "the model has no input named '{name}' (inputs: {})",
                names.join(", ")
            )));
        };
        let ty = &g.values[id].ty;
        if let Some(declared) = ty.shape() {
            let clash = declared.rank() != dims.len()
                || declared.dims().iter().zip(dims).any(|(d, b)| d.known().is_some_and(|k| k != *b));
            if clash {
                return Err(OptError::InputShape(format!(
                    "input '{name}' is declared {ty}, which {dims:?} does not fit"
                )));
            }
        }
        let dtype = match ty {
            ValueType::Tensor { dtype, .. } => *dtype,
            ValueType::Unknown => None,
            other => return Err(OptError::InputShape(format!("input '{name}' is a {other}, not a tensor"))),
        };
        g.values[id].ty = ValueType::Tensor { dtype, shape: Some(Shape::known(dims)) };
    }
    Ok(())
}

/// `Constant` nodes become initializers (the same value, without a node), except those that
/// write a graph output.
fn constants_to_initializers(ed: &mut Editor) -> usize {
    let mut moved = 0;
    for n in 0..ed.g.nodes.len() {
        if ed.dead[n] {
            continue;
        }
        let Op::Constant(t) = &ed.g.nodes[n].op else { continue };
        let Some(Some(o)) = ed.g.nodes[n].outputs.first().copied() else { continue };
        if ed.is_output(o) {
            continue;
        }
        let t = t.clone();
        ed.kill(n);
        ed.set_constant(o, t);
        moved += 1;
    }
    moved
}
