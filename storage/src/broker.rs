//! Messages between a job's driver and its executors: FIFO queues, counters,
//! presence sets and mailboxes, behind one [`Broker`] trait that the
//! in-memory store and Redis implement alike.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{Clock, MemoryStore, StorageError};

/// Queues, counters, presence marks and mailboxes shared by a job's driver
/// and its executors (worker processes or functions).
///
/// - A **queue** is FIFO; a message is taken by exactly one [`Listener`].
/// - A **counter** is an integer, 0 until first added to.
/// - A **presence set** holds members with the time they last marked
///   themselves present; a member that stops refreshing its mark ages out,
///   so a worker killed while marked idle stops counting without clean-up.
/// - A **mailbox** is an append-only list of messages read from a cursor, so
///   that whoever takes over a lost reader can read everything again; it
///   accepts deliveries only while open, and each delivery rings its bell,
///   which a waiting [`Listener`] hears.
///
/// Names are 1 to 200 ASCII letters, digits, `-`, `_`, `.` or `:`; others are
/// refused with [`StorageError::InvalidKey`] before anything is sent. Time
/// (presence marks) is the broker's own: the server's clock for Redis, this
/// process's for memory.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Appends `message` to `queue`.
    async fn push_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError>;

    /// Puts `message` back at the head of `queue`, to be taken next.
    async fn return_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError>;

    /// Messages waiting in `queue`.
    async fn queued_messages(&self, queue: &str) -> Result<u64, StorageError>;

    /// Adds `delta` to the counter `name` (0 when new) and returns the result.
    async fn add_to_counter(&self, name: &str, delta: i64) -> Result<i64, StorageError>;

    /// Marks `member` of the presence set `set` as present now, or removes it.
    async fn mark_present(
        &self,
        set: &str,
        member: &str,
        present: bool,
    ) -> Result<(), StorageError>;

    /// How many members of `set` marked within the last `within` exceed the
    /// messages waiting in `queue` (never below 0): listeners free to take
    /// one more message.
    async fn present_beyond_queued(
        &self,
        set: &str,
        within: Duration,
        queue: &str,
    ) -> Result<u64, StorageError>;

    /// Opens the mailbox `name`: from now on [`deliver`](Self::deliver)
    /// appends to it. What it held before stays.
    async fn open_mailbox(&self, name: &str) -> Result<(), StorageError>;

    /// Appends `message` to the mailbox `name` and rings its bell if it is
    /// open; `false` (and nothing kept) if it is not.
    async fn deliver(&self, name: &str, message: &[u8]) -> Result<bool, StorageError>;

    /// The messages of each mailbox `(name, from)` from position `from` on,
    /// in one step; with `close`, each is closed first in the same step, so
    /// that no delivery is accepted and then missed.
    async fn read_mailboxes(
        &self,
        mailboxes: &[(&str, usize)],
        close: bool,
    ) -> Result<Vec<Vec<Vec<u8>>>, StorageError>;

    /// Removes every mailbox whose name starts with `prefix`, with its bell.
    async fn delete_mailboxes(&self, prefix: &str) -> Result<(), StorageError>;

    /// Removes the queues and counters named, with whatever they hold.
    async fn delete_queues(&self, queues: &[&str], counters: &[&str]) -> Result<(), StorageError>;

    /// Something to wait on queues and bells with (for Redis, a connection of
    /// its own: a blocking wait would hold up every other request).
    async fn listener(&self) -> Result<Box<dyn Listener>, StorageError>;

    /// [`read_mailboxes`](Self::read_mailboxes) of one mailbox.
    async fn read_mailbox(
        &self,
        name: &str,
        from: usize,
        close: bool,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut read = self.read_mailboxes(&[(name, from)], close).await?;
        Ok(read.pop().unwrap_or_default())
    }
}

