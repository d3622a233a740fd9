//! Reading a worker's socket: its bytes into frames, each frame checked
//! against what the engine sent that worker (see `protocol`), then handed
//! to the scheduler. Anything else is a protocol violation: the worker is
//! killed and replaced, and its task fails saying what it sent. Runs on the
//! engine thread, as part of `EventLoop`.
//!
//! ```text
//!  socket ──read (+ fds)──▶ FrameDecoder ──Ready / Result / Retiring──▶ scheduler
//!                                        └──anything else──▶ protocol_violation ──▶ SIGKILL
//! ```

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use super::{socket_step, EventLoop, Step, WorkerState, FRAME_STALL, MAX_QUEUED_FDS};
use crate::engine::jobs::{OutcomeBytes, TaskOutcome};
use crate::engine::protocol::{self, Kind, ResultStatus};
use crate::engine::shared::Phase;
use crate::engine::shm::{self, FdReader, ReceivedMap, Sender};
use crate::engine::supervisor::signal_worker;
use crate::engine::tally::Tally;

/// The shared memory a worker's result frame announces, in `fd` (the
/// descriptor that came with it), checked and mapped (see `shm`).
fn map_shared(fd: OwnedFd, frame_payload: &[u8]) -> Result<ReceivedMap, String> {
    let len = protocol::shared_len(frame_payload)
        .ok_or_else(|| "a shared-memory frame without a valid length".to_string())?;
    shm::map_received(fd, len, Sender::Worker)
        .map_err(|why| format!("a shared-memory result in {why}"))
}

