//! Large payloads through shared memory. A payload of at least
//! `LARGE_FRAME` crosses as a memfd handed over the socket (SCM_RIGHTS), the
//! frame itself carrying only its length (see `protocol::SHARED_PAYLOAD`):
//! the bytes are written once by the sender and read in place by the
//! receiver, instead of being copied into socket buffers and out again in
//! hops of a few hundred KiB, each a wake-up of the other side.
//!
//! ```text
//!  parent: pickle into a kept memfd ──fd──▶ worker: map read-only, unpickle
//!  worker: result into a fresh memfd, sealed ──fd──▶ parent: check, map, unpickle
//! ```
//!
//! The parent keeps its memfds and reuses them (their pages stay in place);
//! one goes back to the pool once the task that used it is done, i.e. after
//! the worker has read it. A worker's memfd is untrusted: it is mapped only
//! if it is a memfd on tmpfs, sealed against shrinking, growing and writing
//! (so the mapping can never lose a page under the reader, a SIGBUS, nor
//! change under it), as long as the frame says and without holes.
//!
//! Where memfds are not available (old kernels, seccomp, or
//! `FERROPOOL_NO_MEMFD`: see `platform`), the payload goes through the
//! socket as before.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::engine::buffers::{keep_within_bounds, take_smallest_fitting};
use crate::engine::sync::lock;
use crate::platform::memory::{map_populated, new_memfd};

/// Descriptors one read takes at most; a message carrying more is cut
/// (the kernel closes the rest) and counts as a protocol violation.
const FDS_PER_READ: usize = 4;
/// Kept memfds of the parent: at most this many (and `buffers`' byte
/// bound). Enough for the tasks a map keeps in flight with large arguments
/// (4 per worker): fewer, and every map frees and makes memfds anew.
const MAX_KEPT: usize = 16;
/// Capacities are rounded up to this, so a kept memfd fits payloads of
/// slightly different sizes.
const CAPACITY_STEP: usize = 1 << 20;
/// `statfs.f_type` of tmpfs, where plain memfds live (not hugetlbfs, whose
/// pages can be missing at fault time).
const TMPFS_MAGIC: i64 = 0x0102_1994;
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A memfd this process made, mapped writable: a payload is written into it,
/// then it is handed over (`fd`).
pub struct SharedBuf {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    /// The process that mapped it; a forked child has no such mapping.
    pid: u32,
}

// SAFETY: the mapping is owned by this value alone (no other handle in this
// process writes it), so moving it or sharing `&` across threads is as for a
// `Vec<u8>`.
unsafe impl Send for SharedBuf {}
unsafe impl Sync for SharedBuf {}

impl SharedBuf {
    /// A new memfd of `capacity` bytes (> 0), mapped and its pages in place.
    pub fn create(capacity: usize) -> io::Result<SharedBuf> {
        if capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty shared buffer",
            ));
        }
        let size = libc::off_t::try_from(capacity)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared buffer too large"))?;
        let fd = new_memfd()?;
        // SAFETY: ftruncate on a descriptor we own.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        // Shared, every page faulted in now in one call (cheaper than a
        // fault per page) where the platform allows it (see `platform`).
        let ptr = map_populated(capacity, libc::PROT_READ | libc::PROT_WRITE, fd.as_raw_fd())?;
        // A forked child must never write into pages the parent reuses for
        // its tasks: it does not inherit the mapping (see also `Kept`).
        // SAFETY: advice on our own new mapping; failure changes nothing.
        unsafe { libc::madvise(ptr.as_ptr().cast(), capacity, libc::MADV_DONTFORK) };
        Ok(SharedBuf {
            fd,
            ptr,
            capacity,
            len: 0,
            pid: std::process::id(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the live mapping; written only
        // through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Appends `data`; the caller made room (`spare() >= data.len()`).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(data.len() <= self.spare(), "shared buffer overflow");
        // SAFETY: the destination is inside the mapping (checked above) and
        // cannot overlap `data`, which `&mut self` keeps from being ours.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
    }

    /// Bytes of room after `len`.
    pub fn spare(&self) -> usize {
        self.capacity - self.len
    }

    /// Where the spare room starts, to be written through a view that ends
    /// before the next `&mut self` call; `commit` then counts what was written.
    pub fn spare_ptr(&mut self) -> *mut u8 {
        // SAFETY: `len <= capacity`: at most one past the mapping's end.
        unsafe { self.ptr.as_ptr().add(self.len) }
    }

    /// Counts `n` more bytes written at `spare_ptr`.
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.spare(), "shared buffer overflow");
        self.len += n;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedBuf {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return; // a forked child's copy: the mapping is not here
        }
        // SAFETY: our own mapping of `capacity` bytes, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.capacity) };
    }
}

