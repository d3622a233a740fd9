//! What `Pool.stats()` reports: per worker, the tasks it ran, the time it
//! spent on them, the bytes of tasks and results that crossed; for workers
//! that ended, why. The engine thread keeps these as plain counters (no lock
//! on the way of a task) and copies them out when asked.

use std::collections::VecDeque;
use std::time::Duration;

/// One worker's figures (or their sum over several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub tasks_done: u64,
    /// Time its tasks ran: from when each started (sent, or when the one
    /// before it finished) to its result.
    pub busy: Duration,
    /// Pickled functions and tasks sent to it.
    pub bytes_sent: u64,
    /// Results received from it.
    pub bytes_received: u64,
}

impl Figures {
    pub fn add(&mut self, other: &Figures) {
        self.tasks_done += other.tasks_done;
        self.busy += other.busy;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

#[derive(Clone, Debug)]
pub struct LiveWorker {
    pub number: u64,
    pub pid: Option<i32>,
    /// "starting", "ready" or "retiring".
    pub state: &'static str,
    pub age: Duration,
    pub figures: Figures,
}

#[derive(Clone, Debug)]
pub struct EndedWorker {
    pub number: u64,
    pub pid: Option<i32>,
    pub figures: Figures,
    /// In words: "retired", "stopped with the pool", "was killed by signal 9
    /// (SIGKILL)", "ran past the task timeout", ...
    pub why: String,
    /// Not asked for: a death the pool replaced.
    pub unexpected: bool,
}

/// How many ended workers are listed one by one (all are counted).
pub const REMEMBERED_ENDS: usize = 64;

/// The workers that have ended, kept by the engine thread.
#[derive(Debug, Default)]
pub struct History {
    pub recent: VecDeque<EndedWorker>,
    pub totals: Figures,
    pub count: u64,
    pub unexpected: u64,
}

impl History {
    pub fn record(&mut self, ended: EndedWorker) {
        self.totals.add(&ended.figures);
        self.count += 1;
        self.unexpected += u64::from(ended.unexpected);
        if self.recent.len() >= REMEMBERED_ENDS {
            self.recent.pop_front();
        }
        self.recent.push_back(ended);
    }
}

/// A copy of the figures, handed to Python.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub workers: Vec<LiveWorker>,
    pub ended: Vec<EndedWorker>,
    /// Over every worker the pool had, live and ended.
    pub totals: Figures,
    pub workers_started: u64,
    pub workers_ended: u64,
    pub unexpected_deaths: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(n: u64, tasks: u64, unexpected: bool) -> EndedWorker {
        EndedWorker {
            number: n,
            pid: Some(100 + n as i32),
            figures: Figures {
                tasks_done: tasks,
                ..Figures::default()
            },
            why: "retired".into(),
            unexpected,
        }
    }

    #[test]
    fn history_counts_everything_and_lists_the_latest() {
        let mut history = History::default();
        for n in 0..(REMEMBERED_ENDS as u64 + 3) {
            history.record(ended(n, 2, n % 2 == 0));
        }
        assert_eq!(history.count, REMEMBERED_ENDS as u64 + 3);
        assert_eq!(history.totals.tasks_done, 2 * (REMEMBERED_ENDS as u64 + 3));
        assert_eq!(history.unexpected, (REMEMBERED_ENDS as u64 + 3).div_ceil(2));
        assert_eq!(history.recent.len(), REMEMBERED_ENDS);
        assert_eq!(history.recent.front().map(|e| e.number), Some(3));
    }
}
