//! The engine's public face: what Python-facing code holds to talk to the
//! engine thread of one pool.
//!
//! ```text
//!  caller threads ──Command──▶ crossbeam channel ──┐   wake byte
//!                 ──────────────────────────────────┼──▶ socket ──▶ engine thread (event_loop)
//!  waiters ◀── Job signals (results) ◀──────────────┘                     │
//!  service thread ◀── ServiceEvent (job ready for callbacks, log lines) ◀─┘
//! ```
//!
//! Nothing here needs the GIL; the PyO3 wrappers release it around waits.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::engine::event_loop::EventLoop;
use crate::engine::shared::{Command, EngineConfig, Phase, Shared};
use crate::engine::supervisor::Launcher;
use crate::engine::sync::lock;

pub struct Engine {
    pub shared: Arc<Shared>,
    inbox: Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that started the engine thread (a forked worker holds a
    /// copy of this handle, but no engine).
    owner_pid: u32,
}

impl Engine {
    pub fn start(config: EngineConfig, launcher: Launcher) -> io::Result<Engine> {
        let (waker, wake_rx) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let shared = Shared::new(waker);
        let (inbox, commands): (Sender<Command>, Receiver<Command>) = unbounded();
        let mut event_loop =
            EventLoop::new(config, launcher, Arc::clone(&shared), commands, wake_rx);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ferropool-engine".into())
            .spawn(move || {
                // A panic must surface as a broken pool, never as a hang.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| event_loop.run()));
                if outcome.is_err() {
                    thread_shared.status.update(|s| {
                        s.broken
                            .get_or_insert_with(|| "the pool's engine thread panicked".into());
                        s.phase = Phase::Finished;
                    });
                }
                thread_shared.service.update(|q| q.engine_done = true);
                thread_shared.pause.update(|p| p.gone = true);
            })?;
        Ok(Engine {
            shared,
            inbox,
            thread: Mutex::new(Some(thread)),
            owner_pid: std::process::id(),
        })
    }

    /// Sends a command and wakes the engine thread. Fails only once the
    /// engine thread has ended.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        let closed = lock(&self.shared.inbox_closed);
        if *closed {
            return Err(command);
        }
        self.inbox.send(command).map_err(|e| e.into_inner())?;
        drop(closed);
        if self.shared.asleep.load(Ordering::SeqCst) {
            self.shared.wake();
        }
        Ok(())
    }

    pub fn phase(&self) -> Phase {
        self.shared.status.lock().phase
    }

    /// Joins the engine thread once it has finished (call after waiting for
    /// `Phase::Finished`).
    pub fn reap_thread(&self) {
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Engine {
    /// The last handle is gone while the engine still runs (its owner was
    /// dropped without being stopped, or never finished starting): stop the
    /// workers, so that no thread or worker outlives the engine. The engine
    /// thread finishes on its own and holds the rest of the state.
    fn drop(&mut self) {
        if std::process::id() != self.owner_pid || self.phase() == Phase::Finished {
            return;
        }
        let _ = self.send(Command::Terminate { kill: false });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::shared::{pause_all, resume_all};
    use std::time::Duration;

    #[test]
    fn fork_gate_parks_and_resumes_the_engine_thread() {
        let config = EngineConfig {
            processes: 1,
            tasks_per_worker: None,
            prefetch: 2,
            first_worker_number: 1,
            prepare: None,
            setup: None,
            boot_failure_limit: 3,
            crash_limit: 10,
            crash_window: Duration::from_secs(10),
            task_timeout: None,
        };
        let launcher = Launcher::spawn(
            vec!["/bin/sh".into(), "-c".into(), "sleep 5".into()],
            Vec::new(),
            true,
        )
        .expect("launcher");
        let engine = Engine::start(config, launcher).expect("engine");
        let paused = pause_all();
        let ours = paused
            .iter()
            .find(|e| Arc::ptr_eq(e, &engine.shared))
            .expect("the engine is registered");
        assert!(ours.pause.lock().parked, "the engine thread parked");
        resume_all(&paused);
        assert!(engine
            .shared
            .pause
            .wait_for(Duration::from_secs(5), |p| !p.parked));
        assert!(engine.send(Command::Terminate { kill: true }).is_ok());
        assert!(engine
            .shared
            .status
            .wait_for(Duration::from_secs(10), |s| s.phase == Phase::Finished));
        engine.reap_thread();
        assert!(engine.shared.pause.lock().gone);
    }
}
