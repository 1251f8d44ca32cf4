//! The one place every core op meets its ONNX lowering: the match is exhaustive, so adding a
//! core op does not compile until it has one (or an explicit refusal).

use super::ctx::{LowerCtx, LowerResult, attr_f, attr_floats, attr_graph, attr_i, attr_ints, attr_tensor};
use super::{attention, control, elementwise, misc, ml, nn, reduce, shape, strings, vision};
use crate::proto::{self, attribute_proto::AttributeType};
use crate::schemas;
use crate::tensor::tensor_to_proto;
use crate::types::type_to_proto;
use ferry_ir::Op;
use ferry_ir::ops::{AttrValue, OpaqueOp, SparseTensor};

pub fn lower_node(c: &mut LowerCtx) -> LowerResult {
    let node = c.node;
    match &node.op {
        Op::Constant(t) => {
            let out = c.output(0);
            c.emit("Constant", vec![], vec![out], vec![attr_tensor("value", t)]);
            Ok(())
        }
        Op::Unary(u) => elementwise::unary(c, *u),
        Op::Binary(b) => elementwise::binary(c, *b),
        Op::Cast(cast) => elementwise::cast(c, cast),
        Op::Where => elementwise::where_(c),
        Op::IsInf { detect_negative, detect_positive } => elementwise::is_inf(c, *detect_negative, *detect_positive),
        Op::Identity => elementwise::identity(c),
        Op::Conv(conv) => nn::conv(c, conv),
        Op::ConvTranspose(ct) => nn::conv_transpose(c, ct),
        Op::Pool(p) => nn::pool(c, p),
        Op::GlobalPool { kind } => nn::global_pool(c, *kind),
        Op::Lrn { alpha, beta, bias, size } => nn::lrn(c, *alpha, *beta, *bias, *size),
        Op::Resize(r) => nn::resize(c, r),
        Op::Rnn(r) => nn::rnn(c, r),
        Op::NonMaxSuppression { center_point_box } => nn::non_max_suppression(c, *center_point_box),
        Op::QuantizeLinear { axis, saturate, block_size, output_dtype } => {
            nn::quantize_linear(c, *axis, *saturate, *block_size, *output_dtype)
        }
        Op::DequantizeLinear { axis, block_size } => nn::dequantize_linear(c, *axis, *block_size),
        Op::Attention(a) => attention::attention(c, a),
        Op::Reduce { kind, keepdims, noop_with_empty_axes } => {
            reduce::reduce(c, *kind, *keepdims, *noop_with_empty_axes)
        }
        Op::ArgReduce { max, axis, keepdims, select_last_index } => {
            reduce::arg_reduce(c, *max, *axis, *keepdims, *select_last_index)
        }
        Op::TopK { axis, largest, sorted } => reduce::top_k(c, *axis, *largest, *sorted),
        Op::CumSum { exclusive, reverse } => reduce::cum_sum(c, *exclusive, *reverse),
        Op::Softmax { axis } => reduce::softmax(c, false, *axis),
        Op::LogSoftmax { axis } => reduce::softmax(c, true, *axis),
        Op::Unique { axis, sorted } => reduce::unique(c, *axis, *sorted),
        Op::MatMul => reduce::matmul(c),
        Op::MatMulInteger => reduce::matmul_integer(c),
        Op::Einsum { equation } => reduce::einsum(c, equation),
        Op::RandomNormal { shape, dtype, mean, scale, seed } => {
            control::random(c, true, shape, *dtype, (*mean, *scale), *seed)
        }
        Op::RandomUniform { shape, dtype, low, high, seed } => {
            control::random(c, false, shape, *dtype, (*low, *high), *seed)
        }
        Op::If { then_branch, else_branch } => control::if_(c, then_branch, else_branch),
        Op::Loop { body } => control::loop_(c, body),
        Op::Scan(s) => control::scan(c, s),
        Op::SequenceConstruct => control::sequence_op(c, "SequenceConstruct", vec![]),
        Op::SequenceEmpty { dtype } => control::sequence_empty(c, *dtype),
        Op::SequenceAt => control::sequence_op(c, "SequenceAt", vec![]),
        Op::SequenceInsert => control::sequence_op(c, "SequenceInsert", vec![]),
        Op::SequenceErase => control::sequence_op(c, "SequenceErase", vec![]),
        Op::SequenceLength => control::sequence_op(c, "SequenceLength", vec![]),
        Op::SplitToSequence { axis, keepdims } => control::split_to_sequence(c, *axis, *keepdims),
        Op::ConcatFromSequence { axis, new_axis } => control::concat_from_sequence(c, *axis, *new_axis),
        Op::OptionalConstruct { ty } => control::optional_construct(c, ty),
        Op::OptionalHasElement => control::optional_has_element(c),
        Op::OptionalGetElement => control::optional_get_element(c),
        Op::ConstantOfShape(value) => shape::constant_of_shape(c, value),
        Op::Range => shape::range(c),
        Op::EyeLike { dtype, k } => shape::eye_like(c, *dtype, *k),
        Op::Shape { start, end } => shape::shape(c, *start, *end),
        Op::Size => shape::size(c),
        Op::Reshape { allowzero } => shape::reshape(c, *allowzero),
        Op::Transpose { perm } => shape::transpose(c, perm.as_deref()),
        Op::Expand => shape::expand(c),
        Op::Squeeze => shape::squeeze(c, "Squeeze"),
        Op::Unsqueeze => shape::squeeze(c, "Unsqueeze"),
        Op::Flatten { axis } => shape::flatten(c, *axis),
        Op::Concat { axis } => shape::concat(c, *axis),
        Op::Split { axis, num_outputs } => shape::split(c, *axis, *num_outputs),
        Op::Slice => shape::slice(c),
        Op::Pad { mode } => shape::pad(c, *mode),
        Op::Tile => shape::tile(c),
        Op::Gather { axis } => shape::gather(c, "Gather", *axis),
        Op::GatherElements { axis } => shape::gather(c, "GatherElements", *axis),
        Op::GatherNd { batch_dims } => shape::gather_nd(c, *batch_dims),
        Op::ScatterElements { axis, reduction } => shape::scatter_elements(c, *axis, *reduction),
        Op::ScatterNd { reduction } => shape::scatter_nd(c, *reduction),
        Op::OneHot { axis } => shape::one_hot(c, *axis),
        Op::Trilu { upper } => shape::trilu(c, *upper),
        Op::DepthToSpace { blocksize, column_row_depth } => shape::depth_to_space(c, *blocksize, *column_row_depth),
        Op::SpaceToDepth { blocksize, column_row_depth } => shape::space_to_depth(c, *blocksize, *column_row_depth),
        Op::Compress { axis } => shape::compress(c, *axis),
        Op::NonZero => shape::non_zero(c),
        Op::ReverseSequence { batch_axis, time_axis } => shape::reverse_sequence(c, *batch_axis, *time_axis),
        Op::Dft { inverse, onesided } => misc::dft(c, *inverse, *onesided),
        Op::Stft { onesided } => misc::stft(c, *onesided),
        Op::MelWeightMatrix { dtype } => misc::mel_weight_matrix(c, *dtype),
        Op::GridSample { mode, padding, align_corners } => vision::grid_sample(c, *mode, *padding, *align_corners),
        Op::Col2Im { dilations, pads, strides } => vision::col2im(c, dilations, pads, strides),
        Op::RoiAlign { output_height, output_width, sampling_ratio, spatial_scale, max_mode, half_pixel } => {
            vision::roi_align(c, *output_height, *output_width, *sampling_ratio, *spatial_scale, *max_mode, *half_pixel)
        }
        Op::MaxRoiPool { pooled_shape, spatial_scale } => vision::max_roi_pool(c, *pooled_shape, *spatial_scale),
        Op::MaxUnpool { kernel_shape, strides, pads } => vision::max_unpool(c, kernel_shape, strides, pads),
        Op::DeformConv { conv, offset_group } => vision::deform_conv(c, conv, *offset_group),
        Op::Det => vision::det(c),
        Op::BitCast { to } => vision::bit_cast(c, *to),
        Op::StringConcat => strings::string_concat(c),
        Op::RegexFullMatch { pattern } => strings::regex_full_match(c, pattern),
        Op::StringSplit { delimiter, maxsplit } => strings::string_split(c, delimiter.as_deref(), *maxsplit),
        Op::StringNormalizer(sn) => strings::string_normalizer(c, sn),
        Op::TfIdfVectorizer(t) => strings::tfidf_vectorizer(c, t),
        Op::LabelEncoder { keys, values, default } => ml::label_encoder(c, keys, values, default),
        Op::TreeEnsemble(t) => ml::tree_ensemble(c, t),
        Op::Opaque(o) => opaque(c, o),
    }
}

