//! What travels between a job's driver and its executors: invocations,
//! the job's spec, outcomes and reports, and the names of their queues.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wukong_dag::{DataId, TaskId};
use wukong_storage::JobId;

use super::{FORMAT, MAX_PAYLOAD_BYTES, RemoteError};
use crate::{ExecError, ExecutorReport};

/// One invocation: start an executor of `job` at `task`. `attempt` counts
/// re-invocations after an executor was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    /// Format version.
    pub wukong: u32,
    /// The job.
    pub job: String,
    /// The task the executor starts with.
    pub task: u32,
    /// 0 for the first invocation of this start, then 1, 2, …
    pub attempt: u32,
    /// Small inputs of the task, encoded as stored (they are in the store too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineTile>,
}

/// A tile carried by an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineTile {
    /// The data item.
    pub data: u32,
    /// Its stored encoding (`.npy` with a checksum), in base64.
    pub bytes: String,
}

impl Invocation {
    /// The invocation of `task` in `job`.
    pub fn new(job: &JobId, task: TaskId, attempt: u32) -> Self {
        Self {
            wukong: FORMAT,
            job: job.as_str().to_owned(),
            task: task.0,
            attempt,
            inline: Vec::new(),
        }
    }

    /// Carries `inputs` (encoded tiles) along.
    pub fn with_inputs(mut self, inputs: &[(DataId, Vec<u8>)]) -> Self {
        use base64::Engine as _;
        self.inline = inputs
            .iter()
            .map(|(data, bytes)| InlineTile {
                data: data.0,
                bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
            .collect();
        self
    }

    /// The carried inputs, decoded from base64 (their contents are checked
    /// when the executor decodes them as tiles).
    pub fn inputs(&self) -> Result<Vec<(DataId, Vec<u8>)>, RemoteError> {
        use base64::Engine as _;
        self.inline
            .iter()
            .map(|tile| {
                base64::engine::general_purpose::STANDARD
                    .decode(&tile.bytes)
                    .map(|bytes| (DataId(tile.data), bytes))
                    .map_err(|e| RemoteError::Payload {
                        reason: format!("inline tile {}: {e}", tile.data),
                    })
            })
            .collect()
    }

    /// The JSON payload, checked against [`MAX_PAYLOAD_BYTES`] before sending.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RemoteError> {
        let bytes = serde_json::to_vec(self).map_err(|e| RemoteError::Payload {
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(RemoteError::Payload {
                reason: format!(
                    "{} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// Checks and decodes a payload: size, JSON shape, format version, job id.
    pub fn parse(bytes: &[u8]) -> Result<(Self, JobId), RemoteError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(RemoteError::Payload {
                reason: format!(
                    "{} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                    bytes.len()
                ),
            });
        }
        let invocation: Self = serde_json::from_slice(bytes).map_err(|e| RemoteError::Payload {
            reason: format!("not a wukong invocation: {e}"),
        })?;
        if invocation.wukong != FORMAT {
            return Err(RemoteError::Payload {
                reason: format!(
                    "format {} but this executor speaks format {FORMAT}",
                    invocation.wukong
                ),
            });
        }
        let job = JobId::new(invocation.job.clone()).map_err(|e| RemoteError::Payload {
            reason: e.to_string(),
        })?;
        Ok((invocation, job))
    }
}

/// Where executors of a job are started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Worker processes taking invocations from this queue.
    Queue {
        /// The queue's name.
        name: String,
    },
    /// A Lambda function.
    Lambda {
        /// The function's name or ARN.
        function: String,
        /// How many executors may run at once.
        concurrency: u32,
    },
}

/// What every executor of a job needs to know, stored once per job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobSpec {
    pub(super) format: u32,
    pub(super) backend: String,
    pub(super) scheduler: String,
    pub(super) cache_bytes: u64,
    pub(super) hold_min_bytes: u64,
    pub(super) inline_bytes: u64,
    pub(super) lease_ms: u64,
    pub(super) target: Target,
    pub(super) duplicate_invocations: bool,
    pub(super) dag: Vec<u8>,
}

/// A message on a job's `done` queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Outcome {
    Done,
    Failed {
        task: u32,
        message: String,
        #[serde(default)]
        failure: Failure,
    },
    Unsent {
        message: String,
    },
}

/// How an executor failed, as far as the driver can rebuild the error: the
/// same [`ExecError`] as in local mode, with the kernel's own error value.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Failure {
    Kernel {
        task: u32,
        label: String,
        error: serde_json::Value,
    },
    Panicked {
        task: u32,
        label: String,
        message: String,
    },
    WrongOutputCount {
        task: u32,
        label: String,
        expected: usize,
        got: usize,
    },
    NoSuchTask {
        task: u32,
        tasks: usize,
    },
    /// Anything else (a store that failed, an invocation refused): the
    /// message is all the driver gets.
    #[default]
    Untyped,
}

impl Failure {
    pub(super) fn of<E: std::error::Error + Serialize>(error: &ExecError<E>) -> Self {
        match error {
            ExecError::Task {
                task,
                label,
                source,
            } => match serde_json::to_value(source) {
                Ok(error) => Failure::Kernel {
                    task: task.0,
                    label: label.clone(),
                    error,
                },
                Err(_) => Failure::Untyped,
            },
            ExecError::Panicked {
                task,
                label,
                message,
            } => Failure::Panicked {
                task: task.0,
                label: label.clone(),
                message: message.clone(),
            },
            ExecError::WrongOutputCount {
                task,
                label,
                expected,
                got,
            } => Failure::WrongOutputCount {
                task: task.0,
                label: label.clone(),
                expected: *expected,
                got: *got,
            },
            ExecError::NoSuchTask { task, tasks } => Failure::NoSuchTask {
                task: task.0,
                tasks: *tasks,
            },
            _ => Failure::Untyped,
        }
    }

