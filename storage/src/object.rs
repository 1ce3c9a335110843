use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::codec::{SharedValue, StoredValue};
use crate::{JobId, ObjectKey, StorageError};

/// How [`ObjectStore::put`] treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Single assignment: fails with [`StorageError::KeyExists`] if the key
    /// exists, and leaves the stored object untouched. Safe to retry: a retry
    /// after a lost reply fails with `KeyExists`, which a writer of
    /// deterministic data can treat as success.
    Create,
    /// Replaces any existing object atomically.
    Overwrite,
}

/// Objects by key, each under a job's namespace.
///
/// Guarantees every backend gives: a `put` is atomic (a reader sees the whole
/// old object or the whole new one, never a mix); `get` after a successful
/// `put` returns the new object; `delete` of a missing key succeeds (so it is
/// safe to retry); `list` returns the keys present when it ran, sorted.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The object at `key`, or [`StorageError::KeyNotFound`].
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError>;

    /// Stores `value` at `key` as `mode` says.
    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError>;

    /// Removes the object at `key`, if any.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Whether an object exists at `key`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError>;

    /// Keys of `job` whose names start with `prefix`, sorted.
    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError>;

    /// Stores `value` at `key` as `mode` says. A store in this process's
    /// memory keeps the value itself, so that [`get_object`](Self::get_object)
    /// shares it without a copy; the others (the default) store its bytes.
    /// Values are immutable once put: the store and its readers share them.
    /// A wrapper that does not forward this method and `get_object` turns
    /// keeping off for what it wraps ([`Cached`](crate::wrap::Cached) does, as
    /// it caches bytes in front of remote stores).
    async fn put_value(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        let bytes = value.to_bytes(key)?;
        self.put(key, bytes, mode).await
    }

    /// The object at `key`: the value itself where [`put_value`](Self::put_value)
    /// kept one, else the bytes (the default). [`get`](Self::get) gives bytes
    /// either way.
    async fn get_object(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        self.get(key).await.map(Object::Bytes)
    }
}

/// An object as [`ObjectStore::get_object`] hands it over.
#[derive(Clone)]
pub enum Object {
    /// Stored bytes.
    Bytes(Bytes),
    /// A value kept as it is.
    Value(Arc<dyn SharedValue>),
}

impl Object {
    /// Length of the object's bytes (encoded for a kept value).
    pub fn byte_len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Value(value) => value.byte_len(),
        }
    }

    /// The object's bytes (encoded for a kept value).
    pub fn to_bytes(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        match self {
            Self::Bytes(bytes) => Ok(bytes.clone()),
            Self::Value(value) => value.to_bytes(key),
        }
    }

    /// The object as a `V`: a kept value of that type is shared, bytes are
    /// decoded; anything else is [`StorageError::Corrupt`] naming `key`.
    pub fn into_value<V: StoredValue>(self, key: &ObjectKey) -> Result<Arc<V>, StorageError> {
        match self {
            Self::Bytes(bytes) => V::decode(key, &bytes).map(Arc::new),
            Self::Value(value) => {
                value
                    .into_any()
                    .downcast::<V>()
                    .map_err(|_| StorageError::Corrupt {
                        key: key.clone(),
                        reason: "the stored value is of another type",
                    })
            }
        }
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => f.debug_tuple("Bytes").field(&bytes.len()).finish(),
            Self::Value(value) => f.debug_tuple("Value").field(&value.byte_len()).finish(),
        }
    }
}

/// A store behind a pointer, for code that picks its backend at run time.
pub type DynObjectStore = dyn ObjectStore;

/// Conveniences for every [`ObjectStore`].
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Deletes every object of `job` and returns how many there were.
    async fn delete_job(&self, job: &JobId) -> Result<usize, StorageError> {
        let keys = self.list(job, "").await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Single-assignment put that treats an identical existing object as
    /// success, so a retried or duplicated writer of deterministic data never fails.
    async fn put_once(&self, key: &ObjectKey, value: Bytes) -> Result<(), StorageError> {
        match self.put(key, value.clone(), PutMode::Create).await {
            Err(StorageError::KeyExists { .. }) if self.get(key).await? == value => Ok(()),
            other => other,
        }
    }

    /// [`put_once`](Self::put_once) through [`put_value`](ObjectStore::put_value).
    async fn put_value_once(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
    ) -> Result<(), StorageError> {
        match self
            .put_value(key, Arc::clone(&value), PutMode::Create)
            .await
        {
            Err(StorageError::KeyExists { .. }) if self.holds(key, &value).await? => Ok(()),
            other => other,
        }
    }

    /// Whether the object at `key` is `value`: the same kept value, or the
    /// same bytes.
    async fn holds(
        &self,
        key: &ObjectKey,
        value: &Arc<dyn SharedValue>,
    ) -> Result<bool, StorageError> {
        Ok(match self.get_object(key).await? {
            Object::Value(stored)
                if std::ptr::addr_eq(Arc::as_ptr(&stored), Arc::as_ptr(value)) =>
            {
                true
            }
            stored => stored.to_bytes(key)? == value.to_bytes(key)?,
        })
    }

    /// The object at `key` as a `V`, and the length of its bytes.
    async fn get_value<V: StoredValue>(
        &self,
        key: &ObjectKey,
    ) -> Result<(Arc<V>, u64), StorageError> {
        let object = self.get_object(key).await?;
        let len = object.byte_len();
        Ok((object.into_value(key)?, len))
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}

/// What [`Coordinator::arrive`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// This edge is the one that completed the child's inputs: the caller
    /// owns the child. Repeating the call for the same edge (a retry after a
    /// lost reply) answers `Completed` again, so a completion is never lost; a
    /// duplicated executor may then run the child twice, which single-assignment
    /// outputs make harmless.
    Completed,
    /// The child still waits for `missing` parents.
    Waiting {
        /// Parents not yet arrived.
        missing: u32,
    },
    /// This edge had arrived before and was not the completing one; nothing changed.
    Duplicate,
}

