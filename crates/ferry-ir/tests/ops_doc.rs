//! Keeps `docs/ops.md` in step with the core operator set in `src/ops.rs`: every `Op` variant has
//! exactly one `### Name` section, every `###` heading among the operator sections names a
//! variant, each section states the class `Op::class()` gives it, and every `UnaryOp`, `BinaryOp`
//! and `ReduceKind` variant is listed in its op's section (and nothing else is).

use std::collections::{BTreeMap, BTreeSet};

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Drops `//` comments (line and doc comments) and `/* */` blocks; string literals do not occur in
/// the enums this reads.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The body (between the braces) of `pub enum <name> { ... }`.
fn enum_body<'a>(src: &'a str, name: &str) -> &'a str {
    let header = format!("pub enum {name} {{");
    let start = src.find(&header).unwrap_or_else(|| panic!("`{header}` not found in src/ops.rs")) + header.len();
    let mut depth = 1usize;
    for (i, c) in src[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &src[start..start + i];
                }
            }
            _ => {}
        }
    }
    panic!("`pub enum {name}` is not closed");
}

/// Top-level variant names of an enum, in order: the identifier that starts each
/// comma-separated entry, skipping attributes (`#[...]`) and anything nested in a variant's
/// fields (`{ ... }`, `( ... )`, generics).
fn variants(ops_rs: &str, name: &str) -> Vec<String> {
    let body = strip_comments(enum_body(ops_rs, name));
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut expect_name = true;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '(' | '[' | '<' => depth += 1,
            '}' | ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => expect_name = true,
            c if depth == 0 && expect_name && (c.is_alphabetic() || c == '_') => {
                let mut ident = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' {
                        ident.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(ident);
                expect_name = false;
            }
            _ => {}
        }
        assert!(depth >= 0, "unbalanced brackets in `pub enum {name}`");
    }
    assert!(!out.is_empty(), "no variants found in `pub enum {name}`");
    out
}

/// `Op` variant -> `OpClass` variant, from the match arms of `Op::class()`: each `Op::X` belongs
/// to the next `OpClass::Y` that follows it.
fn classes(ops_rs: &str) -> BTreeMap<String, String> {
    let start = ops_rs.find("pub fn class(&self)").expect("`pub fn class(&self)` not found in src/ops.rs");
    let body = strip_comments(&ops_rs[start..]);
    let end = body.find("\n    }\n").expect("end of `Op::class()` not found");
    let body = &body[..end];
    let ident_after = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut out = BTreeMap::new();
    let mut pending = Vec::new();
    let mut rest = body;
    loop {
        let op = rest.find("Op::");
        let class = rest.find("OpClass::");
        match (op, class) {
            (Some(o), c) if c.is_none_or(|c| o < c) => {
                pending.push(ident_after(&rest[o + 4..]));
                rest = &rest[o + 4..];
            }
            (_, Some(c)) => {
                let class = ident_after(&rest[c + 9..]);
                for op in pending.drain(..) {
                    out.insert(op, class.clone());
                }
                rest = &rest[c + 9..];
            }
            (None, None) => break,
            (Some(_), None) => unreachable!(),
        }
    }
    assert!(pending.is_empty(), "`Op::class()` arms without a class: {pending:?}");
    out
}

struct Section<'a> {
    name: &'a str,
    line: usize,
    text: Vec<&'a str>,
}

/// The `### ` sections of the operator reference: everything before `## Compositions`. Each runs
/// to the next heading of level 2 or 3.
fn op_sections(doc: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_section = false;
    let mut in_code = false;
    for (i, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            if in_section {
                sections.last_mut().expect("open section").text.push(line);
            }
            continue;
        }
        if line.trim_end() == "## Compositions" {
            break;
        }
        if let Some(name) = line.strip_prefix("### ") {
            sections.push(Section { name: name.trim(), line: i + 1, text: Vec::new() });
            in_section = true;
        } else if line.starts_with("## ") || line.starts_with("# ") {
            in_section = false;
        } else if in_section {
            sections.last_mut().expect("open section").text.push(line);
        }
    }
    sections
}

/// The first cell of each body row of the markdown tables in `text` (header and separator rows
/// skipped), with backticks removed.
fn table_first_cells(text: &[&str]) -> Vec<String> {
    let mut cells = Vec::new();
    let mut in_table = false;
    for (i, line) in text.iter().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let is_separator = |l: &str| l.trim().starts_with('|') && l.chars().all(|c| "|-: ".contains(c));
        if is_separator(line) {
            continue;
        }
        if !in_table {
            // A table's first row is its header when a separator row follows.
            in_table = true;
            if text.get(i + 1).is_some_and(|n| is_separator(n)) {
                continue;
            }
        }
        let first = line[1..].split('|').next().unwrap_or("").trim().trim_matches('`').trim();
        cells.push(first.to_string());
    }
    cells
}

