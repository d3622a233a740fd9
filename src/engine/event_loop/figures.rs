//! `Pool.stats()` on the engine thread: a copy of every worker's figures,
//! and the record of each worker that ended, with why (see engine::stats).

use std::time::Instant;

use super::{Dying, EventLoop, WorkerState};
use crate::engine::shared::Phase;
use crate::engine::stats::{EndedWorker, EngineStats, LiveWorker};
use crate::engine::supervisor::ExitInfo;

impl EventLoop {
    pub(super) fn stats_snapshot(&self) -> EngineStats {
        let now = Instant::now();
        let mut totals = self.history.totals;
        let workers = self
            .workers
            .iter()
            .map(|w| {
                totals.add(&w.slot.figures);
                LiveWorker {
                    number: w.number,
                    pid: w.pid,
                    state: match w.state {
                        WorkerState::Starting => "starting",
                        WorkerState::Ready => "ready",
                        WorkerState::Retiring => "retiring",
                    },
                    age: now.saturating_duration_since(w.started_at),
                    figures: w.slot.figures,
                }
            })
            .collect();
        for d in &self.dying {
            totals.add(&d.figures);
        }
        EngineStats {
            workers,
            ended: self.history.recent.iter().cloned().collect(),
            totals,
            workers_started: self.workers_started,
            workers_ended: self.history.count,
            unexpected_deaths: self.history.unexpected,
        }
    }

    /// Records a worker that has ended; `unexpected` as `worker_ended`
    /// judged it.
    pub(super) fn record_end(&mut self, d: &Dying, exit: ExitInfo, unexpected: bool) {
        let why = if let Some(violation) = &d.violation {
            format!("broke the protocol: it sent {violation}")
        } else if d.timed_out {
            "ran past the task timeout".to_string()
        } else if d.expected && exit == ExitInfo::Code(0) {
            "retired".to_string()
        } else if !unexpected || self.phase == Phase::Terminating {
            "stopped with the pool".to_string()
        } else if d.before_ready {
            format!("{exit} before it was ready")
        } else {
            format!("{exit}")
        };
        self.history.record(EndedWorker {
            number: d.number,
            pid: d.pid,
            figures: d.figures,
            why,
            unexpected: unexpected && self.phase != Phase::Terminating,
        });
    }
}
