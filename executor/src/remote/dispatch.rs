//! The platform as a remote executor sees it: invoking executors, its
//! mailboxes, and taking over starts while it waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wukong_dag::TaskId;
use wukong_storage::{JobId, StorageError, Woken};

use super::connection::{Connection, SharedListener};
use super::host::Renewal;
use super::protocol::{Failure, IDLE_WAIT, Invocation, Outcome, Target, idle_set, lease_name};
use crate::{Delivery, Dispatcher, InvokeError, Waited};

/// Starts executors of one job for an executor or the driver.
pub(super) struct JobDispatcher<'a> {
    pub(super) connection: &'a Connection,
    pub(super) job: &'a JobId,
    pub(super) target: &'a Target,
    /// Send every invocation twice, as an at-least-once platform may.
    pub(super) duplicate: bool,
    /// The executor's start task (none for the driver): it claims children
    /// and takes deliveries under this name, as does whoever re-runs its work.
    pub(super) start: Option<TaskId>,
    /// Messages of the mailbox read so far.
    pub(super) read: AtomicU32,
    /// Where the executor may take over starts while it waits (worker processes).
    pub(super) waiting: Option<Waiting<'a>>,
    /// Starts taken over, each with its own claims, mailbox and lease.
    pub(super) adopted: Mutex<Vec<Adopted>>,
}

/// A worker process's queue, from which an executor that holds claims and
/// has nothing to run takes over starts of its job.
pub(super) struct Waiting<'a> {
    /// The worker's number, for lease holder names.
    pub(super) worker: u32,
    pub(super) listener: &'a SharedListener,
    pub(super) queue: &'a str,
    /// The worker's name in the queue's idle set.
    pub(super) member: &'a str,
    /// The executor's number, for lease holder names.
    pub(super) executor: u32,
    pub(super) lease: Duration,
    pub(super) tasks: usize,
    /// When the job's spec was last seen in the store.
    pub(super) checked: Mutex<Instant>,
    /// When the worker last marked itself idle, if it has not unmarked since.
    pub(super) marked: Mutex<Option<Instant>>,
}

/// A start an executor took over: its mailbox cursor, and its lease, renewed
/// until the executor ends.
pub(super) struct Adopted {
    pub(super) start: TaskId,
    pub(super) read: u32,
    pub(super) holder: String,
    pub(super) _renewal: Renewal,
}

/// How long a waiting executor blocks on the queue and its mailboxes' bells
/// before it renews its idle mark and checks that the job still exists.
const WAIT_SLICE: Duration = Duration::from_millis(100);

fn mailbox_name(job: &JobId, start: u32) -> String {
    format!("{job}.mb.{start}")
}

fn mail_error(error: StorageError) -> InvokeError {
    InvokeError {
        platform: "redis",
        detail: error.to_string(),
    }
}

