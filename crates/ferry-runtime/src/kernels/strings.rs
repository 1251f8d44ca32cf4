//! String kernels: StringConcat, RegexFullMatch, StringSplit, StringNormalizer. Strings are
//! UTF-8 (as ONNX requires); an element that is not is an error where the text matters.

use super::elementwise::broadcast_shape;
use crate::KernelResult;
use crate::array::Array;
use bytes::Bytes;
use ferry_ir::ops::{CaseChange, StringNormalizer};
use ndarray::{ArrayD, IxDyn, Zip};

fn strings(x: &Array, what: &str) -> KernelResult<ArrayD<Bytes>> {
    match x {
        Array::Str(a) => Ok(a.clone()),
        other => Err(format!("{what} must be strings, not {}", other.dtype())),
    }
}

fn text(b: &Bytes) -> KernelResult<&str> {
    std::str::from_utf8(b).map_err(|_| "a string element is not valid UTF-8".to_string())
}

pub fn string_concat(a: &Array, b: &Array) -> KernelResult<Array> {
    let (a, b) = (strings(a, "StringConcat's inputs")?, strings(b, "StringConcat's inputs")?);
    let shape = broadcast_shape(a.shape(), b.shape())?;
    fn view<'a>(x: &'a ArrayD<Bytes>, shape: &[usize]) -> KernelResult<ndarray::ArrayViewD<'a, Bytes>> {
        x.broadcast(IxDyn(shape)).ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", x.shape()))
    }
    let (av, bv) = (view(&a, &shape)?, view(&b, &shape)?);
    Ok(Array::Str(Zip::from(&av).and(&bv).map_collect(|x, y| {
        let mut v = Vec::with_capacity(x.len() + y.len());
        v.extend_from_slice(x);
        v.extend_from_slice(y);
        Bytes::from(v)
    })))
}

pub fn regex_full_match(x: &Array, pattern: &str) -> KernelResult<Array> {
    let x = strings(x, "RegexFullMatch's input")?;
    let re = regex::bytes::Regex::new(&format!(r"\A(?:{pattern})\z"))
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))?;
    Ok(Array::Bool(x.mapv(|s| re.is_match(&s))))
}

/// Python `str.split` semantics: with a delimiter, exact pieces (empty ones kept); without, runs
/// of whitespace separate the pieces and leading/trailing whitespace yields none.
fn split_one(s: &str, delimiter: Option<&str>, maxsplit: Option<u64>) -> Vec<String> {
    let limit = maxsplit.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX).saturating_add(1));
    match delimiter {
        Some(d) => s.splitn(limit, d).map(str::to_string).collect(),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if out.len() + 1 == limit {
                    out.push(rest.to_string());
                    break;
                }
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            out
        }
    }
}

pub fn string_split(x: &Array, delimiter: Option<&str>, maxsplit: Option<u64>) -> KernelResult<(Array, Array)> {
    let x = strings(x, "StringSplit's input")?;
    let pieces: Vec<Vec<String>> =
        x.iter().map(|s| Ok(split_one(text(s)?, delimiter, maxsplit))).collect::<KernelResult<_>>()?;
    let width = pieces.iter().map(Vec::len).max().unwrap_or(0);
    let mut shape = x.shape().to_vec();
    let counts = ArrayD::from_shape_vec(IxDyn(&shape), pieces.iter().map(|p| p.len() as i64).collect())
        .map_err(|e| e.to_string())?;
    shape.push(width);
    let flat: Vec<Bytes> = pieces
        .into_iter()
        .flat_map(|p| {
            let pad = width - p.len();
            p.into_iter().map(Bytes::from).chain(std::iter::repeat_n(Bytes::new(), pad))
        })
        .collect();
    let y = ArrayD::from_shape_vec(IxDyn(&shape), flat).map_err(|e| e.to_string())?;
    Ok((Array::Str(y), Array::I64(counts)))
}

/// Drops the stop words from a `[C]` or `[1, C]` input, then changes case; when nothing is left
/// the output is one empty string (`[1]` or `[1, 1]`).
pub fn string_normalizer(x: &Array, sn: &StringNormalizer) -> KernelResult<Array> {
    let x = strings(x, "StringNormalizer's input")?;
    let rank = x.ndim();
    if !(rank == 1 || (rank == 2 && x.shape()[0] == 1)) {
        return Err(format!("StringNormalizer takes a [C] or [1, C] input, not {:?}", x.shape()));
    }
    let stops: std::collections::HashSet<String> =
        sn.stopwords.iter().map(|w| if sn.case_sensitive { w.clone() } else { w.to_lowercase() }).collect();
    let mut out = Vec::new();
    for s in x.iter() {
        let t = text(s)?;
        let key = if sn.case_sensitive { t.to_string() } else { t.to_lowercase() };
        if stops.contains(&key) {
            continue;
        }
        out.push(Bytes::from(match sn.case_change {
            CaseChange::Lower => t.to_lowercase(),
            CaseChange::Upper => t.to_uppercase(),
            CaseChange::None => t.to_string(),
        }));
    }
    if out.is_empty() {
        out.push(Bytes::new());
    }
    let shape = if rank == 1 { vec![out.len()] } else { vec![1, out.len()] };
    Ok(Array::Str(ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::split_one;

    #[test]
    fn split_matches_python() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(split_one("  a b  c  ", None, Some(1)), v(&["a", "b  c  "]));
        assert_eq!(split_one("  a b  c  ", None, None), v(&["a", "b", "c"]));
        assert_eq!(split_one("", None, None), Vec::<String>::new());
        assert_eq!(split_one("", Some(","), None), v(&[""]));
        assert_eq!(split_one("a,,b", Some(","), None), v(&["a", "", "b"]));
        assert_eq!(split_one("a,b,c", Some(","), Some(1)), v(&["a", "b,c"]));
    }
}