/// Writes an op carried as its source spelled it, if the target opset has the same op version.
fn opaque(c: &mut LowerCtx, o: &OpaqueOp) -> LowerResult {
    if o.domain.is_empty() {
        let target = schemas::resolve("", &o.op_type, c.opset);
        let version = o.version.unwrap_or(0);
        match target {
            Some(t) if t.since_version == version => {}
            _ => {
                let next =
                    schemas::versions("", &o.op_type).find(|s| s.since_version > version).map(|s| s.since_version);
                let range = match next {
                    Some(n) => format!("opsets {version}..={}", n - 1),
                    None => format!("opset >= {version}"),
                };
                return Err(c.problem(
                    format!(
                        "carried as {}-{version} (ferry has no canonical form for it yet), which exists only in {range}; target opset {} {}",
                        o.op_type,
                        c.opset,
                        match target {
                            Some(t) => format!("has {}-{}", o.op_type, t.since_version),
                            None => format!("has no {}", o.op_type),
                        }
                    ),
                    Some(version),
                ));
            }
        }
    } else {
        let v = c.exporter.source_opsets.get(&o.domain).copied().unwrap_or(1);
        c.exporter.domains.insert(o.domain.clone(), v);
    }
    let mut attrs = Vec::with_capacity(o.attributes.len());
    for a in &o.attributes {
        let mut p = attribute_to_proto(c, &a.name, &a.value);
        if !a.doc_string.is_empty() {
            p.doc_string = Some(a.doc_string.clone());
        }
        attrs.push(p);
    }
    let (inputs, outputs) = (c.inputs(), c.outputs());
    c.emit_in(&o.domain, &o.op_type, inputs, outputs, attrs);
    Ok(())
}

