//! The engine: a graph compiled once, a plan per input-shape signature built on first use and
//! cached, and a pool of arenas per plan so steady-state runs allocate nothing but their outputs.

use crate::exec::{self, Stop};
use crate::facts;
use crate::lower::{self, Cx};
use crate::plan::{Plan, PlanStats};
use ferry_ir::{DType, Graph, Model, Op, ValueType};
use ferry_runtime::{Prepared, RunError, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Threads for the kernels of one run; 0: all cores.
    pub threads: usize,
}

/// Element type and shape of each graph input.
type Signature = Vec<(DType, Vec<u64>)>;

#[derive(Debug)]
enum Entry {
    Plan(Plan),
    /// This signature runs on the reference executor (why: for diagnostics).
    Reference(String),
}

/// A model compiled for the optimized path. Runs from many threads at once.
#[derive(Debug)]
pub struct Engine {
    graph: Graph,
    reference: Prepared,
    /// Set when the graph as a whole runs on the reference executor (control flow, sequences,
    /// optionals: values the arena cannot hold, bodies that read outer values by name).
    whole_graph_reference: Option<String>,
    plans: Mutex<HashMap<Signature, Arc<Entry>>>,
    threads: ferry_kernels::Pool,
}

impl Engine {
    pub fn compile(model: &Model, opts: &EngineOptions) -> Result<Engine, RunError> {
        let graph = model.graph.clone();
        let whole_graph_reference = needs_reference(&graph);
        Ok(Engine {
            reference: Prepared::new(model)?,
            graph,
            whole_graph_reference,
            plans: Mutex::new(HashMap::new()),
            threads: ferry_kernels::Pool::new(opts.threads),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Graph inputs the caller must (or may) give: those without an initializer come first.
    pub fn input_names(&self) -> Vec<&str> {
        self.reference.input_names()
    }

    /// Why the whole graph runs on the reference executor, when it does.
    pub fn reference_reason(&self) -> Option<&str> {
        self.whole_graph_reference.as_deref()
    }

    /// Signatures that run on the reference executor after a shape surprise, and why.
    pub fn replanned(&self) -> Vec<String> {
        let plans = self.plans.lock().map(|p| p.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        plans
            .iter()
            .filter_map(|e| match &**e {
                Entry::Reference(why) => Some(why.clone()),
                Entry::Plan(_) => None,
            })
            .collect()
    }

    /// Ops that run on reference kernels in the plans built so far, with their step counts.
    pub fn fallback_ops(&self) -> std::collections::BTreeMap<String, usize> {
        let plans = self.plans.lock().map(|p| p.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let mut ops = std::collections::BTreeMap::new();
        for e in &plans {
            if let Entry::Plan(p) = &**e {
                for s in p.steps.iter().filter(|s| matches!(s.kind, crate::steps::Kind::Fallback { .. })) {
                    *ops.entry(self.graph.nodes[s.node].op.name()).or_insert(0) += 1;
                }
            }
        }
        ops
    }

    /// The plans built so far, with their memory figures.
    pub fn plan_stats(&self) -> Vec<PlanStats> {
        let plans = self.plans.lock().map(|p| p.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        plans
            .iter()
            .filter_map(|e| match &**e {
                Entry::Plan(p) => Some(p.stats),
                Entry::Reference(_) => None,
            })
            .collect()
    }

    /// Runs the model on named inputs; returns the graph outputs in order. Inputs, defaults and
    /// errors are exactly those of [`Prepared::run`].
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, RunError> {
        self.run_profiled(inputs, None)
    }

    /// Runs once and returns, per step kind, the seconds spent and the step count (an empty
    /// list when this input signature runs on the reference executor).
    pub fn profile(&self, inputs: Vec<(String, Value)>) -> Result<Vec<(&'static str, f64, usize)>, RunError> {
        let mut times = Vec::new();
        self.run_profiled(inputs.clone(), Some(&mut times))?;
        let Some(entry) = self.entry_for(&inputs)? else { return Ok(vec![]) };
        let Entry::Plan(plan) = &*entry else { return Ok(vec![]) };
        let mut by_kind: Vec<(&'static str, f64, usize)> = Vec::new();
        for (step, t) in plan.steps.iter().zip(times) {
            match by_kind.iter_mut().find(|(k, _, _)| *k == step.kind.name()) {
                Some(e) => {
                    e.1 += t;
                    e.2 += 1;
                }
                None => by_kind.push((step.kind.name(), t, 1)),
            }
        }
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(by_kind)
    }

    /// The cached plan entry for these inputs' signature, if built.
    fn entry_for(&self, inputs: &[(String, Value)]) -> Result<Option<Arc<Entry>>, RunError> {
        let given = self.resolve(inputs.to_vec())?;
        let sig: Option<Signature> = given.iter().map(|v| v.tensor().map(|t| (t.dtype, t.shape.clone()))).collect();
        let plans = self.plans.lock().map_err(|_| RunError::Unsupported("a run panicked earlier".into()))?;
        Ok(sig.and_then(|s| plans.get(&s).cloned()))
    }

    fn run_profiled(
        &self,
        inputs: Vec<(String, Value)>,
        profile: Option<&mut Vec<f64>>,
    ) -> Result<Vec<Value>, RunError> {
        if self.whole_graph_reference.is_some() {
            return self.reference.run(inputs);
        }
        let given = self.resolve(inputs)?;
        let mut signature = Vec::with_capacity(given.len());
        for v in &given {
            match v {
                Value::Tensor(t) => signature.push((t.dtype, t.shape.clone())),
                _ => return self.reference.run(self.named(given)),
            }
        }
        let entry = self.entry(signature)?;
        let plan = match &*entry {
            Entry::Plan(p) => p,
            Entry::Reference(_) => return self.reference.run(self.named(given)),
        };
        let mut arena = plan.take_arena();
        let result = exec::run(plan, &self.graph, &mut arena, given.clone(), &self.threads, profile);
        plan.give_arena(arena);
        match result {
            Ok(outs) => Ok(outs),
            Err(Stop::Run(e)) => Err(e),
            Err(Stop::Replan(why)) => {
                // Shape inference promised a shape a reference kernel did not produce: this
                // signature runs on the reference executor from now on.
                if let Ok(mut plans) = self.plans.lock() {
                    let key = given.iter().filter_map(|v| v.tensor().map(|t| (t.dtype, t.shape.clone()))).collect();
                    plans.insert(key, Arc::new(Entry::Reference(why)));
                }
                self.reference.run(self.named(given))
            }
        }
    }

    /// The plan for a signature, built on first use.
    fn entry(&self, signature: Signature) -> Result<Arc<Entry>, RunError> {
        let mut plans = self.plans.lock().map_err(|_| RunError::Unsupported("a run panicked earlier".into()))?;
        if let Some(e) = plans.get(&signature) {
            return Ok(e.clone());
        }
        let facts = facts::analyze(&self.graph, &signature)?;
        let cx = Cx::new(&self.graph, &facts);
        let lowered = lower::lower(&cx);
        let scratch_bytes = lowered.scratch_len as u64 * 4;
        let plan = Plan::new(&self.graph, facts.clone(), lowered.steps, lowered.folded, lowered.scratch_len);
        ferry_runtime::limits::check_plan(plan.stats.arena_bytes as u64 + scratch_bytes, "the execution plan")
            .map_err(RunError::Input)?;
        let e = Arc::new(Entry::Plan(plan));
        plans.insert(signature, e.clone());
        Ok(e)
    }

    /// Graph inputs in order, with initializer defaults for those not given (as `Prepared::run`).
    fn resolve(&self, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, RunError> {
        let g = &self.graph;
        let mut given: Vec<Option<Value>> = vec![None; g.inputs.len()];
        for (name, v) in inputs {
            let k = g.inputs.iter().position(|i| g.values[*i].name == name).ok_or_else(|| {
                RunError::Input(format!(
                    "the model has no input named '{name}' (inputs: {})",
                    self.input_names().join(", ")
                ))
            })?;
            given[k] = Some(v);
        }
        given
            .into_iter()
            .enumerate()
            .map(|(k, v)| match v {
                Some(v) => Ok(v),
                None => {
                    let id = g.inputs[k];
                    g.initializer(id).map(|t| Value::Tensor(t.clone())).ok_or_else(|| {
                        RunError::Input(format!("input '{}' ({}) is missing", g.values[id].name, g.values[id].ty))
                    })
                }
            })
            .collect()
    }

    fn named(&self, values: Vec<Value>) -> Vec<(String, Value)> {
        self.graph.inputs.iter().map(|i| self.graph.values[*i].name.clone()).zip(values).collect()
    }
}

/// Why a graph must run on the reference executor as a whole, if it must.
fn needs_reference(g: &Graph) -> Option<String> {
    for node in &g.nodes {
        let op = &node.op;
        if !op.subgraphs().is_empty() {
            return Some(format!("control flow ({})", op.name()));
        }
        let sequences = matches!(
            op,
            Op::SequenceConstruct
                | Op::SequenceEmpty { .. }
                | Op::SequenceAt
                | Op::SequenceInsert
                | Op::SequenceErase
                | Op::SequenceLength
                | Op::SplitToSequence { .. }
                | Op::ConcatFromSequence { .. }
                | Op::OptionalConstruct { .. }
                | Op::OptionalHasElement
                | Op::OptionalGetElement
        );
        if sequences {
            return Some(format!("sequences or optionals ({})", op.name()));
        }
    }
    let non_tensor =
        g.inputs.iter().chain(&g.outputs).find(|v| {
            matches!(g.values[**v].ty, ValueType::Sequence(_) | ValueType::Optional(_) | ValueType::Map { .. })
        });
    non_tensor.map(|v| format!("value '{}' is not a tensor", g.values[*v].name))
}
