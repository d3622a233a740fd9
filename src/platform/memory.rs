//! Memory: memfds for large payloads, mappings faulted in at once, and the
//! workers' allocator settings.
//!
//! ```text
//!  memfd         memfd_create(CLOEXEC|ALLOW_SEALING)  fallback: Err(Unsupported): the payload
//!                                                     goes through the socket (see `shm`)
//!  map_populate  mmap(MAP_POPULATE): one call faults  fallback: plain mmap + madvise(WILLNEED);
//!                every page in, without the GIL       pages fault in one by one on first touch
//!  mallopt       keep freed blocks for reuse          fallback: nothing (the allocator's defaults)
//! ```

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use super::{check, fall_back, native, unsupported, Facility};

fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and flags; the returned descriptor is
    // new and owned by nobody else.
    unsafe {
        let raw = check(libc::memfd_create(
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        ))?;
        Ok(OwnedFd::from_raw_fd(raw))
    }
}

pub(super) fn probe_memfd() -> io::Result<()> {
    memfd_create(PAYLOAD_MEMFD).map(drop)
}

/// The name of a payload's memfd (as /proc shows it).
const PAYLOAD_MEMFD: &CStr = c"ferropool-payload";

/// A new sealable memfd for a payload; `Unsupported` where the fallback is
/// chosen (the caller then sends the payload through the socket).
pub fn new_memfd() -> io::Result<OwnedFd> {
    new_memfd_named(PAYLOAD_MEMFD)
}

/// `new_memfd` under another name.
pub fn new_memfd_named(name: &CStr) -> io::Result<OwnedFd> {
    if !native(Facility::Memfd) {
        return Err(unsupported(Facility::Memfd));
    }
    memfd_create(name).inspect_err(|e| {
        fall_back(Facility::Memfd, e);
    })
}

/// `mmap(2)` with `flags` at an address of the kernel's choosing.
fn mmap(len: usize, prot: libc::c_int, flags: libc::c_int, fd: RawFd) -> io::Result<NonNull<u8>> {
    // SAFETY: a new mapping at an address the kernel picks; it aliases no
    // Rust object.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

pub(super) fn probe_map_populate() -> io::Result<()> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    let page = mmap(1, libc::PROT_READ, flags, -1)?;
    // SAFETY: the one-page mapping just made, unmapped once.
    unsafe { libc::munmap(page.as_ptr().cast(), 1) };
    Ok(())
}

/// The flag that faults a whole mapping in at `mmap` time (for Python's
/// `mmap.mmap(flags=...)` too), or 0 where the fallback is chosen.
pub fn populate_flag() -> libc::c_int {
    if native(Facility::MapPopulate) {
        libc::MAP_POPULATE
    } else {
        0
    }
}

/// `mmap(2)` of `len` bytes of `fd` (shared), its pages faulted in by the
/// call where MAP_POPULATE can be had; else a plain mapping, advised that
/// it will be read soon (pages then fault in one by one, on first touch).
pub fn map_populated(len: usize, prot: libc::c_int, fd: RawFd) -> io::Result<NonNull<u8>> {
    let populate = populate_flag();
    if populate != 0 {
        match mmap(len, prot, libc::MAP_SHARED | populate, fd) {
            Err(e) if fall_back(Facility::MapPopulate, &e) => {}
            other => return other,
        }
    }
    let ptr = mmap(len, prot, libc::MAP_SHARED, fd)?;
    // SAFETY: advice on our own new mapping; failure changes nothing.
    unsafe { libc::posix_madvise(ptr.as_ptr().cast(), len, libc::POSIX_MADV_WILLNEED) };
    Ok(ptr)
}

pub(super) fn probe_mallopt() -> io::Result<()> {
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        Ok(())
    } else {
        Err(unsupported(Facility::Mallopt))
    }
}

/// Lets the allocator keep freed blocks below `blocks_below` bytes and up
/// to `freed` bytes of free memory for reuse (glibc); the fallback does
/// nothing: large allocations then come fresh from the kernel and fault in
/// page by page.
pub fn keep_freed_memory(blocks_below: libc::c_int, freed: libc::c_int) {
    if !native(Facility::Mallopt) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters (it returns 1 on
        // success, 0 on failure, and touches no memory of ours).
        let done = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, blocks_below) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, freed) == 1
        };
        if !done {
            fall_back(Facility::Mallopt, &unsupported(Facility::Mallopt));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (blocks_below, freed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn map_populated_maps_a_file_either_way() {
        let file = tempfile_with(b"hello, mapping");
        let fd = file.as_raw_fd();
        let ptr = map_populated(14, libc::PROT_READ, fd).expect("mmap");
        // SAFETY: 14 readable bytes just mapped, unmapped right after.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), 14) };
        assert_eq!(bytes, b"hello, mapping");
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(ptr.as_ptr().cast(), 14) };
    }

    fn tempfile_with(data: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("ferropool-map-{}", std::process::id()));
        std::fs::write(&path, data).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let _ = std::fs::remove_file(&path);
        file
    }
}
