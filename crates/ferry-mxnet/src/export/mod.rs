//! Core IR -> MXNet 1.9 symbol JSON + `.params`. Graph inputs without initializers become `null`
//! data variables; initializers and constants that ops read as data become `arg:` parameters.
//! Each core op is lowered by one exhaustive match (`lower.rs`) into MXNet ops; every node MXNet
//! cannot express is reported, all of them, in one error.

mod lower;
mod written;

pub use written::WRITTEN_OPS;

use crate::error::{MxnetError, Result};
use crate::params::{NdArray, ParamsFile, dtype_flag};
use crate::symbol::{Entry, Json, SymNode, Symbol};
use ferry_ir::{DType, Graph, Model, Node, Tensor, ValueId};
use std::collections::{HashMap, HashSet};

/// An output of an MXNet node: (node index, output index).
pub(crate) type Ent = (usize, usize);

pub(crate) struct Cx<'a> {
    pub g: &'a Graph,
    pub consts: HashMap<ValueId, &'a Tensor>,
    pub nodes: Vec<SymNode>,
    /// Total outputs of each MXNet node (for `node_row_ptr`).
    pub n_out: Vec<usize>,
    pub entries: HashMap<ValueId, Ent>,
    pub params: Vec<(String, Tensor)>,
    pub used: HashSet<String>,
    /// How many node inputs and graph outputs read each value.
    pub uses: HashMap<ValueId, usize>,
    /// The core node producing each value.
    pub producer: HashMap<ValueId, &'a Node>,
}

