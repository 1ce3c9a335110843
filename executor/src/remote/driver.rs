//! The driver's side of a remote job: stage, invoke the sources, wait for
//! the end while re-invoking lost executors, collect outputs and reports.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wukong_dag::{Dag, DataId, Operation, TaskId};
use wukong_storage::{JobId, Listener, ObjectStoreExt, PutMode, StoredValue};

use super::connection::{Connection, setup};
use super::dispatch::JobDispatcher;
use super::protocol::{
    Invocation, JobSpec, LeaseHolder, Outcome, ReportMessage, StartLease, Target, done_queue,
    reports_queue, started_counter, unix_ms,
};
use super::{FORMAT, RemoteError};
use crate::{
    Engine, EngineConfig, ExecError, ExecutorRecord, IoReport, Platform, RunOutcome, RunReport,
    Scheduler, TaskRecord,
};

/// How the driver runs jobs remotely.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Where executors start.
    pub target: Target,
    /// Lease length; an executor silent this long is presumed dead and its
    /// start invoked again.
    pub lease: Duration,
    /// Time allowed for the first executor to start.
    pub start_timeout: Duration,
    /// Time allowed for the whole job.
    pub job_timeout: Duration,
    /// Tile cache of each executor.
    pub cache_bytes: u64,
    /// Edges at least this large are held under a claim and their child
    /// delivered to the holder's mailbox, instead of written at once.
    pub hold_min_bytes: u64,
    /// Inputs of an invoked task travel with the invocation while their
    /// encodings add up to at most this many bytes (and the payload stays
    /// within [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES)); they are in the store too.
    pub inline_bytes: u64,
    /// Fault injection: send every invocation twice, as Lambda may deliver
    /// an asynchronous event more than once. Results must not change.
    pub duplicate_invocations: bool,
}

impl RemoteConfig {
    /// Worker processes on `queue`, 10 s leases.
    pub fn processes(queue: impl Into<String>) -> Self {
        Self {
            target: Target::Queue { name: queue.into() },
            lease: Duration::from_secs(10),
            start_timeout: Duration::from_secs(60),
            job_timeout: Duration::from_secs(24 * 3600),
            cache_bytes: 4 << 30,
            hold_min_bytes: EngineConfig::new(1).hold_min_bytes,
            inline_bytes: 8 << 10,
            duplicate_invocations: false,
        }
    }

    /// The Lambda function `function`, at most `concurrency` executors at once.
    pub fn lambda(function: impl Into<String>, concurrency: u32) -> Self {
        Self {
            target: Target::Lambda {
                function: function.into(),
                concurrency,
            },
            start_timeout: Duration::from_secs(300),
            ..Self::processes("unused")
        }
    }
}

/// Runs `dag` remotely: stores the spec and inputs, invokes the sources,
/// waits for the end (re-invoking the starts of executors whose lease
/// expired), reads the outputs and gathers the executors' reports. The job's
/// objects, arrivals, leases and queues are removed afterwards, also when it
/// fails.
pub fn run_job<Op, V, E>(
    submission: &Submission<'_, Op>,
    inputs: Vec<(DataId, Arc<V>)>,
) -> Result<RunOutcome<V>, ExecError<E>>
where
    Op: Operation + Serialize,
    V: StoredValue,
    E: std::error::Error + DeserializeOwned + 'static,
{
    let Submission {
        connection,
        scheduler,
        ..
    } = *submission;
    if scheduler == Scheduler::Shared {
        return Err(RemoteError::Setup {
            what: "scheduler",
            detail: "the shared scheduler needs one process; use wukong or numpywren".into(),
        }
        .into());
    }
    let job = JobId::unique("job").map_err(RemoteError::from)?;
    let mut result = drive(submission, inputs, &job);
    let redis = &connection.broker;
    let cleaned = connection.block(async {
        connection.stores.objects.delete_job(&job).await?;
        connection.stores.coordinator.clear_job(&job).await?;
        redis.delete_mailboxes(&format!("{job}.mb.")).await?;
        redis
            .delete_queues(
                &[&done_queue(&job), &reports_queue(&job)],
                &[&started_counter(&job)],
            )
            .await
    });
    if let Err(error) = cleaned {
        RunReport::clean_up_failed(&mut result, &job, &error);
    }
    result
}

