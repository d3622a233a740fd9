//! Every Linux-only call of ferropool, each with a portable fallback.
//!
//! ```text
//!  facility      Linux call                   fallback (portable POSIX)
//!  pidfd         pidfd_open/pidfd_send_signal waitid(WNOWAIT) polled; kill after that check
//!  pdeathsig     prctl(PR_SET_PDEATHSIG)      a pipe whose EOF tells a worker its parent died
//!  memfd         memfd_create + seals         large payloads through the socket
//!  map_populate  mmap(MAP_POPULATE)           plain mmap + madvise(WILLNEED): pages fault lazily
//!  mallopt       glibc mallopt                nothing: the allocator's defaults
//! ```
//!
//! Each facility is chosen once per process, at its first use: its Linux
//! call is tried (a harmless probe), and ENOSYS, EPERM or EINVAL (an old
//! kernel, seccomp, a non-glibc libc) settle on the fallback for good. A
//! later real call that fails the same way also settles on it
//! (`fall_back`). An environment variable forces the fallback (`ENV_*`,
//! `FERROPOOL_FALLBACKS=all` or a comma-separated list of names), read once;
//! workers inherit the environment, so they make the same choice.
//! `close_range` is not used anywhere (every descriptor ferropool makes is
//! close-on-exec, and a forked worker closes the few it must by number).

pub mod memory;
pub mod parent_death;
pub mod process;

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A Linux-only facility that has a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facility {
    Pidfd,
    Pdeathsig,
    Memfd,
    MapPopulate,
    Mallopt,
}

impl Facility {
    pub const ALL: [Facility; 5] = [
        Facility::Pidfd,
        Facility::Pdeathsig,
        Facility::Memfd,
        Facility::MapPopulate,
        Facility::Mallopt,
    ];

    /// Its name in `FERROPOOL_FALLBACKS` and in `_native.platform_features()`.
    pub fn name(self) -> &'static str {
        match self {
            Facility::Pidfd => "pidfd",
            Facility::Pdeathsig => "pdeathsig",
            Facility::Memfd => "memfd",
            Facility::MapPopulate => "map_populate",
            Facility::Mallopt => "mallopt",
        }
    }

    /// The variable that forces its fallback (any value but "" and "0").
    pub fn env_var(self) -> &'static str {
        match self {
            Facility::Pidfd => "FERROPOOL_NO_PIDFD",
            Facility::Pdeathsig => "FERROPOOL_NO_PDEATHSIG",
            Facility::Memfd => "FERROPOOL_NO_MEMFD",
            Facility::MapPopulate => "FERROPOOL_NO_MAP_POPULATE",
            Facility::Mallopt => "FERROPOOL_NO_MALLOPT",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Tries the Linux call without changing anything; `Err` with the
    /// call's error where it is refused.
    fn probe(self) -> io::Result<()> {
        match self {
            Facility::Pidfd => process::probe_pidfd(),
            Facility::Pdeathsig => parent_death::probe_pdeathsig(),
            Facility::Memfd => memory::probe_memfd(),
            Facility::MapPopulate => memory::probe_map_populate(),
            Facility::Mallopt => memory::probe_mallopt(),
        }
    }
}

/// Forces every fallback, or those named (comma-separated).
pub const ENV_FALLBACKS: &str = "FERROPOOL_FALLBACKS";

/// The facilities the environment forces onto their fallback, as bits.
/// `lookup` reads one variable (the process environment, or a test's).
fn forced_by(lookup: impl Fn(&str) -> Option<String>) -> u8 {
    let set = |value: Option<String>| value.is_some_and(|v| !v.is_empty() && v != "0");
    let listed = lookup(ENV_FALLBACKS).unwrap_or_default();
    let mut bits = 0;
    for facility in Facility::ALL {
        let named = listed
            .split(',')
            .map(str::trim)
            .any(|name| name == "all" || name == facility.name());
        if named || set(lookup(facility.env_var())) {
            bits |= facility.bit();
        }
    }
    bits
}

