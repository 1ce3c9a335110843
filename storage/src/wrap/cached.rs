use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;

use crate::{
    Arrival, Coordinator, JobId, Join, Joined, Lease, ObjectKey, ObjectStore, PutMode, StorageError,
};

/// Hits and misses of a [`Cached`] store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Gets answered from the cache.
    pub hits: u64,
    /// Gets that went to the wrapped store.
    pub misses: u64,
    /// Objects evicted to stay within the budget.
    pub evictions: u64,
    /// Bytes held now.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<ObjectKey, (Bytes, u64)>,
    order: BTreeMap<u64, ObjectKey>,
    tick: u64,
    stats: CacheStats,
}

impl Lru {
    fn touch(&mut self, key: &ObjectKey) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let (value, last) = self.entries.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.clone());
        Some(value.clone())
    }

    fn remove(&mut self, key: &ObjectKey) {
        if let Some((value, last)) = self.entries.remove(key) {
            self.order.remove(&last);
            self.stats.bytes -= value.len() as u64;
        }
    }

    fn insert(&mut self, key: &ObjectKey, value: Bytes, budget: u64) {
        self.remove(key);
        let size = value.len() as u64;
        if size > budget {
            return;
        }
        while self.stats.bytes + size > budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = self.entries.remove(&oldest) {
                self.stats.bytes -= evicted.len() as u64;
                self.stats.evictions += 1;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key.clone(), (value, self.tick));
        self.stats.bytes += size;
    }
}

/// A local cache of objects in front of any store, least recently used first
/// out, holding at most `budget` bytes.
///
/// Meant for single-assignment objects (tiles), which never change once
/// written: then a cached copy is always current. Puts write through; an
/// `Overwrite` or `delete` through this wrapper updates the cache, but a change
/// made by another process to an object cached here is not seen.
#[derive(Debug)]
pub struct Cached<S> {
    inner: S,
    budget: u64,
    lru: Mutex<Lru>,
}

impl<S> Cached<S> {
    /// Caches up to `budget` bytes of `inner`'s objects.
    pub fn new(inner: S, budget: u64) -> Self {
        Self {
            inner,
            budget,
            lru: Mutex::new(Lru::default()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Hits, misses, evictions and bytes held.
    pub fn stats(&self) -> CacheStats {
        self.lru.lock().stats
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Cached<S> {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        {
            let mut lru = self.lru.lock();
            if let Some(value) = lru.touch(key) {
                lru.stats.hits += 1;
                return Ok(value);
            }
            lru.stats.misses += 1;
        }
        let value = self.inner.get(key).await?;
        self.lru.lock().insert(key, value.clone(), self.budget);
        Ok(value)
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        match self.inner.put(key, value.clone(), mode).await {
            Ok(()) => {
                self.lru.lock().insert(key, value, self.budget);
                Ok(())
            }
            Err(error) => {
                // The stored object is unknown now (an overwrite may or may not have landed).
                if mode == PutMode::Overwrite {
                    self.lru.lock().remove(key);
                }
                Err(error)
            }
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.lru.lock().remove(key);
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        if self.lru.lock().entries.contains_key(key) {
            return Ok(true);
        }
        self.inner.exists(key).await
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        self.inner.list(job, prefix).await
    }
}

#[async_trait]
impl<S: Coordinator> Coordinator for Cached<S> {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        self.inner.arrive(job, child, edge, in_degree).await
    }

    async fn join_all(
        &self,
        job: &JobId,
        holder: &str,
        joins: &[Join],
    ) -> Result<Vec<Joined>, StorageError> {
        self.inner.join_all(job, holder, joins).await
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.acquire(job, name, holder, ttl).await
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.renew(job, name, holder, ttl).await
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        self.inner.release(job, name, holder).await
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        self.inner.claim(job, name, holder).await
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        self.inner.expired(job).await
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        self.inner.clear_job(job).await
    }
}
