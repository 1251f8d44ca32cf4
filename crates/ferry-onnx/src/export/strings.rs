//! String ops and TfIdfVectorizer -> ONNX (StringNormalizer from opset 10, TfIdfVectorizer from
//! 9, StringConcat/StringSplit/RegexFullMatch from 20; none has an older form).

use super::ctx::{LowerCtx, LowerResult, attr_i, attr_ints, attr_s, attr_strings};
use crate::proto::{self, attribute_proto::AttributeType};
use ferry_ir::TensorData;
use ferry_ir::ops::{CaseChange, StringNormalizer, TfIdfMode, TfIdfVectorizer};

/// A list-of-strings attribute from raw bytes.
pub fn attr_bytes(name: &str, v: &[bytes::Bytes]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Strings as i32),
        strings: v.to_vec(),
        ..Default::default()
    }
}

fn same_io(c: &mut LowerCtx, op_type: &str, attrs: Vec<proto::AttributeProto>) -> LowerResult {
    c.require_op(op_type)?;
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit(op_type, inputs, outputs, attrs);
    Ok(())
}

pub fn string_concat(c: &mut LowerCtx) -> LowerResult {
    same_io(c, "StringConcat", vec![])
}

pub fn regex_full_match(c: &mut LowerCtx, pattern: &str) -> LowerResult {
    same_io(c, "RegexFullMatch", vec![attr_s("pattern", pattern)])
}

pub fn string_split(c: &mut LowerCtx, delimiter: Option<&str>, maxsplit: Option<u64>) -> LowerResult {
    let mut attrs = Vec::new();
    if let Some(d) = delimiter {
        attrs.push(attr_s("delimiter", d));
    }
    if let Some(m) = maxsplit {
        attrs.push(attr_i("maxsplit", m as i64));
    }
    same_io(c, "StringSplit", attrs)
}

pub fn string_normalizer(c: &mut LowerCtx, sn: &StringNormalizer) -> LowerResult {
    let action = match sn.case_change {
        CaseChange::Lower => "LOWER",
        CaseChange::Upper => "UPPER",
        CaseChange::None => "NONE",
    };
    let mut attrs = vec![attr_s("case_change_action", action), attr_i("is_case_sensitive", sn.case_sensitive as i64)];
    if let Some(l) = &sn.locale {
        attrs.push(attr_s("locale", l));
    }
    if !sn.stopwords.is_empty() {
        attrs.push(attr_strings("stopwords", &sn.stopwords));
    }
    same_io(c, "StringNormalizer", attrs)
}

pub fn tfidf_vectorizer(c: &mut LowerCtx, t: &TfIdfVectorizer) -> LowerResult {
    let mode = match t.mode {
        TfIdfMode::Tf => "TF",
        TfIdfMode::Idf => "IDF",
        TfIdfMode::TfIdf => "TFIDF",
    };
    let mut attrs = vec![
        attr_s("mode", mode),
        attr_i("min_gram_length", t.min_gram_length as i64),
        attr_i("max_gram_length", t.max_gram_length as i64),
        attr_i("max_skip_count", t.max_skip_count as i64),
        attr_ints("ngram_counts", &t.ngram_counts),
        attr_ints("ngram_indexes", &t.ngram_indexes),
    ];
    match &t.pool.data {
        TensorData::Strings(s) => attrs.push(attr_bytes("pool_strings", s)),
        TensorData::Raw(_) => {
            let v = t.pool.to_i64_vec().map_err(|e| c.problem(format!("pool: {e}"), None))?;
            attrs.push(attr_ints("pool_int64s", &v));
        }
    }
    if let Some(w) = &t.weights {
        attrs.push(super::ctx::attr_floats("weights", w));
    }
    same_io(c, "TfIdfVectorizer", attrs)
}
