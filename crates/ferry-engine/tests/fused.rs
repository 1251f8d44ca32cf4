//! Fused lowering on small graphs: each pattern becomes the expected number of steps, and the
//! engine's outputs match the reference runtime's.

mod common;

use common::{B, check_against_reference, f32_input};
use ferry_ir::Op;
use ferry_ir::ops::{AutoPad, BinaryOp, Conv, Pool, PoolKind, ReduceKind, UnaryOp};

fn conv_op() -> Op {
    Op::Conv(Conv {
        kernel_shape: None,
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: AutoPad::Explicit(vec![1, 1, 1, 1]),
        group: 1,
    })
}

/// x [2,3,8,8] -> Conv(3x3, pad 1, bias) -> y [2,4,8,8]
fn conv_head(b: &mut B) -> (usize, usize) {
    let x = b.input("x", &[2, 3, 8, 8]);
    let w = b.random_const(&[4, 3, 3, 3], -0.5, 0.5);
    let bias = b.random_const(&[4], -0.2, 0.2);
    (x, b.node(conv_op(), &[x, w, bias]))
}

fn image(b: &mut B) -> Vec<(String, ferry_engine::Value)> {
    let v = b.values(2 * 3 * 8 * 8, -2.0, 2.0);
    vec![f32_input("x", &[2, 3, 8, 8], &v)]
}

/// Per-channel vector [4] unsqueezed to [4,1,1], as ferry's BatchNormalization import writes it.
fn per_channel(b: &mut B, lo: f32, hi: f32) -> usize {
    let v = b.random_const(&[4], lo, hi);
    let axes = b.ints(&[1, 2]);
    b.node(Op::Unsqueeze, &[v, axes])
}

#[test]
fn conv_batchnorm_relu_is_one_step() {
    let mut b = B::new();
    let (_, y) = conv_head(&mut b);
    let mean = per_channel(&mut b, -0.3, 0.3);
    let var = b.random_const(&[4], 0.5, 2.0);
    let eps = b.scalar(1e-5);
    let ve = b.bin(BinaryOp::Add, var, eps);
    let std = b.un(UnaryOp::Sqrt, ve);
    let axes = b.ints(&[1, 2]);
    let std = b.node(Op::Unsqueeze, &[std, axes]);
    let scale = per_channel(&mut b, 0.5, 1.5);
    let shift = per_channel(&mut b, -0.5, 0.5);
    let c = b.bin(BinaryOp::Sub, y, mean);
    let n = b.bin(BinaryOp::Div, c, std);
    let s = b.bin(BinaryOp::Mul, n, scale);
    let t = b.bin(BinaryOp::Add, s, shift);
    let r = b.un(UnaryOp::Relu, t);
    let inputs = image(&mut b);
    let stats = check_against_reference(&b.model(&[r]), inputs, 1e-5);
    assert_eq!((stats.steps, stats.fallback_steps), (1, 0), "{stats:?}");
}

#[test]
fn conv_activations_written_out_fuse() {
    // ReLU6 as Max/Min, LeakyRelu as Where(x < 0, x * a, x), HardSwish as ferry imports it.
    type Build = fn(&mut B, usize) -> usize;
    let cases: [(&str, Build); 3] = [
        ("relu6", |b, y| {
            let (z, six) = (b.scalar(0.0), b.scalar(6.0));
            let lo = b.bin(BinaryOp::Max, y, z);
            b.bin(BinaryOp::Min, lo, six)
        }),
        ("leaky_relu", |b, y| {
            let (z, a) = (b.scalar(0.0), b.scalar(0.1));
            let neg = b.bin(BinaryOp::Less, y, z);
            let scaled = b.bin(BinaryOp::Mul, y, a);
            b.node(Op::Where, &[neg, scaled, y])
        }),
        ("hard_swish", |b, y| {
            let (sixth, half, one, zero) = (b.scalar(1.0 / 6.0), b.scalar(0.5), b.scalar(1.0), b.scalar(0.0));
            let ax = b.bin(BinaryOp::Mul, y, sixth);
            let axb = b.bin(BinaryOp::Add, ax, half);
            let hi = b.bin(BinaryOp::Min, axb, one);
            let hs = b.bin(BinaryOp::Max, hi, zero);
            b.bin(BinaryOp::Mul, y, hs)
        }),
    ];
    for (name, build) in cases {
        let mut b = B::new();
        let (_, y) = conv_head(&mut b);
        let out = build(&mut b, y);
        let inputs = image(&mut b);
        let stats = check_against_reference(&b.model(&[out]), inputs, 1e-5);
        assert_eq!((stats.steps, stats.fallback_steps), (1, 0), "{name}: {stats:?}");
    }
}

