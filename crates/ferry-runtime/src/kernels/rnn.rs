//! Recurrent layers (RNN, GRU, LSTM) as the ONNX spec writes their equations, step by step in f64.

use super::{array, opt_array, tensor_value};
use crate::array::Array;
use crate::{KernelResult, Value};
use ferry_ir::ops::{Rnn, RnnDirection, RnnKind};
use ndarray::{ArrayD, IxDyn};

#[derive(Clone, Copy)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    fn apply(self, x: f64) -> f64 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x < 0.0 {
                    a * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => (1.0 + x.exp()).ln(),
        }
    }
}

fn activations(op: &Rnn, per_dir: usize, dirs: usize) -> KernelResult<Vec<Act>> {
    let names: Vec<String> = if op.activations.is_empty() {
        let d: &[&str] = match op.kind {
            RnnKind::Rnn => &["Tanh"],
            RnnKind::Gru => &["Sigmoid", "Tanh"],
            RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        };
        d.iter().cycle().take(per_dir * dirs).map(|s| s.to_string()).collect()
    } else {
        op.activations.clone()
    };
    if names.len() < per_dir * dirs {
        return Err(format!("{} activations given, {} needed", names.len(), per_dir * dirs));
    }
    let (mut ai, mut bi) = (0, 0);
    let mut alpha = |def: f64| {
        let v = op.activation_alpha.get(ai).map(|v| *v as f64).unwrap_or(def);
        ai += 1;
        v
    };
    let mut beta = |def: f64| {
        let v = op.activation_beta.get(bi).map(|v| *v as f64).unwrap_or(def);
        bi += 1;
        v
    };
    names
        .iter()
        .take(per_dir * dirs)
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "relu" => Act::Relu,
                "tanh" => Act::Tanh,
                "sigmoid" => Act::Sigmoid,
                "affine" => Act::Affine(alpha(1.0), beta(0.0)),
                "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => Act::ScaledTanh(alpha(1.0), beta(1.0)),
                "hardsigmoid" => Act::HardSigmoid(alpha(0.2), beta(0.5)),
                "elu" => Act::Elu(alpha(1.0)),
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                other => return Err(format!("unknown RNN activation {other}")),
            })
        })
        .collect()
}

fn flat(a: &ArrayD<f64>) -> Vec<f64> {
    a.as_standard_layout().iter().copied().collect()
}