/// Waits for messages on a [`Broker`]'s queues and for its mailboxes' bells.
#[async_trait]
pub trait Listener: Send {
    /// Waits up to `timeout` for a message in `queue`, which it takes, or for
    /// the bell of one of `mailboxes` (a delivery since the bell was last
    /// heard), which it silences.
    async fn wait(
        &mut self,
        queue: &str,
        mailboxes: &[String],
        timeout: Duration,
    ) -> Result<Woken, StorageError>;

    /// Takes the first message of the first non-empty queue of `queues`,
    /// waiting up to `timeout` for one to arrive; `None` if none did. Returns
    /// the queue's name and the message.
    async fn pop(
        &mut self,
        queues: &[&str],
        timeout: Duration,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError>;
}

/// What [`Listener::wait`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Woken {
    /// A message taken from the queue.
    Message(Vec<u8>),
    /// Something was delivered to one of the mailboxes.
    Mail,
    /// Neither came within the time allowed.
    Timeout,
}

/// Checks a queue, counter, set or mailbox name: what job ids allow, plus
/// `.` and `:`.
pub(crate) fn check_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey {
            key: name.to_owned(),
            reason: "queue and counter names are 1 to 200 ASCII letters, digits, '-', '_', '.' or ':'",
        })
    }
}

/// The in-memory broker's state, shared with its listeners.
#[derive(Debug)]
pub(crate) struct Board {
    state: Mutex<BoardState>,
    /// Notified (all waiters) on every push and delivery.
    changed: Notify,
    /// What presence marks expire by.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct BoardState {
    queues: HashMap<String, VecDeque<Vec<u8>>>,
    counters: HashMap<String, i64>,
    /// Members of each set, with the time (of the board's clock) they were marked.
    presence: HashMap<String, HashMap<String, Duration>>,
    mailboxes: HashMap<String, MailboxState>,
}

#[derive(Debug, Default)]
struct MailboxState {
    open: bool,
    messages: Vec<Vec<u8>>,
    bell: bool,
}

