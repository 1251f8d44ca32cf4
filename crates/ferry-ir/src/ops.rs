//! The core operator set: one flat table of primitives with typed attributes and numpy semantics.
//! Every format's ops are canonicalized into these (a framework op that is a composition becomes
//! several core nodes); every exporter lowers them back out. Exhaustive matches over [`Op`] make
//! the compiler prove each op has shape rules and lowerings. `docs/ops.md` documents each op.
//!
//! Inputs that some formats give as attributes (axes, pads, shapes, split sizes) are *inputs*
//! here, usually constants: this keeps data-dependent forms expressible, and exporters for older
//! format versions fold constant inputs back into attributes.

use crate::dtype::DType;
use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::value::ValueType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Abs,
    Neg,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Sigmoid,
    Erf,
    Sign,
    /// Logical not of bool.
    Not,
    BitwiseNot,
    IsNaN,
    Relu,
    Softplus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Integer division truncates toward zero (C semantics, as ONNX defines it).
    Div,
    Pow,
    /// Remainder with the sign of the divisor (Python `%`).
    Mod,
    /// Remainder with the sign of the dividend (C `fmod`).
    Fmod,
    /// NaN-propagating minimum.
    Min,
    Max,
    And,
    Or,
    Xor,
    BitAnd,
    BitOr,
    BitXor,
    ShiftLeft,
    ShiftRight,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
    /// Lp pooling with the given p.
    Lp(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AutoPad {
    /// Explicit pads: begin for each spatial axis, then end for each.
    Explicit(Vec<u64>),
    SameUpper,
    SameLower,
    Valid,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
    /// Float8 targets: clamp out-of-range values to the largest finite value instead of NaN/inf.
    pub saturate: bool,
    /// "up" (round half to even) is the only mode other formats assume; kept for fidelity.
    pub round_mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    /// Kernel spatial sizes when the format states them (else taken from the weight's shape).
    pub kernel_shape: Option<Vec<u64>>,
    pub strides: Vec<u64>,
    pub dilations: Vec<u64>,
    pub pads: AutoPad,
    pub group: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTranspose {
    pub conv: Conv,
    pub output_padding: Vec<u64>,
    /// Requested output spatial shape; pads are then derived from it.
    pub output_shape: Option<Vec<u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel_shape: Vec<u64>,
    pub strides: Vec<u64>,
    pub dilations: Vec<u64>,
    pub pads: AutoPad,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    /// MaxPool's second output (flat indices) uses this storage order: false row-major.
    pub column_major_indices: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RnnKind {
    Rnn,
    Lstm,
    Gru,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RnnDirection {
    Forward,
    Reverse,
    Bidirectional,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rnn {
    pub kind: RnnKind,
    pub direction: RnnDirection,
    pub hidden_size: u64,
    /// Activation names with their optional alpha/beta, as ONNX spells them ("Tanh", "Sigmoid").
    pub activations: Vec<String>,
    pub activation_alpha: Vec<f32>,
    pub activation_beta: Vec<f32>,
    pub clip: Option<f32>,
    /// true: inputs are [batch, seq, ...] instead of [seq, batch, ...].
    pub batch_first: bool,
    pub linear_before_reset: bool,
    pub input_forget: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: String,
    pub coordinate_transformation_mode: String,
    pub nearest_mode: String,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    pub keep_aspect_ratio_policy: String,
    pub axes: Option<Vec<i64>>,
}

/// What [`Attention`]'s optional fourth output (`qk_matmul_output`) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QkMatmulOutputMode {
    /// The scaled `Q·Kᵀ` product (ONNX mode 0).
    Raw,
    /// After the softcap (equal to `Raw` without one), before the bias (mode 1).
    Softcapped,
    /// After softcap and bias (attention mask, causal and window masks, padding): the softmax
    /// input (mode 2).
    Biased,
    /// The softmax output, with fully-masked rows zeroed, cast to Q's type (mode 3).
    Softmax,
}

/// Scaled dot-product attention, ONNX `Attention` (23, 24, 25).
///
/// Inputs: `[Q, K, V, attn_mask?, past_key?, past_value?, nonpad_kv_seqlen?]`; outputs:
/// `[Y, present_key?, present_value?, qk_matmul_output?]`.
///
/// * **Layouts.** 4-D inputs are `Q [batch, q_heads, q_seq, head_size]`,
///   `K [batch, kv_heads, kv_seq, head_size]`, `V [batch, kv_heads, kv_seq, v_head_size]`, and
///   `Y` is `[batch, q_heads, q_seq, v_head_size]`. 3-D inputs are `[batch, seq, hidden]` and need
///   `q_num_heads`/`kv_num_heads`: Q's hidden splits into `q_num_heads` heads and K's/V's into
///   `kv_num_heads` (reshape to `[batch, seq, heads, size]`, transpose to heads-major); `Y` is then
///   transposed back and flattened to `[batch, q_seq, q_num_heads * v_head_size]`. Q, K and V have
///   the same rank.
/// * **GQA/MQA.** When Q has more heads than K/V (a multiple of them), each K/V head is repeated
///   (interleaved: `h0, h0, h1, h1, ...`) to Q's head count.
/// * **Cache.** With `past_key`/`past_value` (4-D, given together) K/V are appended to them along
///   the sequence axis; `present_key`/`present_value` are those concatenations (always 4-D, the
///   heads-major K/V when there is no past). `nonpad_kv_seqlen` (int64 `[batch]`, version 24+,
///   not combined with a past) says how many leading keys of each batch entry are real: later
///   keys get a `-inf` bias.
/// * **Scores.** `Q·Kᵀ * scale` (computed as `(Q·√scale)·(Kᵀ·√scale)`), scale defaulting to
///   `1/√head_size`; then the softcap `c·tanh(x/c)` when `softcap > 0`; then the bias is added;
///   softmax along the key axis (in `softmax_precision` when given); then `·V`.
/// * **Bias.** A bool `attn_mask` (true = attend) contributes `0`/`-inf`; any other mask type is
///   added as is. The mask broadcasts (numpy rules) to `[batch, q_heads, q_seq, total_kv_seq]`; a
///   mask shorter than total_kv_seq on its last axis is padded with `-inf` (false). `is_causal`
///   adds `-inf` where key `j > i + offset` (bottom-right aligned: offset = past length, or
///   `nonpad_kv_seqlen[b] - q_seq` for an external cache, else 0), composed additively with the
///   mask. The window bounds (version 25) likewise mask keys with `i + offset - j > left` or
///   `j - (i + offset) > right`.
/// * **Fully-masked rows.** A query row whose whole bias is `-inf` yields zero probabilities (and
///   so a zero `Y` row), not NaN.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub is_causal: bool,
    /// Heads of Q for 3-D inputs (None for 4-D inputs, whose heads axis says it).
    pub q_num_heads: Option<u64>,
    /// Heads of K and V for 3-D inputs.
    pub kv_num_heads: Option<u64>,
    pub qk_matmul_output_mode: QkMatmulOutputMode,
    /// Multiplies `Q·Kᵀ`; None: `1/√head_size`.
    pub scale: Option<f32>,
    /// Soft cap `c` of the scores, applied as `c·tanh(x/c)` when `c > 0` (0: none).
    pub softcap: f32,
    /// Element type the softmax is computed in (None: Q's type).
    pub softmax_precision: Option<DType>,
    /// Version 25's sliding window: keys more than this many positions left of the query's
    /// absolute position are masked (None: unbounded).
    pub left_window_size: Option<u64>,
    /// Keys more than this many positions right of the query's absolute position are masked.
    pub right_window_size: Option<u64>,
}

/// How [`Op::GridSample`] interpolates between input elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridSampleMode {
    /// Multilinear over the 2 nearest elements per spatial axis (ONNX "linear"/"bilinear").
    Linear,
    /// The nearest element, ties rounded half to even.
    Nearest,
    /// Keys cubic convolution (a = -0.75) over 4 elements per spatial axis ("cubic"/"bicubic").
    Cubic,
}

/// What [`Op::GridSample`] reads outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridSamplePadding {
    Zeros,
    /// The nearest border element.
    Border,
    /// Coordinates reflected at the borders until they fall inside.
    Reflection,
}

/// An attribute value of an op the core set does not (yet) model: carried through unchanged.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(bytes::Bytes),
    Tensor(Tensor),
    Graph(Box<Graph>),
    SparseTensor(Box<SparseTensor>),
    Type(ValueType),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<bytes::Bytes>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<SparseTensor>),
    Types(Vec<ValueType>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SparseTensor {
    pub values: Tensor,
    pub indices: Tensor,
    pub dims: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    pub doc_string: String,
}

/// An op kept as its source format spelled it: a custom domain's op, or a standard op that has no
/// canonical form yet. Exporters may write it back only to a format version where the same op
/// version exists.
#[derive(Clone, Debug, PartialEq)]
pub struct OpaqueOp {
    pub domain: String,
    pub op_type: String,
    /// The op version the source resolved it to (its `since_version`), when the domain is known.
    pub version: Option<u32>,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub body: Box<Graph>,
    pub num_scan_inputs: u64,
    pub scan_input_axes: Vec<i64>,
    pub scan_input_reverse: Vec<bool>,
    pub scan_output_axes: Vec<i64>,
    pub scan_output_reverse: Vec<bool>,
}

/// What [`Op::StringNormalizer`] does to letter case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaseChange {
    Lower,
    Upper,
    None,
}

