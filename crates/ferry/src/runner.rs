//! Running a model: on the reference runtime (the oracle) or the optimized engine, behind one type.

use ferry_engine::{Engine, EngineOptions};
use ferry_ir::{Graph, Model};
use ferry_runtime::{Prepared, RunError, Value};

/// Which execution path runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecPath {
    /// The reference runtime: one plain kernel per op, the oracle.
    #[default]
    Reference,
    /// The optimized engine: shape-specialized plans, fused kernels, a memory plan.
    Optimized,
}

#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    pub path: ExecPath,
    /// Threads for the optimized path's kernels; 0: all cores.
    pub threads: usize,
}

/// A model ready to run on one path. Runs from many threads at once.
#[derive(Debug)]
pub enum Runner {
    Reference(Prepared),
    Optimized(Box<Engine>),
}

/// Prepares `model` to run on the chosen path.
pub fn prepare(model: &Model, opts: &PrepareOptions) -> Result<Runner, RunError> {
    Ok(match opts.path {
        ExecPath::Reference => Runner::Reference(Prepared::new(model)?),
        ExecPath::Optimized => {
            Runner::Optimized(Box::new(Engine::compile(model, &EngineOptions { threads: opts.threads })?))
        }
    })
}

impl Runner {
    /// Runs on named inputs (graph inputs with initializers may be left out); returns the graph
    /// outputs in order. Both paths take the same inputs and report the same errors.
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, RunError> {
        match self {
            Runner::Reference(p) => p.run(inputs),
            Runner::Optimized(e) => e.run(inputs),
        }
    }

    /// Graph inputs the caller must (or may) give.
    pub fn input_names(&self) -> Vec<&str> {
        match self {
            Runner::Reference(p) => p.input_names(),
            Runner::Optimized(e) => e.input_names(),
        }
    }

    pub fn graph(&self) -> &Graph {
        match self {
            Runner::Reference(p) => p.graph(),
            Runner::Optimized(e) => e.graph(),
        }
    }

    pub fn path(&self) -> ExecPath {
        match self {
            Runner::Reference(_) => ExecPath::Reference,
            Runner::Optimized(_) => ExecPath::Optimized,
        }
    }
}