impl Board {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            clock,
        }
    }

    fn enqueue(&self, queue: &str, message: &[u8], front: bool) -> Result<(), StorageError> {
        check_name(queue)?;
        {
            let mut state = self.state.lock();
            let queue = state.queues.entry(queue.to_owned()).or_default();
            if front {
                queue.push_front(message.to_vec());
            } else {
                queue.push_back(message.to_vec());
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Waits until `take` finds something, or `timeout` passes.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut take: impl FnMut(&mut BoardState) -> Option<T> + Send,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so that a change in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = take(&mut self.state.lock()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

#[async_trait]
impl Broker for MemoryStore {
    async fn push_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError> {
        self.board.enqueue(queue, message, false)
    }

    async fn return_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError> {
        self.board.enqueue(queue, message, true)
    }

    async fn queued_messages(&self, queue: &str) -> Result<u64, StorageError> {
        check_name(queue)?;
        Ok(self
            .board
            .state
            .lock()
            .queues
            .get(queue)
            .map_or(0, |q| q.len() as u64))
    }

    async fn add_to_counter(&self, name: &str, delta: i64) -> Result<i64, StorageError> {
        check_name(name)?;
        let mut state = self.board.state.lock();
        let counter = state.counters.entry(name.to_owned()).or_default();
        *counter += delta;
        Ok(*counter)
    }

    async fn mark_present(
        &self,
        set: &str,
        member: &str,
        present: bool,
    ) -> Result<(), StorageError> {
        check_name(set)?;
        let mut state = self.board.state.lock();
        if present {
            state
                .presence
                .entry(set.to_owned())
                .or_default()
                .insert(member.to_owned(), self.board.clock.now());
        } else if let Some(members) = state.presence.get_mut(set) {
            members.remove(member);
        }
        Ok(())
    }

    async fn present_beyond_queued(
        &self,
        set: &str,
        within: Duration,
        queue: &str,
    ) -> Result<u64, StorageError> {
        check_name(set)?;
        check_name(queue)?;
        let now = self.board.clock.now();
        let mut state = self.board.state.lock();
        let present = state.presence.get_mut(set).map_or(0, |members| {
            members.retain(|_, marked| now.saturating_sub(*marked) <= within);
            members.len() as u64
        });
        let queued = state.queues.get(queue).map_or(0, |q| q.len() as u64);
        Ok(present.saturating_sub(queued))
    }

    async fn open_mailbox(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        self.board
            .state
            .lock()
            .mailboxes
            .entry(name.to_owned())
            .or_default()
            .open = true;
        Ok(())
    }

    async fn deliver(&self, name: &str, message: &[u8]) -> Result<bool, StorageError> {
        check_name(name)?;
        {
            let mut state = self.board.state.lock();
            match state.mailboxes.get_mut(name) {
                Some(mailbox) if mailbox.open => {
                    mailbox.messages.push(message.to_vec());
                    mailbox.bell = true;
                }
                _ => return Ok(false),
            }
        }
        self.board.changed.notify_waiters();
        Ok(true)
    }

    async fn read_mailboxes(
        &self,
        mailboxes: &[(&str, usize)],
        close: bool,
    ) -> Result<Vec<Vec<Vec<u8>>>, StorageError> {
        for (name, _) in mailboxes {
            check_name(name)?;
        }
        let mut state = self.board.state.lock();
        Ok(mailboxes
            .iter()
            .map(|&(name, from)| match state.mailboxes.get_mut(name) {
                Some(mailbox) => {
                    if close {
                        mailbox.open = false;
                    }
                    mailbox.messages.get(from..).unwrap_or_default().to_vec()
                }
                None => Vec::new(),
            })
            .collect())
    }

    async fn delete_mailboxes(&self, prefix: &str) -> Result<(), StorageError> {
        check_name(prefix)?;
        self.board
            .state
            .lock()
            .mailboxes
            .retain(|name, _| !name.starts_with(prefix));
        Ok(())
    }

    async fn delete_queues(&self, queues: &[&str], counters: &[&str]) -> Result<(), StorageError> {
        for name in queues.iter().chain(counters) {
            check_name(name)?;
        }
        let mut state = self.board.state.lock();
        for queue in queues {
            state.queues.remove(*queue);
        }
        for counter in counters {
            state.counters.remove(*counter);
        }
        Ok(())
    }

    async fn listener(&self) -> Result<Box<dyn Listener>, StorageError> {
        Ok(Box::new(BoardListener(Arc::clone(&self.board))))
    }
}

/// Waits on a [`MemoryStore`]'s queues and bells.
struct BoardListener(Arc<Board>);

#[async_trait]
impl Listener for BoardListener {
    async fn wait(
        &mut self,
        queue: &str,
        mailboxes: &[String],
        timeout: Duration,
    ) -> Result<Woken, StorageError> {
        check_name(queue)?;
        for mailbox in mailboxes {
            check_name(mailbox)?;
        }
        let woken = self
            .0
            .wait_for(timeout, |state| {
                if let Some(message) = state.queues.get_mut(queue).and_then(VecDeque::pop_front) {
                    return Some(Woken::Message(message));
                }
                let rung = mailboxes
                    .iter()
                    .find(|name| state.mailboxes.get(*name).is_some_and(|m| m.bell))?;
                state.mailboxes.get_mut(rung)?.bell = false;
                Some(Woken::Mail)
            })
            .await;
        Ok(woken.unwrap_or(Woken::Timeout))
    }

    async fn pop(
        &mut self,
        queues: &[&str],
        timeout: Duration,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        for queue in queues {
            check_name(queue)?;
        }
        Ok(self
            .0
            .wait_for(timeout, |state| {
                queues.iter().find_map(|&name| {
                    let message = state.queues.get_mut(name)?.pop_front()?;
                    Some((name.to_owned(), message))
                })
            })
            .await)
    }
}
