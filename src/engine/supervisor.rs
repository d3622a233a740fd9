//! Starting workers and learning how they ended.
//!
//! Two ways to start a worker, chosen by the start method:
//!
//! ```text
//!  spawn:      engine ──fork+exec──▶ python -c "...spawn_main()"   (child of the engine;
//!                                     socket on fd 3, inherited fds  reaped here by try_wait)
//!                                     from fd 4 on
//!  fork,       engine ──request + socket (SCM_RIGHTS)──▶ zygote ──fork──▶ worker
//!  forkserver:        ◀── started(number, pid) / exited(pid, status) ──┘
//! ```
//!
//! The zygote is a single-threaded helper process made by the Python side
//! before this engine's thread starts (a fork of the caller for `fork`, a
//! fresh interpreter that imported `__main__` for `forkserver`), so no process
//! that runs engine threads is ever forked. Its records are three
//! little-endian u64: `(1, number, pid)` started, `(2, pid, wait status)` exited.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::platform::parent_death;
use crate::platform::process::ExitWatch;

/// fd number of the worker's socket in a spawned worker.
pub const SPAWN_SOCKET_FD: RawFd = 3;
/// First fd number of the inherited setup fds in a spawned worker.
pub const SPAWN_FIRST_INHERITED_FD: RawFd = 4;
const ZYGOTE_RECORD: usize = 24;
/// Send and receive buffer of each worker socket (the kernel caps it).
pub const SOCKET_BUFFER: usize = 1 << 20;

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    Signal(i32),
    Unknown,
}

impl ExitInfo {
    pub fn from_wait_status(status: i32) -> ExitInfo {
        if libc::WIFEXITED(status) {
            ExitInfo::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ExitInfo::Signal(libc::WTERMSIG(status))
        } else {
            ExitInfo::Unknown
        }
    }

    pub fn from_exit_status(status: std::process::ExitStatus) -> ExitInfo {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::Code(code),
            (None, Some(sig)) => ExitInfo::Signal(sig),
            _ => ExitInfo::Unknown,
        }
    }
}

impl ExitInfo {
    /// As `multiprocessing.Process.exitcode`: the code, or -N for signal N.
    pub fn exitcode(&self) -> Option<i32> {
        match *self {
            ExitInfo::Code(code) => Some(code),
            ExitInfo::Signal(sig) => Some(-sig),
            ExitInfo::Unknown => None,
        }
    }

    /// A likely cause worth telling the user, appended to messages.
    pub fn hint(&self) -> &'static str {
        match *self {
            ExitInfo::Signal(libc::SIGKILL) => {
                "; the out-of-memory killer is a common cause of SIGKILL"
            }
            _ => "",
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitInfo::Code(code) => write!(f, "exited with code {code}"),
            ExitInfo::Signal(sig) => {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "was killed by signal {sig} ({name})")
            }
            ExitInfo::Unknown => write!(f, "ended for an unknown reason"),
        }
    }
}

pub enum ZygoteEvent {
    Started { number: u64, pid: i32 },
    Exited { pid: i32, info: ExitInfo },
}

pub enum Launcher {
    Spawn {
        argv: Vec<OsString>,
        /// Kept open for the pool's life; each worker gets them from fd 4 on.
        inherited: Vec<OwnedFd>,
        /// Each worker leads a process group of its own (see `spawn`).
        own_group: bool,
        /// Where the parent-death fallback is in effect: the read end of
        /// this process's lifeline, for every worker (see `platform`),
        /// moved above the numbers the workers' fds take (as `inherited`).
        lifeline: Option<OwnedFd>,
    },
    Zygote {
        control: UnixStream,
        partial: Vec<u8>,
    },
    /// `fork`: the Python side forks every worker, from the caller's own
    /// process: the first ones before this engine's thread starts, later
    /// ones from the pool's service thread (asked for with a
    /// `ServiceEvent::ForkWorker`) while every engine thread is parked.
    Caller {
        /// The first workers, already forked, by worker number.
        started_before: HashMap<u64, Launched>,
    },
}