/// ONNX `StringNormalizer`: drops stop words, then changes case.
#[derive(Clone, Debug, PartialEq)]
pub struct StringNormalizer {
    pub case_change: CaseChange,
    /// Stop words match exactly when true, else after lowercasing both sides.
    pub case_sensitive: bool,
    pub stopwords: Vec<String>,
    /// Kept for fidelity; case mapping is Unicode's default (locale-independent) one.
    pub locale: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TfIdfMode {
    /// Raw n-gram counts.
    Tf,
    /// `weight` where the count is non-zero, else 0.
    Idf,
    /// `count * weight`.
    TfIdf,
}

/// ONNX `TfIdfVectorizer`: counts the pool's n-grams (with skips) in each row.
#[derive(Clone, Debug, PartialEq)]
pub struct TfIdfVectorizer {
    pub mode: TfIdfMode,
    pub min_gram_length: u64,
    pub max_gram_length: u64,
    pub max_skip_count: u64,
    /// Start offset in `pool` of the 1-grams, 2-grams, ...
    pub ngram_counts: Vec<i64>,
    /// Output coordinate of each n-gram of the pool, in pool order.
    pub ngram_indexes: Vec<i64>,
    /// The n-grams, flattened: a 1-D int64 or string tensor.
    pub pool: Tensor,
    /// Per output coordinate (None: all 1).
    pub weights: Option<Vec<f32>>,
}

/// How [`TreeEnsemble`] combines the trees' leaf weights per target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeAggregate {
    Average,
    Sum,
    Min,
    Max,
}

