//! Recycled buffers for large frames. A fresh multi-megabyte allocation is
//! fresh memory from the kernel: every 4 KiB page faults on first write,
//! which costs more than copying the data itself. Buffers of large frames
//! that were read and used go back here and are handed out again, pages
//! already in place. Bounded: a few buffers, a fixed total.

use std::sync::Mutex;

use crate::engine::sync::lock;

/// At most this many buffers are kept, holding at most `MAX_KEPT_BYTES`.
const MAX_KEPT: usize = 8;
pub const MAX_KEPT_BYTES: usize = 256 << 20;

/// The buffers kept for reuse; the process has one (`KEPT`).
struct Kept(Mutex<Vec<Vec<u8>>>);

static KEPT: Kept = Kept::new();

/// A buffer of exactly `len` bytes (contents unspecified, initialised), or
/// None where memory cannot be had: the size may be a worker's claim, and a
/// failed allocation must be refused, not abort the process.
pub fn try_take(len: usize) -> Option<Vec<u8>> {
    KEPT.try_take(len)
}

/// Keeps `buf` for a later `take`, if there is room; else frees it.
pub fn give_back(buf: Vec<u8>) {
    KEPT.give_back(buf)
}

impl Kept {
    const fn new() -> Self {
        Kept(Mutex::new(Vec::new()))
    }

    fn try_take(&self, len: usize) -> Option<Vec<u8>> {
        let reused = take_smallest_fitting(&mut lock(&self.0), len, Vec::capacity);
        match reused {
            Some(mut buf) => {
                buf.resize(len, 0); // zero-fills only a tail beyond its old length
                Some(buf)
            }
            None => alloc_zeroed(len),
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        keep_within_bounds(&mut lock(&self.0), buf, MAX_KEPT, Vec::capacity);
    }
}

/// The kept buffer with the smallest capacity that holds `len`, removed
/// from `kept` (this module's and `shm`'s pools).
pub fn take_smallest_fitting<T>(
    kept: &mut Vec<T>,
    len: usize,
    capacity: impl Fn(&T) -> usize,
) -> Option<T> {
    let best = kept
        .iter()
        .enumerate()
        .filter(|(_, b)| capacity(b) >= len)
        .min_by_key(|(_, b)| capacity(b))
        .map(|(i, _)| i);
    best.map(|i| kept.swap_remove(i))
}

/// Keeps `buf` in `kept` if at most `most` buffers of `MAX_KEPT_BYTES` in
/// all are kept then; else drops it.
pub fn keep_within_bounds<T>(
    kept: &mut Vec<T>,
    buf: T,
    most: usize,
    capacity: impl Fn(&T) -> usize,
) {
    let held: usize = kept.iter().map(&capacity).sum();
    if kept.len() < most && held + capacity(&buf) <= MAX_KEPT_BYTES {
        kept.push(buf);
    }
}

/// `vec![0u8; len]` that reports failure instead of aborting. A zeroed
/// allocation of this size is fresh mmap: no memset is paid, and pages are
/// committed only when written.
fn alloc_zeroed(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: the layout has a non-zero size (checked above). A non-null
    // pointer is a block of `len` zeroed bytes from the global allocator
    // with u8's alignment, which is exactly what `Vec<u8>` with capacity and
    // length `len` owns and later frees with the same layout; zeroed bytes
    // are initialised u8 values.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        if ptr.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(ptr, len, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_reused_with_the_asked_length() {
        // A pool of its own: other tests use the process's at the same time.
        let kept = Kept::new();
        let mut a = kept.try_take(3 << 20).expect("3 MiB");
        a[0] = 7;
        let ptr = a.as_ptr();
        kept.give_back(a);
        let b = kept.try_take(2 << 20).expect("2 MiB");
        assert_eq!(b.len(), 2 << 20);
        assert_eq!(b.as_ptr(), ptr, "the kept buffer came back");
        let c = kept.try_take(1 << 20).expect("1 MiB");
        assert_eq!(c.len(), 1 << 20);
        assert!(c.iter().all(|b| *b == 0), "a fresh buffer is zeroed");
        kept.give_back(b);
        kept.give_back(c);
        assert_eq!(lock(&kept.0).len(), 2);
    }

    #[test]
    fn a_size_beyond_memory_is_refused_not_fatal() {
        assert!(try_take(1 << 62).is_none());
        assert!(try_take(isize::MAX as usize).is_none());
        assert_eq!(try_take(0).map(|v| v.len()), Some(0));
    }
}