/// x [2,5,16] · W [16,8] + bias [8]
fn dense_head(b: &mut B) -> usize {
    let x = b.input("x", &[2, 5, 16]);
    let w = b.random_const(&[16, 8], -0.5, 0.5);
    let bias = b.random_const(&[8], -0.5, 0.5);
    let y = b.node(Op::MatMul, &[x, w]);
    b.bin(BinaryOp::Add, y, bias)
}

#[test]
#[allow(clippy::approx_constant)] // torch writes the rounded literal 1.4142135, not the constant
fn matmul_bias_gelu_is_one_step_in_either_association() {
    type Build = fn(&mut B, usize) -> usize;
    let cases: [(&str, Build); 2] = [
        ("ferry: (0.5 x) (1 + erf(x / sqrt2))", |b, y| {
            let (sqrt2, one, half) = (b.scalar(std::f32::consts::SQRT_2), b.scalar(1.0), b.scalar(0.5));
            let xs = b.bin(BinaryOp::Div, y, sqrt2);
            let e = b.un(UnaryOp::Erf, xs);
            let phi = b.bin(BinaryOp::Add, one, e);
            let hx = b.bin(BinaryOp::Mul, half, y);
            b.bin(BinaryOp::Mul, hx, phi)
        }),
        ("torch: (x (erf(x / 1.4142) + 1)) 0.5", |b, y| {
            let (sqrt2, one, half) = (b.scalar(1.4142135), b.scalar(1.0), b.scalar(0.5));
            let xs = b.bin(BinaryOp::Div, y, sqrt2);
            let e = b.un(UnaryOp::Erf, xs);
            let phi = b.bin(BinaryOp::Add, e, one);
            let m = b.bin(BinaryOp::Mul, y, phi);
            b.bin(BinaryOp::Mul, m, half)
        }),
    ];
    for (name, build) in cases {
        let mut b = B::new();
        let y = dense_head(&mut b);
        let out = build(&mut b, y);
        let v = b.values(2 * 5 * 16, -2.0, 2.0);
        let stats = check_against_reference(&b.model(&[out]), vec![f32_input("x", &[2, 5, 16], &v)], 1e-5);
        assert_eq!((stats.steps, stats.fallback_steps), (1, 0), "{name}: {stats:?}");
    }
}

fn reduce_mean(b: &mut B, x: usize) -> usize {
    let axes = b.ints(&[-1]);
    b.node(Op::Reduce { kind: ReduceKind::Mean, keepdims: true, noop_with_empty_axes: false }, &[x, axes])
}

#[test]
fn layer_norm_is_one_step_in_both_spellings() {
    for torch_style in [false, true] {
        let mut b = B::new();
        let x = b.input("x", &[3, 4, 32]);
        let mean = reduce_mean(&mut b, x);
        let d = b.bin(BinaryOp::Sub, x, mean);
        let sq = if torch_style {
            let two = b.scalar(2.0);
            b.bin(BinaryOp::Pow, d, two)
        } else {
            b.bin(BinaryOp::Mul, d, d)
        };
        let var = reduce_mean(&mut b, sq);
        let eps = b.scalar(1e-5);
        let ve = b.bin(BinaryOp::Add, var, eps);
        let std = b.un(UnaryOp::Sqrt, ve);
        let normalized = if torch_style {
            b.bin(BinaryOp::Div, d, std)
        } else {
            let inv = b.un(UnaryOp::Reciprocal, std);
            b.bin(BinaryOp::Mul, d, inv)
        };
        let gamma = b.random_const(&[32], 0.5, 1.5);
        let beta = b.random_const(&[32], -0.5, 0.5);
        let scaled = b.bin(BinaryOp::Mul, normalized, gamma);
        let out = b.bin(BinaryOp::Add, scaled, beta);
        let v = b.values(3 * 4 * 32, -3.0, 3.0);
        let stats = check_against_reference(&b.model(&[out]), vec![f32_input("x", &[3, 4, 32], &v)], 1e-4);
        assert_eq!((stats.steps, stats.fallback_steps), (1, 0), "torch style {torch_style}: {stats:?}");
    }
}

