//! Reference kernels, one per core op. The match in `run` is exhaustive: a core op without a
//! kernel is an explicit "not supported yet" error, never a silent fallback.

mod conv;
mod elementwise;
pub(crate) mod indexing;
mod layout;
mod linalg;
mod ml;
mod nn;
pub mod random;
mod reduce;
mod rnn;
mod roi_pool;
mod sequence;
mod signal;
mod strings;
mod vision;

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
        Op::Cast(c) => match arg_value(args, 0)? {
            Value::Tensor(t) if crate::lowbits::is_lowbits(t.dtype) || crate::lowbits::is_lowbits(c.to) => {
                one(Value::Tensor(crate::lowbits::cast(t, c.to, c.saturate, &c.round_mode)?))
            }
            _ => one(tensor_value(elementwise::cast(&array(args, 0)?, c.to)?)),
        },
        Op::RandomNormal { shape, dtype, mean, scale, seed } => {
            one(tensor_value(random::normal(shape, *dtype, *mean, *scale, *seed, args)?))
        }
        Op::RandomUniform { shape, dtype, low, high, seed } => {
            one(tensor_value(random::uniform(shape, *dtype, *low, *high, *seed, args)?))
        }
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
        Op::ConstantOfShape(v) => one(tensor_value(indexing::constant_of_shape(v, &ints(args, 0)?)?)),
        Op::Range => one(tensor_value(indexing::range(&array(args, 0)?, &array(args, 1)?, &array(args, 2)?)?)),
        Op::EyeLike { dtype, k } => one(tensor_value(indexing::eye_like(&array(args, 0)?, *dtype, *k)?)),
        Op::IsInf { detect_negative, detect_positive } => {
            one(tensor_value(indexing::is_inf(&array(args, 0)?, *detect_negative, *detect_positive)?))
        }
        Op::Split { axis, num_outputs } => {
            let parts = indexing::split(&array(args, 0)?, *axis, opt_ints(args, 1)?, *num_outputs, n_out)?;
            Ok(parts.into_iter().map(|p| Some(tensor_value(p))).collect())
        }
        Op::Slice => one(tensor_value(indexing::slice(
            &array(args, 0)?,
            &ints(args, 1)?,
            &ints(args, 2)?,
            opt_ints(args, 3)?,
            opt_ints(args, 4)?,
        )?)),
        Op::Pad { mode } => {
            let value = match args.get(2).and_then(|a| a.as_ref()) {
                Some(_) => Some(array(args, 2)?),
                None => None,
            };
            one(tensor_value(indexing::pad(&array(args, 0)?, *mode, &ints(args, 1)?, value, opt_ints(args, 3)?)?))
        }
        Op::Tile => one(tensor_value(indexing::tile(&array(args, 0)?, &ints(args, 1)?)?)),
        Op::Gather { axis } => one(tensor_value(indexing::gather(&array(args, 0)?, &array(args, 1)?, *axis)?)),
        Op::GatherElements { axis } => {
            one(tensor_value(indexing::gather_elements(&array(args, 0)?, &array(args, 1)?, *axis)?))
        }
        Op::GatherNd { batch_dims } => {
            one(tensor_value(indexing::gather_nd(&array(args, 0)?, &array(args, 1)?, *batch_dims as usize)?))
        }
        Op::ScatterElements { axis, reduction } => one(tensor_value(indexing::scatter_elements(
            &array(args, 0)?,
            &array(args, 1)?,
            &array(args, 2)?,
            *axis,
            *reduction,
        )?)),
        Op::ScatterNd { reduction } => {
            one(tensor_value(indexing::scatter_nd(&array(args, 0)?, &array(args, 1)?, &array(args, 2)?, *reduction)?))
        }
        Op::OneHot { axis } => {
            one(tensor_value(indexing::one_hot(&array(args, 0)?, &array(args, 1)?, &array(args, 2)?, *axis)?))
        }
        Op::Trilu { upper } => {
            let k = match args.get(1).and_then(|a| a.as_ref()) {
                Some(v) => scalar_i64(Some(v))?,
                None => 0,
            };
            one(tensor_value(indexing::trilu(&array(args, 0)?, k, *upper)?))
        }
        Op::DepthToSpace { blocksize, column_row_depth } => {
            one(tensor_value(indexing::depth_to_space(array(args, 0)?, *blocksize, *column_row_depth)?))
        }
        Op::SpaceToDepth { blocksize, column_row_depth } => {
            one(tensor_value(indexing::space_to_depth(array(args, 0)?, *blocksize, *column_row_depth)?))
        }
        Op::Compress { axis } => one(tensor_value(indexing::compress(&array(args, 0)?, &array(args, 1)?, *axis)?)),
        Op::NonZero => one(tensor_value(indexing::non_zero(&array(args, 0)?)?)),
        Op::ReverseSequence { batch_axis, time_axis } => one(tensor_value(indexing::reverse_sequence(
            &array(args, 0)?,
            &ints(args, 1)?,
            *batch_axis as usize,
            *time_axis as usize,
        )?)),
        Op::ArgReduce { max, axis, keepdims, select_last_index } => {
            one(tensor_value(indexing::arg_reduce(&array(args, 0)?, *axis, *max, *keepdims, *select_last_index)?))
        }
        Op::TopK { axis, largest, sorted: _ } => {
            let k = *ints(args, 1)?.first().ok_or("TopK K is empty")?;
            let (v, i) = indexing::top_k(&array(args, 0)?, k, *axis, *largest)?;
            Ok(vec![Some(tensor_value(v)), Some(tensor_value(i))])
        }
        Op::CumSum { exclusive, reverse } => {
            let axis = scalar_i64(args.get(1).and_then(|a| a.as_ref()))?;
            one(tensor_value(indexing::cum_sum(&array(args, 0)?, axis, *exclusive, *reverse)?))
        }
        Op::Unique { axis, sorted } => {
            let outs = indexing::unique(&array(args, 0)?, *axis, *sorted)?;
            Ok(outs.into_iter().take(n_out.max(1)).map(|a| Some(tensor_value(a))).collect())
        }
        Op::SequenceConstruct => one(sequence::construct(args)?),
        Op::SequenceEmpty { .. } => one(Value::Sequence(Vec::new())),
        Op::SequenceAt => one(sequence::at(args)?),
        Op::SequenceInsert => one(sequence::insert(args)?),
        Op::SequenceErase => one(sequence::erase(args)?),
        Op::SequenceLength => one(sequence::length(args)?),
        Op::SplitToSequence { axis, keepdims } => one(sequence::split_to_sequence(args, *axis, *keepdims)?),
        Op::ConcatFromSequence { axis, new_axis } => one(sequence::concat_from_sequence(args, *axis, *new_axis)?),
        Op::OptionalConstruct { .. } => one(sequence::optional_construct(args)),
        Op::OptionalHasElement => one(sequence::optional_has_element(args)),
        Op::OptionalGetElement => one(sequence::optional_get_element(args)?),
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
        Op::GridSample { mode, padding, align_corners } => {
            one(tensor_value(vision::grid_sample(*mode, *padding, *align_corners, &array(args, 0)?, &array(args, 1)?)?))
        }
        Op::Col2Im { dilations, pads, strides } => one(tensor_value(vision::col2im(
            &array(args, 0)?,
            &ints(args, 1)?,
            &ints(args, 2)?,
            dilations,
            pads,
            strides,
        )?)),
        Op::RoiAlign { output_height, output_width, sampling_ratio, spatial_scale, max_mode, half_pixel } => {
            one(tensor_value(vision::roi_align(
                &array(args, 0)?,
                &array(args, 1)?,
                &ints(args, 2)?,
                (*output_height, *output_width),
                *sampling_ratio,
                *spatial_scale,
                *max_mode,
                *half_pixel,
            )?))
        }
        Op::MaxRoiPool { pooled_shape, spatial_scale } => one(tensor_value(roi_pool::max_roi_pool(
            &array(args, 0)?,
            &array(args, 1)?,
            *pooled_shape,
            *spatial_scale,
        )?)),
        Op::MaxUnpool { kernel_shape, strides, pads } => one(tensor_value(vision::max_unpool(
            &array(args, 0)?,
            &ints(args, 1)?,
            opt_ints(args, 2)?,
            kernel_shape,
            strides,
            pads,
        )?)),
        Op::DeformConv { conv, offset_group } => one(tensor_value(vision::deform_conv(
            conv,
            *offset_group,
            &array(args, 0)?,
            &array(args, 1)?,
            &array(args, 2)?,
            opt_array(args, 3)?.as_ref(),
            opt_array(args, 4)?.as_ref(),
        )?)),
        Op::Det => one(tensor_value(vision::det(&array(args, 0)?)?)),
        Op::BitCast { to } => match arg_value(args, 0)? {
            Value::Tensor(t) => one(Value::Tensor(vision::bit_cast(t, *to)?)),
            other => Err(format!("BitCast of a {}", other.kind())),
        },
        Op::StringConcat => one(tensor_value(strings::string_concat(&array(args, 0)?, &array(args, 1)?)?)),
        Op::RegexFullMatch { pattern } => one(tensor_value(strings::regex_full_match(&array(args, 0)?, pattern)?)),
        Op::StringSplit { delimiter, maxsplit } => {
            let (y, z) = strings::string_split(&array(args, 0)?, delimiter.as_deref(), *maxsplit)?;
            Ok(vec![Some(tensor_value(y)), Some(tensor_value(z))])
        }
        Op::StringNormalizer(sn) => one(tensor_value(strings::string_normalizer(&array(args, 0)?, sn)?)),
        Op::TfIdfVectorizer(t) => one(tensor_value(ml::tfidf(&array(args, 0)?, t)?)),
        Op::LabelEncoder { keys, values, default } => {
            one(tensor_value(ml::label_encoder(&array(args, 0)?, keys, values, default)?))
        }
        Op::TreeEnsemble(t) => one(tensor_value(ml::tree_ensemble(&array(args, 0)?, t)?)),
        // The executor runs these itself (they need the enclosing graph's values).
        Op::If { .. } | Op::Loop { .. } | Op::Scan(_) => Err("control flow reached the kernel table".into()),
        Op::Opaque(o) => {
            let _ = n_out;
            Err(format!("{} is carried opaquely (no core form), so ferry cannot run it", op.name()))
                .map_err(|e| if o.domain.is_empty() { e } else { format!("custom op: {e}") })
        }
    }
}

/// Cast between the types `Array` holds (see `crate::lowbits` for the others).
pub(crate) fn cast_array(x: &Array, to: ferry_ir::DType) -> KernelResult<Array> {
    elementwise::cast(x, to)
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