fn sparse_to_proto(s: &SparseTensor) -> proto::SparseTensorProto {
    proto::SparseTensorProto {
        values: Some(Box::new(tensor_to_proto("", &s.values))),
        indices: Some(Box::new(tensor_to_proto("", &s.indices))),
        dims: s.dims.iter().map(|d| *d as i64).collect(),
    }
}

pub fn attribute_to_proto(c: &mut LowerCtx, name: &str, v: &AttrValue) -> proto::AttributeProto {
    let base = |ty: AttributeType| proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(ty as i32),
        ..Default::default()
    };
    match v {
        AttrValue::Float(f) => attr_f(name, *f),
        AttrValue::Int(i) => attr_i(name, *i),
        AttrValue::String(s) => proto::AttributeProto { s: Some(s.clone()), ..base(AttributeType::String) },
        AttrValue::Tensor(t) => attr_tensor(name, t),
        AttrValue::Graph(g) => {
            let g = c.subgraph(g);
            attr_graph(name, g)
        }
        AttrValue::SparseTensor(s) => proto::AttributeProto {
            sparse_tensor: Some(Box::new(sparse_to_proto(s))),
            ..base(AttributeType::SparseTensor)
        },
        AttrValue::Type(t) => {
            proto::AttributeProto { tp: type_to_proto(t).map(Box::new), ..base(AttributeType::TypeProto) }
        }
        AttrValue::Floats(f) => attr_floats(name, f),
        AttrValue::Ints(i) => attr_ints(name, i),
        AttrValue::Strings(s) => proto::AttributeProto { strings: s.clone(), ..base(AttributeType::Strings) },
        AttrValue::Tensors(ts) => proto::AttributeProto {
            tensors: ts.iter().map(|t| tensor_to_proto("", t)).collect(),
            ..base(AttributeType::Tensors)
        },
        AttrValue::Graphs(gs) => {
            let graphs = gs.iter().map(|g| c.subgraph(g)).collect();
            proto::AttributeProto { graphs, ..base(AttributeType::Graphs) }
        }
        AttrValue::SparseTensors(ss) => proto::AttributeProto {
            sparse_tensors: ss.iter().map(sparse_to_proto).collect(),
            ..base(AttributeType::SparseTensors)
        },
        AttrValue::Types(ts) => proto::AttributeProto {
            type_protos: ts.iter().filter_map(type_to_proto).collect(),
            ..base(AttributeType::TypeProtos)
        },
    }
}
