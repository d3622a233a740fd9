//! How long a wait spins before it sleeps, learnt from how the last waits
//! went.
//!
//! A short spin (looking again and again, yielding the CPU in between) sees
//! an answer that comes within tens of microseconds, sooner than a sleeping
//! thread on an idle (virtual) CPU can be woken: that is what makes a quiet
//! machine's round trips fast, and the pool's own threads pass the CPU to one
//! another through those yields. On a busy machine (more runnable threads
//! than cores) it is the other way round: a yield hands the core to a
//! process that keeps it for a whole time slice, the spin only takes CPU
//! from the processes that would produce the answer, and it spends the
//! waiter's claim to be run first when it wakes. So each place that waits
//! keeps a switch:
//!
//! - a spin during which one yield kept this thread off the CPU for longer
//!   than `CONTENDED` stops at once and turns spinning off there;
//! - with spinning off, a wait sleeps at once (as the stdlib's waits do),
//!   and every so often one wait spins as a probe: a probe that finds its
//!   answer turns spinning on again; one that does not makes the next probe
//!   twice as far away (from one wait in `PROBE_EVERY` up to one in
//!   `PROBE_EVERY_MOST`: on a busy machine a probe can cost its wait a time
//!   slice of another process).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The longest spin.
pub const MAX_SPIN: Duration = Duration::from_micros(60);
/// A yield that kept this thread off the CPU for this long gave the core to
/// a thread that runs for long without waiting (a CPU-bound process, a busy
/// worker). The pool's own threads, passing the CPU to one another while a
/// short task makes its round trip, hold it for far less.
const CONTENDED: Duration = Duration::from_micros(250);
/// A probe spins longer than a wait does, so that on a quiet machine it
/// sees its answer even where waits are longer than `MAX_SPIN`.
const PROBE_SPIN: Duration = Duration::from_micros(240);
const PROBE_EVERY: u32 = 16;
const PROBE_EVERY_MOST: u32 = 1024;

/// How one wait's spin ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spun {
    /// The answer came during the spin.
    Found,
    /// The spin ran out (or spinning is off here): sleep now.
    Sleep,
}

/// The spin switch of one place that waits (shared by the threads that
/// wait there; updates are plain stores, a lost one costs nothing).
pub struct SpinSwitch {
    off: AtomicBool,
    waits_since_probe: AtomicU32,
    probe_every: AtomicU32,
}

impl SpinSwitch {
    pub const fn new() -> Self {
        SpinSwitch {
            off: AtomicBool::new(false),
            waits_since_probe: AtomicU32::new(0),
            probe_every: AtomicU32::new(PROBE_EVERY),
        }
    }

    /// Whether this wait spins: always while spinning is on; when it is
    /// off, only as the next probe. Returns (spin, is a probe).
    fn spins(&self) -> (bool, bool) {
        if !self.off.load(Ordering::Relaxed) {
            return (true, false);
        }
        let n = self.waits_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.probe_every.load(Ordering::Relaxed) {
            self.waits_since_probe.store(0, Ordering::Relaxed);
            return (true, true);
        }
        (false, false)
    }

    /// Spins while `look()` is false, for at most `MAX_SPIN` (a probe:
    /// `PROBE_SPIN`; never past `deadline`), yielding the CPU between looks;
    /// then learns from how it went.
    pub fn spin(&self, deadline: Option<Instant>, mut look: impl FnMut() -> bool) -> Spun {
        let (spins, probe) = self.spins();
        if !spins {
            return if look() { Spun::Found } else { Spun::Sleep };
        }
        let mut end = Instant::now() + if probe { PROBE_SPIN } else { MAX_SPIN };
        if let Some(d) = deadline {
            end = end.min(d);
        }
        let spun = loop {
            if look() {
                break Spun::Found;
            }
            let before = Instant::now();
            if before >= end {
                break Spun::Sleep;
            }
            std::thread::yield_now();
            if before.elapsed() >= CONTENDED {
                self.off.store(true, Ordering::Relaxed);
                if probe {
                    self.probe_rarer();
                }
                return if look() { Spun::Found } else { Spun::Sleep };
            }
        };
        if probe {
            if spun == Spun::Found {
                self.off.store(false, Ordering::Relaxed);
                self.probe_every.store(PROBE_EVERY, Ordering::Relaxed);
            } else {
                self.probe_rarer();
            }
        }
        spun
    }
}

impl SpinSwitch {
    fn probe_rarer(&self) {
        let every = self.probe_every.load(Ordering::Relaxed);
        let next = (every * 2).min(PROBE_EVERY_MOST);
        self.probe_every.store(next, Ordering::Relaxed);
    }
}

impl Default for SpinSwitch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `waits` waits whose answer never comes; how many of them spun.
    fn spinning_waits(b: &SpinSwitch, waits: u32) -> u32 {
        (0..waits)
            .filter(|_| {
                let mut looks = 0;
                b.spin(None, || {
                    looks += 1;
                    false
                });
                looks > 1
            })
            .count() as u32
    }

    #[test]
    fn spins_until_the_answer_or_the_limit() {
        // A spin ends early if a yield lost the core for long (other tests
        // run beside this one): it must find the answer in one of a few tries.
        let found = (0..20).any(|_| {
            let b = SpinSwitch::new();
            let mut looks = 0;
            b.spin(None, || {
                looks += 1;
                looks > 3
            }) == Spun::Found
        });
        assert!(found, "the answer was never found within the spin");
        let b = SpinSwitch::new();
        let t = Instant::now();
        assert_eq!(b.spin(None, || false), Spun::Sleep);
        assert!(t.elapsed() >= MAX_SPIN);
    }

    #[test]
    fn a_contended_core_turns_spinning_off_and_probes_grow_rarer() {
        let b = SpinSwitch::new();
        // As if a yield had given the core away for a time slice.
        b.off.store(true, Ordering::Relaxed);
        b.probe_every.store(PROBE_EVERY * 2, Ordering::Relaxed);
        assert_eq!(spinning_waits(&b, PROBE_EVERY * 2), 1, "one probe");
        // That probe found nothing: still off, and the next is further away.
        assert!(b.off.load(Ordering::Relaxed));
        assert_eq!(b.probe_every.load(Ordering::Relaxed), PROBE_EVERY * 4);
        // A probe that finds its answer turns spinning on again.
        let mut looks = 0;
        for _ in 0..PROBE_EVERY * 4 {
            b.spin(None, || {
                looks += 1;
                looks % 3 == 0
            });
        }
        assert!(!b.off.load(Ordering::Relaxed));
        assert_eq!(b.probe_every.load(Ordering::Relaxed), PROBE_EVERY);
    }

    #[test]
    fn a_deadline_bounds_the_spin() {
        let b = SpinSwitch::new();
        let t = Instant::now();
        assert_eq!(b.spin(Some(t), || false), Spun::Sleep);
        assert!(t.elapsed() < MAX_SPIN * 10);
    }
}
