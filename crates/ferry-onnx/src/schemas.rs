//! Look-ups in the generated ONNX operator-schema table
//! ([`crate::schema_table`]).
//!
//! Domains are spelled as in ONNX models: `""` (or `"ai.onnx"`) for the
//! default domain, `"ai.onnx.ml"`, `"ai.onnx.preview.training"`, ...

use crate::schema_table::{DOMAIN_OPSET_RANGES, LATEST_IR_VERSION, OpSchemaEntry, SCHEMAS, VERSION_TABLE};

/// Maps `"ai.onnx"` to `""` (the spelling used in the table); other domains
/// are returned unchanged.
pub fn normalize_domain(domain: &str) -> &str {
    if domain == "ai.onnx" { "" } else { domain }
}

/// All versions of one operator, oldest first (empty if unknown).
fn op_slice(domain: &str, name: &str) -> &'static [OpSchemaEntry] {
    let key = (normalize_domain(domain), name);
    let lo = SCHEMAS.partition_point(|e| (e.domain, e.name) < key);
    let len = SCHEMAS[lo..].partition_point(|e| (e.domain, e.name) == key);
    &SCHEMAS[lo..lo + len]
}

/// The schema of `domain::name` in effect at operator-set version `opset`:
/// the entry with the largest `since_version <= opset`. `None` if the
/// operator is unknown or did not exist yet at `opset`.
///
/// Like `onnx.defs.get_schema`, this also returns deprecated entries (check
/// [`OpSchemaEntry::deprecated`]).
pub fn resolve(domain: &str, name: &str, opset: u32) -> Option<&'static OpSchemaEntry> {
    let versions = op_slice(domain, name);
    let n = versions.partition_point(|e| e.since_version <= opset);
    n.checked_sub(1).map(|i| &versions[i])
}

/// Every version of `domain::name`, in increasing `since_version` order
/// (empty if the operator is unknown).
pub fn versions(
    domain: &str,
    name: &str,
) -> impl DoubleEndedIterator<Item = &'static OpSchemaEntry> + ExactSizeIterator + use<> {
    op_slice(domain, name).iter()
}

/// The newest version of `domain::name`, if the operator is known.
pub fn latest(domain: &str, name: &str) -> Option<&'static OpSchemaEntry> {
    op_slice(domain, name).last()
}

/// `(min, max)` operator-set versions onnx knows for `domain`, if it knows
/// the domain at all.
pub fn domain_opset_range(domain: &str) -> Option<(u32, u32)> {
    let d = normalize_domain(domain);
    DOMAIN_OPSET_RANGES.iter().find(|(name, _, _)| *name == d).map(|&(_, lo, hi)| (lo, hi))
}