#[test]
fn batched_matmul_broadcasts_and_softmax_runs_on_rows() {
    let mut b = B::new();
    let q = b.input("q", &[2, 1, 3, 4]);
    let k = b.input("k", &[3, 4, 5]);
    let s = b.node(Op::MatMul, &[q, k]);
    let p = b.node(Op::Softmax { axis: -1 }, &[s]);
    let (vq, vk) = (b.values(24, -1.0, 1.0), b.values(60, -1.0, 1.0));
    let inputs = vec![f32_input("q", &[2, 1, 3, 4], &vq), f32_input("k", &[3, 4, 5], &vk)];
    let stats = check_against_reference(&b.model(&[p]), inputs, 1e-5);
    assert_eq!((stats.steps, stats.fallback_steps), (2, 0), "{stats:?}");
}

#[test]
fn pooling_runs_on_the_kernels() {
    let mut b = B::new();
    let x = b.input("x", &[2, 3, 9, 9]);
    let pool = |kind| Pool {
        kind,
        kernel_shape: vec![3, 3],
        strides: vec![2, 2],
        dilations: vec![1, 1],
        pads: AutoPad::Explicit(vec![1, 1, 1, 1]),
        ceil_mode: true,
        count_include_pad: false,
        column_major_indices: false,
    };
    let m = b.node(Op::Pool(pool(PoolKind::Max)), &[x]);
    let a = b.node(Op::Pool(pool(PoolKind::Avg)), &[m]);
    let g = b.node(Op::GlobalPool { kind: PoolKind::Avg }, &[a]);
    let v = b.values(2 * 3 * 81, -1.0, 1.0);
    let stats = check_against_reference(&b.model(&[m, a, g]), vec![f32_input("x", &[2, 3, 9, 9], &v)], 1e-6);
    assert_eq!((stats.steps, stats.fallback_steps), (3, 0), "{stats:?}");
}

#[test]
fn ops_without_a_fast_path_fall_back_and_agree() {
    // CumSum has no fast step; the elementwise chain around it does, and reuses buffers.
    let mut b = B::new();
    let x = b.input("x", &[16, 64]);
    let e = b.un(UnaryOp::Exp, x);
    let axis = b.ints(&[1]);
    let cs = b.node(Op::CumSum { exclusive: false, reverse: false }, &[e, axis]);
    let l = b.un(UnaryOp::Log, cs);
    let t = b.un(UnaryOp::Tanh, l);
    let n = b.un(UnaryOp::Neg, t);
    let v = b.values(16 * 64, -1.0, 1.0);
    let stats = check_against_reference(&b.model(&[n]), vec![f32_input("x", &[16, 64], &v)], 1e-5);
    assert_eq!((stats.steps, stats.fallback_steps), (5, 1), "{stats:?}");
    // In place: the input and two buffers at most are live at once, of six tensors.
    assert!(stats.arena_bytes * 2 <= stats.unshared_bytes, "{stats:?}");
}

fn conv_4to4(b: &mut B, x: usize) -> usize {
    let w = b.random_const(&[4, 4, 3, 3], -0.3, 0.3);
    let bias = b.random_const(&[4], -0.2, 0.2);
    b.node(conv_op(), &[x, w, bias])
}

#[test]
fn residual_adds_fuse_into_the_convolution() {
    // Main branch conv first, shortcut conv after it in node order: the fused step (conv + add +
    // relu) must wait for the shortcut. Then a block whose residual is the convolution's own
    // input: not fused (the output may not take over the bytes the convolution reads), 3 steps.
    let mut b = B::new();
    let x = b.input("x", &[2, 4, 8, 8]);
    let main = conv_4to4(&mut b, x);
    let shortcut = conv_4to4(&mut b, x);
    let sum = b.bin(BinaryOp::Add, main, shortcut);
    let r = b.un(UnaryOp::Relu, sum);
    let again = conv_4to4(&mut b, r);
    let sum2 = b.bin(BinaryOp::Add, r, again);
    let out = b.un(UnaryOp::Relu, sum2);
    let v = b.values(2 * 4 * 64, -1.0, 1.0);
    let stats = check_against_reference(&b.model(&[out]), vec![f32_input("x", &[2, 4, 8, 8], &v)], 1e-5);
    assert_eq!((stats.steps, stats.fallback_steps), (2 + 3, 0), "{stats:?}");
}
