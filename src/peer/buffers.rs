//! Recycled byte buffers for pieces being assembled and for ciphertext units cached for upload.
//!
//! Why: a transfer allocates and frees a piece-sized buffer (256 KiB and up) for every piece it
//! receives or serves. With glibc's allocator such buffers first come from `mmap` (a page fault
//! per 4 KiB on first touch), and once one is freed its dynamic threshold moves up so that the
//! next ones come from per-thread arenas, which keep the freed memory: a downloader serving
//! others measured 20 MiB more resident memory than it had buffers in use. Buffers taken from
//! here are reused instead, so resident memory stays what the budgets allow and the hot path
//! neither allocates nor faults in pages.
//!
//! A pool keeps at most `max_free` idle buffers; more are freed. Contents of a taken buffer are
//! whatever its last user left (never another process's data): callers overwrite all of it.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// See the module documentation. Cloning shares the pool.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

struct Inner {
    free: Mutex<Vec<Vec<u8>>>,
    /// Every buffer of the pool has this capacity.
    capacity: usize,
    max_free: usize,
}

impl BufferPool {
    /// A pool of buffers of up to `capacity` bytes that keeps at most `max_free` idle ones.
    pub fn new(capacity: usize, max_free: usize) -> BufferPool {
        BufferPool {
            inner: Arc::new(Inner {
                free: Mutex::new(Vec::with_capacity(max_free)),
                capacity,
                max_free,
            }),
        }
    }

    /// The length every buffer can hold.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// A buffer of `len` bytes, reused when one is idle. Bytes beyond what the last user held
    /// are zero; the rest is the last user's data, which the caller overwrites.
    ///
    /// A `len` above the pool's capacity gets a buffer of its own that the pool will not keep.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let reused = if len <= self.inner.capacity {
            self.lock().pop()
        } else {
            None
        };
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(len.max(self.inner.capacity)));
        // Same-length reuse (every piece but the last) touches nothing.
        buf.resize(len, 0);
        buf
    }

    /// Returns a buffer for reuse (or frees it, when enough are idle or it is not the pool's).
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() != self.inner.capacity {
            return;
        }
        let mut free = self.lock();
        if free.len() < self.inner.max_free {
            free.push(buf);
        }
    }

    /// Shares `buf` as [`Bytes`]; it comes back to the pool when the last slice of it is dropped.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Idle buffers now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<Vec<u8>>> {
        self.inner.free.lock()
    }
}

/// A buffer lent out as [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_the_idle_limit() {
        let pool = BufferPool::new(1024, 2);
        let mut a = pool.take(1024);
        a.fill(7);
        let a_ptr = a.as_ptr();
        pool.give(a);
        let again = pool.take(1024);
        assert_eq!(again.as_ptr(), a_ptr, "the idle buffer is handed out again");
        assert_eq!(again, vec![7; 1024], "reuse does not clear it");
        let b = pool.take(1024);
        let c = pool.take(1024);
        pool.give(again);
        pool.give(b);
        pool.give(c); // a third idle buffer is freed
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn a_shorter_then_longer_take_zeroes_only_the_new_tail() {
        let pool = BufferPool::new(8, 1);
        let mut a = pool.take(8);
        a.copy_from_slice(&[1; 8]);
        pool.give(a);
        let mut short = pool.take(3);
        assert_eq!(short, [1, 1, 1]);
        short.copy_from_slice(&[2; 3]);
        pool.give(short);
        assert_eq!(pool.take(8), [2, 2, 2, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn oversized_and_foreign_buffers_are_not_kept() {
        let pool = BufferPool::new(16, 4);
        let big = pool.take(100);
        assert_eq!(big.len(), 100);
        pool.give(big);
        pool.give(vec![0; 16]); // capacity 16 exactly: kept
        pool.give(Vec::with_capacity(32));
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn shared_bytes_return_when_the_last_slice_drops() {
        let pool = BufferPool::new(64, 4);
        let mut buf = pool.take(64);
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let bytes = pool.share(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &(10..20).collect::<Vec<u8>>()[..]);
        drop(slice);
        assert_eq!(pool.idle(), 1);
    }
}
