//! The intra-op thread pool: one per engine, shared by every kernel call.

/// Below this many elements an element-wise pass is not worth waking other threads for.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// An intra-op thread pool. `Pool::new(1)` runs everything on the calling thread.
pub struct Pool {
    threads: usize,
    inner: Option<rayon::ThreadPool>,
}

impl Pool {
    /// A pool of `threads` threads; 0 means one per available core. If the system refuses to start
    /// threads, the pool runs on the calling thread alone (correct, just slower).
    pub fn new(threads: usize) -> Pool {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        if threads <= 1 {
            return Pool { threads: 1, inner: None };
        }
        match rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("ferry-kernels-{i}")).build()
        {
            Ok(p) => Pool { threads, inner: Some(p) },
            Err(_) => Pool { threads: 1, inner: None },
        }
    }

    /// How many threads kernels may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` inside the pool (so rayon calls within it use this pool's threads).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.inner {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Calls `f(i)` for every `i` in `0..n`, spread over the pool's threads.
    pub fn for_each(&self, n: usize, f: impl Fn(usize) + Sync + Send) {
        match &self.inner {
            Some(p) if n > 1 => p.install(|| {
                use rayon::prelude::*;
                (0..n).into_par_iter().for_each(f)
            }),
            _ => (0..n).for_each(f),
        }
    }

    /// Calls `f(index, chunk)` for consecutive `chunk_len`-element chunks of `data` (the last one may be
    /// shorter), spread over the pool's threads.
    pub fn for_each_chunk_mut<T: Send>(
        &self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        let chunk_len = chunk_len.max(1);
        match &self.inner {
            Some(p) if data.len() > chunk_len => p.install(|| {
                use rayon::prelude::*;
                data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c))
            }),
            _ => data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c)),
        }
    }

    /// A chunk length that splits `len` elements into a few tasks per thread, each at least `min` long.
    pub(crate) fn chunk_for(&self, len: usize, min: usize) -> usize {
        if self.threads == 1 {
            return len.max(1);
        }
        len.div_ceil(self.threads * 4).max(min).max(1)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads).finish()
    }
}