/// The transform applied to a classical-ML op's raw scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

/// ai.onnx.ml `TreeEnsemble` (ml opset 5): a forest over the columns of a `[N, F]` input, as
/// flat node and leaf arrays (ONNX's layout, kept as is).
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEnsemble {
    pub aggregate_function: TreeAggregate,
    pub post_transform: PostTransform,
    pub n_targets: u64,
    /// Index of each tree's root node.
    pub tree_roots: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    /// ONNX mode codes: 0 `<=`, 1 `<`, 2 `>=`, 3 `>`, 4 `==`, 5 `!=`, 6 set membership.
    pub nodes_modes: Vec<u8>,
    /// Thresholds, in the input's element type.
    pub nodes_splits: Tensor,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_trueleafs: Vec<bool>,
    pub nodes_falsenodeids: Vec<i64>,
    pub nodes_falseleafs: Vec<bool>,
    /// Per node: NaN features take the true branch (empty: never).
    pub nodes_missing_value_tracks_true: Vec<bool>,
    /// Carried for fidelity (not used to predict).
    pub nodes_hitrates: Option<Tensor>,
    /// The member sets of mode-6 nodes, in node order, each terminated by NaN.
    pub membership_values: Option<Tensor>,
    pub leaf_targetids: Vec<i64>,
    pub leaf_weights: Tensor,
}

