use std::time::Duration;

use serde::{Deserialize, Serialize};
use wukong_dag::TaskId;

/// When and where one task ran.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task.
    pub task: TaskId,
    /// The executor that ran it.
    pub executor: u32,
    /// The thread (local mode) or worker that hosted the executor.
    pub thread: u32,
    /// Start, from the start of the run.
    pub start: Duration,
    /// End, from the start of the run.
    pub end: Duration,
    /// Time inside the kernel; the rest of `end - start` went to reading
    /// inputs, writing outputs and scheduling.
    pub kernel: Duration,
}

/// One executor's life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ExecutorRecord {
    /// The executor.
    pub executor: u32,
    /// The thread or worker that hosted it.
    pub thread: u32,
    /// The task it was started with.
    pub first_task: TaskId,
    /// Start, from the start of the run.
    pub start: Duration,
    /// End, from the start of the run.
    pub end: Duration,
    /// Tasks it ran.
    pub tasks: usize,
}

/// Bytes and requests per tier, and the scheduling traffic.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct IoReport {
    /// Inputs found in an executor's local cache.
    pub cache_hits: u64,
    /// Bytes of those inputs (what did not cross the network).
    pub cache_hit_bytes: u64,
    /// Objects read from the store by executors.
    pub store_reads: u64,
    /// Bytes read from the store by executors.
    pub store_read_bytes: u64,
    /// Objects written to the store by executors (intermediates and results).
    pub store_writes: u64,
    /// Bytes written to the store by executors.
    pub store_write_bytes: u64,
    /// Bytes of the graph's inputs put into the store before the run (not
    /// part of the two figures above). Local Wukong runs hand an input that
    /// only one source task reads straight to its executor instead.
    pub staged_bytes: u64,
    /// Objects of the graph's inputs put into the store before the run.
    pub staged_objects: u64,
    /// Inputs that arrived with an invocation instead of from the store:
    /// inline in its payload (remote modes) or handed over in memory (local mode).
    pub inline_inputs: u64,
    /// Fan-in arrivals recorded.
    pub arrivals: u64,
    /// Claims made to hold a child's inputs locally.
    pub claims: u64,
    /// Executors started by other executors or by the driver.
    pub invocations: u64,
    /// Tasks handed to a running executor that held their inputs.
    pub deliveries: u64,
    /// Starts that an executor holding claims took over from the queue of
    /// its worker instead of ending (local mode), which keeps the held data
    /// off the store.
    #[serde(default)]
    pub adoptions: u64,
    /// Starts the driver invoked again because their executor stopped
    /// renewing its lease (it was lost: a killed process, a timed-out
    /// function); counted in `invocations` too.
    #[serde(default)]
    pub reinvocations: u64,
}

impl std::ops::AddAssign<&IoReport> for IoReport {
    /// Adds another executor's traffic (remote executors report separately).
    fn add_assign(&mut self, part: &IoReport) {
        self.cache_hits += part.cache_hits;
        self.cache_hit_bytes += part.cache_hit_bytes;
        self.store_reads += part.store_reads;
        self.store_read_bytes += part.store_read_bytes;
        self.store_writes += part.store_writes;
        self.store_write_bytes += part.store_write_bytes;
        self.staged_bytes += part.staged_bytes;
        self.staged_objects += part.staged_objects;
        self.inline_inputs += part.inline_inputs;
        self.arrivals += part.arrivals;
        self.claims += part.claims;
        self.invocations += part.invocations;
        self.deliveries += part.deliveries;
        self.adoptions += part.adoptions;
        self.reinvocations += part.reinvocations;
    }
}

/// What happened in one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// `wukong`, `numpywren` or `shared` (the shared-memory executor).
    pub scheduler: String,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Threads (local mode) or workers that hosted executors.
    pub threads: usize,
    /// Executors started.
    pub executors: usize,
    /// One record per task execution, in the order they finished.
    pub tasks: Vec<TaskRecord>,
    /// One record per executor, by executor number.
    pub executor_records: Vec<ExecutorRecord>,
    /// Store and cache traffic.
    pub io: IoReport,
    /// What the run would cost on AWS (see [`RunReport::estimate_cost`]);
    /// filled in by callers that know the function size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::CostEstimate>,
    /// What went wrong without failing the run (the job's objects could not
    /// be deleted afterwards, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunReport {
    /// Records that the job's objects and coordination state could not be
    /// removed after a successful run; after a failed one, the run's own
    /// error is returned and this one is printed to standard error.
    pub(crate) fn clean_up_failed<V, E>(
        result: &mut Result<crate::RunOutcome<V>, E>,
        job: &impl std::fmt::Display,
        error: &impl std::fmt::Display,
    ) {
        let warning = format!("the objects of job {job} could not be deleted: {error}");
        match result {
            Ok(outcome) => outcome.report.warnings.push(warning),
            Err(_) => eprintln!("wukong: {warning}"),
        }
    }
}

impl RunReport {
    /// Sum over tasks of the time spent inside kernels.
    pub fn busy(&self) -> Duration {
        self.tasks.iter().map(|r| r.kernel).sum()
    }

    /// Fraction of the threads' time spent inside kernels (1.0 is perfect).
    pub fn utilization(&self) -> f64 {
        let available = self.wall.as_secs_f64() * self.threads as f64;
        if available > 0.0 {
            self.busy().as_secs_f64() / available
        } else {
            0.0
        }
    }

    /// Tasks each executor ran, by executor number.
    pub fn tasks_per_executor(&self) -> std::collections::BTreeMap<u32, Vec<TaskId>> {
        let mut map = std::collections::BTreeMap::<u32, Vec<TaskId>>::new();
        for record in &self.tasks {
            map.entry(record.executor).or_default().push(record.task);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_clean_up_is_a_warning_of_a_successful_run() {
        let mut ok: Result<crate::RunOutcome<i64>, ()> = Ok(crate::RunOutcome {
            outputs: Default::default(),
            report: RunReport::default(),
        });
        RunReport::clean_up_failed(&mut ok, &"run-7", &"store unreachable");
        let warnings = ok.map(|o| o.report.warnings).unwrap_or_default();
        assert_eq!(
            warnings,
            ["the objects of job run-7 could not be deleted: store unreachable"]
        );
        let report = RunReport {
            warnings,
            ..RunReport::default()
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(json.contains("could not be deleted"), "{json}");
        let quiet = serde_json::to_string(&RunReport::default()).unwrap_or_default();
        assert!(!quiet.contains("warnings"), "{quiet}");
    }
}
