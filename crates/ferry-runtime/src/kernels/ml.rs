//! Classical-ML kernels: LabelEncoder, TreeEnsemble, TfIdfVectorizer.

use crate::KernelResult;
use crate::array::Array;
use bytes::Bytes;
use ferry_ir::ops::{PostTransform, TfIdfMode, TfIdfVectorizer, TreeAggregate, TreeEnsemble};
use ferry_ir::{DType, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::HashMap;

/// A hashable element: integers, floats by value (NaN equal to NaN, -0 to +0), strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u64),
    Str(Bytes),
}

fn float_key(v: f64) -> Key {
    if v.is_nan() {
        Key::Float(f64::NAN.to_bits())
    } else if v == 0.0 {
        Key::Float(0f64.to_bits())
    } else {
        Key::Float(v.to_bits())
    }
}

fn keys_of(a: &Array) -> KernelResult<Vec<Key>> {
    Ok(match a {
        Array::Str(s) => s.iter().map(|b| Key::Str(b.clone())).collect(),
        Array::F32(_) | Array::F64(_) | Array::F16(_) | Array::BF16(_) => {
            a.to_f64()?.iter().map(|v| float_key(*v)).collect()
        }
        other => other.to_i64()?.iter().map(|v| Key::Int(*v)).collect(),
    })
}

/// Picks `src[idx[i]]` (1-D `src`) into an array of `shape`.
fn pick(src: &Array, idx: &[usize], shape: &[usize]) -> KernelResult<Array> {
    Ok(crate::map_array!(src, a => {
        a.select(Axis(0), idx).into_shape_with_order(IxDyn(shape)).map_err(|e| e.to_string())?
    }))
}

pub fn label_encoder(x: &Array, keys: &Tensor, values: &Tensor, default: &Tensor) -> KernelResult<Array> {
    let (k, v, d) = (Array::from_tensor(keys)?, Array::from_tensor(values)?, Array::from_tensor(default)?);
    if (x.dtype() == DType::String) != (k.dtype() == DType::String) {
        return Err(format!("LabelEncoder keys are {} but the input is {}", k.dtype(), x.dtype()));
    }
    let n = keys.numel() as usize;
    if values.numel() as usize != n || default.numel() != 1 {
        return Err("LabelEncoder needs as many values as keys and one default".into());
    }
    // Later keys win.
    let map: HashMap<Key, usize> = keys_of(&k)?.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    let idx: Vec<usize> = keys_of(x)?.iter().map(|k| map.get(k).copied().unwrap_or(n)).collect();
    let table = super::layout::concat(&[v, d], 0)?;
    pick(&table, &idx, x.shape())
}

fn erf_inv(x: f64) -> f64 {
    // Giles' single-precision approximation, refined by two Newton steps on erf.
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let mut p;
    if w < 5.0 {
        let w = w - 2.5;
        p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
    } else {
        let w = w.sqrt() - 3.0;
        p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
    }
    let mut y = p * x;
    for _ in 0..2 {
        let err = erf(y) - x;
        y -= err / (2.0 / std::f64::consts::PI.sqrt() * (-y * y).exp());
    }
    y
}

/// erf by its Taylor series (|x| < 3; beyond, erf is ±1 to double precision's needs here).
fn erf(x: f64) -> f64 {
    if x.abs() < 3.0 {
        let (mut sum, mut term, x2) = (x, x, x * x);
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        x.signum()
    }
}

fn post_transform(row: &mut [f64], pt: PostTransform) {
    match pt {
        PostTransform::None => {}
        PostTransform::Logistic => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        PostTransform::Probit => row.iter_mut().for_each(|v| *v = std::f64::consts::SQRT_2 * erf_inv(2.0 * *v - 1.0)),
        PostTransform::Softmax | PostTransform::SoftmaxZero => {
            let zero = pt == PostTransform::SoftmaxZero;
            let max = row.iter().copied().filter(|v| !zero || *v != 0.0).fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                if !(zero && *v == 0.0) {
                    *v = (*v - max).exp();
                    sum += *v;
                }
            }
            for v in row.iter_mut() {
                if !(zero && *v == 0.0) {
                    *v /= sum;
                }
            }
        }
    }
}

