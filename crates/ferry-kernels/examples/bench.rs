//! Micro-benchmark: GFLOP/s of GEMM on BERT- and ResNet-shaped problems, and time of ResNet-50-like
//! convolution layers.
//!
//! `cargo run --release -p ferry-kernels --example bench -- [threads] [filter]`
//! Prints the median of several runs: wall-clock GFLOP/s and CPU-time-normalized GFLOP/s (the
//! machine may be shared; CPU time says what the threads actually got).

use ferry_kernels::{
    Act, Conv2d, Conv2dShape, Epilogue, Lhs, PackedA, PackedB, Pool, Pool2dShape, Rhs, act_inplace, gemm, gemm_lhs,
    global_avg_pool, kernel_name, layer_norm_rows, max_pool2d, softmax_rows,
};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f` until ~0.3 s have passed (at least 5 times); returns median (wall, cpu) seconds per run.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed().as_secs_f64() < 0.3 && samples.len() < 200) {
        let (t, c) = (Instant::now(), cpu_seconds());
        f();
        samples.push((t.elapsed().as_secs_f64(), cpu_seconds() - c));
    }
    let mut wall: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.1).collect();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[wall.len() / 2], cpu[cpu.len() / 2])
}

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let filter = args.get(2).cloned().unwrap_or_default();
    let pool = Pool::new(threads);
    println!("kernel {}, {} thread(s)", kernel_name(), pool.threads());
    println!("{:<34} {:>9} {:>9} {:>9}", "problem (m x k x n)", "ms", "GFLOP/s", "GF/cpu-s");
    // (label, m, k, n, lhs prepacked, rhs prepacked)
    let gemms: &[(&str, usize, usize, usize, bool, bool)] = &[
        ("bert qkv/out 128x768x768", 128, 768, 768, false, true),
        ("bert ffn1 128x768x3072", 128, 768, 3072, false, true),
        ("bert ffn2 128x3072x768", 128, 3072, 768, false, true),
        ("bert attn 128x64x128 (strided)", 128, 64, 128, false, false),
        ("gemv 1x768x3072", 1, 768, 3072, false, true),
        ("square 1024 (strided)", 1024, 1024, 1024, false, false),
        ("conv1x1 64x64x3136", 64, 64, 3136, true, false),
        ("conv1x1 256x64x3136", 256, 64, 3136, true, false),
        ("conv1x1 128x512x784", 128, 512, 784, true, false),
        ("conv1x1 1024x256x196", 1024, 256, 196, true, false),
        ("conv1x1 2048x512x49", 2048, 512, 49, true, false),
        ("conv1x1 512x2048x49", 512, 2048, 49, true, false),
        ("conv3x3 64x576x3136", 64, 576, 3136, true, false),
        ("conv3x3 128x1152x784", 128, 1152, 784, true, false),
        ("conv3x3 256x2304x196", 256, 2304, 196, true, false),
        ("conv3x3 512x4608x49", 512, 4608, 49, true, false),
    ];
    for &(label, m, k, n, pa, pb) in gemms {
        if !label.contains(&filter) {
            continue;
        }
        let (a, b) = (data(m * k), data(k * n));
        let mut c = vec![0.0f32; m * n];
        let packed_a = PackedA::new(m, k, &a, k as isize, 1);
        let packed_b = PackedB::new(k, n, &b, n as isize, 1);
        let ep = Epilogue::default();
        let (wall, cpu) = measure(|| {
            let rhs = if pb { Rhs::Packed(&packed_b) } else { Rhs::Strided { data: &b, rs: n as isize, cs: 1 } };
            if pa {
                gemm_lhs(&pool, m, n, k, Lhs::Packed(&packed_a), rhs, &mut c, n, &ep);
            } else {
                gemm(&pool, m, n, k, &a, k as isize, 1, rhs, &mut c, n, &ep);
            }
        });
        let flop = 2.0 * (m * n * k) as f64;
        println!("{label:<34} {:>9.3} {:>9.1} {:>9.1}", wall * 1e3, flop / wall * 1e-9, flop / cpu * 1e-9);
    }
    println!();
    println!("{:<34} {:>9} {:>9} {:>9}", "conv layer (c_in,hw,c_out,k,s,g)", "ms", "GFLOP/s", "GF/cpu-s");
    let sh = |c_in, hw, c_out, k, s, g| Conv2dShape {
        c_in,
        h: hw,
        w: hw,
        c_out,
        kh: k,
        kw: k,
        stride: [s, s],
        pads: [k / 2; 4],
        dilation: [1, 1],
        group: g,
    };
    let convs: &[(&str, Conv2dShape)] = &[
        ("resnet stem 3,224,64,7x7,s2", sh(3, 224, 64, 7, 2, 1)),
        ("resnet l1 3x3 64,56,64", sh(64, 56, 64, 3, 1, 1)),
        ("resnet l1 1x1 64,56,256", sh(64, 56, 256, 1, 1, 1)),
        ("resnet l2 3x3 s2 128,56,128", sh(128, 56, 128, 3, 2, 1)),
        ("resnet l3 3x3 256,14,256", sh(256, 14, 256, 3, 1, 1)),
        ("resnet l4 3x3 512,7,512", sh(512, 7, 512, 3, 1, 1)),
        ("resnet l4 1x1 2048,7,512", sh(2048, 7, 512, 1, 1, 1)),
        ("resnet down 1x1 s2 1024,14,2048", sh(1024, 14, 2048, 1, 2, 1)),
        ("mbv2 stem 3x3 s2 3,224,32", sh(3, 224, 32, 3, 2, 1)),
        ("mbv2 dw 3x3 96,112,96 s2", sh(96, 112, 96, 3, 2, 96)),
        ("mbv2 dw 3x3 144,56,144", sh(144, 56, 144, 3, 1, 144)),
        ("mbv2 dw 3x3 960,7,960", sh(960, 7, 960, 3, 1, 960)),
        ("mbv2 pw 1x1 144,56,24", sh(144, 56, 24, 1, 1, 1)),
        ("mbv2 pw 1x1 32,112,16", sh(32, 112, 16, 1, 1, 1)),
    ];
    for (label, s) in convs {
        if !label.contains(&filter) {
            continue;
        }
        let (oh, ow) = s.out_hw();
        let x = data(s.c_in * s.h * s.w);
        let w = data(s.c_out * s.c_in / s.group * s.kh * s.kw);
        let bias = data(s.c_out);
        let conv = Conv2d::new(*s, &w, Some(&bias), Act::Relu).expect("valid shape");
        let mut scratch = vec![0.0f32; conv.scratch_len()];
        let mut out = vec![0.0f32; s.c_out * oh * ow];
        let (wall, cpu) = measure(|| conv.run(&pool, &x, &mut out, &mut scratch));
        let flop = 2.0 * (s.c_out * oh * ow * s.c_in / s.group * s.kh * s.kw) as f64;
        println!("{label:<34} {:>9.3} {:>9.1} {:>9.1}", wall * 1e3, flop / wall * 1e-9, flop / cpu * 1e-9);
    }
    println!();
    println!("{:<34} {:>9} {:>9}", "element-wise (elements)", "ms", "ns/elem");
    let row = |label: &str, elems: usize, f: &mut dyn FnMut()| {
        if label.contains(&filter) {
            let (wall, _) = measure(f);
            println!("{label:<34} {:>9.3} {:>9.3}", wall * 1e3, wall * 1e9 / elems as f64);
        }
    };
    let ffn = data(128 * 3072);
    for act in [Act::Relu, Act::Gelu, Act::GeluTanh, Act::Sigmoid, Act::Tanh] {
        let mut x = ffn.clone();
        row(&format!("act {act:?} 128x3072"), x.len(), &mut || {
            x.copy_from_slice(&ffn);
            act_inplace(&pool, act, &mut x)
        });
    }
    let mut scores = data(12 * 128 * 128);
    row("softmax 12x128 rows of 128", scores.len(), &mut || softmax_rows(&pool, &mut scores, 128));
    let hidden = data(128 * 768);
    let (gamma, beta) = (data(768), data(768));
    let mut normed = vec![0.0f32; hidden.len()];
    row("layer norm 128 rows of 768", hidden.len(), &mut || {
        layer_norm_rows(&pool, &hidden, &mut normed, 768, Some(&gamma), Some(&beta), 1e-12)
    });
    let feat = data(64 * 112 * 112);
    let mp = Pool2dShape {
        c: 64,
        h: 112,
        w: 112,
        kh: 3,
        kw: 3,
        stride: [2, 2],
        pads: [1; 4],
        dilation: [1, 1],
        ceil_mode: false,
    };
    let mut pooled = vec![0.0f32; 64 * 56 * 56];
    row("max pool 3x3 s2 64x112x112", feat.len(), &mut || max_pool2d(&pool, &mp, &feat, &mut pooled));
    let last = data(2048 * 49);
    let mut gap = vec![0.0f32; 2048];
    row("global avg pool 2048x49", last.len(), &mut || global_avg_pool(&pool, 2048, 49, &last, &mut gap));
    println!();
    for (name, layers) in [("ResNet-50", resnet50()), ("MobileNetV2", mobilenet_v2())] {
        if !name.contains(&filter) && !filter.is_empty() {
            continue;
        }
        let (mut wall_sum, mut cpu_sum, mut flop_sum) = (0.0, 0.0, 0.0);
        for (s, act) in &layers {
            let (oh, ow) = s.out_hw();
            let x = data(s.c_in * s.h * s.w);
            let w = data(s.c_out * s.c_in / s.group * s.kh * s.kw);
            let conv = Conv2d::new(*s, &w, Some(&data(s.c_out)), *act).expect("valid shape");
            let mut scratch = vec![0.0f32; conv.scratch_len()];
            let mut out = vec![0.0f32; s.c_out * oh * ow];
            let (wall, cpu) = measure(|| conv.run(&pool, &x, &mut out, &mut scratch));
            if std::env::var("BENCH_LAYERS").is_ok() {
                println!("  {s:?} {:.3} ms cpu", cpu * 1e3);
            }
            wall_sum += wall;
            cpu_sum += cpu;
            flop_sum += 2.0 * (s.c_out * oh * ow * s.c_in / s.group * s.kh * s.kw) as f64;
        }
        println!(
            "{name}: {} convolutions, {:.2} GFLOP, sum of medians {:.1} ms wall, {:.1} ms CPU ({:.1} GFLOP/s per CPU-second)",
            layers.len(),
            flop_sum * 1e-9,
            wall_sum * 1e3,
            cpu_sum * 1e3,
            flop_sum / cpu_sum * 1e-9
        );
    }
}

fn conv_shape(c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, group: usize) -> Conv2dShape {
    Conv2dShape {
        c_in,
        h: hw,
        w: hw,
        c_out,
        kh: k,
        kw: k,
        stride: [stride, stride],
        pads: [k / 2; 4],
        dilation: [1, 1],
        group,
    }
}

/// Every convolution of ResNet-50 v1.5 at 224x224 (stride on the 3x3 of each bottleneck).
fn resnet50() -> Vec<(Conv2dShape, Act)> {
    let mut layers = vec![(conv_shape(3, 224, 64, 7, 2, 1), Act::Relu)];
    let (mut c_in, mut hw) = (64, 56);
    for (mid, blocks, first_stride) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)] {
        let out = mid * 4;
        for b in 0..blocks {
            let stride = if b == 0 { first_stride } else { 1 };
            layers.push((conv_shape(c_in, hw, mid, 1, 1, 1), Act::Relu));
            layers.push((conv_shape(mid, hw, mid, 3, stride, 1), Act::Relu));
            if b == 0 {
                layers.push((conv_shape(c_in, hw, out, 1, stride, 1), Act::None));
            }
            hw /= stride;
            layers.push((conv_shape(mid, hw, out, 1, 1, 1), Act::Relu));
            c_in = out;
        }
    }
    layers
}

/// Every convolution of MobileNetV2 (width 1.0) at 224x224.
fn mobilenet_v2() -> Vec<(Conv2dShape, Act)> {
    let relu6 = Act::Clip { min: 0.0, max: 6.0 };
    let mut layers = vec![(conv_shape(3, 224, 32, 3, 2, 1), relu6)];
    let (mut c, mut hw) = (32, 112);
    for (t, c_out, n, s) in
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            if t != 1 {
                layers.push((conv_shape(c, hw, hidden, 1, 1, 1), relu6));
            }
            layers.push((conv_shape(hidden, hw, hidden, 3, stride, hidden), relu6));
            hw = hw.div_ceil(stride);
            layers.push((conv_shape(hidden, hw, c_out, 1, 1, 1), Act::None));
            c = c_out;
        }
    }
    layers.push((conv_shape(320, 7, 1280, 1, 1, 1), relu6));
    layers
}
