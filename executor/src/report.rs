use std::time::Duration;

use serde::Serialize;
use wukong_dag::TaskId;

/// When and where one task ran.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaskRecord {
    /// The task.
    pub task: TaskId,
    /// The executor (thread) that ran it.
    pub executor: u32,
    /// Start, from the start of the run.
    pub start: Duration,
    /// End, from the start of the run.
    pub end: Duration,
}

/// Timings of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Number of executors (threads) used.
    pub executors: usize,
    /// One record per task, in the order tasks finished.
    pub tasks: Vec<TaskRecord>,
}

impl RunReport {
    /// Sum over tasks of the time spent inside kernels.
    pub fn busy(&self) -> Duration {
        self.tasks
            .iter()
            .map(|r| r.end.saturating_sub(r.start))
            .sum()
    }

    /// Fraction of the executors' time spent inside kernels (1.0 is perfect).
    pub fn utilization(&self) -> f64 {
        let available = self.wall.as_secs_f64() * self.executors as f64;
        if available > 0.0 {
            self.busy().as_secs_f64() / available
        } else {
            0.0
        }
    }
}