pub fn rnn(op: &Rnn, args: &[Option<Value>], n_out: usize) -> KernelResult<Vec<Option<Value>>> {
    let x_arr = array(args, 0)?;
    let dtype = x_arr.dtype();
    let mut x = x_arr.to_f64()?;
    if x.ndim() != 3 {
        return Err("RNN input must be 3-D".into());
    }
    if op.batch_first {
        x = x.permuted_axes(IxDyn(&[1, 0, 2])).as_standard_layout().to_owned();
    }
    let (seq, batch, input) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let h = op.hidden_size as usize;
    let dirs = if op.direction == RnnDirection::Bidirectional { 2 } else { 1 };
    let g = match op.kind {
        RnnKind::Rnn => 1,
        RnnKind::Gru => 3,
        RnnKind::Lstm => 4,
    };
    let per_dir = match op.kind {
        RnnKind::Rnn => 1,
        RnnKind::Gru => 2,
        RnnKind::Lstm => 3,
    };
    let acts = activations(op, per_dir, dirs)?;
    let w = flat(&array(args, 1)?.to_f64()?);
    let r = flat(&array(args, 2)?.to_f64()?);
    if w.len() != dirs * g * h * input || r.len() != dirs * g * h * h {
        return Err("RNN weights do not fit the input and hidden sizes".into());
    }
    let b = match opt_array(args, 3)? {
        Some(a) => flat(&a.to_f64()?),
        None => vec![0.0; dirs * 2 * g * h],
    };
    if b.len() != dirs * 2 * g * h {
        return Err("RNN bias does not fit".into());
    }
    let lens: Vec<usize> = match opt_array(args, 4)? {
        Some(a) => a.to_i64()?.iter().map(|v| (*v).clamp(0, seq as i64) as usize).collect(),
        None => vec![seq; batch],
    };
    if lens.len() != batch {
        return Err("sequence_lens does not fit the batch".into());
    }
    let state = |i: usize| -> KernelResult<Vec<f64>> {
        match opt_array(args, i)? {
            Some(a) => {
                let mut v = a.to_f64()?;
                if op.batch_first {
                    v = v.permuted_axes(IxDyn(&[1, 0, 2])).as_standard_layout().to_owned();
                }
                let v = flat(&v);
                if v.len() != dirs * batch * h {
                    return Err("initial state does not fit".into());
                }
                Ok(v)
            }
            None => Ok(vec![0.0; dirs * batch * h]),
        }
    };
    let h0 = state(5)?;
    let c0 = if op.kind == RnnKind::Lstm { state(6)? } else { vec![] };
    let p = if op.kind == RnnKind::Lstm {
        match opt_array(args, 7)? {
            Some(a) => flat(&a.to_f64()?),
            None => vec![0.0; dirs * 3 * h],
        }
    } else {
        vec![]
    };
    let xd = flat(&x);
    let clip = |v: f64| match op.clip {
        Some(c) => v.clamp(-(c as f64), c as f64),
        None => v,
    };
    let mut y = vec![0.0; seq * dirs * batch * h];
    let mut yh = vec![0.0; dirs * batch * h];
    let mut yc = vec![0.0; dirs * batch * h];
    for d in 0..dirs {
        let reverse = op.direction == RnnDirection::Reverse || d == 1;
        let a = &acts[d * per_dir..(d + 1) * per_dir];
        let wd = &w[d * g * h * input..(d + 1) * g * h * input];
        let rd = &r[d * g * h * h..(d + 1) * g * h * h];
        let (wb, rb) = (&b[d * 2 * g * h..d * 2 * g * h + g * h], &b[d * 2 * g * h + g * h..(d + 1) * 2 * g * h]);
        for bi in 0..batch {
            let mut hs: Vec<f64> = h0[(d * batch + bi) * h..(d * batch + bi + 1) * h].to_vec();
            let mut cs: Vec<f64> = if op.kind == RnnKind::Lstm {
                c0[(d * batch + bi) * h..(d * batch + bi + 1) * h].to_vec()
            } else {
                vec![]
            };
            let len = lens[bi];
            for step in 0..len {
                let t = if reverse { len - 1 - step } else { step };
                let xt = &xd[(t * batch + bi) * input..(t * batch + bi + 1) * input];
                // gate pre-activations: x·Wᵀ + Wb and h·Rᵀ + Rb, separately (GRU needs them apart)
                let mut xw = vec![0.0; g * h];
                let mut hr = vec![0.0; g * h];
                for j in 0..g * h {
                    xw[j] = wb[j] + (0..input).map(|k| xt[k] * wd[j * input + k]).sum::<f64>();
                    hr[j] = rb[j] + (0..h).map(|k| hs[k] * rd[j * h + k]).sum::<f64>();
                }
                match op.kind {
                    RnnKind::Rnn => {
                        for j in 0..h {
                            hs[j] = a[0].apply(clip(xw[j] + hr[j]));
                        }
                    }
                    RnnKind::Gru => {
                        let mut nh = vec![0.0; h];
                        let z: Vec<f64> = (0..h).map(|j| a[0].apply(clip(xw[j] + hr[j]))).collect();
                        let rg: Vec<f64> = (0..h).map(|j| a[0].apply(clip(xw[h + j] + hr[h + j]))).collect();
                        for j in 0..h {
                            let pre = if op.linear_before_reset {
                                xw[2 * h + j] + rg[j] * hr[2 * h + j]
                            } else {
                                let rh: f64 = (0..h).map(|k| rg[k] * hs[k] * rd[(2 * h + j) * h + k]).sum();
                                xw[2 * h + j] + rh + rb[2 * h + j]
                            };
                            let cand = a[1].apply(clip(pre));
                            nh[j] = (1.0 - z[j]) * cand + z[j] * hs[j];
                        }
                        hs = nh;
                    }
                    RnnKind::Lstm => {
                        let pd = &p[d * 3 * h..(d + 1) * 3 * h];
                        for j in 0..h {
                            let pre = |gi: usize| xw[gi * h + j] + hr[gi * h + j];
                            let i_g = a[0].apply(clip(pre(0) + pd[j] * cs[j]));
                            let f_g = if op.input_forget {
                                1.0 - i_g
                            } else {
                                a[0].apply(clip(pre(2) + pd[2 * h + j] * cs[j]))
                            };
                            let c_g = a[1].apply(clip(pre(3)));
                            let c_new = f_g * cs[j] + i_g * c_g;
                            let o_g = a[0].apply(clip(pre(1) + pd[h + j] * c_new));
                            cs[j] = c_new;
                            hs[j] = o_g * a[2].apply(c_new);
                        }
                    }
                }
                let base = ((t * dirs + d) * batch + bi) * h;
                y[base..base + h].copy_from_slice(&hs);
            }
            yh[(d * batch + bi) * h..(d * batch + bi + 1) * h].copy_from_slice(&hs);
            if op.kind == RnnKind::Lstm {
                yc[(d * batch + bi) * h..(d * batch + bi + 1) * h].copy_from_slice(&cs);
            }
        }
    }
    let mk = |shape: &[usize], v: Vec<f64>, perm: &[usize]| -> KernelResult<Value> {
        let a = ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?;
        let a = if op.batch_first { a.permuted_axes(IxDyn(perm)).as_standard_layout().to_owned() } else { a };
        Ok(tensor_value(Array::from_f64(dtype, a)?))
    };
    let mut outs = vec![Some(mk(&[seq, dirs, batch, h], y, &[2, 0, 1, 3])?)];
    if n_out > 1 {
        outs.push(Some(mk(&[dirs, batch, h], yh, &[1, 0, 2])?));
    }
    if n_out > 2 {
        outs.push(Some(mk(&[dirs, batch, h], yc, &[1, 0, 2])?));
    }
    Ok(outs)
}
