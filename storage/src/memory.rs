use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::object::check_arrival;
use crate::{Arrival, Coordinator, JobId, Lease, ObjectKey, ObjectStore, PutMode, StorageError};

/// Objects, arrivals, claims and leases in this process's memory: the embedded mode's store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<ObjectKey, Bytes>>,
    arrivals: Mutex<HashMap<(JobId, u64), FanIn>>,
    leases: Mutex<BTreeMap<(JobId, String), (String, Instant)>>,
    claims: Mutex<HashMap<(JobId, String), String>>,
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

    /// Objects stored, of every job.
    pub fn object_count(&self) -> usize {
        self.objects.lock().len()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        self.objects
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| StorageError::KeyNotFound { key: key.clone() })
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        let mut objects = self.objects.lock();
        if mode == PutMode::Create && objects.contains_key(key) {
            return Err(StorageError::KeyExists { key: key.clone() });
        }
        objects.insert(key.clone(), value);
        Ok(())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.objects.lock().remove(key);
        Ok(())
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        Ok(self.objects.lock().contains_key(key))
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        Ok(self
            .objects
            .lock()
            .keys()
            .filter(|k| k.job() == job && k.name().starts_with(prefix))
            .cloned()
            .collect())
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
        let mut arrivals = self.arrivals.lock();
        let FanIn { edges, completer } = arrivals.entry((job.clone(), child)).or_default();
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
        let now = Instant::now();
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
        let now = Instant::now();
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
        Ok(self
            .claims
            .lock()
            .entry((job.clone(), name.to_owned()))
            .or_insert_with(|| holder.to_owned())
            .clone())
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        let now = Instant::now();
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
        self.arrivals.lock().retain(|(owner, _), _| owner != job);
        self.leases.lock().retain(|(owner, _), _| owner != job);
        self.claims.lock().retain(|(owner, _), _| owner != job);
        Ok(())
    }
}