/// A new memfd holding exactly `data`, sealed against any change: what a
/// worker hands to the parent. Written with `write`, which fills fresh
/// pages without zeroing them first and maps nothing in this process.
pub fn sealed_copy(data: &[u8]) -> io::Result<OwnedFd> {
    let mut file = std::fs::File::from(new_memfd()?);
    io::Write::write_all(&mut file, data)?;
    let fd = OwnedFd::from(file);
    // SAFETY: fcntl on a descriptor we own, never mapped.
    check(unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            REQUIRED_SEALS | libc::F_SEAL_SEAL,
        )
    })?;
    Ok(fd)
}

/// A received payload, mapped read-only. Immutable for its whole life: the
/// sender sealed it (a worker's) or does not touch it until the task is done
/// (the parent's).
pub struct ReceivedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: read-only memory nobody writes while the map lives (see above).
unsafe impl Send for ReceivedMap {}
unsafe impl Sync for ReceivedMap {}

impl ReceivedMap {
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` readable bytes, immutable while mapped (see the type).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for ReceivedMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Who sent a shared-memory payload, and so what is checked before it is
/// mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A worker: every byte is untrusted (see the module header).
    Worker,
    /// The parent engine, from its own kept memfds (unsealed: they are reused).
    Engine,
}

/// Maps `len` bytes of the memfd `fd` read-only, after the checks `sender`
/// calls for. The error says what was wrong with the descriptor.
pub fn map_received(fd: OwnedFd, len: usize, sender: Sender) -> Result<ReceivedMap, String> {
    if len == 0 {
        return Err("an empty shared-memory payload".into());
    }
    // SAFETY: fstat fills the zeroed struct for a descriptor we own.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(format!(
                "a descriptor fstat refused ({})",
                io::Error::last_os_error()
            ));
        }
        st
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("a descriptor that is not a memfd (not a regular file)".into());
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size < len as u64 {
        return Err(format!("a memfd of {size} bytes for a payload of {len}"));
    }
    if sender == Sender::Worker {
        // SAFETY: fstatfs fills the zeroed struct for a descriptor we own.
        let fs_type = unsafe {
            let mut sf: libc::statfs = std::mem::zeroed();
            if libc::fstatfs(fd.as_raw_fd(), &mut sf) != 0 {
                return Err(format!(
                    "a descriptor fstatfs refused ({})",
                    io::Error::last_os_error()
                ));
            }
            sf.f_type as i64
        };
        if fs_type != TMPFS_MAGIC {
            return Err(format!(
                "a descriptor on a file system of type {fs_type:#x}, not a memfd on tmpfs"
            ));
        }
        // SAFETY: F_GET_SEALS takes no argument; it fails for files that
        // cannot be sealed.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err("a memfd not sealed against shrinking, growing and writing".into());
        }
        // Every page allocated: reading it allocates nothing (a sparse
        // memfd of any size costs its sender nothing).
        let allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
        if size > len as u64 + page_size() as u64 || allocated < len as u64 {
            return Err(format!(
                "a memfd of {size} bytes with {allocated} allocated, for a payload of {len}"
            ));
        }
    }
    let ptr = map_populated(len, libc::PROT_READ, fd.as_raw_fd())
        .map_err(|e| format!("a memfd that could not be mapped ({e})"))?;
    Ok(ReceivedMap { ptr, len })
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// A writable shared buffer of at least `len` bytes (empty): a kept one
/// when one fits, else a new one; None where memfds cannot be had.
pub fn take(len: usize) -> Option<SharedBuf> {
    KEPT.take(len)
}

/// Keeps `buf` for a later `take`, if there is room; else frees it.
pub fn give_back(buf: SharedBuf) {
    KEPT.give_back(buf)
}

/// The kept memfds and the process they belong to: a forked child (a fork
/// worker, a task that forks, a user's `os.fork()`) inherits the list but
/// not the mappings, and must not hand the parent's memfds out again.
struct Kept(Mutex<(u32, Vec<SharedBuf>)>);

static KEPT: Kept = Kept::new();

impl Kept {
    const fn new() -> Self {
        Kept(Mutex::new((0, Vec::new())))
    }

    /// The list, emptied first if it was inherited from another process.
    fn mine(&self) -> std::sync::MutexGuard<'_, (u32, Vec<SharedBuf>)> {
        let mut kept = lock(&self.0);
        let pid = std::process::id();
        if kept.0 != pid {
            // Inherited: dropped, which closes this process's copies of the
            // descriptors and unmaps nothing (the mappings were not inherited).
            kept.1.clear(); // see Drop: nothing is unmapped here
            kept.0 = pid;
        }
        kept
    }

    fn take(&self, len: usize) -> Option<SharedBuf> {
        let reused = take_smallest_fitting(&mut self.mine().1, len, SharedBuf::capacity);
        if let Some(mut buf) = reused {
            buf.clear();
            return Some(buf);
        }
        let capacity = len.max(1).checked_next_multiple_of(CAPACITY_STEP)?;
        SharedBuf::create(capacity).ok()
    }

    fn give_back(&self, buf: SharedBuf) {
        if buf.pid != std::process::id() {
            return; // inherited from the parent: never handed out here
        }
        keep_within_bounds(&mut self.mine().1, buf, MAX_KEPT, SharedBuf::capacity);
    }
}

/// Sends `bytes` with `fd` attached (SCM_RIGHTS); the descriptor travels
/// with the first byte. Returns the bytes sent, as `write` does.
pub fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let raw: RawFd = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; every pointer in it (iov, control)
    // points at live buffers of the stated sizes for the call's duration,
    // and the control message is written inside `control`, which has room
    // for exactly one descriptor (CMSG_SPACE above).
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&raw as *const RawFd).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<RawFd>(),
        );
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// A socket read that also takes the descriptors that come with the bytes,
/// queued in arrival order (close-on-exec). A message cut short of its
/// descriptors is an error (InvalidData).
pub struct FdReader<'a> {
    pub sock: &'a UnixStream,
    pub fds: &'a mut VecDeque<OwnedFd>,
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: CMSG_SPACE is arithmetic.
        let space =
            unsafe { libc::CMSG_SPACE((FDS_PER_READ * std::mem::size_of::<RawFd>()) as u32) }
                as usize;
        // On the stack (every read of every socket comes here), in u64s: the
        // control buffer must be aligned for cmsghdr. 16 words hold the
        // header and FDS_PER_READ descriptors with room to spare.
        let mut control = [0u64; 16];
        let space = space.min(std::mem::size_of_val(&control));
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: as in send_with_fd: every pointer in the msghdr points at
        // a live buffer of the stated size. The kernel writes at most
        // `space` bytes of control data; each SCM_RIGHTS entry it returns
        // holds descriptors newly installed in this process, owned by
        // nobody else, which are read within the entry's stated length.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let n = libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        self.fds.push_back(OwnedFd::from_raw_fd(raw));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {FDS_PER_READ} descriptors in one message"),
                ));
            }
            Ok(n as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_with(data: &[u8]) -> OwnedFd {
        sealed_copy(data).expect("sealed memfd")
    }

    #[test]
    fn a_sealed_memfd_is_mapped_and_reads_back() {
        let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let map = map_received(sealed_with(&data), data.len(), Sender::Worker).expect("mapped");
        assert_eq!(map.as_slice(), &data[..]);
    }

    #[test]
    fn an_unsealed_memfd_from_a_worker_is_refused() {
        let mut buf = SharedBuf::create(1 << 20).expect("memfd");
        buf.extend_from_slice(&[1; 100]);
        let fd = buf.fd().try_clone_to_owned().expect("dup");
        let err = map_received(fd, 100, Sender::Worker)
            .err()
            .expect("refused");
        assert!(err.contains("not sealed"), "{err}");
    }

    #[test]
    fn a_claim_beyond_the_memfd_or_a_sparse_one_is_refused() {
        let fd = sealed_with(&[5; 4096]);
        let err = map_received(fd, 1 << 20, Sender::Worker)
            .err()
            .expect("refused");
        assert!(err.contains("4096 bytes for a payload"), "{err}");
        // Sized but never written: no pages behind it.
        // SAFETY: memfd_create, ftruncate and fcntl on a descriptor we own.
        let sparse = unsafe {
            let raw = libc::memfd_create(c"sparse".as_ptr(), libc::MFD_ALLOW_SEALING);
            assert!(raw >= 0);
            let fd = OwnedFd::from_raw_fd(raw);
            assert_eq!(libc::ftruncate(raw, 1 << 20), 0);
            assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, REQUIRED_SEALS), 0);
            fd
        };
        let err = map_received(sparse, 1 << 20, Sender::Worker)
            .err()
            .expect("refused");
        assert!(err.contains("allocated"), "{err}");
    }

    #[test]
    fn a_pipe_is_not_a_memfd() {
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let err = map_received(r, 10, Sender::Worker).err().expect("refused");
        assert!(err.contains("not a memfd"), "{err}");
    }

    #[test]
    fn descriptors_travel_with_their_bytes() {
        let (a, b) = UnixStream::pair().expect("pair");
        let fd = sealed_with(b"payload!");
        assert_eq!(
            send_with_fd(a.as_fd(), b"hdr", fd.as_fd()).expect("send"),
            3
        );
        let mut fds = VecDeque::new();
        let mut buf = [0u8; 16];
        let n = FdReader {
            sock: &b,
            fds: &mut fds,
        }
        .read(&mut buf)
        .expect("recv");
        assert_eq!(&buf[..n], b"hdr");
        assert_eq!(fds.len(), 1);
        let map = map_received(fds.pop_front().expect("fd"), 8, Sender::Worker).expect("mapped");
        assert_eq!(map.as_slice(), b"payload!");
    }

    #[test]
    fn kept_buffers_are_reused() {
        let kept = Kept::new();
        let mut a = kept.take(3 << 20).expect("memfd");
        a.extend_from_slice(&[9; 10]);
        let ptr = a.ptr;
        kept.give_back(a);
        let b = kept.take(2 << 20).expect("memfd");
        assert_eq!(b.ptr, ptr, "the kept memfd came back");
        assert!(b.is_empty());
    }
}