/// An arrival: parent edge `edge` of task `child`, whose in-degree is `in_degree`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The child task.
    pub child: u64,
    /// The parent's edge, in `0..in_degree`.
    pub edge: u32,
    /// The child's in-degree.
    pub in_degree: u32,
}

/// Whether a [`Join`] also claims, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Arrive only.
    Never,
    /// Claim this name first, and arrive only if the caller holds the claim
    /// (someone else's claim means the caller must first write its data).
    First(String),
    /// Arrive, and claim this name if the arrival completed the child.
    OnCompletion(String),
}

/// One arrival of a batch, with a claim (see [`Coordinator::join_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The arrival.
    pub edge: Edge,
    /// The claim that goes with it.
    pub hold: Hold,
}

/// What a [`Join`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The arrival's answer; `None` if it was not made, because someone else
    /// holds the claim that [`Hold::First`] asked for.
    pub arrival: Option<Arrival>,
    /// The claim's holder, if a claim was made.
    pub holder: Option<String>,
}

/// The check every backend makes before recording an arrival: edges are
/// numbered `0..in_degree`.
pub(crate) fn check_arrival(child: u64, edge: u32, in_degree: u32) -> Result<(), StorageError> {
    if edge >= in_degree {
        return Err(StorageError::BadArrival {
            child,
            edge,
            in_degree,
        });
    }
    Ok(())
}

/// [`check_arrival`] for every join of a batch.
pub(crate) fn check_joins(joins: &[Join]) -> Result<(), StorageError> {
    joins
        .iter()
        .try_for_each(|j| check_arrival(j.edge.child, j.edge.edge, j.edge.in_degree))
}

/// A held lease: who holds it and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased resource (e.g. a task), inside the job.
    pub name: String,
    /// The holder (e.g. an executor id).
    pub holder: String,
}

/// Fan-in counting and leases, atomic per call.
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug {
    /// Records that parent edge `edge` of `child` has arrived. Idempotent per
    /// `(job, child, edge)`: the count is of distinct edges, and exactly one
    /// edge, the one whose arrival brought it to `in_degree`, is answered
    /// [`Arrival::Completed`] (on every call for that edge), whatever retries
    /// or duplicates happen.
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError>;

    /// Makes the arrivals and claims of `joins` for `holder`, in order, as
    /// [`arrive`](Coordinator::arrive) and [`claim`](Coordinator::claim) would
    /// one after the other, and answers each. Remote backends do it in one
    /// round trip. Each join is atomic, the batch is not: after an error some
    /// may be made, and repeating the batch is safe (arrivals and claims are
    /// idempotent). Every edge is checked before anything is recorded.
    async fn join_all(
        &self,
        job: &JobId,
        holder: &str,
        joins: &[Join],
    ) -> Result<Vec<Joined>, StorageError> {
        check_joins(joins)?;
        let mut joined = Vec::with_capacity(joins.len());
        for Join { edge, hold } in joins {
            let arrive = || self.arrive(job, edge.child, edge.edge, edge.in_degree);
            joined.push(match hold {
                Hold::Never => Joined {
                    arrival: Some(arrive().await?),
                    holder: None,
                },
                Hold::First(name) => {
                    let claimed = self.claim(job, name, holder).await?;
                    Joined {
                        arrival: match claimed == holder {
                            true => Some(arrive().await?),
                            false => None,
                        },
                        holder: Some(claimed),
                    }
                }
                Hold::OnCompletion(name) => {
                    let arrival = arrive().await?;
                    Joined {
                        holder: match arrival {
                            Arrival::Completed => Some(self.claim(job, name, holder).await?),
                            _ => None,
                        },
                        arrival: Some(arrival),
                    }
                }
            });
        }
        Ok(joined)
    }

    /// Takes the lease `name` for `holder` for `ttl` if it is free or expired;
    /// returns whether this call got it.
    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError>;

    /// Extends a lease that `holder` still holds; false if it was lost.
    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError>;

    /// Gives up a lease that `holder` holds; releasing a lost lease is not an error.
    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError>;

    /// Claims `name` for `holder` unless someone claimed it first, and returns
    /// the holder of the claim: `holder` if this call (or an earlier one by
    /// the same holder) won. Atomic and idempotent; a claim lasts until
    /// [`clear_job`](Coordinator::clear_job). Executors claim the right to
    /// hold a child's inputs in their local cache.
    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError>;

    /// Leases of `job` whose time ran out without a release, sorted by name.
    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError>;

    /// Forgets every arrival, claim and lease of `job`, and nothing of any other job.
    /// With [`ObjectStoreExt::delete_job`] it removes all that a job left behind.
    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError>;
}
