//! Each pass on small graphs built in code: the optimized graph has the expected shape (which
//! nodes went), and the reference runtime gives the same outputs before and after.

use ferry_ir::ops::{AutoPad, BinaryOp, Cast, Conv, UnaryOp};
use ferry_ir::{DType, Dim, Graph, Model, Node, Op, Shape, Tensor, ValueId, ValueType};
use ferry_opt::{OptimizeOptions, OptimizeReport, optimize};
use ferry_runtime::{Prepared, Value};

struct B {
    g: Graph,
}

impl B {
    fn new() -> B {
        B { g: Graph::default() }
    }
    fn input(&mut self, name: &str, dims: &[u64]) -> ValueId {
        let v = self.g.add_value(name, ValueType::tensor(DType::F32, Shape::known(dims)));
        self.g.inputs.push(v);
        v
    }
    fn input_sym(&mut self, name: &str, dims: Shape) -> ValueId {
        let v = self.g.add_value(name, ValueType::tensor(DType::F32, dims));
        self.g.inputs.push(v);
        v
    }
    fn konst(&mut self, t: Tensor) -> ValueId {
        let v = self.g.add_value(format!("c{}", self.g.values.len()), ValueType::Unknown);
        self.g.initializers.push((v, t));
        v
    }
    fn f32s(&mut self, dims: &[u64], v: &[f32]) -> ValueId {
        self.konst(Tensor::from_f32(dims.to_vec(), v).unwrap())
    }
    fn i64s(&mut self, v: &[i64]) -> ValueId {
        self.konst(Tensor::from_i64(vec![v.len() as u64], v).unwrap())
    }
    fn op(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let o = self.g.add_value(format!("v{}", self.g.values.len()), ValueType::Unknown);
        self.g.nodes.push(Node {
            name: format!("n{}", self.g.nodes.len()),
            op,
            inputs: inputs.iter().map(|i| Some(*i)).collect(),
            outputs: vec![Some(o)],
            doc_string: String::new(),
        });
        o
    }
    fn bin(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> ValueId {
        self.op(Op::Binary(b), &[x, y])
    }
    fn model(mut self, outputs: &[ValueId]) -> Model {
        self.g.outputs = outputs.to_vec();
        let _ = ferry_ir::infer::infer_graph(&mut self.g);
        Model { graph: self.g, ..Default::default() }
    }
}

/// Deterministic inputs: small varied values.
fn feeds(m: &Model) -> Vec<(String, Value)> {
    let g = &m.graph;
    g.inputs
        .iter()
        .filter(|i| g.initializer(**i).is_none())
        .map(|i| {
            // Symbolic dims get 2.
            let dims = g.values[*i]
                .ty
                .shape()
                .map_or(vec![2, 3], |s| s.dims().iter().map(|d| d.known().unwrap_or(2)).collect());
            let n: u64 = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|k| ((k * 7 % 11) as f32 - 5.0) / 4.0).collect();
            (g.values[*i].name.clone(), Value::Tensor(Tensor::from_f32(dims, &v).unwrap()))
        })
        .collect()
}

fn values(v: &Value) -> (Vec<u64>, Vec<f64>) {
    let t = v.tensor().unwrap();
    (t.shape.clone(), t.to_f64_vec().unwrap())
}

/// Optimizes, checks the outputs agree on the reference runtime, returns the result.
fn check(m: &Model, opts: &OptimizeOptions) -> (Model, OptimizeReport) {
    let (o, r) = optimize(m, opts).unwrap();
    let names = |m: &Model, ids: &[ValueId]| ids.iter().map(|i| m.graph.values[*i].name.clone()).collect::<Vec<_>>();
    assert_eq!(names(m, &m.graph.inputs), names(&o, &o.graph.inputs));
    assert_eq!(names(m, &m.graph.outputs), names(&o, &o.graph.outputs));
    for (a, b) in m.graph.outputs.iter().zip(&o.graph.outputs) {
        assert_eq!(m.graph.values[*a].ty, o.graph.values[*b].ty, "graph output types are kept");
    }
    let run = |m: &Model, inputs: Vec<(String, Value)>| Prepared::new(m).unwrap().run(inputs).unwrap();
    let (before, after) = (run(m, feeds(m)), run(&o, feeds(m)));
    for (x, y) in before.iter().zip(&after) {
        let ((sx, vx), (sy, vy)) = (values(x), values(y));
        assert_eq!(sx, sy);
        for (a, b) in vx.iter().zip(&vy) {
            assert!((a - b).abs() <= 1e-5 + 1e-5 * a.abs(), "{a} vs {b}");
        }
    }
    (o, r)
}