impl JobDispatcher<'_> {
    /// The executor's mailboxes: its own (origin `None`), then those of the
    /// starts in `adopted`, each with its origin and read cursor.
    pub(super) fn mailboxes(&self, adopted: &[Adopted]) -> Vec<(Option<TaskId>, String, u32)> {
        let own = self.start.map(|start| {
            let name = mailbox_name(self.job, start.0);
            (None, name, self.read.load(Ordering::Relaxed))
        });
        let taken = adopted
            .iter()
            .map(|a| (Some(a.start), mailbox_name(self.job, a.start.0), a.read));
        own.into_iter().chain(taken).collect()
    }

    /// What was delivered to the executor's mailboxes (its own and those of
    /// the starts it took over) past their read cursors, in one round trip.
    fn read_mail(&self, close: bool) -> Result<Vec<Delivery>, InvokeError> {
        let mut adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
        let boxes = self.mailboxes(&adopted);
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<(&str, usize)> = boxes
            .iter()
            .map(|(_, name, from)| (name.as_str(), *from as usize))
            .collect();
        let read = self
            .connection
            .block(self.connection.broker.read_mailboxes(&names, close))
            .map_err(mail_error)?;
        let mut mail = Vec::new();
        for ((origin, name, _), messages) in boxes.iter().zip(read) {
            let count = messages.len() as u32;
            for m in messages {
                let task = std::str::from_utf8(&m)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(TaskId)
                    .ok_or_else(|| InvokeError {
                        platform: "redis",
                        detail: format!("mailbox {name} holds {m:?}, which names no task"),
                    })?;
                mail.push((task, *origin));
            }
            match origin {
                None => {
                    self.read.fetch_add(count, Ordering::Relaxed);
                }
                Some(start) => {
                    if let Some(a) = adopted.iter_mut().find(|a| a.start == *start) {
                        a.read += count;
                    }
                }
            }
        }
        Ok(mail)
    }

    /// Gives up the leases of the starts taken over (after the executor has
    /// ended and written what it held).
    pub(super) fn release_adopted(&self) -> Result<(), StorageError> {
        let adopted = std::mem::take(&mut *self.adopted.lock().unwrap_or_else(|p| p.into_inner()));
        for start in adopted {
            let Adopted { start, holder, .. } = start;
            self.connection
                .block(self.connection.stores.coordinator.release(
                    self.job,
                    &lease_name(start),
                    &holder,
                ))?;
        }
        Ok(())
    }

    /// Takes over the start in `payload` if it is one of this job's and no
    /// other executor has it. An invocation of another job goes back to the
    /// head of the queue, and this executor ends so that its worker is free.
    fn adopt(&self, waiting: &Waiting<'_>, payload: Vec<u8>) -> Waited {
        let (invocation, job) = match Invocation::parse(&payload) {
            Ok(parsed) => parsed,
            Err(error) => {
                eprintln!("wukong worker: {error}");
                return Waited::Nothing;
            }
        };
        if job != *self.job {
            let returned = self
                .connection
                .broker
                .return_message(waiting.queue, &payload);
            if let Err(error) = self.connection.block(returned) {
                eprintln!(
                    "wukong worker: an invocation of job {job} could not be queued again: {error}"
                );
            }
            return Waited::End;
        }
        let task = TaskId(invocation.task);
        let inline = match invocation.inputs() {
            Ok(inline) if task.index() < waiting.tasks => inline,
            _ => {
                eprintln!("wukong worker: rejected an invocation of task {task} of job {job}");
                return Waited::Nothing;
            }
        };
        // A start this executor runs already (a duplicated invocation).
        let adopted = |a: &Adopted| a.start == task;
        if self.start == Some(task)
            || self
                .adopted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(adopted)
        {
            return Waited::Nothing;
        }
        let holder = Connection::holder(waiting.worker, invocation.attempt, waiting.executor);
        let lease = lease_name(task);
        // Once the start's claim is taken, only this executor will run it:
        // if it cannot, the job fails with the reason rather than wait for it.
        let failed = |error: StorageError| {
            let message = format!("an executor could not take over task {task}: {error}");
            self.connection.fail(&job, task, message, Failure::Untyped);
            Waited::End
        };
        match self
            .connection
            .take_start(&job, task, invocation.attempt, &holder, waiting.lease)
        {
            Ok(true) => {}
            Ok(false) => return Waited::Nothing,
            Err(error) => return failed(error),
        }
        let renewal = match Renewal::start(self.connection, &job, &lease, &holder, waiting.lease) {
            Ok(renewal) => renewal,
            Err(error) => {
                let message = format!("an executor could not take over task {task}: {error}");
                self.connection.fail(&job, task, message, Failure::Untyped);
                return Waited::End;
            }
        };
        let mailbox = mailbox_name(&job, task.0);
        if let Err(error) = self
            .connection
            .block(self.connection.broker.open_mailbox(&mailbox))
        {
            drop(renewal);
            let coordinator = &self.connection.stores.coordinator;
            let _ = self
                .connection
                .block(coordinator.release(&job, &lease, &holder));
            return failed(error);
        }
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Adopted {
                start: task,
                read: 0,
                holder,
                _renewal: renewal,
            });
        Waited::Start(task, inline)
    }
}

