//! A model: the main graph plus the metadata formats carry about it.

use crate::graph::Graph;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Model {
    pub graph: Graph,
    pub meta: ModelMeta,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ModelMeta {
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
    /// The format the model was read from ("onnx", "mxnet"), for messages.
    pub source_format: String,
    /// Format-specific versions of the source (e.g. ONNX ir_version and opset imports), for
    /// `inspect`; exporters choose their own.
    pub source_versions: Vec<(String, i64)>,
    /// What the importer read but the IR does not carry (e.g. per-node metadata), so that tools
    /// can say so instead of dropping it silently.
    pub not_carried: Vec<String>,
}