    /// The error the driver returns for the executor at `start` that failed
    /// with `message`.
    pub(super) fn rebuild<E: std::error::Error + DeserializeOwned>(
        self,
        start: u32,
        message: String,
    ) -> ExecError<E> {
        let untyped = |message| {
            ExecError::from(RemoteError::Executor {
                task: start,
                message,
            })
        };
        match self {
            Failure::Kernel { task, label, error } => match serde_json::from_value(error) {
                Ok(source) => ExecError::Task {
                    task: TaskId(task),
                    label,
                    source,
                },
                Err(_) => untyped(message),
            },
            Failure::Panicked {
                task,
                label,
                message,
            } => ExecError::Panicked {
                task: TaskId(task),
                label,
                message,
            },
            Failure::WrongOutputCount {
                task,
                label,
                expected,
                got,
            } => ExecError::WrongOutputCount {
                task: TaskId(task),
                label,
                expected,
                got,
            },
            Failure::NoSuchTask { task, tasks } => ExecError::NoSuchTask {
                task: TaskId(task),
                tasks,
            },
            Failure::Untyped => untyped(message),
        }
    }
}

/// A message on a job's `reports` queue.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ReportMessage {
    pub(super) started_unix_ms: u64,
    pub(super) report: ExecutorReport,
}

/// Where a job's outcome (done, failed) is pushed, for `job` as a [`JobId`]
/// or as the text an invocation carries.
pub(super) fn done_queue(job: &impl std::fmt::Display) -> String {
    format!("{job}.done")
}

pub(super) fn reports_queue(job: &JobId) -> String {
    format!("{job}.reports")
}

pub(super) fn started_counter(job: &JobId) -> String {
    format!("{job}.started")
}

pub(super) fn idle_set(queue: &str) -> String {
    format!("{queue}.idle")
}

/// How long a worker waits on its queue before renewing its idle mark.
pub(super) const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The lease an executor renews while it runs a start's work: `x/<task>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StartLease(pub(super) TaskId);

impl std::fmt::Display for StartLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "x/{}", self.0.0)
    }
}

impl StartLease {
    /// The lease a coordinator lists under `name`; `None` for other names.
    pub(super) fn parse(name: &str) -> Option<Self> {
        let task = name.strip_prefix("x/")?.parse().ok()?;
        Some(Self(TaskId(task)))
    }
}

/// Who holds a start's lease and claim: an attempt of the start, run by an
/// executor on a worker: `a<attempt>.w<worker>.e<executor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeaseHolder {
    pub(super) attempt: u32,
    pub(super) worker: u32,
    pub(super) executor: u32,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            attempt,
            worker,
            executor,
        } = self;
        write!(f, "a{attempt}.w{worker}.e{executor}")
    }
}

impl LeaseHolder {
    /// The holder named `name`; `None` if it is not one.
    pub(super) fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('.');
        let mut number = |prefix: char| parts.next()?.strip_prefix(prefix)?.parse().ok();
        let holder = Self {
            attempt: number('a')?,
            worker: number('w')?,
            executor: number('e')?,
        };
        parts.next().is_none().then_some(holder)
    }
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_and_holders_print_and_parse_back() {
        let lease = StartLease(TaskId(42));
        assert_eq!(lease.to_string(), "x/42");
        assert_eq!(StartLease::parse(&lease.to_string()), Some(lease));
        for bad in ["x/", "x/-1", "hold/3", "x3"] {
            assert_eq!(StartLease::parse(bad), None, "{bad}");
        }
        let holder = LeaseHolder {
            attempt: 2,
            worker: 7,
            executor: 31,
        };
        assert_eq!(holder.to_string(), "a2.w7.e31");
        assert_eq!(LeaseHolder::parse(&holder.to_string()), Some(holder));
        for bad in ["", "a2.w7", "a2.w7.e31.x", "w7.a2.e31", "a.w7.e31"] {
            assert_eq!(LeaseHolder::parse(bad), None, "{bad}");
        }
    }
}