/// The property class of an op, in nnvm/top's sense: what fusion may assume about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// One output element from the same-index element of each (same-shaped) input.
    Elementwise,
    /// Elementwise after numpy broadcasting.
    Broadcast,
    /// Each output element reads one input element, at an index computed from its own.
    Injective,
    Reduction,
    /// Complex (GEMM, convolution) whose output can absorb an elementwise epilogue.
    FusableOutput,
    Opaque,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // Sources.
    Constant(Tensor),
    ConstantOfShape(Tensor),
    Range,
    EyeLike {
        dtype: Option<DType>,
        k: i64,
    },
    RandomNormal {
        shape: Option<Vec<u64>>,
        dtype: DType,
        mean: f32,
        scale: f32,
        seed: Option<f32>,
    },
    RandomUniform {
        shape: Option<Vec<u64>>,
        dtype: DType,
        low: f32,
        high: f32,
        seed: Option<f32>,
    },

    // Elementwise and broadcasting arithmetic.
    Unary(UnaryOp),
    Binary(BinaryOp),
    Cast(Cast),
    Where,
    IsInf {
        detect_negative: bool,
        detect_positive: bool,
    },

    // Layout and indexing (injective).
    Identity,
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Size,
    Reshape {
        allowzero: bool,
    },
    Transpose {
        perm: Option<Vec<usize>>,
    },
    Expand,
    Squeeze,
    Unsqueeze,
    Flatten {
        axis: i64,
    },
    Concat {
        axis: i64,
    },
    Split {
        axis: i64,
        num_outputs: Option<u64>,
    },
    Slice,
    Pad {
        mode: PadMode,
    },
    Tile,
    Gather {
        axis: i64,
    },
    GatherElements {
        axis: i64,
    },
    GatherNd {
        batch_dims: u64,
    },
    ScatterElements {
        axis: i64,
        reduction: ScatterReduction,
    },
    ScatterNd {
        reduction: ScatterReduction,
    },
    OneHot {
        axis: i64,
    },
    Trilu {
        upper: bool,
    },
    DepthToSpace {
        blocksize: u64,
        column_row_depth: bool,
    },
    SpaceToDepth {
        blocksize: u64,
        /// CRD block order (SpaceToDepth-28's mode="CRD") instead of the default DCR.
        column_row_depth: bool,
    },
    Compress {
        axis: Option<i64>,
    },
    NonZero,
    ReverseSequence {
        batch_axis: u64,
        time_axis: u64,
    },
    Resize(Resize),

    // Reductions and scans.
    Reduce {
        kind: ReduceKind,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    ArgReduce {
        max: bool,
        axis: i64,
        keepdims: bool,
        select_last_index: bool,
    },
    TopK {
        axis: i64,
        largest: bool,
        sorted: bool,
    },
    CumSum {
        exclusive: bool,
        reverse: bool,
    },
    Softmax {
        axis: i64,
    },
    LogSoftmax {
        axis: i64,
    },
    Unique {
        axis: Option<i64>,
        sorted: bool,
    },

    // Contractions and neural-network primitives.
    MatMul,
    MatMulInteger,
    Einsum {
        equation: String,
    },
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Pool(Pool),
    GlobalPool {
        kind: PoolKind,
    },
    Lrn {
        alpha: f32,
        beta: f32,
        bias: f32,
        size: u64,
    },
    Rnn(Rnn),
    NonMaxSuppression {
        center_point_box: bool,
    },
    QuantizeLinear {
        axis: i64,
        saturate: bool,
        block_size: u64,
        output_dtype: Option<DType>,
    },
    DequantizeLinear {
        axis: i64,
        block_size: u64,
    },
    /// Fused scaled dot-product attention (see [`Attention`]).
    Attention(Attention),
    /// Samples `x [N, C, D...]` at the normalized coordinates of `grid [N, D_out..., r]`
    /// (`grid[..., 0]` indexes the last spatial axis); the output is `[N, C, D_out...]`.
    GridSample {
        mode: GridSampleMode,
        padding: GridSamplePadding,
        /// -1 and 1 name the centers of the corner elements (else their outer edges).
        align_corners: bool,
    },
    /// Rearranges column blocks `[N, C * prod(block_shape), L]` into an image of
    /// `[input, image_shape, block_shape]`, summing overlaps (the inverse of im2col).
    Col2Im {
        dilations: Vec<u64>,
        /// Begin for each spatial axis, then end for each.
        pads: Vec<u64>,
        strides: Vec<u64>,
    },
    /// Region-of-interest align over `[X [N, C, H, W], rois [R, 4], batch_indices [R]]`.
    RoiAlign {
        output_height: u64,
        output_width: u64,
        /// Samples per bin along each axis; 0: adaptive (`ceil(roi size / output size)`).
        sampling_ratio: u64,
        spatial_scale: f32,
        /// Max over the (weighted) samples instead of their mean.
        max_mode: bool,
        /// Shift roi coordinates by -0.5 (ONNX "half_pixel"), else "output_half_pixel".
        half_pixel: bool,
    },
    /// Max pooling over region-of-interest bins (Fast R-CNN) of `[X [N, C, H, W], rois [R, 5]]`,
    /// rois rows being (batch index, x1, y1, x2, y2); coordinates are scaled and rounded to pixels.
    MaxRoiPool {
        /// Bins per roi: (height, width).
        pooled_shape: [u64; 2],
        spatial_scale: f32,
    },
    /// Scatters `X` to the flat positions `I` (MaxPool's indices) of a zero tensor, of
    /// `[X, I, output_shape?]`.
    MaxUnpool {
        kernel_shape: Vec<u64>,
        strides: Vec<u64>,
        /// Begin for each spatial axis, then end for each.
        pads: Vec<u64>,
    },
    /// Deformable convolution of `[X, W, offset, B?, mask?]`; `conv.pads` is always explicit.
    DeformConv {
        conv: Conv,
        offset_group: u64,
    },
    /// Determinant of the trailing square matrices.
    Det,
    /// Reinterprets each element's bytes as `to` (same bit width).
    BitCast {
        to: DType,
    },

    // Signal processing. Complex values are a trailing dimension of 2 (real, imaginary).
    /// Discrete Fourier transform of `[x, dft_length?, axis]` (axis: a scalar, usually constant, counted
    /// over x's dims including the trailing complex one).
    Dft {
        inverse: bool,
        onesided: bool,
    },
    /// Short-time Fourier transform of `[signal, frame_step, window?, frame_length?]`.
    Stft {
        onesided: bool,
    },
    /// Mel filter bank of `[num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
    /// upper_edge_hertz]`: `[dft_length / 2 + 1, num_mel_bins]` of `dtype`.
    MelWeightMatrix {
        dtype: DType,
    },

    // Control flow.
    If {
        then_branch: Box<Graph>,
        else_branch: Box<Graph>,
    },
    Loop {
        body: Box<Graph>,
    },
    Scan(Scan),

    // Sequences and optionals.
    SequenceConstruct,
    SequenceEmpty {
        dtype: DType,
    },
    SequenceAt,
    SequenceInsert,
    SequenceErase,
    SequenceLength,
    SplitToSequence {
        axis: i64,
        keepdims: bool,
    },
    ConcatFromSequence {
        axis: i64,
        new_axis: bool,
    },
    OptionalConstruct {
        ty: Option<ValueType>,
    },
    OptionalHasElement,
    OptionalGetElement,

    // Strings and classical ML.
    /// Elementwise concatenation of two string tensors (numpy broadcasting).
    StringConcat,
    /// Whether each string fully matches an RE2-syntax pattern.
    RegexFullMatch {
        pattern: String,
    },
    /// Splits each string at `delimiter` (None: runs of whitespace), at most `maxsplit` times.
    StringSplit {
        delimiter: Option<String>,
        maxsplit: Option<u64>,
    },
    StringNormalizer(StringNormalizer),
    TfIdfVectorizer(TfIdfVectorizer),
    /// Maps each element through `keys` -> `values` (1-D tensors of equal length; the last of
    /// repeated keys wins; NaN keys match NaN); elements not found become `default` (a 1-element
    /// tensor of the values' type).
    LabelEncoder {
        keys: Tensor,
        values: Tensor,
        default: Tensor,
    },
    TreeEnsemble(Box<TreeEnsemble>),

    /// Carried through unchanged: custom domains, and standard ops without a canonical form yet.
    Opaque(OpaqueOp),
}