#[test]
fn every_op_variant_has_exactly_one_section_and_every_section_is_a_variant() {
    let ops_rs = read("src/ops.rs");
    let doc = read("../../docs/ops.md");
    let ops = variants(&ops_rs, "Op");
    let sections = op_sections(&doc);
    assert!(doc.lines().any(|l| l.trim_end() == "## Compositions"), "docs/ops.md has no `## Compositions` section");

    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sections {
        if !ops.iter().any(|v| v == s.name) {
            problems.push(format!("line {}: `### {}` names no variant of `Op`", s.line, s.name));
        }
        if let Some(first) = seen.insert(s.name, s.line) {
            problems.push(format!("line {}: `### {}` repeats the section at line {first}", s.line, s.name));
        }
    }
    for v in &ops {
        if !seen.contains_key(v.as_str()) {
            problems.push(format!("`Op::{v}` has no `### {v}` section before `## Compositions`"));
        }
    }
    assert!(problems.is_empty(), "docs/ops.md is out of step with `pub enum Op`:\n  {}", problems.join("\n  "));
}

#[test]
fn every_op_section_states_the_class_op_class_returns() {
    let ops_rs = read("src/ops.rs");
    let doc = read("../../docs/ops.md");
    let classes = classes(&ops_rs);
    let class_names: BTreeSet<String> = variants(&ops_rs, "OpClass").into_iter().collect();
    let mut problems = Vec::new();
    for v in variants(&ops_rs, "Op") {
        if !classes.contains_key(&v) {
            problems.push(format!("`Op::{v}` has no arm in `Op::class()` (as this test reads it)"));
        }
    }
    for s in op_sections(&doc) {
        let Some(expected) = classes.get(s.name) else { continue };
        assert!(class_names.contains(expected), "`Op::class()` names unknown class `{expected}`");
        let stated: Vec<String> = s
            .text
            .iter()
            .filter_map(|l| l.split_once("**Class:**"))
            .map(|(_, rest)| {
                rest.trim().trim_matches('`').chars().take_while(|c| c.is_alphanumeric()).collect::<String>()
            })
            .collect();
        match stated.as_slice() {
            [one] if one == expected => {}
            [] => problems.push(format!("`### {}` (line {}) has no `**Class:**` line", s.name, s.line)),
            other => problems.push(format!(
                "`### {}` (line {}) states class {other:?}; `Op::class()` returns {expected}",
                s.name, s.line
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "docs/ops.md classes are out of step with `Op::class()`:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn sub_op_tables_list_every_variant() {
    let ops_rs = read("src/ops.rs");
    let doc = read("../../docs/ops.md");
    let sections = op_sections(&doc);
    let mut problems = Vec::new();
    for (enum_name, section) in [("UnaryOp", "Unary"), ("BinaryOp", "Binary"), ("ReduceKind", "Reduce")] {
        let names = variants(&ops_rs, enum_name);
        let Some(s) = sections.iter().find(|s| s.name == section) else {
            problems.push(format!("no `### {section}` section to list the `{enum_name}` variants in"));
            continue;
        };
        let rows = table_first_cells(&s.text);
        let text = s.text.join("\n");
        for v in &names {
            let as_row = rows.iter().any(|r| r == v);
            let backticked = text.contains(&format!("`{v}`"));
            if !as_row && !backticked {
                problems.push(format!("`{enum_name}::{v}` is not listed in `### {section}`"));
            }
        }
        for r in &rows {
            if !names.contains(r) {
                problems
                    .push(format!("`### {section}` has a table row for `{r}`, which is not a `{enum_name}` variant"));
            }
        }
        let distinct: BTreeSet<&String> = rows.iter().collect();
        if distinct.len() != rows.len() {
            problems.push(format!("`### {section}` lists some `{enum_name}` variant in more than one row"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/ops.md sub-op tables are out of step with src/ops.rs:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn variant_parser_reads_nested_fields_attributes_and_comments() {
    let src = "pub enum Op {\n    // Sources.\n    /// Doc, with a comma.\n    #[allow(dead_code)]\n    A(Vec<(u8, u8)>),\n    B { x: Option<Vec<u64>>, y: i64 },\n    C,\n    /* block, comment */ D = 4,\n}\n";
    assert_eq!(variants(src, "Op"), ["A", "B", "C", "D"]);
}
