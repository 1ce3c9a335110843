//! The platform as a remote executor sees it: invoking executors, its
//! mailboxes, and taking over starts while it waits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wukong_dag::TaskId;
use wukong_storage::{Clock, JobId, StorageError, Woken};

use super::connection::{Connection, SharedListener};
use super::host::Renewal;
use super::protocol::{
    Failure, IDLE_WAIT, Invocation, LeaseHolder, Outcome, StartLease, Target, idle_set,
};
use crate::{
    Delivered, Delivery, ExecutorId, Holder, Idle, InlineInputs, InvokeError, Mailbox, Platform,
};

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
    /// When the job's spec was last seen in the store (connection's clock).
    pub(super) checked: Mutex<Duration>,
    /// When the worker last marked itself idle, if it has not unmarked since.
    pub(super) marked: Mutex<Option<Duration>>,
}

/// What a waiting executor found.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// A start of the job, now this executor's, with its inline inputs.
    Start(TaskId, InlineInputs),
    /// Nothing yet: look at the mailboxes, then wait again.
    Nothing,
    /// Stop waiting: write what is held and end.
    End,
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
                    &StartLease(start).to_string(),
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
        let holder = LeaseHolder {
            attempt: invocation.attempt,
            worker: waiting.worker,
            executor: waiting.executor,
        }
        .to_string();
        let lease = StartLease(task).to_string();
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
            let released = self
                .connection
                .block(coordinator.release(&job, &lease, &holder));
            if let Err(release) = released {
                eprintln!(
                    "wukong worker: the lease {lease} of job {job} stays until it expires: {release}"
                );
            }
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

impl JobDispatcher<'_> {
    /// The executor holds claims and has nothing to run: waits a little for
    /// an invocation of the same job that it can take over (its start, whose
    /// lease and mailbox it then keeps until it ends), or for mail.
    fn wait_for_start(&self) -> Result<Waited, InvokeError> {
        let Some(waiting) = &self.waiting else {
            return Ok(Waited::End);
        };
        let redis = &self.connection.broker;
        let clock = &self.connection.clock;
        // A job that failed or finished elsewhere is deleted: stop waiting.
        {
            let mut checked = waiting.checked.lock().unwrap_or_else(|p| p.into_inner());
            if clock.since(*checked) >= WAIT_SLICE {
                let key = self.job.key("spec").map_err(mail_error)?;
                if !self
                    .connection
                    .block(self.connection.stores.objects.exists(&key))
                    .map_err(mail_error)?
                {
                    return Ok(Waited::End);
                }
                *checked = clock.now();
            }
        }
        // Marked idle while waiting and while running what was delivered
        // (short), so that busy executors hand over work; the mark is
        // renewed as the worker's own loop does.
        let idle = idle_set(waiting.queue);
        let mut marked = waiting.marked.lock().unwrap_or_else(|p| p.into_inner());
        if marked.is_none_or(|t| clock.since(t) >= IDLE_WAIT) {
            self.connection
                .block(redis.mark_present(&idle, waiting.member, true))
                .map_err(mail_error)?;
            *marked = Some(clock.now());
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
                let unmarked =
                    self.connection
                        .block(redis.mark_present(&idle, waiting.member, false));
                if let Err(error) = unmarked {
                    eprintln!("wukong worker: still marked idle until the mark expires: {error}");
                }
                *marked = None;
                self.adopt(waiting, payload)
            }
            Woken::Mail | Woken::Timeout => Waited::Nothing,
        })
    }
}

impl Platform for JobDispatcher<'_> {
    fn invoke(
        &self,
        task: TaskId,
        _priority: f64,
        inputs: InlineInputs,
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

    /// The executor's mailbox in the broker, read into a local one; none
    /// for the driver, which runs no executor.
    fn open_mailbox(&self, _: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError> {
        let Some((_, mailbox, _)) = self.mailboxes(&[]).pop() else {
            return Ok(None);
        };
        self.connection
            .block(self.connection.broker.open_mailbox(&mailbox))
            .map_err(mail_error)?;
        Ok(Some(Arc::new(Mailbox::open())))
    }

    fn collect_mail(&self, mailbox: &Mailbox) -> Result<(), InvokeError> {
        let tasks = self.read_mail(false)?;
        if !tasks.is_empty() {
            mailbox.deliver(tasks);
        }
        Ok(())
    }

    fn close_mailbox(&self, _: ExecutorId) -> Result<Vec<Delivery>, InvokeError> {
        self.read_mail(true)
    }

    /// Claims are made in the name of the start whose work this is, so that
    /// whoever re-runs it after it is lost finds what was delivered to it.
    fn holder(&self, executor: ExecutorId, origin: Option<TaskId>) -> Holder {
        origin
            .or(self.start)
            .map_or(Holder::Executor(executor), Holder::Start)
    }

    fn deliver(&self, holder: Holder, task: TaskId) -> Result<Delivered, InvokeError> {
        let Holder::Start(start) = holder else {
            return Ok(Delivered::Unknown);
        };
        let delivered = self
            .connection
            .block(self.connection.broker.deliver(
                &mailbox_name(self.job, start.0),
                task.0.to_string().as_bytes(),
            ))
            .map_err(mail_error)?;
        Ok(if delivered {
            Delivered::Yes
        } else {
            Delivered::Ended
        })
    }

    fn deliveries_may_precede_data(&self) -> bool {
        true
    }

    /// Waits for mail or a start to take over, as long as this executor's
    /// worker has a queue to take starts from (worker processes); a failure
    /// to look ends the wait.
    fn idle(&self, mailbox: &Mailbox) -> Idle {
        loop {
            if self.collect_mail(mailbox).is_err() {
                return Idle::End;
            }
            if mailbox.has_mail() {
                return Idle::Mail;
            }
            match self.wait_for_start() {
                Ok(Waited::Start(task, inputs)) => return Idle::Adopt(task, inputs),
                Ok(Waited::Nothing) => {}
                Ok(Waited::End) | Err(_) => return Idle::End,
            }
        }
    }

    fn finish(&self) -> Result<(), InvokeError> {
        self.connection.push_outcome(self.job, &Outcome::Done)
    }

    fn clock(&self) -> &dyn Clock {
        &*self.connection.clock
    }
}