pub fn tree_ensemble(x: &Array, t: &TreeEnsemble) -> KernelResult<Array> {
    let dtype = x.dtype();
    let xs = x.to_f64()?;
    let (rows, cols) = match xs.shape() {
        [r, c] => (*r, *c),
        [c] => (1, *c),
        s => return Err(format!("TreeEnsemble takes a [N, F] input, not {s:?}")),
    };
    let xs = xs.into_shape_with_order(IxDyn(&[rows, cols])).map_err(|e| e.to_string())?;
    let splits = t.nodes_splits.to_f64_vec().map_err(|e| e.to_string())?;
    let weights = t.leaf_weights.to_f64_vec().map_err(|e| e.to_string())?;
    let members = match &t.membership_values {
        Some(m) => m.to_f64_vec().map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    // The member set of each set-membership node, in node order.
    let mut sets: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut groups = members.split(|v| v.is_nan());
    for (i, m) in t.nodes_modes.iter().enumerate() {
        if *m == 6 {
            sets.insert(i, groups.next().ok_or("fewer membership sets than set-membership nodes")?.to_vec());
        }
    }
    let n_nodes = t.nodes_modes.len();
    let n_targets = t.n_targets as usize;
    let leaf = |i: i64| -> KernelResult<(usize, f64)> {
        let i = usize::try_from(i).ok().filter(|i| *i < weights.len()).ok_or(format!("leaf {i} out of range"))?;
        let target = usize::try_from(t.leaf_targetids[i]).ok().filter(|x| *x < n_targets);
        Ok((target.ok_or(format!("leaf {i} has an invalid target"))?, weights[i]))
    };
    let predict = |row: &[f64], root: i64| -> KernelResult<(usize, f64)> {
        let r = usize::try_from(root).ok().filter(|r| *r < n_nodes).ok_or(format!("tree root {root} out of range"))?;
        if t.nodes_trueleafs[r] && t.nodes_falseleafs[r] && t.nodes_truenodeids[r] == t.nodes_falsenodeids[r] {
            return leaf(root);
        }
        let mut node = r;
        for _ in 0..=n_nodes {
            let f = usize::try_from(t.nodes_featureids[node]).ok().filter(|f| *f < cols);
            let v = row[f.ok_or(format!("node {node} reads a feature out of range"))?];
            let s = splits[node];
            let hit = match t.nodes_modes[node] {
                0 => v <= s,
                1 => v < s,
                2 => v >= s,
                3 => v > s,
                4 => v == s,
                5 => v != s,
                _ => sets.get(&node).is_some_and(|set| set.contains(&v)),
            } || (v.is_nan() && t.nodes_missing_value_tracks_true.get(node).copied().unwrap_or(false));
            let (next, is_leaf) = if hit {
                (t.nodes_truenodeids[node], t.nodes_trueleafs[node])
            } else {
                (t.nodes_falsenodeids[node], t.nodes_falseleafs[node])
            };
            if is_leaf {
                return leaf(next);
            }
            node = usize::try_from(next).ok().filter(|n| *n < n_nodes).ok_or(format!("node {next} out of range"))?;
        }
        Err("a tree has a cycle".into())
    };
    let init = match (t.aggregate_function, dtype) {
        (TreeAggregate::Min, DType::F32) => f32::MAX as f64,
        (TreeAggregate::Max, DType::F32) => f32::MIN as f64,
        (TreeAggregate::Min, DType::F16) => half::f16::MAX.to_f64(),
        (TreeAggregate::Max, DType::F16) => half::f16::MIN.to_f64(),
        (TreeAggregate::Min, _) => f64::MAX,
        (TreeAggregate::Max, _) => f64::MIN,
        _ => 0.0,
    };
    let n_trees = t.tree_roots.len() as f64;
    let mut out = ArrayD::from_elem(IxDyn(&[rows, n_targets]), init);
    for (r, row) in xs.axis_iter(Axis(0)).enumerate() {
        let row: Vec<f64> = row.iter().copied().collect();
        for root in &t.tree_roots {
            let (target, w) = predict(&row, *root)?;
            let slot = &mut out[[r, target]];
            *slot = match t.aggregate_function {
                TreeAggregate::Sum => *slot + w,
                TreeAggregate::Average => *slot + w / n_trees,
                TreeAggregate::Min => slot.min(w),
                TreeAggregate::Max => slot.max(w),
            };
        }
        let mut scores: Vec<f64> = (0..n_targets).map(|k| out[[r, k]]).collect();
        post_transform(&mut scores, t.post_transform);
        for (k, v) in scores.into_iter().enumerate() {
            out[[r, k]] = v;
        }
    }
    Array::from_f64(dtype, out)
}

pub fn tfidf(x: &Array, t: &TfIdfVectorizer) -> KernelResult<Array> {
    let pool = keys_of(&Array::from_tensor(&t.pool)?)?;
    let input = keys_of(x)?;
    // The pool's n-grams, numbered in pool order.
    let mut ngrams: HashMap<Vec<Key>, usize> = HashMap::new();
    let mut id = 0;
    for (k, start) in t.ngram_counts.iter().enumerate() {
        let n = k + 1;
        let start = usize::try_from(*start).map_err(|_| "negative ngram_counts entry")?;
        let end = match t.ngram_counts.get(k + 1) {
            Some(e) => usize::try_from(*e).map_err(|_| "negative ngram_counts entry")?,
            None => pool.len(),
        };
        if start > end || end > pool.len() || (end - start) % n != 0 {
            return Err(format!("ngram_counts do not divide the pool into {n}-grams"));
        }
        for g in pool[start..end].chunks(n) {
            ngrams.insert(g.to_vec(), id);
            id += 1;
        }
    }
    if id != t.ngram_indexes.len() {
        return Err(format!("the pool has {id} n-grams but ngram_indexes has {} entries", t.ngram_indexes.len()));
    }
    let width = t.ngram_indexes.iter().copied().max().map_or(0, |m| m + 1) as usize;
    let (batch, rows, cols) = match x.shape() {
        [] => (None, 1, 1),
        [c] => (None, 1, *c),
        [b, c] => (Some(*b), *b, *c),
        s => return Err(format!("TfIdfVectorizer takes a [C] or [N, C] input, not {s:?}")),
    };
    let mut counts = vec![0u64; rows * width];
    let skips = t.max_skip_count as usize + 1;
    for r in 0..rows {
        let row = &input[r * cols..(r + 1) * cols];
        let out = &mut counts[r * width..(r + 1) * width];
        for n in t.min_gram_length as usize..=t.max_gram_length as usize {
            // Unigrams do not depend on the skip distance: count them once.
            let distances = if n == 1 { 1 } else { skips };
            for d in 1..=distances {
                let span = (n - 1) * d;
                for s in 0..cols.saturating_sub(span) {
                    let g: Vec<Key> = (0..n).map(|j| row[s + j * d].clone()).collect();
                    if let Some(i) = ngrams.get(&g) {
                        out[t.ngram_indexes[*i] as usize] += 1;
                    }
                }
            }
        }
    }
    let weight = |i: usize| -> KernelResult<f64> {
        match &t.weights {
            Some(w) => w.get(i).map(|v| *v as f64).ok_or_else(|| format!("no weight for output {i}")),
            None => Ok(1.0),
        }
    };
    let mut y = Vec::with_capacity(counts.len());
    for (p, c) in counts.iter().enumerate() {
        let c = *c as f64;
        y.push(match t.mode {
            TfIdfMode::Tf => c,
            TfIdfMode::Idf => {
                if c > 0.0 {
                    weight(p % width.max(1))?
                } else {
                    0.0
                }
            }
            TfIdfMode::TfIdf => c * weight(p % width.max(1))?,
        } as f32);
    }
    let shape = match batch {
        Some(b) => vec![b, width],
        None => vec![width],
    };
    Ok(Array::F32(ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example: in [94, 17, 36, 12, 28] with 2 skips, [94, 12] is a 2-gram (items 0
    /// and 3); with skip 0 the 2-grams are the adjacent pairs.
    #[test]
    fn tfidf_counts_skipped_bigrams() {
        let x = Array::I64(ArrayD::from_shape_vec(IxDyn(&[5]), vec![94, 17, 36, 12, 28]).unwrap());
        let op = |skip| TfIdfVectorizer {
            mode: TfIdfMode::Tf,
            min_gram_length: 2,
            max_gram_length: 2,
            max_skip_count: skip,
            ngram_counts: vec![0, 0],
            ngram_indexes: vec![0, 1],
            pool: Tensor::from_i64(vec![4], &[94, 12, 17, 36]).unwrap(),
            weights: None,
        };
        let y = |skip| match tfidf(&x, &op(skip)).unwrap() {
            Array::F32(a) => a.iter().copied().collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        assert_eq!(y(2), vec![1.0, 1.0]);
        assert_eq!(y(0), vec![0.0, 1.0]);
    }

    #[test]
    fn label_encoder_matches_nan_and_uses_the_default() {
        let x = Array::F32(ArrayD::from_shape_vec(IxDyn(&[3]), vec![f32::NAN, 2.0, 5.0]).unwrap());
        let keys = Tensor::from_f32(vec![2], &[2.0, f32::NAN]).unwrap();
        let values = Tensor::from_i64(vec![2], &[20, 99]).unwrap();
        let y = label_encoder(&x, &keys, &values, &Tensor::from_i64(vec![1], &[-1]).unwrap()).unwrap();
        assert_eq!(y, Array::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![99, 20, -1]).unwrap()));
    }
}