/// A graph to run remotely, and how.
#[derive(Debug)]
pub struct Submission<'a, Op> {
    /// Where the job's executors and data live.
    pub connection: &'a Connection,
    /// How executors start, and the job's settings.
    pub remote: &'a RemoteConfig,
    /// How its executors schedule (Wukong or numpywren-style).
    pub scheduler: Scheduler,
    /// The name under which the hosts' [`KernelRegistry`](super::KernelRegistry) knows the kernels.
    pub backend: &'a str,
    /// The graph.
    pub dag: &'a Dag<Op>,
}

impl<Op> Clone for Submission<'_, Op> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Op> Copy for Submission<'_, Op> {}

fn drive<Op, V, E>(
    submission: &Submission<'_, Op>,
    inputs: Vec<(DataId, Arc<V>)>,
    job: &JobId,
) -> Result<RunOutcome<V>, ExecError<E>>
where
    Op: Operation + Serialize,
    V: StoredValue,
    E: std::error::Error + DeserializeOwned + 'static,
{
    let Submission {
        connection,
        remote,
        scheduler,
        backend,
        dag,
    } = *submission;
    // The driver's threads only stage inputs and read outputs: I/O, several at once.
    let mut config = EngineConfig::new(4);
    config.scheduler = scheduler;
    config.cache_bytes = remote.cache_bytes;
    let engine = Engine::new(config);
    let spec = JobSpec {
        format: FORMAT,
        backend: backend.into(),
        scheduler: scheduler.name().into(),
        cache_bytes: remote.cache_bytes,
        hold_min_bytes: remote.hold_min_bytes,
        inline_bytes: remote.inline_bytes,
        lease_ms: remote.lease.as_millis().max(100) as u64,
        target: remote.target.clone(),
        duplicate_invocations: remote.duplicate_invocations,
        dag: dag
            .to_bytes()
            .map_err(|e| setup("encoding the graph")(e.to_string()))?,
    };
    let spec_bytes =
        postcard::to_stdvec(&spec).map_err(|e| setup("encoding the job spec")(e.to_string()))?;
    let spec_key = job.key("spec").map_err(RemoteError::from)?;
    connection
        .block(
            connection
                .stores
                .objects
                .put(&spec_key, spec_bytes.into(), PutMode::Create),
        )
        .map_err(RemoteError::from)?;
    // Small inputs also travel with the invocations of the sources that read them.
    let mut small: HashMap<DataId, Vec<u8>> = HashMap::new();
    for (data, tile) in &inputs {
        if StoredValue::encoded_len(&**tile) <= remote.inline_bytes {
            let key = crate::data_key(job, *data).map_err(RemoteError::from)?;
            small.insert(
                *data,
                StoredValue::encode(&**tile, &key)
                    .map_err(RemoteError::from)?
                    .to_vec(),
            );
        }
    }
    let staged = engine.stage(dag, inputs, &connection.stores, job)?;
    let mut listener = connection
        .block(connection.broker.listener())
        .map_err(RemoteError::from)?;

    let clock = &*connection.clock;
    let start = clock.now();
    let start_unix_ms = unix_ms();
    let dispatcher = JobDispatcher {
        connection,
        job,
        target: &remote.target,
        duplicate: remote.duplicate_invocations,
        start: None,
        read: AtomicU32::new(0),
        waiting: None,
        adopted: Mutex::new(Vec::new()),
    };
    let mut invocations = 0u64;
    let mut reinvocations = 0u64;
    for task in dag.sources() {
        let mut budget = remote.inline_bytes;
        let mut inline = Vec::new();
        for data in dag.reads(task) {
            if let Some(bytes) = small.get(data).filter(|b| b.len() as u64 <= budget) {
                budget -= bytes.len() as u64;
                inline.push((*data, bytes.clone()));
            }
        }
        dispatcher
            .invoke(task, 0.0, inline)
            .map_err(|source| ExecError::Invoke {
                task: Some(task),
                source,
            })?;
        invocations += 1;
    }
    if dag.num_tasks() == 0 {
        connection
            .push_outcome(job, &Outcome::Done)
            .map_err(|e| setup("redis")(e.to_string()))?;
    }
    let poll = (remote.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
    // Starts invoked again after their lease expired: attempt sent, and when.
    let mut retried: HashMap<u32, (u32, Duration)> = HashMap::new();
    let done_queue = done_queue(job);
    loop {
        let popped = connection
            .block(listener.pop(&[&done_queue], poll))
            .map_err(RemoteError::from)?;
        if let Some((_, message)) = popped {
            match serde_json::from_slice::<Outcome>(&message) {
                Ok(Outcome::Done) => break,
                Ok(Outcome::Failed {
                    task,
                    message,
                    failure,
                }) => {
                    return Err(failure.rebuild(task, message));
                }
                Ok(Outcome::Unsent { message }) => {
                    return Err(RemoteError::Invocation { message }.into());
                }
                Err(e) => {
                    return Err(setup("a message on the job's queue")(e.to_string()).into());
                }
            }
        }
        let started = connection
            .block(connection.broker.add_to_counter(&started_counter(job), 0))
            .map_err(RemoteError::from)?;
        if started == 0 && clock.since(start) > remote.start_timeout {
            return Err(RemoteError::NoExecutors {
                seconds: remote.start_timeout.as_secs(),
            }
            .into());
        }
        if clock.since(start) > remote.job_timeout {
            return Err(RemoteError::TimedOut {
                seconds: remote.job_timeout.as_secs(),
                started,
            }
            .into());
        }
        let expired = connection.block(connection.stores.coordinator.expired(job));
        for lease in expired.map_err(RemoteError::from)? {
            let Some(StartLease(TaskId(task))) = StartLease::parse(&lease.name) else {
                continue;
            };
            let attempt = LeaseHolder::parse(&lease.holder).map_or(0, |h| h.attempt);
            // A re-invocation that has not taken the lease yet gets time to start.
            if let Some(&(sent, when)) = retried.get(&task) {
                let grace = remote.lease * 3 + remote.start_timeout.min(Duration::from_secs(30));
                if sent > attempt && clock.since(when) < grace {
                    continue;
                }
            }
            let next = retried
                .get(&task)
                .map_or(attempt, |&(sent, _)| sent.max(attempt))
                + 1;
            eprintln!(
                "wukong: the executor {} of task {task} stopped renewing its lease; invoking attempt {next}",
                lease.holder
            );
            connection
                .invoke(&remote.target, &Invocation::new(job, TaskId(task), next))
                .map_err(|source| ExecError::Invoke {
                    task: Some(TaskId(task)),
                    source,
                })?;
            invocations += 1;
            reinvocations += 1;
            retried.insert(task, (next, clock.now()));
        }
    }
    let wall = clock.since(start);
    let outputs = engine.collect(dag, &connection.stores, job)?;
    let mut report = gather_reports(connection, job, listener.as_mut(), start_unix_ms)?;
    report.scheduler = scheduler.name().into();
    report.wall = wall;
    (report.io.staged_objects, report.io.staged_bytes) = staged;
    report.io.invocations += invocations;
    report.io.reinvocations += reinvocations;
    Ok(RunOutcome { outputs, report })
}

/// Collects the executors' reports: as many as executors started, waiting a
/// little for the last ones (a duplicated executor may still be winding down).
fn gather_reports(
    connection: &Connection,
    job: &JobId,
    listener: &mut dyn Listener,
    start_unix_ms: u64,
) -> Result<RunReport, RemoteError> {
    let started = connection.block(connection.broker.add_to_counter(&started_counter(job), 0))?;
    let queue = reports_queue(job);
    let clock = &*connection.clock;
    let deadline = clock.now() + Duration::from_secs(2);
    let mut tasks: Vec<TaskRecord> = Vec::new();
    let mut executors: Vec<ExecutorRecord> = Vec::new();
    let mut io = IoReport::default();
    let mut workers = std::collections::HashSet::new();
    while (executors.len() as i64) < started && clock.now() < deadline {
        let Some((_, bytes)) =
            connection.block(listener.pop(&[&queue], Duration::from_millis(200)))?
        else {
            continue;
        };
        let Ok(message) = serde_json::from_slice::<ReportMessage>(&bytes) else {
            continue;
        };
        let offset = Duration::from_millis(message.started_unix_ms.saturating_sub(start_unix_ms));
        let mut record = message.report.executor;
        record.start += offset;
        record.end += offset;
        workers.insert(record.thread);
        executors.push(record);
        tasks.extend(message.report.tasks.into_iter().map(|mut t| {
            t.start += offset;
            t.end += offset;
            t
        }));
        io += &message.report.io;
    }
    tasks.sort_by_key(|r| r.end);
    executors.sort_by_key(|r| r.start);
    Ok(RunReport {
        scheduler: String::new(),
        wall: Duration::ZERO,
        threads: workers.len(),
        executors: executors.len(),
        tasks,
        executor_records: executors,
        io,
        cost: None,
        warnings: Vec::new(),
    })
}
