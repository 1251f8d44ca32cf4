//! External data: tensor bytes stored in files beside the model. Files are memory-mapped once and
//! tensors borrow slices of the map. Locations are untrusted: they must stay inside the model's
//! folder (also through symlinks), and offsets/lengths must lie inside the file.

use crate::error::{OnnxError, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub struct ExternalData {
    base: Option<PathBuf>,
    maps: HashMap<PathBuf, Bytes>,
}

impl ExternalData {
    /// `base` is the folder of the model file; `None` when the model came from memory.
    pub fn new(base: Option<&Path>) -> ExternalData {
        ExternalData { base: base.map(Path::to_path_buf), maps: HashMap::new() }
    }

    pub fn read(&mut self, location: &str, offset: Option<u64>, length: Option<u64>) -> Result<Bytes> {
        let base = self.base.clone().ok_or_else(|| {
            OnnxError::invalid(format!(
                "tensor data is in external file '{location}' but the model was not read from a file"
            ))
        })?;
        let path = resolve_inside(&base, location)?;
        if !self.maps.contains_key(&path) {
            let file = std::fs::File::open(&path)
                .map_err(|e| OnnxError::Io { path: path.display().to_string(), source: e })?;
            let meta = file.metadata().map_err(|e| OnnxError::Io { path: path.display().to_string(), source: e })?;
            if !meta.is_file() {
                return Err(OnnxError::Unsafe(format!("external data location '{location}' is not a regular file")));
            }
            let bytes = if meta.len() == 0 {
                Bytes::new()
            } else {
                crate::mapped::map(&file).map_err(|e| OnnxError::Io { path: path.display().to_string(), source: e })?
            };
            self.maps.insert(path.clone(), bytes);
        }
        let file = &self.maps[&path];
        let size = file.len() as u64;
        let start = offset.unwrap_or(0);
        let len = match length {
            Some(l) => l,
            None => size.checked_sub(start).ok_or_else(|| past_end(location, start, 0, size))?,
        };
        let end = start.checked_add(len).filter(|e| *e <= size).ok_or_else(|| past_end(location, start, len, size))?;
        Ok(file.slice(start as usize..end as usize))
    }
}

fn past_end(location: &str, offset: u64, length: u64, size: u64) -> OnnxError {
    OnnxError::invalid(format!(
        "external data '{location}': offset {offset} + length {length} is past the end of the file ({size} bytes)"
    ))
}

/// Joins a relative location to the model folder, refusing anything that could leave it.
pub fn resolve_inside(base: &Path, location: &str) -> Result<PathBuf> {
    let rel = Path::new(location);
    if location.is_empty() {
        return Err(OnnxError::Unsafe("external data location is empty".into()));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(OnnxError::Unsafe(format!(
                    "external data location '{location}' leaves the model's folder ('..' is not allowed)"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(OnnxError::Unsafe(format!(
                    "external data location '{location}' is an absolute path; it must be relative to the model's folder"
                )));
            }
        }
    }
    let joined = base.join(rel);
    let real_base = base.canonicalize().map_err(|e| OnnxError::Io { path: base.display().to_string(), source: e })?;
    let real = joined.canonicalize().map_err(|e| OnnxError::Io { path: joined.display().to_string(), source: e })?;
    if !real.starts_with(&real_base) {
        return Err(OnnxError::Unsafe(format!(
            "external data location '{location}' resolves (through a link) to {}, outside the model's folder",
            real.display()
        )));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_leaving_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [1u8, 2, 3, 4]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), [9u8; 4]).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let mut ext = ExternalData::new(Some(dir.path()));
        assert_eq!(ext.read("w.bin", Some(1), Some(2)).unwrap().as_ref(), &[2, 3]);
        for bad in ["../secret", "/etc/passwd", "link", "a/../../x"] {
            let err = ext.read(bad, None, None).unwrap_err();
            assert!(matches!(err, OnnxError::Unsafe(_)), "{bad}: {err}");
        }
        assert!(ext.read("w.bin", Some(3), Some(2)).is_err());
        assert!(ext.read("w.bin", Some(u64::MAX), Some(2)).is_err());
        assert!(ext.read("missing.bin", None, None).is_err());
    }
}
