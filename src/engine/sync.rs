//! Small synchronisation helpers shared by the engine and the Python-facing side.
//!
//! `Signal<T>` is a mutex-protected state plus a condition variable. Engine
//! threads update the state and notify; Python-facing code waits on it through
//! `python::wait::blocking_wait`, which releases the GIL. A poisoned lock (a panic
//! elsewhere while holding it) is recovered rather than unwrapped: the data it
//! guards stays consistent because every critical section is a few plain
//! assignments.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engine::spin::{SpinSwitch, Spun};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The engine thread updates a job's state once per result, so an update
/// must stay cheap: it wakes the condition variable only when a thread is
/// asleep on it (a notify is a system call even with nobody waiting), and
/// spinning waiters watch a version counter instead of taking the lock (which
/// would make the updater sleep on a contended mutex).
#[derive(Default)]
pub struct Signal<T> {
    state: Mutex<T>,
    changed: Condvar,
    /// Threads inside `wait_until`'s condition-variable wait, and whether a
    /// wake-up has been sent that no sleeper has seen yet (a thread woken
    /// takes a while to run; further updates meanwhile need no second
    /// wake-up). Both change only with `state` locked, so an updater holding
    /// the lock sees every waiter that could miss its change.
    sleepers: AtomicUsize,
    wake_sent: AtomicBool,
    /// Bumped by every `update`, for `spin_until`.
    version: AtomicU64,
}

impl<T> Signal<T> {
    pub fn new(value: T) -> Self {
        Signal {
            state: Mutex::new(value),
            changed: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            wake_sent: AtomicBool::new(false),
            version: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.state)
    }

    /// Runs `f` on the state and wakes every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.lock();
        let r = f(&mut guard);
        self.version.fetch_add(1, Ordering::Release);
        let wake = self.sleepers.load(Ordering::Relaxed) > 0
            && !self.wake_sent.swap(true, Ordering::Relaxed);
        drop(guard);
        if wake {
            self.changed.notify_all();
        }
        r
    }

    /// Waits until `done(state)` holds or `until` passes, whichever is first.
    /// Returns whether `done` held. Never waits past `until`.
    pub fn wait_until(&self, until: Instant, mut done: impl FnMut(&mut T) -> bool) -> bool {
        let mut guard = self.lock();
        loop {
            if done(&mut guard) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // Whatever wake-up was sent came before this sleep: the next
            // update must send another.
            self.wake_sent.store(false, Ordering::Relaxed);
            guard = match self.changed.wait_timeout(guard, until - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Looks at the state, yielding the CPU in between, until `done(state)`
    /// holds (true) or `switch` allows no more spinning or `deadline` passes
    /// (false). Never sleeps: for waits that are usually short. The lock is
    /// taken only when the state has changed.
    pub fn spin_until(
        &self,
        switch: &SpinSwitch,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut T) -> bool,
    ) -> bool {
        let mut seen: Option<u64> = None; // the first look always checks
        let spun = switch.spin(deadline, || {
            let now_version = self.version.load(Ordering::Acquire);
            if seen == Some(now_version) {
                return false;
            }
            seen = Some(now_version);
            done(&mut self.lock())
        });
        spun == Spun::Found
    }

    pub fn wait_for(&self, slice: Duration, done: impl FnMut(&mut T) -> bool) -> bool {
        self.wait_until(Instant::now() + slice, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn waiter_sees_update_from_other_thread() {
        let s = Arc::new(Signal::new(0u32));
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            s2.update(|v| *v = 5);
        });
        assert!(s.wait_for(Duration::from_secs(5), |v| *v == 5));
        t.join().expect("thread");
    }

    #[test]
    fn wait_times_out() {
        let s = Signal::new(false);
        let t0 = Instant::now();
        assert!(!s.wait_for(Duration::from_millis(30), |v| *v));
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }
}
