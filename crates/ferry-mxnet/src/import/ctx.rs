//! What a canonicalizer sees of one MXNet op node: its inputs, the outputs other nodes read, its
//! string attributes (parsed here, as dmlc::Parameter would), and a way to emit core nodes.

use crate::error::{MxnetError, Result};
use ferry_ir::{DType, Graph, Node, Op, Tensor, ValueId, ValueType};
use std::collections::{HashMap, HashSet};

pub struct NodeCtx<'a> {
    pub op_type: &'a str,
    pub node_name: String,
    pub inputs: Vec<ValueId>,
    /// One slot per output the op has; `None` where nobody reads it.
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: &'a [(String, String)],
    pub(crate) graph: &'a mut Graph,
    pub(crate) used_names: &'a mut HashSet<String>,
    pub(crate) consts: &'a mut HashMap<ValueId, Tensor>,
    pub(crate) emitted: usize,
}

impl NodeCtx<'_> {
    pub fn input(&self, i: usize) -> Result<ValueId> {
        self.inputs.get(i).copied().ok_or_else(|| self.error(format!("input {i} is missing")))
    }

    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    pub fn error(&self, msg: impl std::fmt::Display) -> MxnetError {
        MxnetError::invalid(format!("node '{}' ({}): {msg}", self.node_name, self.op_type))
    }

    /// The raw attribute text; "None" counts as absent.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| *v != "None")
    }

    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        self.attr(name)
            .map(|v| parse_int(v).ok_or_else(|| self.error(format!("attribute '{name}' = '{v}' is not an integer"))))
            .transpose()
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    pub fn float_opt(&self, name: &str) -> Result<Option<f64>> {
        self.attr(name)
            .map(|v| v.parse::<f64>().map_err(|_| self.error(format!("attribute '{name}' = '{v}' is not a number"))))
            .transpose()
    }

    pub fn float(&self, name: &str, default: f64) -> Result<f64> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.attr(name) {
            None => Ok(default),
            Some("True" | "true" | "1") => Ok(true),
            Some("False" | "false" | "0") => Ok(false),
            Some(v) => Err(self.error(format!("attribute '{name}' = '{v}' is not a boolean"))),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.attr(name).unwrap_or(default).to_string()
    }

    /// A tuple like "(3, 3)", "[1,2]", "(1,)" or "()"; entries may be "None".
    pub fn tuple_opt(&self, name: &str) -> Result<Option<Vec<Option<i64>>>> {
        let Some(v) = self.attr(name) else { return Ok(None) };
        parse_tuple(v).map(Some).ok_or_else(|| self.error(format!("attribute '{name}' = '{v}' is not a tuple")))
    }

    /// A tuple of integers (no "None" entries); a bare integer is a 1-tuple.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.tuple_opt(name)? {
            None => Ok(None),
            Some(t) => t
                .into_iter()
                .map(|x| x.ok_or_else(|| self.error(format!("attribute '{name}' has a None entry"))))
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    /// Non-negative integers (kernel, stride, pad).
    pub fn sizes(&self, name: &str) -> Result<Option<Vec<u64>>> {
        self.ints(name)?
            .map(|v| {
                v.into_iter()
                    .map(|x| u64::try_from(x).map_err(|_| self.error(format!("attribute '{name}' is negative"))))
                    .collect()
            })
            .transpose()
    }

    /// A fresh intermediate value.
    pub fn temp(&mut self, hint: &str) -> ValueId {
        let base = format!("{}/{hint}", self.node_name);
        let mut name = base.clone();
        let mut k = 1;
        while self.used_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used_names.insert(name.clone());
        self.graph.add_value(name, ValueType::Unknown)
    }

    pub fn emit(&mut self, op: Op, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) {
        let name =
            if self.emitted == 0 { self.node_name.clone() } else { format!("{}/{}", self.node_name, self.emitted) };
        self.emitted += 1;
        let node = Node { name, op, inputs, outputs, doc_string: String::new() };
        let in_types: Vec<ValueType> =
            node.inputs.iter().map(|i| i.map_or(ValueType::Unknown, |i| self.graph.values[i].ty.clone())).collect();
        let in_consts: Vec<Option<&Tensor>> = node.inputs.iter().map(|i| i.and_then(|i| self.consts.get(&i))).collect();
        if let Ok(types) = ferry_ir::infer::infer_node(&node, &in_types, &in_consts) {
            for (o, ty) in node.outputs.iter().zip(types) {
                if let Some(o) = o {
                    if !ty.is_unknown() {
                        self.graph.values[*o].ty = ferry_ir::infer::merge(&self.graph.values[*o].ty, ty);
                    }
                }
            }
        }
        if let (Op::Constant(t), Some(Some(o))) = (&node.op, node.outputs.first()) {
            self.consts.insert(*o, t.clone());
        }
        self.graph.nodes.push(node);
    }

    pub fn emit_temp(&mut self, op: Op, inputs: Vec<ValueId>, hint: &str) -> ValueId {
        let out = self.temp(hint);
        self.emit(op, inputs.into_iter().map(Some).collect(), vec![Some(out)]);
        out
    }

    /// Emits `op` writing output `i` (or a temp nobody reads).
    pub fn emit_out(&mut self, op: Op, inputs: Vec<ValueId>, i: usize) {
        let out = self.output(i).unwrap_or_else(|| self.temp("unused"));
        self.emit(op, inputs.into_iter().map(Some).collect(), vec![Some(out)]);
    }

    pub fn constant(&mut self, t: Tensor, hint: &str) -> ValueId {
        let out = self.temp(hint);
        self.emit(Op::Constant(t), vec![], vec![Some(out)]);
        out
    }

    pub fn const_i64s(&mut self, values: &[i64], hint: &str) -> ValueId {
        let t = Tensor::from_i64(vec![values.len() as u64], values).expect("length matches");
        self.constant(t, hint)
    }

    /// A scalar of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64, hint: &str) -> Result<ValueId> {
        let t = scalar_tensor(dtype, v).ok_or_else(|| self.error(format!("no {dtype} scalars")))?;
        Ok(self.constant(t, hint))
    }

    pub fn const_value(&self, v: ValueId) -> Option<&Tensor> {
        self.consts.get(&v)
    }

    pub fn value_type(&self, v: ValueId) -> &ValueType {
        &self.graph.values[v].ty
    }

    pub fn dtype_of(&self, v: ValueId) -> Option<DType> {
        self.graph.values[v].ty.dtype()
    }

    /// The dtype of input `i`, or an error naming what is missing.
    pub fn input_dtype(&self, i: usize) -> Result<DType> {
        let v = self.input(i)?;
        self.dtype_of(v).ok_or_else(|| self.error(format!("the element type of input {i} is unknown")))
    }

    pub fn rank_of(&self, v: ValueId) -> Option<usize> {
        self.graph.values[v].ty.shape().map(|s| s.rank())
    }

    pub fn input_rank(&self, i: usize) -> Result<usize> {
        let v = self.input(i)?;
        self.rank_of(v).ok_or_else(|| {
            self.error(format!("the rank of input {i} is unknown (give input shapes with --input-shape)"))
        })
    }

    /// Known dims of a value (`None` entries for unknown dims).
    pub fn dims_of(&self, v: ValueId) -> Option<Vec<Option<u64>>> {
        self.graph.values[v].ty.shape().map(|s| s.dims().iter().map(|d| d.known()).collect())
    }
}

