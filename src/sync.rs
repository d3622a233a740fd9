//! Small synchronisation helpers shared by the engine and the Python-facing side.
//!
//! `Signal<T>` is a mutex-protected state plus a condition variable. Engine
//! threads update the state and notify; Python-facing code waits on it through
//! `wait::blocking_wait`, which releases the GIL. A poisoned lock (a panic
//! elsewhere while holding it) is recovered rather than unwrapped: the data it
//! guards stays consistent because every critical section is a few plain
//! assignments.

use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub struct Signal<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> Signal<T> {
    pub fn new(value: T) -> Self {
        Signal {
            state: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.state)
    }

    /// Runs `f` on the state and wakes every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
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
            guard = match self.changed.wait_timeout(guard, until - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Looks at the state, yielding the CPU in between, until `done(state)`
    /// holds (true) or `until` passes (false). Never sleeps: for waits that
    /// are usually short.
    pub fn spin_until(&self, until: Instant, mut done: impl FnMut(&mut T) -> bool) -> bool {
        loop {
            std::thread::yield_now();
            let looked = match self.state.try_lock() {
                Ok(mut guard) => Some(done(&mut guard)),
                Err(TryLockError::Poisoned(p)) => Some(done(&mut p.into_inner())),
                Err(TryLockError::WouldBlock) => None, // being updated: look again
            };
            if looked == Some(true) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
        }
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
