//! Symbol JSON (`*-symbol.json`): the nnvm graph MXNet saves. Reads 1.x files (`attrs`) and
//! 0.x files (`attr`/`param`, 2-element input entries, `backward_source_id`), and writes them
//! back in dmlc::JSONWriter's layout, so an unchanged file is re-emitted byte for byte.

use crate::error::{MxnetError, Result};

/// A JSON value that keeps object key order and the source text of numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 256;

impl Parser<'_> {
    fn err(&self, msg: &str) -> MxnetError {
        MxnetError::invalid(format!("symbol JSON: {msg} at byte {}", self.pos))
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) { Ok(()) } else { Err(self.err(&format!("expected '{}'", c as char))) }
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let v = match self.s.get(self.pos) {
            None => return Err(self.err("unexpected end")),
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.expect(b':')?;
                        let v = self.value()?;
                        items.push((k, v));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Json::Object(items)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Json::Array(items)
            }
            Some(b'"') => Json::String(self.string()?),
            Some(b't') if self.s[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Json::Bool(true)
            }
            Some(b'f') if self.s[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Json::Bool(false)
            }
            Some(b'n') if self.s[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Json::Null
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.pos;
                while self.pos < self.s.len()
                    && matches!(self.s[self.pos], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    self.pos += 1;
                }
                Json::Number(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
            }
            Some(_) => return Err(self.err("unexpected character")),
        };
        self.depth -= 1;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        if self.s.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.err("bad \\u escape"))?;
                            let code = u32::from_str_radix(std::str::from_utf8(hex).unwrap_or("x"), 16)
                                .map_err(|_| self.err("bad \\u escape"))?;
                            self.pos += 4;
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

pub fn parse_json(text: &[u8]) -> Result<Json> {
    let mut p = Parser { s: text, pos: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    if p.pos != text.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

/// Writes JSON as dmlc::JSONWriter lays it out (see FORMATS.md section 5).
pub fn write_json(v: &Json) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    out
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_value(out: &mut String, v: &Json, depth: usize) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => escape(out, s),
        Json::Array(items) => {
            let multi = items.len() > 10 || items.iter().any(|i| matches!(i, Json::Object(_)));
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                if multi {
                    newline(out, depth + 1);
                }
                write_value(out, item, depth + 1);
            }
            if multi && !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        Json::Object(items) => {
            let multi = items.len() > 1;
            out.push('{');
            for (k, (key, item)) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                if multi {
                    newline(out, depth + 1);
                }
                escape(out, key);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            if multi {
                newline(out, depth);
            }
            out.push('}');
        }
    }
}

/// An input entry: (node, output index, version); version `None` when written as 2 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub node: usize,
    pub index: usize,
    pub version: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SymNode {
    pub op: String,
    pub name: String,
    /// `attrs` (1.x) — or `attr` (0.x), see `attr_key`.
    pub attrs: Vec<(String, String)>,
    /// The key the attributes were stored under: "attrs" (1.x) or "attr" (0.x).
    pub attr_key: String,
    /// 0.8's `param` (op parameters), merged into the attributes without overwriting.
    pub param: Option<Vec<(String, String)>>,
    pub inputs: Vec<Entry>,
    pub control_deps: Option<Vec<u64>>,
    pub subgraphs: Option<Vec<Symbol>>,
    pub backward_source_id: Option<String>,
    /// Keys in file order, so the node is re-emitted as read.
    pub key_order: Vec<String>,
}

impl SymNode {
    /// The node's attributes as MXNet sees them: `attrs`/`attr`, then `param` entries that are not
    /// already set.
    pub fn effective_attrs(&self) -> Vec<(String, String)> {
        let mut a = self.attrs.clone();
        for (k, v) in self.param.iter().flatten() {
            if !a.iter().any(|(x, _)| x == k) {
                a.push((k.clone(), v.clone()));
            }
        }
        a
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Symbol {
    pub nodes: Vec<SymNode>,
    pub arg_nodes: Vec<u64>,
    pub node_row_ptr: Option<Vec<u64>>,
    pub heads: Vec<Entry>,
    /// Graph attributes (`mxnet_version`: `["int", 10901]`), as written.
    pub attrs: Option<Vec<(String, Json)>>,
    pub key_order: Vec<String>,
}

impl Symbol {
    /// `attrs.mxnet_version`, or 800 when absent (as MXNet assumes).
    pub fn mxnet_version(&self) -> i64 {
        self.attrs
            .iter()
            .flatten()
            .find(|(k, _)| k == "mxnet_version")
            .and_then(|(_, v)| match v {
                Json::Array(a) if a.len() == 2 => a[1].as_i64(),
                _ => None,
            })
            .unwrap_or(800)
    }
}

fn string_map(v: &Json, what: &str) -> Result<Vec<(String, String)>> {
    match v {
        Json::Object(items) => items
            .iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k.clone(), s.clone())),
                Json::Number(n) => Ok((k.clone(), n.clone())),
                _ => Err(MxnetError::invalid(format!("symbol JSON: {what}.{k} must be a string"))),
            })
            .collect(),
        _ => Err(MxnetError::invalid(format!("symbol JSON: {what} must be an object"))),
    }
}

