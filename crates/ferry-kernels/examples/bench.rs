//! Micro-benchmark: GFLOP/s of GEMM on BERT- and ResNet-shaped problems, and time of ResNet-50-like
//! convolution layers.
//!
//! `cargo run --release -p ferry-kernels --example bench -- [threads] [filter]`
//! Prints the median of several runs: wall-clock GFLOP/s and CPU-time-normalized GFLOP/s (the
//! machine may be shared; CPU time says what the threads actually got).

use ferry_kernels::{
    Act, Conv2d, Conv2dShape, Epilogue, Lhs, PackedA, PackedB, Pool, Rhs, gemm, gemm_lhs, kernel_name,
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
}