pub fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    v.parse::<i64>().ok().or_else(|| {
        // "1L" (Python 2 longs) and "3.0" style integers.
        let t = v.trim_end_matches(['L', 'l']);
        t.parse::<i64>().ok().or_else(|| t.parse::<f64>().ok().filter(|f| f.fract() == 0.0).map(|f| f as i64))
    })
}

pub fn parse_tuple(v: &str) -> Option<Vec<Option<i64>>> {
    let v = v.trim();
    let inner = if (v.starts_with('(') && v.ends_with(')')) || (v.starts_with('[') && v.ends_with(']')) {
        &v[1..v.len() - 1]
    } else {
        v
    };
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| if s == "None" { Some(None) } else { parse_int(s).map(Some) })
        .collect()
}

pub fn scalar_tensor(dtype: DType, v: f64) -> Option<Tensor> {
    Tensor::scalar_from_f64(dtype, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples() {
        assert_eq!(parse_tuple("(3, 3)"), Some(vec![Some(3), Some(3)]));
        assert_eq!(parse_tuple("(1,)"), Some(vec![Some(1)]));
        assert_eq!(parse_tuple("()"), Some(vec![]));
        assert_eq!(parse_tuple("[2,-1]"), Some(vec![Some(2), Some(-1)]));
        assert_eq!(parse_tuple("(None, 2)"), Some(vec![None, Some(2)]));
        assert_eq!(parse_tuple("4"), Some(vec![Some(4)]));
        assert_eq!(parse_tuple("(a,)"), None);
    }
}
