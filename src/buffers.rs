//! Recycled buffers for large frames. A fresh multi-megabyte allocation is
//! fresh memory from the kernel: every 4 KiB page faults on first write,
//! which costs more than copying the data itself. Buffers of large frames
//! that were read and used go back here and are handed out again, pages
//! already in place. Bounded: a few buffers, a fixed total.

use std::sync::Mutex;

use crate::sync::lock;

/// At most this many buffers are kept, holding at most `MAX_KEPT_BYTES`.
const MAX_KEPT: usize = 8;
const MAX_KEPT_BYTES: usize = 256 << 20;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of exactly `len` bytes (contents unspecified, initialised).
pub fn take(len: usize) -> Vec<u8> {
    let reused = {
        let mut kept = lock(&KEPT);
        // The smallest kept buffer that fits.
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        best.map(|i| kept.swap_remove(i))
    };
    match reused {
        Some(mut buf) => {
            buf.resize(len, 0); // zero-fills only a tail beyond its old length
            buf
        }
        // Zeroed allocation of this size is fresh mmap: no memset is paid.
        None => vec![0u8; len],
    }
}

/// Keeps `buf` for a later `take`, if there is room; else frees it.
pub fn give_back(buf: Vec<u8>) {
    let mut kept = lock(&KEPT);
    let held: usize = kept.iter().map(Vec::capacity).sum();
    if kept.len() < MAX_KEPT && held + buf.capacity() <= MAX_KEPT_BYTES {
        kept.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_reused_with_the_asked_length() {
        let mut a = take(3 << 20);
        a[0] = 7;
        let ptr = a.as_ptr();
        give_back(a);
        let b = take(2 << 20);
        assert_eq!(b.len(), 2 << 20);
        assert_eq!(b.as_ptr(), ptr, "the kept buffer came back");
        let c = take(1 << 20);
        assert_eq!(c.len(), 1 << 20);
        give_back(b);
        give_back(c);
    }
}
