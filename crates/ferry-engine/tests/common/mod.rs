//! A small builder for core-IR graphs, and comparing the engine with the reference runtime.

#![allow(dead_code)] // each test file uses part of it

use ferry_engine::{Engine, EngineOptions, PlanStats, Value};
use ferry_ir::ops::{BinaryOp, UnaryOp};
use ferry_ir::{DType, Graph, Model, Node, Op, Shape, Tensor, ValueId, ValueType};

pub struct B {
    pub g: Graph,
    seed: u64,
}

impl B {
    pub fn new() -> B {
        B { g: Graph::default(), seed: 7 }
    }

    pub fn input(&mut self, name: &str, dims: &[u64]) -> ValueId {
        let v = self.g.add_value(name, ValueType::tensor(DType::F32, Shape::known(dims)));
        self.g.inputs.push(v);
        v
    }

    /// Deterministic pseudo-random values in [lo, hi).
    pub fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((self.seed >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }

    pub fn konst(&mut self, dims: &[u64], values: &[f32]) -> ValueId {
        let name = format!("c{}", self.g.values.len());
        let v = self.g.add_value(name, ValueType::Unknown);
        self.g.initializers.push((v, Tensor::from_f32(dims.to_vec(), values).unwrap()));
        v
    }

    pub fn random_const(&mut self, dims: &[u64], lo: f32, hi: f32) -> ValueId {
        let vals = self.values(dims.iter().product::<u64>() as usize, lo, hi);
        self.konst(dims, &vals)
    }

    pub fn scalar(&mut self, v: f32) -> ValueId {
        self.konst(&[], &[v])
    }

    pub fn ints(&mut self, values: &[i64]) -> ValueId {
        let name = format!("i{}", self.g.values.len());
        let v = self.g.add_value(name, ValueType::Unknown);
        self.g.initializers.push((v, Tensor::from_i64(vec![values.len() as u64], values).unwrap()));
        v
    }

    pub fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let name = format!("v{}", self.g.values.len());
        let out = self.g.add_value(name.clone(), ValueType::Unknown);
        self.g.nodes.push(Node {
            name,
            op,
            inputs: inputs.iter().map(|i| Some(*i)).collect(),
            outputs: vec![Some(out)],
            doc_string: String::new(),
        });
        out
    }

    pub fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        self.node(Op::Binary(op), &[a, b])
    }

    pub fn un(&mut self, op: UnaryOp, a: ValueId) -> ValueId {
        self.node(Op::Unary(op), &[a])
    }

    pub fn model(mut self, outputs: &[ValueId]) -> Model {
        self.g.outputs = outputs.to_vec();
        ferry_ir::infer::infer_graph(&mut self.g);
        Model { graph: self.g, meta: Default::default() }
    }
}

pub fn f32_input(name: &str, dims: &[u64], values: &[f32]) -> (String, Value) {
    (name.to_string(), Value::Tensor(Tensor::from_f32(dims.to_vec(), values).unwrap()))
}

pub fn floats(v: &Value) -> Vec<f32> {
    let t = v.tensor().expect("a tensor");
    t.raw().unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Runs `model` on both paths; asserts the outputs agree (shape exactly, values to `tol` relative
/// to the output's scale); returns the engine's plan figures.
pub fn check_against_reference(model: &Model, inputs: Vec<(String, Value)>, tol: f32) -> PlanStats {
    let want = ferry_runtime::Prepared::new(model).unwrap().run(inputs.clone()).unwrap();
    let engine = Engine::compile(model, &EngineOptions { threads: 2 }).unwrap();
    let got = engine.run(inputs).unwrap();
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.tensor().unwrap().shape, g.tensor().unwrap().shape);
        let (w, g) = (floats(w), floats(g));
        let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in w.iter().zip(&g).enumerate() {
            assert!((a - b).abs() <= tol * scale, "element {i}: reference {a}, engine {b}");
        }
    }
    let stats = engine.plan_stats();
    assert_eq!(stats.len(), 1);
    assert!(stats[0].arena_bytes <= stats[0].unshared_bytes);
    stats[0]
}
