use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::object::check_arrival;
use crate::{
    Arrival, Clock, Coordinator, JobId, Lease, Object, ObjectKey, ObjectStore, PutMode,
    SharedValue, StorageError, SystemClock,
};

/// Objects, arrivals, claims, leases and messages in this process's memory:
/// the embedded mode's store, and a broker for executors hosted in this
/// process.
#[derive(Debug)]
pub struct MemoryStore {
    /// Per job, objects by name: lookups neither clone the job id nor
    /// compare whole keys. Values put with `put_value` are kept as they are.
    objects: Mutex<HashMap<JobId, BTreeMap<String, Object>>>,
    arrivals: Mutex<HashMap<JobId, HashMap<u64, FanIn>>>,
    /// Holder and expiry (a reading of `clock`) of each lease.
    leases: Mutex<BTreeMap<(JobId, String), (String, Duration)>>,
    claims: Mutex<HashMap<JobId, HashMap<String, String>>>,
    /// Queues, counters, presence sets and mailboxes (see [`Broker`](crate::Broker)).
    pub(crate) board: Arc<crate::broker::Board>,
    /// What leases and presence marks expire by.
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

/// The arrived edges of one child, and the edge that completed it.
#[derive(Debug, Default)]
struct FanIn {
    edges: HashSet<u32>,
    completer: Option<u32>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose leases and presence marks expire by `clock`
    /// (a virtual one in a simulation).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            objects: Mutex::default(),
            arrivals: Mutex::default(),
            leases: Mutex::default(),
            claims: Mutex::default(),
            board: Arc::new(crate::broker::Board::new(Arc::clone(&clock))),
            clock,
        }
    }

    fn insert(&self, key: &ObjectKey, value: Object, mode: PutMode) -> Result<(), StorageError> {
        let mut jobs = self.objects.lock();
        let objects = match jobs.get_mut(key.job()) {
            Some(objects) => objects,
            None => jobs.entry(key.job().clone()).or_default(),
        };
        if mode == PutMode::Create && objects.contains_key(key.name()) {
            return Err(StorageError::KeyExists { key: key.clone() });
        }
        objects.insert(key.name().to_owned(), value);
        Ok(())
    }

    /// Objects stored, of every job.
    pub fn object_count(&self) -> usize {
        self.objects.lock().values().map(BTreeMap::len).sum()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        // A kept value is encoded outside the lock.
        self.get_object(key).await?.to_bytes(key)
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.insert(key, Object::Bytes(value), mode)
    }

    async fn put_value(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        self.insert(key, Object::Value(value), mode)
    }

    async fn get_object(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        self.objects
            .lock()
            .get(key.job())
            .and_then(|objects| objects.get(key.name()))
            .cloned()
            .ok_or_else(|| StorageError::KeyNotFound { key: key.clone() })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let mut jobs = self.objects.lock();
        if let Some(objects) = jobs.get_mut(key.job()) {
            objects.remove(key.name());
            if objects.is_empty() {
                jobs.remove(key.job());
            }
        }
        Ok(())
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        Ok(self
            .objects
            .lock()
            .get(key.job())
            .is_some_and(|objects| objects.contains_key(key.name())))
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        let jobs = self.objects.lock();
        let Some(objects) = jobs.get(job) else {
            return Ok(Vec::new());
        };
        objects
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| job.key(name.clone()))
            .collect()
    }
}

#[async_trait]
impl Coordinator for MemoryStore {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        check_arrival(child, edge, in_degree)?;
        let mut jobs = self.arrivals.lock();
        let arrivals = match jobs.get_mut(job) {
            Some(arrivals) => arrivals,
            None => jobs.entry(job.clone()).or_default(),
        };
        let FanIn { edges, completer } = arrivals.entry(child).or_default();
        if !edges.insert(edge) {
            return Ok(if *completer == Some(edge) {
                Arrival::Completed
            } else {
                Arrival::Duplicate
            });
        }
        let arrived = edges.len() as u32;
        Ok(if arrived == in_degree {
            *completer = Some(edge);
            Arrival::Completed
        } else {
            Arrival::Waiting {
                missing: in_degree - arrived,
            }
        })
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let mut leases = self.leases.lock();
        let now = self.clock.now();
        let key = (job.clone(), name.to_owned());
        match leases.get(&key) {
            Some((current, until)) if *until > now && current != holder => Ok(false),
            _ => {
                leases.insert(key, (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let mut leases = self.leases.lock();
        let now = self.clock.now();
        match leases.get_mut(&(job.clone(), name.to_owned())) {
            Some((current, until)) if current == holder && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        let mut leases = self.leases.lock();
        let key = (job.clone(), name.to_owned());
        if leases
            .get(&key)
            .is_some_and(|(current, _)| current == holder)
        {
            leases.remove(&key);
        }
        Ok(())
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        let mut jobs = self.claims.lock();
        let claims = match jobs.get_mut(job) {
            Some(claims) => claims,
            None => jobs.entry(job.clone()).or_default(),
        };
        if let Some(current) = claims.get(name) {
            return Ok(current.clone());
        }
        claims.insert(name.to_owned(), holder.to_owned());
        Ok(holder.to_owned())
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        let now = self.clock.now();
        Ok(self
            .leases
            .lock()
            .iter()
            .filter(|((lease_job, _), (_, until))| lease_job == job && *until <= now)
            .map(|((_, name), (holder, _))| Lease {
                name: name.clone(),
                holder: holder.clone(),
            })
            .collect())
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        self.arrivals.lock().remove(job);
        self.leases.lock().retain(|(owner, _), _| owner != job);
        self.claims.lock().remove(job);
        Ok(())
    }
}