fn ops(m: &Model) -> Vec<String> {
    m.graph.nodes.iter().map(|n| n.op.name()).collect()
}

#[test]
fn constant_folding_evaluates_constant_subgraphs() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let (c1, c2) = (b.f32s(&[3], &[1., 2., 3.]), b.f32s(&[3], &[0.5, 0.5, 0.5]));
    let prod = b.bin(BinaryOp::Mul, c1, c2);
    let e = b.op(Op::Unary(UnaryOp::Exp), &[prod]);
    let y = b.bin(BinaryOp::Add, x, e);
    let (o, r) = check(&b.model(&[y]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Add"]);
    assert_eq!(r.passes["constant_folding"], 2);
}

#[test]
fn folding_is_bounded_and_skips_random_ops() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    // 4096 x 4096 f32 = 64 MiB from an 16-byte shape: far past the growth limit.
    let shape = b.i64s(&[4096, 4096]);
    let big = b.op(Op::ConstantOfShape(Tensor::scalar_f32(1.0)), &[shape]);
    let s = b.op(Op::Shape { start: 0, end: None }, &[big]);
    let noise = b.op(
        Op::RandomNormal { shape: Some(vec![2, 3]), dtype: DType::F32, mean: 0.0, scale: 1.0, seed: Some(1.0) },
        &[],
    );
    let y = b.bin(BinaryOp::Add, x, noise);
    let m = b.model(&[y, s]);
    let (o, _) = optimize(&m, &OptimizeOptions::default()).unwrap();
    // Shape of the big constant folds from its inferred type; the constant itself is never made.
    assert!(o.graph.initializers.iter().all(|(_, t)| t.byte_len() < 1 << 20));
    assert!(ops(&o).contains(&"RandomNormal".to_string()));
    // A small limit keeps even a modest result unfolded.
    let mut b = B::new();
    let x = b.input("x", &[64]);
    let shape = b.i64s(&[64]);
    let ones = b.op(Op::ConstantOfShape(Tensor::scalar_f32(1.0)), &[shape]);
    let y = b.bin(BinaryOp::Add, x, ones);
    let m = b.model(&[y]);
    let (o, _) = check(&m, &OptimizeOptions { max_folded_bytes: 100, ..Default::default() });
    assert!(ops(&o).contains(&"ConstantOfShape".to_string()));
    let (o, _) = check(&m, &OptimizeOptions::default());
    assert!(!ops(&o).contains(&"ConstantOfShape".to_string()));
}

#[test]
fn shape_computations_fold_and_input_shapes_bind_symbolic_dims() {
    // Reshape(x, Concat(Gather(Shape(x), 0), [-1])): a flatten written as shape arithmetic.
    let mut b = B::new();
    let x = b.input_sym("x", Shape(vec![Dim::param("N"), Dim::Known(3), Dim::Known(4)]));
    let s = b.op(Op::Shape { start: 0, end: None }, &[x]);
    let i1 = b.konst(Tensor::scalar_i64(1));
    let d1 = b.op(Op::Gather { axis: 0 }, &[s, i1]);
    let u = b.i64s(&[0]);
    let d1 = b.op(Op::Unsqueeze, &[d1, u]);
    let minus = b.i64s(&[-1]);
    let target = b.op(Op::Concat { axis: 0 }, &[minus, d1]);
    let y = b.op(Op::Reshape { allowzero: false }, &[x, target]);
    let m = b.model(&[y]);
    // dim 1 is known although N is not: the Gather of it folds, then the whole chain.
    let (o, r) = optimize(&m, &OptimizeOptions::default()).unwrap();
    assert_eq!(ops(&o), ["Reshape"], "{r:?}");
    // Size(x) needs N: it folds only once N is bound.
    let mut b = B::new();
    let x = b.input_sym("x", Shape(vec![Dim::param("N"), Dim::Known(3)]));
    let n = b.op(Op::Size, &[x]);
    let f = b.op(Op::Cast(Cast { to: DType::F32, saturate: true, round_mode: "up".into() }), &[n]);
    let y = b.bin(BinaryOp::Mul, x, f);
    let m = b.model(&[y]);
    let (o, _) = optimize(&m, &OptimizeOptions::default()).unwrap();
    assert!(ops(&o).contains(&"Size".to_string()));
    let opts = OptimizeOptions { input_shapes: vec![("x".into(), vec![2, 3])], ..Default::default() };
    let (o, _) = optimize(&m, &opts).unwrap();
    assert_eq!(ops(&o), ["Mul"]);
    let run = |m: &Model| values(&Prepared::new(m).unwrap().run(feeds(&o)).unwrap()[0]);
    assert_eq!(run(&m), run(&o));
    // A binding that contradicts the declared shape is refused.
    let bad = OptimizeOptions { input_shapes: vec![("x".into(), vec![2, 4])], ..Default::default() };
    assert!(optimize(&m, &bad).is_err());
    let missing = OptimizeOptions { input_shapes: vec![("nope".into(), vec![2, 3])], ..Default::default() };
    assert!(optimize(&m, &missing).is_err());
}