/// The lowest IR version of an onnx release that supports ai.onnx operator
/// set `opset` (from [`VERSION_TABLE`]); e.g. opset 13 -> 7, 21 -> 10, 28 -> 14.
///
/// Opsets 2..=4 were never the newest opset of any release; they map to the
/// IR version of the first release that supports them (IR 3). An opset newer
/// than any known release gives [`LATEST_IR_VERSION`].
pub fn ir_version_for_opset(opset: u32) -> u32 {
    // The table is in release order; both the IR version and the opset are
    // non-decreasing along it, so the first release with `max opset >= opset`
    // has the lowest IR version.
    let i = VERSION_TABLE.partition_point(|&(_, _, op, _)| op < opset);
    VERSION_TABLE.get(i).map_or(LATEST_IR_VERSION, |&(_, ir, _, _)| ir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_table::{LATEST_ML_OPSET, LATEST_OPSET, SCHEMA_COUNT};

    #[test]
    fn table_is_sorted_and_unique() {
        assert_eq!(SCHEMAS.len(), SCHEMA_COUNT);
        for w in SCHEMAS.windows(2) {
            let a = (w[0].domain, w[0].name, w[0].since_version);
            let b = (w[1].domain, w[1].name, w[1].since_version);
            assert!(a < b, "{a:?} !< {b:?}");
        }
        assert!(SCHEMAS.iter().all(|e| e.domain != "ai.onnx"));
    }

    #[test]
    fn version_table_is_monotonic() {
        for w in VERSION_TABLE.windows(2) {
            assert!(w[0].1 <= w[1].1 && w[0].2 <= w[1].2 && w[0].3 <= w[1].3);
        }
        let last = VERSION_TABLE.last().unwrap();
        assert_eq!((last.1, last.2, last.3), (LATEST_IR_VERSION, LATEST_OPSET, LATEST_ML_OPSET));
    }

    #[test]
    fn latest_versions() {
        assert_eq!(LATEST_OPSET, 28);
        assert_eq!(LATEST_ML_OPSET, 5);
        assert_eq!(LATEST_IR_VERSION, 14);
        assert_eq!(domain_opset_range(""), Some((1, 28)));
        assert_eq!(domain_opset_range("ai.onnx"), Some((1, 28)));
        assert_eq!(domain_opset_range("ai.onnx.ml"), Some((1, 5)));
        assert_eq!(domain_opset_range("com.example"), None);
    }

    #[test]
    fn resolve_softmax() {
        assert_eq!(resolve("", "Softmax", 10).unwrap().since_version, 1);
        assert_eq!(resolve("", "Softmax", 12).unwrap().since_version, 11);
        assert_eq!(resolve("", "Softmax", 13).unwrap().since_version, 13);
        assert_eq!(resolve("ai.onnx", "Softmax", 28).unwrap().since_version, 13);
        assert_eq!(resolve("", "Softmax", 0), None);
        assert_eq!(resolve("", "NoSuchOp", 13), None);
        assert_eq!(resolve("ai.onnx.ml", "Softmax", 5), None);
        // Softmax-13 is defined through a context-dependent function.
        assert!(resolve("", "Softmax", 13).unwrap().has_function);
        assert!(!resolve("", "Softmax", 12).unwrap().has_function);
    }

    #[test]
    fn resolve_misc() {
        assert_eq!(resolve("", "Resize", 28).unwrap().since_version, 19);
        assert_eq!(resolve("", "Conv", 22).unwrap().since_version, 22);
        let up = resolve("", "Upsample", 10).unwrap();
        assert_eq!(up.since_version, 10);
        assert!(up.deprecated);
        let concat = resolve("", "Concat", 13).unwrap();
        assert_eq!((concat.min_inputs, concat.max_inputs), (1, u32::MAX));
        assert_eq!(concat.inputs, &["inputs"]);
        assert!(resolve("", "LayerNormalization", 17).unwrap().has_function);

        let te = resolve("ai.onnx.ml", "TreeEnsemble", 5).unwrap();
        assert_eq!(te.since_version, 5);
        assert!(te.attributes.contains(&("tree_roots", true)));
        assert!(te.attributes.contains(&("aggregate_function", false)));
        assert!(resolve("ai.onnx.ml", "TreeEnsembleClassifier", 5).unwrap().deprecated);

        let adagrad = resolve("ai.onnx.preview.training", "Adagrad", 1).unwrap();
        assert_eq!((adagrad.min_inputs, adagrad.max_inputs), (3, u32::MAX));
    }

    #[test]
    fn versions_of_add() {
        let v: Vec<u32> = versions("", "Add").map(|e| e.since_version).collect();
        assert_eq!(v, [1, 6, 7, 13, 14]);
        assert_eq!(versions("ai.onnx", "Add").len(), 5);
        assert_eq!(versions("", "NoSuchOp").count(), 0);
        assert_eq!(latest("", "Add").unwrap().since_version, 14);
    }

    #[test]
    fn ir_versions() {
        // Checked against onnx.helper.find_min_ir_version_for (onnx 1.23.2),
        // which has no entry for opsets 2..=4.
        let expected = [
            (1, 3),
            (2, 3),
            (3, 3),
            (4, 3),
            (5, 3),
            (6, 3),
            (7, 3),
            (8, 3),
            (9, 4),
            (10, 5),
            (11, 6),
            (12, 7),
            (13, 7),
            (14, 7),
            (15, 8),
            (16, 8),
            (17, 8),
            (18, 8),
            (19, 9),
            (20, 9),
            (21, 10),
            (22, 10),
            (23, 11),
            (24, 12),
            (25, 13),
            (26, 13),
            (27, 13),
            (28, 14),
        ];
        for (opset, ir) in expected {
            assert_eq!(ir_version_for_opset(opset), ir, "opset {opset}");
        }
        assert_eq!(ir_version_for_opset(0), 3);
        assert_eq!(ir_version_for_opset(LATEST_OPSET + 1), LATEST_IR_VERSION);
    }
}