impl EventLoop {
    pub(super) fn service_worker(&mut self, idx: usize, revents: i16) {
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_worker(idx);
        }
        if revents & libc::POLLOUT != 0 {
            self.flush(idx);
        }
    }

    pub(super) fn read_worker(&mut self, idx: usize) {
        loop {
            let w = &mut self.workers[idx];
            let mut reader = FdReader {
                sock: &w.sock,
                fds: &mut w.fds,
            };
            let step = match w.decoder.read_from(&mut reader) {
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.protocol_violation(idx, e.to_string());
                    return;
                }
                other => socket_step(other),
            };
            if w.fds.len() > MAX_QUEUED_FDS {
                let why = format!("{} descriptors without frames for them", w.fds.len());
                self.protocol_violation(idx, why);
                return;
            }
            if matches!(step, Step::Again) {
                w.last_byte_at = Instant::now();
            }
            match step {
                // A short read emptied the socket: the next poll says when
                // there is more, without a read that fails with EAGAIN.
                Step::Again if w.decoder.drained() => break,
                Step::Again => continue,
                Step::Blocked => break,
                Step::Closed => {
                    w.dead = true;
                    break;
                }
            }
        }
        loop {
            let frame = match self.workers[idx].decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.protocol_violation(idx, format!("a corrupt frame ({e})"));
                    break;
                }
            };
            // A shared-memory frame's descriptor is taken with it, whatever
            // becomes of the frame.
            let shared_fd = if frame.shared {
                if frame.kind != Kind::Result {
                    let why = format!("a {:?} frame in shared memory", frame.kind);
                    self.protocol_violation(idx, why);
                    break;
                }
                match self.workers[idx].fds.pop_front() {
                    Some(fd) => Some(fd),
                    None => {
                        let why = "a shared-memory frame without its descriptor".to_string();
                        self.protocol_violation(idx, why);
                        break;
                    }
                }
            } else {
                None
            };
            match frame.kind {
                Kind::Ready => {
                    // The pid in the frame is the worker's word: never used
                    // (the engine signals only pids it learned itself).
                    let w = &mut self.workers[idx];
                    if w.state == WorkerState::Starting {
                        w.state = WorkerState::Ready;
                        // Before any task: see `tally`.
                        if let Some((tally, memfd)) = Tally::create() {
                            w.out.push_shared(Kind::Tally, 0, 0, 0, &memfd);
                            w.tally = Some(tally);
                        }
                    }
                    self.boot_failures = 0;
                    let pid = w.pid.or_else(|| self.zygote_pids.get(&w.number).copied());
                    let msg = match pid {
                        Some(pid) => format!("worker {} (pid {pid}) started", w.number),
                        None => format!("worker {} started", w.number),
                    };
                    self.shared.log(log::Level::Info, msg);
                }
                Kind::Result => {
                    let status = ResultStatus::from_u8(frame.flags)
                        .filter(|s| s.sent_by_workers())
                        .ok_or_else(|| format!("a result with status {}", frame.flags));
                    let w = &self.workers[idx];
                    if w.state == WorkerState::Retiring
                        && w.slot.inflight.is_empty()
                        && (self.phase == Phase::Terminating || self.broken.is_some())
                    {
                        continue; // its task was failed when the pool stopped
                    }
                    let status = status.and_then(|status| {
                        // A worker runs its tasks in the order it got them.
                        let running = self.workers[idx].slot.inflight.front();
                        match running {
                            Some(t) if t.job == frame.job && t.index == frame.index => Ok(status),
                            _ => Err(format!(
                                "a result for task {} of job {}, which it was not running",
                                frame.index, frame.job
                            )),
                        }
                    });
                    let status = match status {
                        Ok(status) => status,
                        Err(why) => {
                            self.protocol_violation(idx, why);
                            break;
                        }
                    };
                    let payload = match shared_fd {
                        Some(fd) => match map_shared(fd, &frame.payload) {
                            Ok(map) => OutcomeBytes::Mapped(map),
                            Err(why) => {
                                self.protocol_violation(idx, why);
                                break;
                            }
                        },
                        None => OutcomeBytes::Heap(frame.payload),
                    };
                    let outcome = TaskOutcome {
                        index: frame.index,
                        status,
                        payload,
                    };
                    let w = &mut self.workers[idx];
                    let d = self.scheduler.complete(&mut w.slot, outcome, frame.job);
                    self.after_delivery(frame.job, d);
                }
                Kind::Retiring => {
                    let w = &mut self.workers[idx];
                    // Tasks sent after its last result never started: rerun them.
                    self.scheduler.worker_gone(&mut w.slot, false);
                    w.state = WorkerState::Retiring;
                    let why = String::from_utf8_lossy(&frame.payload);
                    let msg = format!("{} retires: {why}; replacing it", w.describe());
                    self.shared.log(log::Level::Info, msg);
                }
                other => {
                    self.protocol_violation(
                        idx,
                        format!("a {other:?} frame, which workers never send"),
                    );
                    break;
                }
            }
        }
        // A descriptor comes with its frame's first byte: one may wait for
        // a frame not yet whole, no more.
        let w = &self.workers[idx];
        let waiting = if w.decoder.mid_frame() { 1 } else { 0 };
        if !w.dead && w.fds.len() > waiting {
            let why = format!("{} descriptors without frames for them", w.fds.len());
            self.protocol_violation(idx, why);
        }
    }

    /// The worker broke the protocol: whatever it sends is no longer
    /// believed. It is killed (it cannot be trusted to exit) and replaced;
    /// the task it was running fails saying what it sent (see `worker_ended`).
    pub(super) fn protocol_violation(&mut self, idx: usize, why: String) {
        let w = &mut self.workers[idx];
        if w.violation.is_none() {
            let msg = format!(
                "{} broke the protocol: it sent {why}; killed it",
                w.describe()
            );
            self.shared.log(log::Level::Error, msg);
            if let Some(pid) = w.pid.or_else(|| self.zygote_pids.get(&w.number).copied()) {
                signal_worker(pid, w.child.as_ref(), nix::sys::signal::Signal::SIGKILL);
            }
            w.violation = Some(why);
        }
        w.dead = true;
    }

    /// Workers that began a frame and then sent nothing for FRAME_STALL.
    pub(super) fn fail_stalled_frames(&mut self) {
        let now = Instant::now();
        for idx in 0..self.workers.len() {
            let w = &self.workers[idx];
            if w.dead || !w.decoder.mid_frame() || now < w.last_byte_at + FRAME_STALL {
                continue;
            }
            let short = w.decoder.wanted();
            let why = format!(
                "a frame cut short ({short} bytes missing, nothing more for {:?})",
                FRAME_STALL
            );
            self.protocol_violation(idx, why);
        }
    }

    /// The earliest moment a begun frame counts as cut short.
    pub(super) fn next_frame_stall(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter(|w| !w.dead && w.decoder.mid_frame())
            .map(|w| w.last_byte_at + FRAME_STALL)
            .min()
    }
}