/// A worker that has been asked for.
pub struct Launched {
    /// The engine's end of the worker's socket (non-blocking).
    pub sock: UnixStream,
    /// Workers that are this process's own children (not the zygote's),
    /// once their pid is known.
    pub child: Option<OwnChild>,
    /// `Caller`: the worker's end of its socket, for the service thread to
    /// fork a worker on.
    pub fork_request: Option<OwnedFd>,
}

/// A worker process this process must reap: spawned by the engine, or forked
/// by the caller. Its `watch` tells when it ended (see `platform::process`).
pub struct OwnChild {
    process: ChildProcess,
    watch: ExitWatch,
}

enum ChildProcess {
    Spawned(Child),
    Forked(i32),
}

impl OwnChild {
    pub fn spawned(child: Child) -> OwnChild {
        let watch = ExitWatch::child(child.id() as i32);
        OwnChild {
            process: ChildProcess::Spawned(child),
            watch,
        }
    }

    /// `pid`: a child this process forked and has not reaped.
    pub fn forked(pid: i32) -> OwnChild {
        OwnChild {
            process: ChildProcess::Forked(pid),
            watch: ExitWatch::child(pid),
        }
    }

    pub fn pid(&self) -> i32 {
        match &self.process {
            ChildProcess::Spawned(child) => child.id() as i32,
            ChildProcess::Forked(pid) => *pid,
        }
    }

    /// How its end is noticed: polled with the sockets where it has a
    /// descriptor, else asked now and then (see `EventLoop`).
    pub fn watch(&self) -> &ExitWatch {
        &self.watch
    }

    /// How it ended, once it has (reaping it); `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitInfo> {
        match &mut self.process {
            ChildProcess::Spawned(child) => match child.try_wait() {
                Ok(Some(status)) => Some(ExitInfo::from_exit_status(status)),
                Ok(None) => None,
                Err(_) => Some(ExitInfo::Unknown),
            },
            ChildProcess::Forked(pid) => {
                match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => Some(ExitInfo::Code(code)),
                    Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitInfo::Signal(sig as i32)),
                    Ok(WaitStatus::StillAlive) => None,
                    Ok(_) => None, // stopped or continued: still there
                    Err(_) => Some(ExitInfo::Unknown),
                }
            }
        }
    }

    /// Blocks until it has ended (after it was killed); how it ended.
    pub fn wait(&mut self) -> ExitInfo {
        match &mut self.process {
            ChildProcess::Spawned(child) => match child.wait() {
                Ok(status) => ExitInfo::from_exit_status(status),
                Err(_) => ExitInfo::Unknown,
            },
            ChildProcess::Forked(pid) => match waitpid(Pid::from_raw(*pid), None) {
                Ok(WaitStatus::Exited(_, code)) => ExitInfo::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => ExitInfo::Signal(sig as i32),
                _ => ExitInfo::Unknown,
            },
        }
    }
}