#[test]
fn dead_code_goes_and_outputs_stay() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let unused = b.op(Op::Unary(UnaryOp::Exp), &[x]);
    let _unused2 = b.op(Op::Unary(UnaryOp::Neg), &[unused]);
    let y = b.op(Op::Unary(UnaryOp::Relu), &[x]);
    // An Identity from a graph input to a graph output has to stay: both names are interface.
    let z = b.op(Op::Identity, &[x]);
    let (o, r) = check(&b.model(&[y, z]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Relu", "Identity"]);
    assert_eq!(r.passes["dead_code"], 2);
}

#[test]
fn identities_are_removed_where_types_show_them() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let a = b.op(Op::Identity, &[x]);
    let a = b.op(Op::Cast(Cast { to: DType::F32, saturate: true, round_mode: "up".into() }), &[a]);
    let a = b.op(Op::Transpose { perm: Some(vec![0, 1]) }, &[a]);
    let same = b.i64s(&[2, 3]);
    let a = b.op(Op::Reshape { allowzero: false }, &[a, same]);
    let zero = b.f32s(&[3], &[0., 0., 0.]);
    let a = b.bin(BinaryOp::Add, a, zero);
    let one = b.konst(Tensor::scalar_f32(1.0));
    let a = b.bin(BinaryOp::Mul, one, a);
    let y = b.op(Op::Unary(UnaryOp::Relu), &[a]);
    // x + zeros[4, 2, 3] broadcasts to a new shape: not an identity.
    let zeros = b.f32s(&[4, 2, 3], &[0.0; 24]);
    let w = b.bin(BinaryOp::Add, x, zeros);
    let (o, r) = check(&b.model(&[y, w]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Relu", "Add"]);
    assert_eq!(r.passes["identity_elimination"], 6);
}

#[test]
fn an_identity_before_a_graph_output_hands_its_name_to_the_producer() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let r = b.op(Op::Unary(UnaryOp::Relu), &[x]);
    let y = b.op(Op::Identity, &[r]);
    let m = b.model(&[y]);
    let (o, _) = check(&m, &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Relu"]);
    assert_eq!(o.graph.values[o.graph.nodes[0].outputs[0].unwrap()].name, m.graph.values[y].name);
}

#[test]
fn common_subexpressions_merge() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let a1 = b.op(Op::Unary(UnaryOp::Exp), &[x]);
    let a2 = b.op(Op::Unary(UnaryOp::Exp), &[x]);
    let (k1, k2) = (b.f32s(&[3], &[1., 2., 3.]), b.f32s(&[3], &[1., 2., 3.]));
    let m1 = b.bin(BinaryOp::Mul, a1, k1);
    let m2 = b.bin(BinaryOp::Mul, a2, k2);
    let y = b.bin(BinaryOp::Sub, m1, m2);
    let (o, r) = check(&b.model(&[y]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Exp", "Mul", "Sub"]);
    assert_eq!(r.passes["constant_merging"], 1);
    assert_eq!(r.passes["common_subexpressions"], 2);
}

#[test]
fn layout_chains_cancel_or_merge() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3, 4]);
    let t1 = b.op(Op::Transpose { perm: Some(vec![1, 2, 0]) }, &[x]);
    let t2 = b.op(Op::Transpose { perm: Some(vec![2, 0, 1]) }, &[t1]);
    let axes = b.i64s(&[0, 3]);
    let u = b.op(Op::Unsqueeze, &[t2, axes]);
    let axes2 = b.i64s(&[-2, 0]);
    let s = b.op(Op::Squeeze, &[u, axes2]);
    let s1 = b.i64s(&[6, 4]);
    let r1 = b.op(Op::Reshape { allowzero: false }, &[s, s1]);
    let s2 = b.i64s(&[4, -1]);
    let r2 = b.op(Op::Reshape { allowzero: false }, &[r1, s2]);
    let y = b.op(Op::Unary(UnaryOp::Relu), &[r2]);
    // Two transposes that do not cancel become one.
    let t3 = b.op(Op::Transpose { perm: Some(vec![1, 0, 2]) }, &[x]);
    let t4 = b.op(Op::Transpose { perm: Some(vec![0, 2, 1]) }, &[t3]);
    let (o, _) = check(&b.model(&[y, t4]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Reshape", "Relu", "Transpose"]);
}

fn conv_op() -> Op {
    Op::Conv(Conv {
        kernel_shape: None,
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: AutoPad::Explicit(vec![1, 1, 1, 1]),
        group: 1,
    })
}

#[test]
fn batchnorm_after_conv_folds_into_its_weights() {
    let mut b = B::new();
    let x = b.input("x", &[1, 2, 4, 4]);
    let w: Vec<f32> = (0..3 * 2 * 9).map(|k| ((k % 7) as f32 - 3.0) / 5.0).collect();
    let w = b.f32s(&[3, 2, 3, 3], &w);
    let y = b.op(conv_op(), &[x, w]);
    // ONNX's decomposition: (y - mean) / sqrt(var + eps) * scale + bias, per channel [3, 1, 1].
    let mean = b.f32s(&[3, 1, 1], &[0.1, -0.2, 0.3]);
    let var = b.f32s(&[3, 1, 1], &[1.5, 0.5, 2.0]);
    let eps = b.konst(Tensor::scalar_f32(1e-5));
    let ve = b.bin(BinaryOp::Add, var, eps);
    let std = b.op(Op::Unary(UnaryOp::Sqrt), &[ve]);
    let scale = b.f32s(&[3, 1, 1], &[2.0, -1.0, 0.5]);
    let bias = b.f32s(&[3, 1, 1], &[0.0, 1.0, -1.0]);
    let c = b.bin(BinaryOp::Sub, y, mean);
    let n = b.bin(BinaryOp::Div, c, std);
    let s = b.bin(BinaryOp::Mul, n, scale);
    let out = b.bin(BinaryOp::Add, s, bias);
    let out = b.op(Op::Unary(UnaryOp::Relu), &[out]);
    let (o, r) = check(&b.model(&[out]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Conv", "Relu"]);
    assert_eq!(o.graph.nodes[0].inputs.len(), 3, "the Conv gained a bias");
    assert_eq!(r.passes["affine_folding"], 1);
}

#[test]
fn scale_and_bias_after_matmul_fold_into_its_rhs_and_one_add() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let w = b.f32s(&[3, 4], &[0.5, -1., 2., 0.25, 1., 1., -0.5, 3., 0., 2., 1., -1.]);
    let y = b.op(Op::MatMul, &[x, w]);
    let shift = b.f32s(&[4], &[1., 2., 3., 4.]);
    let scale = b.f32s(&[1, 4], &[2., -1., 0.5, 3.]);
    let a = b.bin(BinaryOp::Add, y, shift);
    let m = b.bin(BinaryOp::Mul, a, scale);
    let out = b.op(Op::Unary(UnaryOp::Tanh), &[m]);
    let (o, _) = check(&b.model(&[out]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["MatMul", "Add", "Tanh"]);
    // A constant that would broadcast the product to a larger shape stops the chain.
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let w = b.f32s(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    let y = b.op(Op::MatMul, &[x, w]);
    let scale = b.f32s(&[5, 1, 2], &[2.0; 10]);
    let out = b.bin(BinaryOp::Mul, y, scale);
    let (o, _) = check(&b.model(&[out]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["MatMul", "Mul"]);
}

#[test]
fn values_read_by_nested_graphs_are_kept() {
    // then-branch returns outer `e` (= Exp(x)) by name; else-branch returns outer `x`.
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let e = b.op(Op::Unary(UnaryOp::Exp), &[x]);
    let e2 = b.op(Op::Identity, &[e]);
    let cond = b.konst(Tensor::from_raw(DType::Bool, vec![], bytes::Bytes::from_static(&[1])).unwrap());
    let e2_name = b.g.values[e2].name.clone();
    let branch = |name: &str| {
        let mut g = Graph::default();
        let v = g.add_value(name, ValueType::tensor(DType::F32, Shape::known(&[2, 3])));
        g.captures = vec![v];
        g.outputs = vec![v];
        g
    };
    let out = b.g.add_value("out", ValueType::Unknown);
    b.g.nodes.push(Node {
        name: "if".into(),
        op: Op::If { then_branch: Box::new(branch(&e2_name)), else_branch: Box::new(branch("x")) },
        inputs: vec![Some(cond)],
        outputs: vec![Some(out)],
        doc_string: String::new(),
    });
    let (o, _) = check(&b.model(&[out]), &OptimizeOptions::default());
    assert!(o.graph.values.iter().any(|v| v.name == e2_name));
    assert!(ops(&o).contains(&"If".to_string()));
}

#[test]
fn huge_constant_results_are_never_materialized() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3]);
    let small = b.f32s(&[1], &[1.0]);
    let reps = b.i64s(&[1 << 40]);
    let tiled = b.op(Op::Tile, &[small, reps]);
    let huge = b.i64s(&[1 << 20, 1 << 20]);
    let expanded = b.op(Op::Expand, &[small, huge]);
    let (start, limit, delta) =
        (b.konst(Tensor::scalar_f32(0.0)), b.konst(Tensor::scalar_f32(1e12)), b.konst(Tensor::scalar_f32(1.0)));
    let range = b.op(Op::Range, &[start, limit, delta]);
    let sizes: Vec<ValueId> = [tiled, expanded, range].iter().map(|v| b.op(Op::Size, &[*v])).collect();
    let y = b.bin(BinaryOp::Add, x, x);
    let mut outs = vec![y];
    outs.extend(sizes);
    let (o, _) = optimize(&b.model(&outs), &OptimizeOptions::default()).unwrap();
    assert!(o.graph.initializers.iter().all(|(_, t)| t.byte_len() <= 16));
    for op in ["Tile", "Expand", "Range"] {
        assert!(ops(&o).contains(&op.to_string()), "{op} stays");
    }
}

#[test]
fn slices_of_a_partly_known_shape_fold() {
    // x: [N, 3, 4, 5]. Reshape(x, Concat([-1], Shape(x)[2:])) and the reversed tail Shape(x)[:0:-1]
    // (dims 3, 2, 1 = [5, 4, 3]) as a Reshape target: both select only known dims.
    let mut b = B::new();
    let x = b.input_sym("x", Shape(vec![Dim::param("N"), Dim::Known(3), Dim::Known(4), Dim::Known(5)]));
    let s = b.op(Op::Shape { start: 0, end: None }, &[x]);
    let (st, en) = (b.i64s(&[2]), b.i64s(&[i64::MAX]));
    let tail = b.op(Op::Slice, &[s, st, en]);
    let minus = b.i64s(&[-1]);
    let target = b.op(Op::Concat { axis: 0 }, &[minus, tail]);
    let y = b.op(Op::Reshape { allowzero: false }, &[x, target]);
    let (st, en, ax, step) = (b.i64s(&[-1]), b.i64s(&[0]), b.i64s(&[0]), b.i64s(&[-1]));
    let rev = b.op(Op::Slice, &[s, st, en, ax, step]);
    let target = b.op(Op::Concat { axis: 0 }, &[minus, rev]);
    let z = b.op(Op::Reshape { allowzero: false }, &[x, target]);
    // Shape(x)[0:2] includes N: stays.
    let (st, en) = (b.i64s(&[0]), b.i64s(&[2]));
    let head = b.op(Op::Slice, &[s, st, en]);
    let (o, _) = check(&b.model(&[y, z, head]), &OptimizeOptions::default());
    assert_eq!(ops(&o), ["Shape", "Reshape", "Reshape", "Slice"]);
    let target_of = |k: usize| o.graph.initializer(o.graph.nodes[k].inputs[1].unwrap()).unwrap().to_i64_vec().unwrap();
    assert_eq!(target_of(1), [-1, 4, 5]);
    assert_eq!(target_of(2), [-1, 5, 4, 3]);
}