fn u64_list(v: &Json, what: &str) -> Result<Vec<u64>> {
    match v {
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_u64().ok_or_else(|| MxnetError::invalid(format!("symbol JSON: {what} must hold integers"))))
            .collect(),
        _ => Err(MxnetError::invalid(format!("symbol JSON: {what} must be an array"))),
    }
}

fn entry(v: &Json, what: &str) -> Result<Entry> {
    let bad = || MxnetError::invalid(format!("symbol JSON: {what} entries must be [node, index(, version)]"));
    let Json::Array(a) = v else { return Err(bad()) };
    if a.len() != 2 && a.len() != 3 {
        return Err(bad());
    }
    let n = |j: &Json| j.as_u64().ok_or_else(bad);
    Ok(Entry {
        node: usize::try_from(n(&a[0])?).map_err(|_| bad())?,
        index: usize::try_from(n(&a[1])?).map_err(|_| bad())?,
        version: if a.len() == 3 { Some(n(&a[2])?) } else { None },
    })
}

fn entries(v: &Json, what: &str) -> Result<Vec<Entry>> {
    match v {
        Json::Array(items) => items.iter().map(|i| entry(i, what)).collect(),
        _ => Err(MxnetError::invalid(format!("symbol JSON: {what} must be an array"))),
    }
}

fn node_from_json(v: &Json, idx: usize) -> Result<SymNode> {
    let Json::Object(items) = v else {
        return Err(MxnetError::invalid(format!("symbol JSON: node {idx} is not an object")));
    };
    let mut n = SymNode { attr_key: "attrs".into(), ..Default::default() };
    let (mut has_op, mut has_name, mut has_inputs) = (false, false, false);
    for (k, v) in items {
        let what = format!("node {idx}");
        match k.as_str() {
            "op" => {
                n.op = v.as_str().ok_or_else(|| MxnetError::invalid(format!("{what}: op must be a string")))?.into();
                has_op = true;
            }
            "name" => {
                n.name =
                    v.as_str().ok_or_else(|| MxnetError::invalid(format!("{what}: name must be a string")))?.into();
                has_name = true;
            }
            "attrs" | "attr" => {
                for (ak, av) in string_map(v, &what)? {
                    match n.attrs.iter_mut().find(|(x, _)| *x == ak) {
                        Some(slot) => slot.1 = av,
                        None => n.attrs.push((ak, av)),
                    }
                }
                n.attr_key = k.clone();
            }
            "param" => n.param = Some(string_map(v, &what)?),
            "inputs" => {
                n.inputs = entries(v, &format!("{what} inputs"))?;
                has_inputs = true;
            }
            "control_deps" => n.control_deps = Some(u64_list(v, "control_deps")?),
            "subgraphs" => {
                let Json::Array(gs) = v else {
                    return Err(MxnetError::invalid(format!("{what}: subgraphs must be an array")));
                };
                n.subgraphs = Some(gs.iter().map(symbol_from_json).collect::<Result<_>>()?);
            }
            "backward_source_id" => {
                n.backward_source_id = Some(match v {
                    Json::Number(s) => s.clone(),
                    _ => return Err(MxnetError::invalid(format!("{what}: backward_source_id must be a number"))),
                })
            }
            other => {
                return Err(MxnetError::invalid(format!("symbol JSON: node {idx} has unknown field '{other}'")));
            }
        }
        n.key_order.push(k.clone());
    }
    if !(has_op && has_name && has_inputs) {
        return Err(MxnetError::invalid(format!("symbol JSON: node {idx} lacks op, name or inputs")));
    }
    Ok(n)
}

