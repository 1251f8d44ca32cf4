//! String ops (StringConcat, RegexFullMatch, StringSplit, StringNormalizer) and TfIdfVectorizer.

use super::Canonicalizer;
use super::ctx::{Canon, NodeCtx};
use crate::error::Result;
use bytes::Bytes;
use ferry_ir::ops::{CaseChange, StringNormalizer, TfIdfMode, TfIdfVectorizer};
use ferry_ir::{Op, Tensor};

pub const OPS: &[(&str, Canonicalizer)] = &[
    ("StringConcat", string_concat),
    ("RegexFullMatch", regex_full_match),
    ("StringSplit", string_split),
    ("StringNormalizer", string_normalizer),
    ("TfIdfVectorizer", tfidf_vectorizer),
];

fn all_io(c: &mut NodeCtx, op: Op) -> Result<Canon> {
    let (inputs, outputs) = (c.inputs.clone(), c.outputs.clone());
    c.emit(op, inputs, outputs);
    Ok(Canon::Done)
}

fn string_concat(c: &mut NodeCtx) -> Result<Canon> {
    c.required_input(0)?;
    c.required_input(1)?;
    all_io(c, Op::StringConcat)
}

fn regex_full_match(c: &mut NodeCtx) -> Result<Canon> {
    let pattern = c.attr_s("pattern", "")?;
    if !c.has_attr("pattern") {
        return Err(c.error("attribute 'pattern' is required"));
    }
    all_io(c, Op::RegexFullMatch { pattern })
}

fn string_split(c: &mut NodeCtx) -> Result<Canon> {
    // An empty delimiter means "split at runs of whitespace", like an absent one.
    let delimiter = c.attr_s("delimiter", "")?;
    let delimiter = (!delimiter.is_empty()).then_some(delimiter);
    let maxsplit = match c.attr_i_opt("maxsplit")? {
        Some(m) if m < 0 => return Err(c.error(format!("maxsplit must be non-negative, not {m}"))),
        m => m.map(|m| m as u64),
    };
    all_io(c, Op::StringSplit { delimiter, maxsplit })
}

fn string_normalizer(c: &mut NodeCtx) -> Result<Canon> {
    let case_change = match c.attr_s("case_change_action", "NONE")?.as_str() {
        "LOWER" => CaseChange::Lower,
        "UPPER" => CaseChange::Upper,
        "NONE" => CaseChange::None,
        other => return Err(c.error(format!("case_change_action must be LOWER, UPPER or NONE, not '{other}'"))),
    };
    let op = StringNormalizer {
        case_change,
        case_sensitive: c.attr_i("is_case_sensitive", 0)? != 0,
        stopwords: c.attr_strings("stopwords")?.unwrap_or_default(),
        locale: c.has_attr("locale").then(|| c.attr_s("locale", "")).transpose()?,
    };
    all_io(c, Op::StringNormalizer(op))
}

fn tfidf_vectorizer(c: &mut NodeCtx) -> Result<Canon> {
    let mode = match c.attr_s("mode", "")?.as_str() {
        "TF" => TfIdfMode::Tf,
        "IDF" => TfIdfMode::Idf,
        "TFIDF" => TfIdfMode::TfIdf,
        other => return Err(c.error(format!("mode must be TF, IDF or TFIDF, not '{other}'"))),
    };
    let size = |c: &NodeCtx, name: &str| -> Result<u64> {
        let v = c.attr_i(name, -1)?;
        u64::try_from(v).map_err(|_| c.error(format!("attribute '{name}' is required and non-negative")))
    };
    let (min_gram_length, max_gram_length, max_skip_count) =
        (size(c, "min_gram_length")?, size(c, "max_gram_length")?, size(c, "max_skip_count")?);
    if min_gram_length < 1 || min_gram_length > max_gram_length {
        return Err(c.error(format!("n-gram lengths {min_gram_length}..={max_gram_length} are not a valid range")));
    }
    let ngram_counts = c.attr_ints("ngram_counts")?.ok_or_else(|| c.error("attribute 'ngram_counts' is required"))?;
    let ngram_indexes =
        c.attr_ints("ngram_indexes")?.ok_or_else(|| c.error("attribute 'ngram_indexes' is required"))?;
    if ngram_indexes.iter().any(|i| *i < 0) {
        return Err(c.error("ngram_indexes must be non-negative"));
    }
    let pool = match (c.attr_ints("pool_int64s")?, c.attr_strings("pool_strings")?) {
        (Some(p), None) => Tensor::from_i64(vec![p.len() as u64], &p).expect("length matches"),
        (None, Some(p)) => {
            let n = p.len() as u64;
            Tensor::from_strings(vec![n], p.into_iter().map(Bytes::from).collect()).expect("length matches")
        }
        _ => return Err(c.error("exactly one of pool_int64s and pool_strings must be given")),
    };
    let weights = c.attr_floats("weights")?;
    let op = TfIdfVectorizer {
        mode,
        min_gram_length,
        max_gram_length,
        max_skip_count,
        ngram_counts,
        ngram_indexes,
        pool,
        weights,
    };
    all_io(c, Op::TfIdfVectorizer(op))
}
