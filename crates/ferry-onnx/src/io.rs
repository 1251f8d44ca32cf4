//! Files: reading a model (memory-mapped, so weights are borrowed, not copied) and writing one
//! atomically (temporary file, then rename), with external data when asked or when needed.

use crate::error::{OnnxError, Result};
use crate::export::{ExportOptions, export_model};
use crate::external::ExternalData;
use crate::import::import_model;
use crate::proto;
use bytes::Bytes;
use ferry_ir::Model;
use prost::Message;
use std::io::Write;
use std::path::Path;

/// Protobuf cannot encode a message of 2 GiB or more.
const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;
/// Tensors at least this large go to the external file when external data is used.
const EXTERNAL_THRESHOLD: usize = 1024;
const ALIGNMENT: u64 = 4096;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OnnxError + '_ {
    move |e| OnnxError::Io { path: path.display().to_string(), source: e }
}

/// Reads the file's bytes without copying them (memory map).
pub fn map_file(path: &Path) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(OnnxError::invalid(format!("{} is not a regular file", path.display())));
    }
    if meta.len() == 0 {
        return Ok(Bytes::new());
    }
    crate::mapped::map(&file).map_err(io_err(path))
}

pub fn decode_model(bytes: Bytes) -> Result<proto::ModelProto> {
    if bytes.is_empty() {
        return Err(OnnxError::Decode("the file is empty".into()));
    }
    proto::ModelProto::decode(bytes).map_err(|e| {
        OnnxError::Decode(format!("protobuf decoding failed ({e}); the file is truncated, corrupt, or not ONNX"))
    })
}

pub fn load(path: &Path) -> Result<Model> {
    let bytes = map_file(path)?;
    let proto = decode_model(bytes)?;
    if proto.graph.is_none() {
        return Err(OnnxError::Decode(
            "the file decodes as protobuf but holds no ONNX graph; is it an ONNX model?".into(),
        ));
    }
    let base = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    let mut ext = ExternalData::new(base);
    import_model(&proto, &mut ext)
}

pub fn load_bytes(bytes: Bytes) -> Result<Model> {
    let proto = decode_model(bytes)?;
    let mut ext = ExternalData::new(None);
    import_model(&proto, &mut ext)
}

/// Called as weight bytes are written: (bytes written, bytes to write).
pub type Progress = fn(u64, u64);

#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    pub export: ExportOptions,
    /// Store weights in a `.data` file beside the model (also chosen automatically over 2 GiB).
    pub external_data: bool,
    pub progress: Option<Progress>,
}

/// Writes `model` to `path`. Nothing is written at `path` unless the whole write succeeds.
pub fn save(model: &Model, path: &Path, opts: &SaveOptions) -> Result<()> {
    let mut m = export_model(model, &opts.export)?;
    let total: u64 = model.graph.parameter_totals().1;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut data_file = None;
    if opts.external_data || total >= PROTOBUF_LIMIT / 2 {
        let file_name = path.file_name().and_then(|s| s.to_str()).unwrap_or("model.onnx");
        let location = format!("{}.data", file_name.strip_suffix(".onnx").unwrap_or(file_name));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        let mut offset = 0u64;
        let mut sink = Sink { file: tmp.as_file_mut(), offset: &mut offset, total, progress: opts.progress };
        if let Some(g) = m.graph.as_mut() {
            move_to_external(g, &location, &mut sink).map_err(io_err(path))?;
        }
        tmp.as_file_mut().sync_all().map_err(io_err(path))?;
        data_file = Some((tmp, dir.join(&location)));
    }
    let encoded_len = m.encoded_len() as u64;
    if encoded_len > PROTOBUF_LIMIT {
        return Err(OnnxError::invalid(format!(
            "the model encodes to {encoded_len} bytes, over protobuf's 2 GiB limit even with external data"
        )));
    }
    let bytes = m.encode_to_vec();
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(&bytes).map_err(io_err(path))?;
    tmp.as_file_mut().sync_all().map_err(io_err(path))?;
    if let Some((data_tmp, data_path)) = data_file {
        data_tmp.persist(&data_path).map_err(|e| io_err(&data_path)(e.error))?;
    }
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

struct Sink<'a> {
    file: &'a mut std::fs::File,
    offset: &'a mut u64,
    total: u64,
    progress: Option<Progress>,
}

fn move_to_external(g: &mut proto::GraphProto, location: &str, sink: &mut Sink) -> std::io::Result<()> {
    for t in g.initializer.iter_mut() {
        let Some(raw) = t.raw_data.as_ref() else { continue };
        if raw.len() < EXTERNAL_THRESHOLD {
            continue;
        }
        let pad = sink.offset.next_multiple_of(ALIGNMENT) - *sink.offset;
        if pad > 0 {
            sink.file.write_all(&vec![0u8; pad as usize])?;
            *sink.offset += pad;
        }
        let start = *sink.offset;
        for chunk in raw.chunks(64 << 20) {
            sink.file.write_all(chunk)?;
            crate::mapped::release(chunk);
            *sink.offset += chunk.len() as u64;
            if let Some(report) = sink.progress {
                report(*sink.offset, sink.total);
            }
        }
        let entry = |k: &str, v: String| proto::StringStringEntryProto { key: Some(k.into()), value: Some(v) };
        t.external_data = vec![
            entry("location", location.into()),
            entry("offset", start.to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
        t.raw_data = None;
    }
    for n in g.node.iter_mut() {
        for a in n.attribute.iter_mut() {
            if let Some(sub) = a.g.as_mut() {
                move_to_external(sub, location, sink)?;
            }
            for sub in a.graphs.iter_mut() {
                move_to_external(sub, location, sink)?;
            }
        }
    }
    Ok(())
}