pub fn symbol_from_json(v: &Json) -> Result<Symbol> {
    let Json::Object(items) = v else {
        return Err(MxnetError::invalid("symbol JSON: the top level is not an object"));
    };
    let mut s = Symbol::default();
    let mut seen = [false; 3];
    for (k, v) in items {
        match k.as_str() {
            "nodes" => {
                let Json::Array(ns) = v else {
                    return Err(MxnetError::invalid("symbol JSON: nodes must be an array"));
                };
                s.nodes = ns.iter().enumerate().map(|(i, n)| node_from_json(n, i)).collect::<Result<_>>()?;
                seen[0] = true;
            }
            "arg_nodes" => {
                s.arg_nodes = u64_list(v, "arg_nodes")?;
                seen[1] = true;
            }
            "heads" => {
                s.heads = entries(v, "heads")?;
                seen[2] = true;
            }
            "node_row_ptr" => s.node_row_ptr = Some(u64_list(v, "node_row_ptr")?),
            "attrs" => match v {
                Json::Object(a) => s.attrs = Some(a.clone()),
                _ => return Err(MxnetError::invalid("symbol JSON: attrs must be an object")),
            },
            other => return Err(MxnetError::invalid(format!("symbol JSON: unknown top-level field '{other}'"))),
        }
        s.key_order.push(k.clone());
    }
    if seen.contains(&false) {
        return Err(MxnetError::invalid("symbol JSON: nodes, arg_nodes and heads are required"));
    }
    // Every input must refer to an earlier node (the file is in topological order).
    for (i, n) in s.nodes.iter().enumerate() {
        if let Some(e) = n.inputs.iter().find(|e| e.node >= i) {
            return Err(MxnetError::invalid(format!(
                "symbol JSON: node {i} ('{}') reads node {}, which does not precede it",
                n.name, e.node
            )));
        }
    }
    if let Some(e) = s.heads.iter().find(|e| e.node >= s.nodes.len()) {
        return Err(MxnetError::invalid(format!("symbol JSON: a head refers to missing node {}", e.node)));
    }
    Ok(s)
}

pub fn read_symbol(text: &[u8]) -> Result<Symbol> {
    symbol_from_json(&parse_json(text)?)
}

fn num(n: impl ToString) -> Json {
    Json::Number(n.to_string())
}

fn entry_json(e: &Entry) -> Json {
    let mut v = vec![num(e.node), num(e.index)];
    if let Some(ver) = e.version {
        v.push(num(ver));
    }
    Json::Array(v)
}

fn map_json(m: &[(String, String)]) -> Json {
    Json::Object(m.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect())
}

fn node_json(n: &SymNode) -> Json {
    let mut order = n.key_order.clone();
    if order.is_empty() {
        order = vec!["op".into(), "name".into()];
        if !n.attrs.is_empty() {
            order.push(n.attr_key.clone());
        }
        order.push("inputs".into());
        if n.control_deps.as_ref().is_some_and(|c| !c.is_empty()) {
            order.push("control_deps".into());
        }
        if n.subgraphs.is_some() {
            order.push("subgraphs".into());
        }
    }
    let items = order
        .iter()
        .map(|k| {
            let v = match k.as_str() {
                "op" => Json::String(n.op.clone()),
                "name" => Json::String(n.name.clone()),
                "attrs" | "attr" => map_json(&n.attrs),
                "param" => map_json(n.param.as_deref().unwrap_or(&[])),
                "inputs" => Json::Array(n.inputs.iter().map(entry_json).collect()),
                "control_deps" => Json::Array(n.control_deps.iter().flatten().map(num).collect()),
                "subgraphs" => Json::Array(n.subgraphs.iter().flatten().map(symbol_json).collect()),
                "backward_source_id" => Json::Number(n.backward_source_id.clone().unwrap_or_else(|| "-1".into())),
                _ => Json::Null,
            };
            (k.clone(), v)
        })
        .collect();
    Json::Object(items)
}

pub fn symbol_json(s: &Symbol) -> Json {
    let mut order = s.key_order.clone();
    if order.is_empty() {
        order = vec!["nodes".into(), "arg_nodes".into()];
        if s.node_row_ptr.is_some() {
            order.push("node_row_ptr".into());
        }
        order.push("heads".into());
        if s.attrs.is_some() {
            order.push("attrs".into());
        }
    }
    let items = order
        .iter()
        .map(|k| {
            let v = match k.as_str() {
                "nodes" => Json::Array(s.nodes.iter().map(node_json).collect()),
                "arg_nodes" => Json::Array(s.arg_nodes.iter().map(num).collect()),
                "node_row_ptr" => Json::Array(s.node_row_ptr.iter().flatten().map(num).collect()),
                "heads" => Json::Array(s.heads.iter().map(entry_json).collect()),
                "attrs" => Json::Object(s.attrs.clone().unwrap_or_default()),
                _ => Json::Null,
            };
            (k.clone(), v)
        })
        .collect();
    Json::Object(items)
}

/// The symbol as MXNet writes it.
pub fn write_symbol(s: &Symbol) -> String {
    write_json(&symbol_json(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let text = "{\n  \"a\": [1, 2], \n  \"b\": {\"k\": \"v\"}, \n  \"c\": {}\n}";
        assert_eq!(write_json(&parse_json(text.as_bytes()).unwrap()), text);
        let long = parse_json(b"[0,1,2,3,4,5,6,7,8,9,10]").unwrap();
        assert!(write_json(&long).starts_with("[\n  0, \n  1, "));
    }

    #[test]
    fn unknown_node_field_is_an_error() {
        let e = read_symbol(
            br#"{"nodes":[{"op":"null","name":"x","inputs":[],"bogus":1}],"arg_nodes":[0],"heads":[[0,0,0]]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