fn forced() -> u8 {
    static FORCED: OnceLock<u8> = OnceLock::new();
    *FORCED.get_or_init(|| forced_by(|name| std::env::var(name).ok()))
}

const UNDECIDED: u8 = 0;
const NATIVE: u8 = 1;
const FALLBACK: u8 = 2;

/// Per facility (by `Facility as usize`): UNDECIDED, NATIVE or FALLBACK.
static CHOICES: [AtomicU8; Facility::ALL.len()] = [const { AtomicU8::new(UNDECIDED) }; 5];

/// Whether the error says the facility does not exist here (rather than a
/// passing shortage such as EMFILE or ENOMEM).
pub fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP)
    ) || error.kind() == io::ErrorKind::Unsupported
}

/// Whether to use the Linux call of `facility` (else its fallback): decided
/// at the first ask, by the environment and then a probe.
pub fn native(facility: Facility) -> bool {
    let choice = &CHOICES[facility as usize];
    match choice.load(Ordering::Relaxed) {
        NATIVE => return true,
        FALLBACK => return false,
        _ => {}
    }
    let decided = if forced() & facility.bit() != 0 {
        FALLBACK
    } else {
        match facility.probe() {
            Err(e) if is_unsupported(&e) => FALLBACK,
            _ => NATIVE,
        }
    };
    // Two threads may probe at once: they find the same answer.
    choice.store(decided, Ordering::Relaxed);
    decided == NATIVE
}

/// A real call of `facility` failed with `error`: where it says the
/// facility is missing, the fallback is used from now on. Returns whether
/// it did (the caller then takes the fallback for this call too).
pub fn fall_back(facility: Facility, error: &io::Error) -> bool {
    if is_unsupported(error) {
        CHOICES[facility as usize].store(FALLBACK, Ordering::Relaxed);
        return true;
    }
    false
}

/// The error a facility's call returns once its fallback is chosen.
pub fn unsupported(facility: Facility) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{} is not used here (fallback)", facility.name()),
    )
}

/// Each facility and whether this process uses it ("native") or its
/// fallback ("fallback"), deciding those not decided yet.
pub fn features() -> Vec<(&'static str, &'static str)> {
    Facility::ALL
        .iter()
        .map(|&f| (f.name(), if native(f) { "native" } else { "fallback" }))
        .collect()
}

/// `rc` of a libc call that returns -1 and sets errno on failure.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn each_variable_forces_its_own_facility_only() {
        assert_eq!(forced_by(env(&[])), 0);
        for facility in Facility::ALL {
            let bits = forced_by(env(&[(facility.env_var(), "1")]));
            assert_eq!(bits, facility.bit(), "{}", facility.env_var());
            assert_eq!(forced_by(env(&[(facility.env_var(), "0")])), 0);
            assert_eq!(forced_by(env(&[(facility.env_var(), "")])), 0);
        }
    }

    #[test]
    fn fallbacks_all_or_a_list() {
        let all = Facility::ALL.iter().fold(0, |bits, f| bits | f.bit());
        assert_eq!(forced_by(env(&[(ENV_FALLBACKS, "all")])), all);
        let two = forced_by(env(&[(ENV_FALLBACKS, "pidfd, memfd")]));
        assert_eq!(two, Facility::Pidfd.bit() | Facility::Memfd.bit());
        assert_eq!(forced_by(env(&[(ENV_FALLBACKS, "nonsense")])), 0);
    }

    #[test]
    fn names_and_variables_are_distinct() {
        let mut names: Vec<_> = Facility::ALL.iter().map(|f| f.name()).collect();
        let mut vars: Vec<_> = Facility::ALL.iter().map(|f| f.env_var()).collect();
        names.sort_unstable();
        names.dedup();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(names.len(), Facility::ALL.len());
        assert_eq!(vars.len(), Facility::ALL.len());
    }

    #[test]
    fn unsupported_errors_choose_the_fallback() {
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::ENOSYS)));
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_unsupported(&unsupported(Facility::Memfd)));
    }
}