impl Op {
    /// A short stable name for histograms, messages and docs.
    pub fn name(&self) -> String {
        match self {
            Op::Unary(u) => format!("{u:?}"),
            Op::Binary(b) => format!("{b:?}"),
            Op::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            Op::Pool(p) => format!("{:?}Pool", p.kind).replace("(", "").replace(")", ""),
            Op::GlobalPool { kind } => format!("Global{kind:?}Pool"),
            Op::Rnn(r) => format!("{:?}", r.kind).to_uppercase(),
            Op::Opaque(o) if o.domain.is_empty() => o.op_type.clone(),
            Op::Opaque(o) => format!("{}::{}", o.domain, o.op_type),
            other => {
                let dbg = format!("{other:?}");
                dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
            }
        }
    }

    pub fn class(&self) -> OpClass {
        match self {
            Op::Unary(_)
            | Op::Cast(_)
            | Op::IsInf { .. }
            | Op::Identity
            | Op::RegexFullMatch { .. }
            | Op::LabelEncoder { .. } => OpClass::Elementwise,
            Op::Binary(_) | Op::Where | Op::StringConcat => OpClass::Broadcast,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Expand
            | Op::Squeeze
            | Op::Unsqueeze
            | Op::Flatten { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice
            | Op::Pad { .. }
            | Op::Tile
            | Op::Gather { .. }
            | Op::GatherElements { .. }
            | Op::GatherNd { .. }
            | Op::OneHot { .. }
            | Op::Trilu { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. }
            | Op::ReverseSequence { .. } => OpClass::Injective,
            Op::Reduce { .. }
            | Op::ArgReduce { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::CumSum { .. }
            | Op::GlobalPool { .. }
            | Op::Pool(_) => OpClass::Reduction,
            // Attention's Y is a contraction (probabilities · V): an elementwise epilogue on it can run in
            // a fused kernel's final store, as after a GEMM. (present_key/value are plain copies.)
            Op::MatMul
            | Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::Einsum { .. }
            | Op::Attention(_)
            | Op::DeformConv { .. } => OpClass::FusableOutput,
            Op::BitCast { .. } => OpClass::Elementwise,
            Op::Det => OpClass::Reduction,
            Op::Constant(_)
            | Op::ConstantOfShape(_)
            | Op::Range
            | Op::EyeLike { .. }
            | Op::RandomNormal { .. }
            | Op::RandomUniform { .. }
            | Op::Shape { .. }
            | Op::Size
            | Op::ScatterElements { .. }
            | Op::ScatterNd { .. }
            | Op::Compress { .. }
            | Op::NonZero
            | Op::Resize(_)
            | Op::TopK { .. }
            | Op::Unique { .. }
            | Op::MatMulInteger
            | Op::Lrn { .. }
            | Op::Rnn(_)
            | Op::NonMaxSuppression { .. }
            | Op::QuantizeLinear { .. }
            | Op::DequantizeLinear { .. }
            | Op::Dft { .. }
            | Op::Stft { .. }
            | Op::MelWeightMatrix { .. }
            | Op::GridSample { .. }
            | Op::RoiAlign { .. }
            | Op::MaxRoiPool { .. }
            | Op::MaxUnpool { .. }
            | Op::Col2Im { .. }
            | Op::If { .. }
            | Op::Loop { .. }
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
            | Op::OptionalGetElement
            | Op::StringSplit { .. }
            | Op::StringNormalizer(_)
            | Op::TfIdfVectorizer(_)
            | Op::TreeEnsemble(_)
            | Op::Opaque(_) => OpClass::Opaque,
        }
    }

    /// Nested graphs (control-flow bodies and graph attributes of opaque ops).
    pub fn subgraphs(&self) -> Vec<&Graph> {
        match self {
            Op::If { then_branch, else_branch } => vec![then_branch, else_branch],
            Op::Loop { body } => vec![body],
            Op::Scan(s) => vec![&s.body],
            Op::Opaque(o) => o
                .attributes
                .iter()
                .flat_map(|a| match &a.value {
                    AttrValue::Graph(g) => vec![&**g],
                    AttrValue::Graphs(gs) => gs.iter().collect(),
                    _ => vec![],
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn subgraphs_mut(&mut self) -> Vec<&mut Graph> {
        match self {
            Op::If { then_branch, else_branch } => vec![then_branch, else_branch],
            Op::Loop { body } => vec![body],
            Op::Scan(s) => vec![&mut s.body],
            Op::Opaque(o) => o
                .attributes
                .iter_mut()
                .flat_map(|a| match &mut a.value {
                    AttrValue::Graph(g) => vec![&mut **g],
                    AttrValue::Graphs(gs) => gs.iter_mut().collect(),
                    _ => vec![],
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}