impl Dispatcher for JobDispatcher<'_> {
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError> {
        self.invoke_with_inputs(task, priority, Vec::new())
    }

    fn invoke_with_inputs(
        &self,
        task: TaskId,
        _priority: f64,
        inputs: crate::InlineInputs,
    ) -> Result<(), InvokeError> {
        let mut invocation = Invocation::new(self.job, task, 0).with_inputs(&inputs);
        // Inline inputs are a shortcut; if they make the payload too large,
        // the executor reads them from the store like the others.
        if invocation.to_bytes().is_err() {
            invocation.inline.clear();
        }
        for _ in 0..1 + usize::from(self.duplicate) {
            self.connection.invoke(self.target, &invocation)?;
        }
        Ok(())
    }

    fn spare_capacity(&self) -> usize {
        self.connection.spare_capacity(self.target)
    }

    fn finished(&self) -> Result<(), InvokeError> {
        self.connection.push_outcome(self.job, &Outcome::Done)
    }

    fn open_mailbox(&self) -> Result<bool, InvokeError> {
        let Some((_, mailbox, _)) = self.mailboxes(&[]).pop() else {
            return Ok(false);
        };
        self.connection
            .block(self.connection.broker.open_mailbox(&mailbox))
            .map_err(mail_error)?;
        Ok(true)
    }

    fn holder(&self, origin: Option<TaskId>) -> String {
        origin
            .or(self.start)
            .map_or_else(String::new, |start| format!("s{}", start.0))
    }

    fn take_mail(&self) -> Result<Vec<Delivery>, InvokeError> {
        self.read_mail(false)
    }

    fn close_mailbox(&self) -> Result<Vec<Delivery>, InvokeError> {
        self.read_mail(true)
    }

    fn wait_for_start(&self) -> Result<Waited, InvokeError> {
        let Some(waiting) = &self.waiting else {
            return Ok(Waited::End);
        };
        let redis = &self.connection.broker;
        // A job that failed or finished elsewhere is deleted: stop waiting.
        {
            let mut checked = waiting.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() >= WAIT_SLICE {
                let key = self.job.key("spec").map_err(mail_error)?;
                if !self
                    .connection
                    .block(self.connection.stores.objects.exists(&key))
                    .map_err(mail_error)?
                {
                    return Ok(Waited::End);
                }
                *checked = Instant::now();
            }
        }
        // Marked idle while waiting and while running what was delivered
        // (short), so that busy executors hand over work; the mark is
        // renewed as the worker's own loop does.
        let idle = idle_set(waiting.queue);
        let mut marked = waiting.marked.lock().unwrap_or_else(|p| p.into_inner());
        if marked.is_none_or(|t| t.elapsed() >= IDLE_WAIT) {
            self.connection
                .block(redis.mark_present(&idle, waiting.member, true))
                .map_err(mail_error)?;
            *marked = Some(Instant::now());
        }
        let mailboxes: Vec<String> = {
            let adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
            let boxes = self.mailboxes(&adopted);
            boxes.into_iter().map(|(_, name, _)| name).collect()
        };
        let woken = {
            let mut listener = waiting.listener.lock().unwrap_or_else(|p| p.into_inner());
            self.connection
                .block(listener.wait(waiting.queue, &mailboxes, WAIT_SLICE))
        };
        Ok(match woken.map_err(mail_error)? {
            Woken::Message(payload) => {
                // A stale mark only makes others hand over work a little early.
                let _ = self
                    .connection
                    .block(redis.mark_present(&idle, waiting.member, false));
                *marked = None;
                self.adopt(waiting, payload)
            }
            Woken::Mail | Woken::Timeout => Waited::Nothing,
        })
    }

    fn deliver(&self, holder: &str, task: TaskId) -> Result<bool, InvokeError> {
        let Some(start) = holder.strip_prefix('s').and_then(|s| s.parse::<u32>().ok()) else {
            return Ok(false);
        };
        self.connection
            .block(self.connection.broker.deliver(
                &mailbox_name(self.job, start),
                task.0.to_string().as_bytes(),
            ))
            .map_err(mail_error)
    }
}
