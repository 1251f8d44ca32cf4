//! Reference kernels, one per core op. The match in `run` is exhaustive: a core op without a
//! kernel is an explicit "not supported yet" error, never a silent fallback.

mod conv;
mod elementwise;
mod layout;
mod linalg;
mod lowbit;
mod nn;
mod reduce;
mod rnn;
mod signal;

use crate::array::Array;
use crate::{KernelResult, Value};
use ferry_ir::{Op, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Runs one node's kernel. `args` are the node's inputs (None: absent optional input); returns
/// one value per output slot.
pub fn run(op: &Op, args: &[Option<Value>], n_out: usize) -> KernelResult<Vec<Option<Value>>> {
    let one = |v: Value| Ok(vec![Some(v)]);
    match op {
        Op::Constant(t) => one(Value::Tensor(t.clone())),
        Op::Identity => one(arg_value(args, 0)?.clone()),
        Op::Unary(u) => one(tensor_value(elementwise::unary(*u, &array(args, 0)?)?)),
        Op::Binary(b) => one(tensor_value(elementwise::binary(*b, &array(args, 0)?, &array(args, 1)?)?)),
        Op::Cast(c) => one(tensor_value(elementwise::cast(&array(args, 0)?, c.to)?)),
        Op::Where => one(tensor_value(elementwise::where_(&array(args, 0)?, &array(args, 1)?, &array(args, 2)?)?)),
        Op::Shape { start, end } => one(tensor_value(layout::shape(&array(args, 0)?, *start, *end))),
        Op::Size => one(Value::Tensor(Tensor::scalar_i64(array(args, 0)?.shape().iter().product::<usize>() as i64))),
        Op::Reshape { allowzero } => one(tensor_value(layout::reshape(array(args, 0)?, &ints(args, 1)?, *allowzero)?)),
        Op::Transpose { perm } => one(tensor_value(layout::transpose(array(args, 0)?, perm.as_deref())?)),
        Op::Expand => one(tensor_value(layout::expand(&array(args, 0)?, &ints(args, 1)?)?)),
        Op::Squeeze => one(tensor_value(layout::squeeze(array(args, 0)?, opt_ints(args, 1)?)?)),
        Op::Unsqueeze => one(tensor_value(layout::unsqueeze(array(args, 0)?, &ints(args, 1)?)?)),
        Op::Flatten { axis } => one(tensor_value(layout::flatten(array(args, 0)?, *axis)?)),
        Op::Concat { axis } => {
            let parts: Vec<Array> = (0..args.len()).map(|i| array(args, i)).collect::<KernelResult<_>>()?;
            one(tensor_value(layout::concat(&parts, *axis)?))
        }
        Op::MatMul => one(tensor_value(linalg::matmul(&array(args, 0)?, &array(args, 1)?)?)),
        Op::Reduce { kind, keepdims, noop_with_empty_axes } => one(tensor_value(reduce::reduce(
            *kind,
            &array(args, 0)?,
            opt_ints(args, 1)?.as_deref(),
            *keepdims,
            *noop_with_empty_axes,
        )?)),
        Op::Softmax { axis } => one(tensor_value(reduce::softmax(&array(args, 0)?, *axis, false)?)),
        Op::LogSoftmax { axis } => one(tensor_value(reduce::softmax(&array(args, 0)?, *axis, true)?)),
        Op::GlobalPool { kind } => one(tensor_value(reduce::global_pool(*kind, &array(args, 0)?)?)),
        Op::Conv(c) => {
            one(tensor_value(conv::conv(c, &array(args, 0)?, &array(args, 1)?, opt_array(args, 2)?.as_ref())?))
        }
        Op::ConvTranspose(c) => one(tensor_value(conv::conv_transpose(
            c,
            &array(args, 0)?,
            &array(args, 1)?,
            opt_array(args, 2)?.as_ref(),
        )?)),
        Op::Pool(p) => {
            let (y, idx) = conv::pool(p, &array(args, 0)?)?;
            Ok(vec![Some(tensor_value(y)), idx.map(tensor_value)])
        }
        Op::Lrn { alpha, beta, bias, size } => {
            one(tensor_value(conv::lrn(&array(args, 0)?, *alpha, *beta, *bias, *size)?))
        }
        Op::MatMulInteger => one(tensor_value(nn::matmul_integer(args)?)),
        Op::Einsum { equation } => {
            let parts: Vec<Array> = (0..args.len()).map(|i| array(args, i)).collect::<KernelResult<_>>()?;
            one(tensor_value(nn::einsum(equation, &parts)?))
        }
        Op::QuantizeLinear { axis, saturate, block_size, output_dtype } => {
            one(nn::quantize(args, *axis, *saturate, *block_size, *output_dtype)?)
        }
        Op::DequantizeLinear { axis, block_size } => one(tensor_value(nn::dequantize(args, *axis, *block_size)?)),
        Op::NonMaxSuppression { center_point_box } => one(tensor_value(nn::nms(args, *center_point_box)?)),
        Op::Resize(r) => one(tensor_value(nn::resize(r, args)?)),
        Op::Attention(a) => nn::attention(a, args, n_out),
        Op::Rnn(r) => rnn::rnn(r, args, n_out),
        Op::Dft { inverse, onesided } => one(tensor_value(signal::dft(args, *inverse, *onesided)?)),
        Op::Stft { onesided } => one(tensor_value(signal::stft(args, *onesided)?)),
        Op::MelWeightMatrix { dtype } => one(tensor_value(signal::mel_weight_matrix(args, *dtype)?)),
        Op::ConstantOfShape(_)
        | Op::Range
        | Op::EyeLike { .. }
        | Op::RandomNormal { .. }
        | Op::RandomUniform { .. }
        | Op::IsInf { .. }
        | Op::Split { .. }
        | Op::Slice
        | Op::Pad { .. }
        | Op::Tile
        | Op::Gather { .. }
        | Op::GatherElements { .. }
        | Op::GatherNd { .. }
        | Op::ScatterElements { .. }
        | Op::ScatterNd { .. }
        | Op::OneHot { .. }
        | Op::Trilu { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Compress { .. }
        | Op::NonZero
        | Op::ReverseSequence { .. }
        | Op::ArgReduce { .. }
        | Op::TopK { .. }
        | Op::CumSum { .. }
        | Op::Unique { .. }
        | Op::Scan(_)
        | Op::SequenceConstruct
        | Op::SequenceEmpty { .. }
        | Op::SequenceAt
        | Op::SequenceInsert
        | Op::SequenceErase
        | Op::SequenceLength
        | Op::SplitToSequence { .. }
        | Op::ConcatFromSequence { .. }
        | Op::OptionalConstruct { .. }
        | Op::OptionalHasElement
        | Op::OptionalGetElement => Err(format!("no reference kernel for {} yet", op.name())),
        // The executor runs these itself (they need the enclosing graph's values).
        Op::If { .. } | Op::Loop { .. } => Err("control flow reached the kernel table".into()),
        Op::Opaque(o) => {
            let _ = n_out;
            Err(format!("{} is carried opaquely (no core form), so ferry cannot run it", op.name()))
                .map_err(|e| if o.domain.is_empty() { e } else { format!("custom op: {e}") })
        }
    }
}

pub(crate) fn arg_value(args: &[Option<Value>], i: usize) -> KernelResult<&Value> {
    args.get(i).and_then(|a| a.as_ref()).ok_or_else(|| format!("input {i} is missing"))
}

pub(crate) fn array(args: &[Option<Value>], i: usize) -> KernelResult<Array> {
    match arg_value(args, i)? {
        Value::Tensor(t) => Array::from_tensor(t),
        other => Err(format!("input {i} must be a tensor, not a {}", other.kind())),
    }
}

pub(crate) fn opt_array(args: &[Option<Value>], i: usize) -> KernelResult<Option<Array>> {
    match args.get(i).and_then(|a| a.as_ref()) {
        Some(_) => array(args, i).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn ints(args: &[Option<Value>], i: usize) -> KernelResult<Vec<i64>> {
    Ok(array(args, i)?.to_i64()?.iter().copied().collect())
}

pub(crate) fn opt_ints(args: &[Option<Value>], i: usize) -> KernelResult<Option<Vec<i64>>> {
    match args.get(i).and_then(|a| a.as_ref()) {
        Some(_) => ints(args, i).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn tensor_value(a: Array) -> Value {
    Value::Tensor(a.into_tensor())
}

pub(crate) fn scalar_bool(v: Option<&Value>) -> KernelResult<bool> {
    let t = v.and_then(Value::tensor).ok_or("expected a bool tensor")?;
    let a = Array::from_tensor(t)?;
    let v = a.to_f64()?;
    v.iter().next().map(|x| *x != 0.0).ok_or_else(|| "expected one element, found none".into())
}

pub(crate) fn scalar_i64(v: Option<&Value>) -> KernelResult<i64> {
    let t = v.and_then(Value::tensor).ok_or("expected an integer tensor")?;
    Array::from_tensor(t)?.to_i64()?.iter().next().copied().ok_or_else(|| "expected one element, found none".into())
}

pub(crate) fn bool_value(b: bool) -> Value {
    tensor_value(Array::Bool(ArrayD::from_elem(IxDyn(&[]), b)))
}

/// Stacks same-shaped tensors along a new leading axis.
pub(crate) fn stack(parts: &[Value]) -> KernelResult<Value> {
    let arrays: Vec<Array> = parts
        .iter()
        .map(|p| p.tensor().ok_or_else(|| "can only stack tensors".to_string()).and_then(Array::from_tensor))
        .collect::<KernelResult<_>>()?;
    if arrays.is_empty() {
        return Err("cannot stack zero iterations: the element shape is unknown".into());
    }
    let expanded: Vec<Array> = arrays.into_iter().map(|a| layout::unsqueeze(a, &[0])).collect::<KernelResult<_>>()?;
    Ok(tensor_value(layout::concat(&expanded, 0)?))
}
