//! Memory-mapped files whose bytes back tensors. Copying a large mapped weight into an output
//! file faults its pages in, which would make resident memory grow to the size of all weights;
//! `release` drops a range's pages again once written (the kernel re-reads them if needed).

use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};

struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

static MAPS: Mutex<Vec<Weak<memmap2::Mmap>>> = Mutex::new(Vec::new());

/// Maps a file read-only and returns its bytes.
pub fn map(file: &std::fs::File) -> std::io::Result<Bytes> {
    // SAFETY: the map is read-only; a file truncated by another process while mapped would fault,
    // the same contract every mmap-based model loader accepts.
    let map = Arc::new(unsafe { memmap2::Mmap::map(file) }?);
    let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    maps.retain(|w| w.strong_count() > 0);
    maps.push(Arc::downgrade(&map));
    Ok(Bytes::from_owner(SharedMap(map)))
}

/// Lets the kernel drop the resident pages behind `slice` if it lies in a mapped file.
pub fn release(slice: &[u8]) {
    let start = slice.as_ptr() as usize;
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    for w in maps.iter() {
        let Some(m) = w.upgrade() else { continue };
        let base = m.as_ptr() as usize;
        if start < base || start + slice.len() > base + m.len() {
            continue;
        }
        let page = 4096;
        let from = (start - base).next_multiple_of(page);
        let to = (start - base + slice.len()) / page * page;
        if to > from {
            // SAFETY: read-only private file mapping, never written: dropped pages are re-read from
            // the file on the next access, so no data is lost and no reference is invalidated.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
        }
        return;
    }
}
