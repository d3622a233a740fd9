//! Learning that one of our own child processes ended, and signalling it
//! without ever hitting a reused pid.
//!
//! ```text
//!  native:    pidfd_open(pid) ──▶ fd readable when it ends (polled with the sockets)
//!             pidfd_send_signal(fd, sig): never reaches another process
//!  fallback:  waitid(pid, WEXITED|WNOHANG|WNOWAIT) now and then (the engine's timer)
//!             kill(pid, sig) only after waitid says it is ours and not yet reaped
//! ```
//!
//! Neither way reaps: the child stays a zombie until its owner's waitpid
//! (`supervisor::OwnChild`), so its pid cannot be reused meanwhile.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{fall_back, native, Facility};

/// How the end of one child of this process is noticed.
pub enum ExitWatch {
    /// Readable once the process has ended.
    Pidfd(OwnedFd),
    /// Asked with `waitid(WNOWAIT)` (no descriptor to poll).
    Waitid(i32),
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(super) fn probe_pidfd() -> io::Result<()> {
    pidfd_open(std::process::id() as i32).map(drop)
}

/// What `waitid(WNOWAIT)` says of our child `pid`, without reaping it.
#[derive(Debug, PartialEq, Eq)]
enum ChildState {
    Running,
    /// Ended, not reaped yet: a zombie, whose pid nobody else can get.
    Ended,
    /// Not our child any more (reaped by someone else): its pid may be
    /// anyone's now.
    Gone,
}

fn child_state(pid: i32) -> ChildState {
    loop {
        // SAFETY: siginfo_t is plain data, zeroed as waitid requires for
        // telling "no child ended" (si_pid 0) apart.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`, which lives through the
        // call; WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return ChildState::Gone;
        }
        // SAFETY: waitid filled `info` (or left it zeroed: no child ended).
        let ended_pid = unsafe { info.si_pid() };
        return if ended_pid == 0 {
            ChildState::Running
        } else {
            ChildState::Ended
        };
    }
}

impl ExitWatch {
    /// Watches `pid`, a child of this process not reaped yet.
    pub fn child(pid: i32) -> ExitWatch {
        if native(Facility::Pidfd) {
            match pidfd_open(pid) {
                Ok(fd) => return ExitWatch::Pidfd(fd),
                // EMFILE and the like: this one child is polled instead.
                Err(e) => {
                    fall_back(Facility::Pidfd, &e);
                }
            }
        }
        ExitWatch::Waitid(pid)
    }

    /// A descriptor to poll that becomes readable when the process ends;
    /// None: call `has_ended` now and then instead.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            ExitWatch::Pidfd(fd) => Some(std::os::fd::AsFd::as_fd(fd)),
            ExitWatch::Waitid(_) => None,
        }
    }

    /// Whether the process has ended (or is no longer ours). Never reaps.
    pub fn has_ended(&self) -> bool {
        match self {
            ExitWatch::Pidfd(fd) => {
                let mut poll = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, zero timeout.
                let n = unsafe { libc::poll(&mut poll, 1, 0) };
                n > 0 && poll.revents != 0
            }
            ExitWatch::Waitid(pid) => child_state(*pid) != ChildState::Running,
        }
    }

    /// Sends `signal` to the process itself, only while it still runs.
    /// Returns whether it was sent (false: it had ended, or the call failed).
    pub fn signal(&self, signal: libc::c_int) -> bool {
        match self {
            ExitWatch::Pidfd(fd) => {
                // SAFETY: pidfd_send_signal takes a pidfd we own, a signal
                // number, a null siginfo and no flags; it touches no memory.
                let sent = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                sent == 0
            }
            // Sound without a pidfd: the pid belongs to our child until the
            // child is reaped, and only its owner reaps it (after this call,
            // on the same thread). waitid says it still runs, so the pid is
            // still that child's; were it a zombie (or reaped by someone
            // else, "gone"), the pid could be about to be reused, and we
            // do not send.
            ExitWatch::Waitid(pid) => {
                child_state(*pid) == ChildState::Running
                    // SAFETY: kill takes plain integers.
                    && unsafe { libc::kill(*pid, signal) } == 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn until(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn waitid_watch_sees_the_end_without_reaping_and_never_signals_a_zombie() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let watch = ExitWatch::Waitid(child.id() as i32);
        assert!(watch.fd().is_none());
        assert!(!watch.has_ended());
        assert!(watch.signal(libc::SIGKILL));
        assert!(until(|| watch.has_ended()), "the end was not seen");
        // A zombie is not signalled: its pid could be reused once reaped.
        assert!(!watch.signal(libc::SIGKILL));
        // Still ours to reap: waitid(WNOWAIT) left the status in place.
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(watch.has_ended(), "a reaped child counts as ended");
    }

    #[test]
    fn pidfd_watch_when_the_kernel_has_it() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let Ok(fd) = pidfd_open(child.id() as i32) else {
            let _ = child.kill();
            let _ = child.wait();
            return; // no pidfds here: the fallback test covers this kernel
        };
        let watch = ExitWatch::Pidfd(fd);
        assert!(watch.fd().is_some() && !watch.has_ended());
        assert!(watch.signal(libc::SIGKILL));
        assert!(until(|| watch.has_ended()));
        let _ = child.wait();
    }
}
