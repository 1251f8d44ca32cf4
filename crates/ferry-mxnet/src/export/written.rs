//! The MXNet op names ferry's exporter writes, for docs/support.md. A test keeps this list equal
//! to the registered MXNet op names quoted in the exporter's source.

pub const WRITTEN_OPS: &[&str] = &[
    "Activation",
    "Cast",
    "Concat",
    "Convolution",
    "Deconvolution",
    "Flatten",
    "LRN",
    "Pad",
    "Pooling",
    "ROIPooling",
    "Reshape",
    "SequenceReverse",
    "SliceChannel",
    "UpSampling",
    "_contrib_BilinearResize2D",
    "_contrib_ROIAlign",
    "_copy",
    "_div_scalar",
    "_equal_scalar",
    "_greater_equal_scalar",
    "_greater_scalar",
    "_lesser_equal_scalar",
    "_lesser_scalar",
    "_linalg_gemm2",
    "_maximum_scalar",
    "_minimum_scalar",
    "_minus_scalar",
    "_mod_scalar",
    "_mul_scalar",
    "_not_equal_scalar",
    "_plus_scalar",
    "_power_scalar",
    "_rdiv_scalar",
    "_rminus_scalar",
    "_rpower_scalar",
    "_split_v2",
    "abs",
    "arccos",
    "arccosh",
    "arcsin",
    "arcsinh",
    "arctan",
    "arctanh",
    "argmax",
    "argmin",
    "batch_dot",
    "broadcast_add",
    "broadcast_div",
    "broadcast_equal",
    "broadcast_greater",
    "broadcast_greater_equal",
    "broadcast_lesser",
    "broadcast_lesser_equal",
    "broadcast_like",
    "broadcast_logical_and",
    "broadcast_logical_or",
    "broadcast_logical_xor",
    "broadcast_maximum",
    "broadcast_minimum",
    "broadcast_mod",
    "broadcast_mul",
    "broadcast_power",
    "broadcast_sub",
    "broadcast_to",
    "ceil",
    "cos",
    "cosh",
    "depth_to_space",
    "dot",
    "erf",
    "exp",
    "expand_dims",
    "floor",
    "gather_nd",
    "log",
    "log_softmax",
    "logical_not",
    "max",
    "mean",
    "min",
    "negative",
    "norm",
    "one_hot",
    "ones_like",
    "prod",
    "reciprocal",
    "relu",
    "reshape_like",
    "shape_array",
    "sigmoid",
    "sign",
    "sin",
    "sinh",
    "size_array",
    "slice",
    "slice_axis",
    "softmax",
    "space_to_depth",
    "sqrt",
    "square",
    "squeeze",
    "sum",
    "take",
    "tan",
    "tanh",
    "tile",
    "topk",
    "transpose",
    "where",
    "zeros_like",
];

#[cfg(test)]
mod tests {
    use super::WRITTEN_OPS;
    use std::collections::BTreeSet;

    /// Quoted strings in the exporter's code (comments dropped) that name a registered MXNet op.
    /// Attribute names that happen to be op names too are left out.
    fn quoted_op_names() -> BTreeSet<String> {
        const ATTRIBUTE_NAMES: &[&str] = &["pad"];
        let registered: BTreeSet<&str> = include_str!("../../data/mxnet-ops.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split('\t').next())
            .collect();
        let mut found = BTreeSet::new();
        for src in [include_str!("lower.rs"), include_str!("mod.rs")] {
            for line in src.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, part) in code.split('"').enumerate() {
                    if i % 2 == 1 && registered.contains(part) && !ATTRIBUTE_NAMES.contains(&part) {
                        found.insert(part.to_string());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn written_ops_match_the_exporter() {
        let listed: BTreeSet<String> = WRITTEN_OPS.iter().map(|s| s.to_string()).collect();
        let found = quoted_op_names();
        let missing: Vec<_> = found.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&found).collect();
        assert!(missing.is_empty() && stale.is_empty(), "WRITTEN_OPS lacks {missing:?}, lists unused {stale:?}");
    }
}