/// Sends `signal` to a worker the engine started and to the process group it
/// leads (where a task's own children are). `pid` must come from the engine's
/// own records (a fork, a spawn, the zygote's report), never from a worker's
/// message. Pids that `kill` would read as something else (0: the caller's
/// group; 1 and below: init, or every process) and this process's own are
/// refused. With `child` (our own, unreaped child of that pid), the process
/// and its group are signalled only while it still runs (see
/// `ExitWatch::signal`): a pid that was freed and reused is never hit.
pub fn signal_worker(pid: i32, child: Option<&OwnChild>, signal: Signal) {
    if pid <= 1 || pid as u32 == std::process::id() {
        return;
    }
    match child {
        Some(child) => {
            if child.watch.has_ended() {
                return;
            }
            // The group's id is the pid of a process not reaped yet: it
            // cannot be anyone else's group.
            let _ = kill(Pid::from_raw(-pid), signal);
            child.watch.signal(signal as libc::c_int);
        }
        None => {
            let _ = kill(Pid::from_raw(-pid), signal);
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Launcher {
    /// Spawns a fresh interpreter per worker. With `own_group` (a pool with
    /// a task timeout) each leads a process group of its own, so that a
    /// timed-out task's children die with it; without, a task may start a
    /// session of its own (`os.setsid()` fails in a group leader).
    pub fn spawn(
        argv: Vec<OsString>,
        inherited: Vec<OwnedFd>,
        own_group: bool,
    ) -> io::Result<Launcher> {
        // Move the fds well above the numbers they will take in the child, so
        // the dup2 calls there cannot overwrite one another.
        let inherited = inherited
            .into_iter()
            .map(|fd| dup_above(fd.as_raw_fd(), 100))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Launcher::Spawn {
            argv,
            inherited,
            own_group,
            lifeline: parent_death::lifeline_for_children()?
                .map(|fd| dup_above(fd, 100))
                .transpose()?,
        })
    }

    pub fn zygote(control: OwnedFd) -> io::Result<Launcher> {
        let control = UnixStream::from(control);
        control.set_nonblocking(true)?;
        Ok(Launcher::Zygote {
            control,
            partial: Vec::new(),
        })
    }

    /// `started_before`: (worker number, our end of its socket, its pid)
    /// for the workers the caller forked before the engine started.
    pub fn caller(started_before: Vec<(u64, OwnedFd, i32)>) -> io::Result<Launcher> {
        let started_before = started_before
            .into_iter()
            .map(|(number, fd, pid)| {
                let sock = UnixStream::from(fd);
                sock.set_nonblocking(true)?;
                let launched = Launched {
                    sock,
                    child: Some(OwnChild::forked(pid)),
                    fork_request: None,
                };
                Ok((number, launched))
            })
            .collect::<io::Result<HashMap<_, _>>>()?;
        Ok(Launcher::Caller { started_before })
    }

    /// The zygote's control socket, to poll for its records.
    pub fn control_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Launcher::Zygote { control, .. } => Some(control.as_fd()),
            Launcher::Spawn { .. } | Launcher::Caller { .. } => None,
        }
    }

    pub fn launch(&mut self, number: u64) -> io::Result<Launched> {
        if let Launcher::Caller { started_before } = self {
            if let Some(launched) = started_before.remove(&number) {
                return Ok(launched);
            }
        }
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        // Bigger buffers: a large payload crosses in a few hops, not dozens.
        for sock in [&ours, &theirs] {
            let _ = setsockopt(sock, sockopt::SndBuf, &SOCKET_BUFFER);
            let _ = setsockopt(sock, sockopt::RcvBuf, &SOCKET_BUFFER);
        }
        match self {
            Launcher::Spawn {
                argv,
                inherited,
                own_group,
                lifeline,
            } => {
                let lifeline = lifeline.as_ref().map(AsRawFd::as_raw_fd);
                let child = spawn_worker(argv, &theirs, inherited, *own_group, lifeline)?;
                Ok(Launched {
                    sock: ours,
                    child: Some(OwnChild::spawned(child)),
                    fork_request: None,
                })
            }
            Launcher::Zygote { control, .. } => {
                let mut record = [0u8; ZYGOTE_RECORD];
                record[0..8].copy_from_slice(&1u64.to_le_bytes());
                record[8..16].copy_from_slice(&number.to_le_bytes());
                let fds = [theirs.as_raw_fd()];
                let cmsg = [ControlMessage::ScmRights(&fds)];
                // A 24-byte record on a socket we never fill: this does not block
                // in practice; if the zygote is gone it fails and the caller
                // treats the pool as broken.
                control.set_nonblocking(false)?;
                let sent = sendmsg::<()>(
                    control.as_raw_fd(),
                    &[IoSlice::new(&record)],
                    &cmsg,
                    MsgFlags::empty(),
                    None,
                );
                control.set_nonblocking(true)?;
                match sent {
                    Ok(n) if n == ZYGOTE_RECORD => Ok(Launched {
                        sock: ours,
                        child: None,
                        fork_request: None,
                    }),
                    Ok(_) => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "short write to the zygote",
                    )),
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            Launcher::Caller { .. } => Ok(Launched {
                sock: ours,
                child: None,
                fork_request: Some(OwnedFd::from(theirs)),
            }),
        }
    }

    /// Reads every complete record the zygote has sent. `Err` means the
    /// zygote is gone.
    pub fn zygote_events(&mut self) -> io::Result<Vec<ZygoteEvent>> {
        let Launcher::Zygote { control, partial } = self else {
            return Ok(Vec::new());
        };
        let mut buf = [0u8; 4096];
        loop {
            match control.read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "zygote exited",
                    ))
                }
                Ok(n) => partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut events = Vec::new();
        let whole = partial.len() / ZYGOTE_RECORD * ZYGOTE_RECORD;
        for rec in partial[..whole].chunks_exact(ZYGOTE_RECORD) {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rec[i * 8..i * 8 + 8]);
                u64::from_le_bytes(b)
            };
            match word(0) {
                1 => events.push(ZygoteEvent::Started {
                    number: word(1),
                    pid: word(2) as i32,
                }),
                2 => events.push(ZygoteEvent::Exited {
                    pid: word(1) as i32,
                    info: ExitInfo::from_wait_status(word(2) as i32),
                }),
                // Unknown records come from a newer zygote; nothing to do.
                _ => {}
            }
        }
        partial.drain(..whole);
        Ok(events)
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // shutdown() reaches the zygote even when other processes (zygotes of
        // later pools, forked from the same parent) hold copies of this fd,
        // which a plain close would not.
        if let Launcher::Zygote { control, .. } = self {
            let _ = control.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh, valid descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn spawn_worker(
    argv: &[OsString],
    sock: &UnixStream,
    inherited: &[OwnedFd],
    own_group: bool,
    lifeline: Option<RawFd>,
) -> io::Result<Child> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty worker command line",
        ));
    };
    let sock_fd = dup_above(sock.as_raw_fd(), 100)?;
    let sock_raw = sock_fd.as_raw_fd();
    let inherited_raw: Vec<RawFd> = inherited.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut cmd = Command::new(program);
    cmd.args(args);
    if own_group {
        cmd.process_group(0);
    }
    if let Some(fd) = lifeline {
        cmd.env(parent_death::LIFELINE_ENV, fd.to_string());
    }
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe calls (signal, dup2, and prctl or fcntl in
    // `in_spawned_child`).
    unsafe {
        cmd.pre_exec(move || {
            // Ctrl-C at a terminal reaches the whole process group, workers
            // included (they lead no group of their own without a task
            // timeout): ignored from the start, through exec, so a worker
            // still starting up does not die of it. The parent handles it.
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            if libc::dup2(sock_raw, SPAWN_SOCKET_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, fd) in inherited_raw.iter().enumerate() {
                if libc::dup2(*fd, SPAWN_FIRST_INHERITED_FD + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Die with the engine that started us: no orphans.
            parent_death::in_spawned_child(lifeline);
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_info_describes_codes_and_signals() {
        assert_eq!(ExitInfo::Code(3).to_string(), "exited with code 3");
        let killed = ExitInfo::Signal(libc::SIGKILL);
        assert!(
            killed.to_string().contains("signal 9 (SIGKILL)"),
            "{killed}"
        );
        assert!(killed.hint().contains("out-of-memory"));
        let segv = ExitInfo::Signal(libc::SIGSEGV);
        assert!(segv.to_string().contains("SIGSEGV") && segv.hint().is_empty());
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(ExitInfo::from_wait_status(2 << 8), ExitInfo::Code(2));
        assert_eq!(
            ExitInfo::from_wait_status(libc::SIGTERM),
            ExitInfo::Signal(libc::SIGTERM)
        );
    }

    #[test]
    fn spawned_child_gets_socket_on_fd_3() {
        let mut launcher = Launcher::spawn(
            vec!["/bin/sh".into(), "-c".into(), "echo hi >&3".into()],
            Vec::new(),
            false,
        )
        .expect("launcher");
        let mut launched = launcher.launch(1).expect("launch");
        launched.sock.set_nonblocking(false).expect("blocking");
        let mut got = String::new();
        launched.sock.read_to_string(&mut got).expect("read");
        assert_eq!(got, "hi\n");
        let exit = launched.child.as_mut().expect("child").wait();
        assert_eq!(exit, ExitInfo::Code(0));
    }
}