/// Formats a tuple attribute as MXNet writes it: "(3, 3)", "(1,)", "()".
pub(crate) fn tuple<T: std::fmt::Display>(v: &[T]) -> String {
    match v.len() {
        0 => "()".into(),
        1 => format!("({},)", v[0]),
        _ => format!("({})", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

pub(crate) fn bool_attr(b: bool) -> String {
    if b { "True".into() } else { "False".into() }
}

/// A float attribute: the shortest text that reads back as the same f32.
pub(crate) fn float_attr(v: f64) -> String {
    format!("{:?}", v as f32)
}

/// MXNet's name for an element type (Cast's `dtype`, one_hot's `dtype`).
pub(crate) fn dtype_name(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::U8 => "uint8",
        DType::I8 => "int8",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::Bool => "bool",
        _ => return None,
    })
}

impl<'a> Cx<'a> {
    fn unique(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        let mut name = base.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// Adds an MXNet node; attributes are sorted as MXNet stores them.
    pub fn push(&mut self, op: &str, name: &str, attrs: Vec<(&str, String)>, inputs: &[Ent], n_out: usize) -> usize {
        let name = self.unique(name);
        let mut attrs: Vec<(String, String)> = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        attrs.sort();
        self.nodes.push(SymNode {
            op: op.into(),
            name,
            attrs,
            attr_key: "attrs".into(),
            inputs: inputs.iter().map(|&(node, index)| Entry { node, index, version: Some(0) }).collect(),
            ..Default::default()
        });
        self.n_out.push(n_out);
        self.nodes.len() - 1
    }

    /// A variable holding `t` as an `arg:` parameter.
    pub fn param(&mut self, name: &str, t: &Tensor) -> Ent {
        let name = self.unique(name);
        // MXNet 1.x has no 0-d arrays: scalars are stored as shape (1,).
        let mut t = t.clone();
        if t.shape.is_empty() {
            t.shape = vec![1];
        }
        // The declared shape lets MXNet bind parameters whose op cannot infer them (e.g. `dot`'s
        // right-hand side, as constant folding leaves it).
        let attrs = vec![("__shape__".to_string(), tuple(&t.shape))];
        self.params.push((name.clone(), t));
        self.nodes.push(SymNode { op: "null".into(), name, attrs, attr_key: "attrs".into(), ..Default::default() });
        self.n_out.push(1);
        (self.nodes.len() - 1, 0)
    }

    /// The MXNet entry holding value `v` (a constant becomes a parameter on first use).
    pub fn ent(&mut self, v: ValueId) -> std::result::Result<Ent, String> {
        if let Some(e) = self.entries.get(&v) {
            return Ok(*e);
        }
        if let Some(t) = self.consts.get(&v).copied() {
            if dtype_flag(t.dtype).is_none() {
                return Err(format!("MXNet has no {} arrays (constant '{}')", t.dtype, self.g.values[v].name));
            }
            let e = self.param(&self.g.values[v].name.clone(), t);
            self.entries.insert(v, e);
            return Ok(e);
        }
        // Its producer was refused (and reported) already.
        Err(DEPENDENT.into())
    }

    pub fn input(&mut self, n: &Node, i: usize) -> std::result::Result<Ent, String> {
        let v = n.inputs.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing"))?;
        self.ent(v)
    }

    pub fn const_of(&self, n: &Node, i: usize) -> Option<&'a Tensor> {
        n.inputs.get(i).copied().flatten().and_then(|v| self.consts.get(&v).copied())
    }

    pub fn const_ints(&self, n: &Node, i: usize) -> Option<Vec<i64>> {
        self.const_of(n, i).and_then(|t| t.to_i64_vec().ok())
    }

    pub fn shape_of(&self, v: ValueId) -> Option<Vec<u64>> {
        self.g.values[v].ty.shape().and_then(|s| s.dims().iter().map(|d| d.known()).collect())
    }

    pub fn rank_of(&self, v: ValueId) -> Option<usize> {
        self.g.values[v].ty.shape().map(|s| s.rank())
    }

    pub fn dtype_of(&self, v: ValueId) -> Option<DType> {
        self.g.values[v].ty.dtype()
    }

    pub fn in_shape(&self, n: &Node, i: usize) -> Option<Vec<u64>> {
        n.inputs.get(i).copied().flatten().and_then(|v| self.shape_of(v))
    }

    pub fn in_rank(&self, n: &Node, i: usize) -> Option<usize> {
        n.inputs.get(i).copied().flatten().and_then(|v| self.rank_of(v))
    }

    pub fn in_dtype(&self, n: &Node, i: usize) -> Option<DType> {
        n.inputs.get(i).copied().flatten().and_then(|v| self.dtype_of(v))
    }

    pub fn out_shape(&self, n: &Node, i: usize) -> Option<Vec<u64>> {
        n.outputs.get(i).copied().flatten().and_then(|v| self.shape_of(v))
    }

    pub fn out_rank(&self, n: &Node, i: usize) -> Option<usize> {
        n.outputs.get(i).copied().flatten().and_then(|v| self.rank_of(v))
    }

    pub fn out_dtype(&self, n: &Node, i: usize) -> Option<DType> {
        n.outputs.get(i).copied().flatten().and_then(|v| self.dtype_of(v))
    }

    /// The MXNet node name for output `i` of `n`: the value's name without a trailing `_output`
    /// (MXNet appends it again when listing outputs).
    pub fn out_name(&self, n: &Node, i: usize) -> String {
        match n.outputs.get(i).copied().flatten() {
            Some(v) => strip_output(&self.g.values[v].name).to_string(),
            None => format!("{}_unused{i}", n.name),
        }
    }

    pub fn bind(&mut self, n: &Node, i: usize, e: Ent) {
        if let Some(Some(v)) = n.outputs.get(i) {
            self.entries.insert(*v, e);
        }
    }

    /// An intermediate op of node `n`.
    pub fn tmp(&mut self, n: &Node, op: &str, hint: &str, attrs: Vec<(&str, String)>, inputs: &[Ent]) -> Ent {
        let name = format!("{}_{hint}", self.out_name(n, 0));
        (self.push(op, &name, attrs, inputs, 1), 0)
    }

    /// The op writing output 0 of node `n`.
    pub fn out(&mut self, n: &Node, op: &str, attrs: Vec<(&str, String)>, inputs: &[Ent]) {
        let name = self.out_name(n, 0);
        let id = self.push(op, &name, attrs, inputs, 1);
        self.bind(n, 0, (id, 0));
    }
}

/// The error of a value whose producer could not be lowered: not reported again.
const DEPENDENT: &str = "\u{0}dependent";

/// `op0_output` / `op0_output1` -> `op0`: MXNet appends the output name itself.
fn strip_output(name: &str) -> &str {
    if let Some(p) = name.rfind("_output") {
        let rest = &name[p + 7..];
        if p > 0 && rest.bytes().all(|b| b.is_ascii_digit()) {
            return &name[..p];
        }
    }
    name
}

/// The problems MXNet cannot express, one line per node.
fn problems_error(problems: &[String]) -> MxnetError {
    MxnetError::invalid(format!(
        "MXNet cannot express {} node(s) of this model:\n  {}",
        problems.len(),
        problems.join("\n  ")
    ))
}

/// Lowers a model into an MXNet symbol and its parameters (`arg:` names).
pub fn export_model(model: &Model) -> Result<(Symbol, ParamsFile)> {
    let g = &model.graph;
    let mut cx = Cx {
        g,
        consts: g.constants(),
        nodes: Vec::new(),
        n_out: Vec::new(),
        entries: HashMap::new(),
        params: Vec::new(),
        used: HashSet::new(),
        uses: HashMap::new(),
        producer: HashMap::new(),
    };
    for n in &g.nodes {
        for v in n.inputs.iter().flatten() {
            *cx.uses.entry(*v).or_default() += 1;
        }
        for v in n.outputs.iter().flatten() {
            cx.producer.insert(*v, n);
        }
    }
    for v in &g.outputs {
        *cx.uses.entry(*v).or_default() += 1;
    }
    // Initializers that are also graph inputs are defaults: MXNet has no such thing, so they are
    // parameters.
    for (v, t) in &g.initializers {
        cx.consts.insert(*v, t);
    }
    let mut problems = Vec::new();
    for &v in &g.inputs {
        if cx.consts.contains_key(&v) {
            continue;
        }
        let val = &g.values[v];
        let mut attrs = Vec::new();
        if let Some(d) = val.ty.dtype() {
            match dtype_flag(d) {
                Some(f) => attrs.push(("__dtype__", f.to_string())),
                None => problems.push(format!("input '{}': MXNet has no {d} arrays", val.name)),
            }
        }
        if let Some(s) = val.ty.shape() {
            let dims: Vec<u64> = s.dims().iter().map(|d| d.known().unwrap_or(0)).collect();
            attrs.push(("__shape__", tuple(&dims)));
        }
        let name = val.name.clone();
        if cx.used.contains(&name) {
            problems.push(format!("two graph inputs are named '{name}'"));
            continue;
        }
        let id = cx.push("null", &name, attrs, &[], 1);
        cx.entries.insert(v, (id, 0));
    }
    if !g.captures.is_empty() {
        problems.push("the graph reads values of an enclosing graph".into());
    }
    for n in &g.nodes {
        if let Err(why) = lower::lower(&mut cx, n) {
            if why != DEPENDENT {
                let name = if n.name.is_empty() { "(unnamed)" } else { n.name.as_str() };
                problems.push(format!("node '{name}' ({}): {why}", n.op.name()));
            }
        }
    }
    let mut heads = Vec::new();
    for &o in &g.outputs {
        match cx.ent(o) {
            Ok(e) => heads.push(e),
            Err(why) if why == DEPENDENT => {}
            Err(why) => problems.push(format!("graph output '{}': {why}", g.values[o].name)),
        }
    }
    if !problems.is_empty() {
        return Err(problems_error(&problems));
    }
    // A head that is a variable (a constant, or a graph input passed through) lists under the
    // variable's own name: copy it so that it lists as `<name>_output` like any op output.
    for (k, &o) in g.outputs.iter().enumerate() {
        let (node, _) = heads[k];
        if cx.nodes[node].op == "null" {
            let name = strip_output(&g.values[o].name).to_string();
            let old = cx.nodes[node].name.clone();
            if cx.params.iter().any(|(p, _)| *p == old) {
                // A parameter takes a name of its own: MXNet would list it under the copy's
                // output name otherwise, and names read back from it would clash.
                let renamed = cx.unique(&format!("{name}_value"));
                for p in cx.params.iter_mut().filter(|(p, _)| *p == old) {
                    p.0 = renamed.clone();
                }
                cx.nodes[node].name = renamed;
                cx.used.remove(&old);
            }
            let id = cx.push("_copy", &name, vec![], &[heads[k]], 1);
            heads[k] = (id, 0);
        }
    }
    // Name each head's node so that MXNet lists the output under the graph output's name.
    for (k, &o) in g.outputs.iter().enumerate() {
        let (node, idx) = heads[k];
        let name = &g.values[o].name;
        let want = if cx.n_out[node] > 1 { format!("_output{idx}") } else { "_output".to_string() };
        if let Some(base) = name.strip_suffix(want.as_str()) {
            if cx.nodes[node].op != "null" && cx.nodes[node].name != base && !base.is_empty() && !cx.used.contains(base)
            {
                let old = std::mem::replace(&mut cx.nodes[node].name, base.to_string());
                cx.used.remove(&old);
                cx.used.insert(base.to_string());
            }
        }
    }
    Ok(finish(cx, heads))
}

/// Keeps the nodes the heads depend on (in order), numbers them, and builds the files.
fn finish(cx: Cx, heads: Vec<Ent>) -> (Symbol, ParamsFile) {
    let n = cx.nodes.len();
    let mut live = vec![false; n];
    let mut stack: Vec<usize> = heads.iter().map(|e| e.0).collect();
    while let Some(i) = stack.pop() {
        if !live[i] {
            live[i] = true;
            stack.extend(cx.nodes[i].inputs.iter().map(|e| e.node));
        }
    }
    let mut remap = vec![usize::MAX; n];
    let mut nodes = Vec::new();
    let mut row_ptr = vec![0u64];
    for (i, mut node) in cx.nodes.into_iter().enumerate() {
        if !live[i] {
            continue;
        }
        remap[i] = nodes.len();
        for e in &mut node.inputs {
            e.node = remap[e.node];
        }
        row_ptr.push(row_ptr.last().unwrap() + cx.n_out[i] as u64);
        nodes.push(node);
    }
    let arg_nodes = nodes.iter().enumerate().filter(|(_, n)| n.op == "null").map(|(i, _)| i as u64).collect();
    let live_names: HashSet<&str> = nodes.iter().filter(|n| n.op == "null").map(|n| n.name.as_str()).collect();
    let mut params = ParamsFile { arrays: Vec::new(), names: Some(Vec::new()) };
    for (name, t) in cx.params {
        if live_names.contains(name.as_str()) {
            // dtype flags were checked when the parameter was made.
            params.arrays.push(NdArray::dense(t).expect("MXNet dtype"));
            params.names.as_mut().unwrap().push(format!("arg:{name}"));
        }
    }
    let sym = Symbol {
        nodes,
        arg_nodes,
        node_row_ptr: Some(row_ptr),
        heads: heads.iter().map(|&(node, index)| Entry { node: remap[node], index, version: Some(0) }).collect(),
        attrs: Some(vec![(
            "mxnet_version".into(),
            Json::Array(vec![Json::String("int".into()), Json::Number("10901".into())]),
        )]),
        key_order: Vec::new(),
    };
    (sym, params)
}

/// Writes `prefix-symbol.json` and `prefix-0000.params`, each through a temporary file renamed
/// into place, so that nothing is left unless both writes succeed.
pub fn save(model: &Model, symbol_path: &std::path::Path) -> Result<()> {
    let (sym, params) = export_model(model)?;
    let params_path = params_path_for(symbol_path)?;
    let json = crate::symbol::write_symbol(&sym);
    let bytes = crate::params::write_params(&params)?;
    let io = |p: &std::path::Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| MxnetError::Io { path: p.clone(), source: e }
    };
    let dir = symbol_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    use std::io::Write;
    let mut ptmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    ptmp.write_all(&bytes).map_err(io(&params_path))?;
    let mut stmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    stmp.write_all(json.as_bytes()).map_err(io(symbol_path))?;
    // Temporary files are created private; the outputs get the usual permissions.
    #[cfg(unix)]
    for t in [&ptmp, &stmp] {
        let _ = t.as_file().set_permissions(default_permissions());
    }
    ptmp.persist(&params_path).map_err(|e| io(&params_path)(e.error))?;
    stmp.persist(symbol_path).map_err(|e| io(symbol_path)(e.error))?;
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o644)
}

/// `out-symbol.json` -> `out-0000.params` (also `out.json` -> `out-0000.params`).
pub fn params_path_for(symbol_path: &std::path::Path) -> Result<std::path::PathBuf> {
    let name = symbol_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let prefix = name.strip_suffix("-symbol.json").or_else(|| name.strip_suffix(".json")).ok_or_else(|| {
        MxnetError::invalid(format!("{}: an MXNet symbol file name ends in -symbol.json", symbol_path.display()))
    })?;
    Ok(symbol_path.with_file_name(format!("{prefix}-0000.params")))
}
