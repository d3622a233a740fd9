//! The one blocking wait used by every Python-facing call that blocks
//! (`get`, `next`, `join`, the service thread): the GIL is released, the wait
//! runs in short slices, and between slices pending signals are handled, so a
//! Ctrl-C raises `KeyboardInterrupt` at once instead of after the wait.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::engine::spin::SpinSwitch;
use crate::engine::sync::Signal;

const SLICE: Duration = Duration::from_millis(20);
/// A wait first spins (GIL released, yielding the CPU between looks) before
/// it sleeps on the condition variable: a thread asleep on an idle (virtual)
/// CPU takes tens of microseconds to wake again, longer than a short task's
/// whole round trip. How long is learnt (see `spin`): nothing on a busy
/// machine, where the spin would only slow the workers down.
static CALLER_SPIN: SpinSwitch = SpinSwitch::new();

/// Waits until `done(state)` holds (true) or `timeout` seconds pass (false).
/// `None` waits for ever. Signal handlers run between slices; an exception
/// they raise (KeyboardInterrupt) is returned as the error.
pub fn blocking_wait<T: Send>(
    py: Python<'_>,
    signal: &Signal<T>,
    timeout: Option<f64>,
    mut done: impl FnMut(&mut T) -> bool + Send,
) -> PyResult<bool> {
    // Fast path: no need to release the GIL when the answer is already there.
    if done(&mut signal.lock()) {
        return Ok(true);
    }
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    if py.detach(|| signal.spin_until(&CALLER_SPIN, deadline, &mut done)) {
        return Ok(true);
    }
    loop {
        let slice_end = match deadline {
            Some(d) => d.min(Instant::now() + SLICE),
            None => Instant::now() + SLICE,
        };
        if py.detach(|| signal.wait_until(slice_end, &mut done)) {
            return Ok(true);
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}
