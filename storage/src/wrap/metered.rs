use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::{
    Arrival, Coordinator, JobId, Join, Joined, Lease, Object, ObjectKey, ObjectStore, PutMode,
    SharedValue, StorageError,
};

/// Requests and bytes that went through a [`Metered`] store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeterReport {
    /// The tier's name (e.g. `redis`, `s3`, `memory`).
    pub tier: String,
    /// `get` calls, successful or not.
    pub gets: u64,
    /// Bytes returned by successful gets.
    pub bytes_read: u64,
    /// `put` calls.
    pub puts: u64,
    /// Bytes sent by puts (counted whether or not the put succeeded).
    pub bytes_written: u64,
    /// `delete`, `exists` and `list` calls.
    pub other_requests: u64,
    /// `arrive` calls.
    pub arrivals: u64,
    /// Lease and claim calls (acquire, renew, release, expired, claim).
    pub lease_requests: u64,
    /// Calls that returned an error.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    gets: AtomicU64,
    bytes_read: AtomicU64,
    puts: AtomicU64,
    bytes_written: AtomicU64,
    other_requests: AtomicU64,
    arrivals: AtomicU64,
    lease_requests: AtomicU64,
    errors: AtomicU64,
}

/// Counts what passes through to the wrapped store.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    tier: String,
    counters: Counters,
}

impl<S> Metered<S> {
    /// Meters `inner` under the tier name `tier`.
    pub fn new(inner: S, tier: impl Into<String>) -> Self {
        Self {
            inner,
            tier: tier.into(),
            counters: Counters::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counts so far.
    pub fn report(&self) -> MeterReport {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MeterReport {
            tier: self.tier.clone(),
            gets: load(&c.gets),
            bytes_read: load(&c.bytes_read),
            puts: load(&c.puts),
            bytes_written: load(&c.bytes_written),
            other_requests: load(&c.other_requests),
            arrivals: load(&c.arrivals),
            lease_requests: load(&c.lease_requests),
            errors: load(&c.errors),
        }
    }

    fn count<T>(
        &self,
        counter: &AtomicU64,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.count_many(counter, 1, result)
    }

    /// Counts a get that returned `len` bytes, or failed.
    fn count_read(&self, len: Result<u64, &StorageError>) {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        match len {
            Ok(len) => self.counters.bytes_read.fetch_add(len, Ordering::Relaxed),
            Err(_) => self.counters.errors.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts a put of `len` bytes (sent whether or not it succeeded).
    fn count_write(&self, len: u64, result: Result<(), StorageError>) -> Result<(), StorageError> {
        self.counters
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        self.count(&self.counters.puts, result)
    }

    /// Counts `n` operations made in one request (a batch).
    fn count_many<T>(
        &self,
        counter: &AtomicU64,
        n: usize,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Metered<S> {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        let result = self.inner.get(key).await;
        self.count_read(result.as_ref().map(|bytes| bytes.len() as u64));
        result
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        let len = value.len() as u64;
        let result = self.inner.put(key, value, mode).await;
        self.count_write(len, result)
    }

    /// Counted as a put of the value's bytes.
    async fn put_value(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        let len = value.byte_len();
        let result = self.inner.put_value(key, value, mode).await;
        self.count_write(len, result)
    }

    /// Counted as a get of the object's bytes.
    async fn get_object(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        let result = self.inner.get_object(key).await;
        self.count_read(result.as_ref().map(Object::byte_len));
        result
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let result = self.inner.delete(key).await;
        self.count(&self.counters.other_requests, result)
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        let result = self.inner.exists(key).await;
        self.count(&self.counters.other_requests, result)
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        let result = self.inner.list(job, prefix).await;
        self.count(&self.counters.other_requests, result)
    }
}

#[async_trait]
impl<S: Coordinator> Coordinator for Metered<S> {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        let result = self.inner.arrive(job, child, edge, in_degree).await;
        self.count(&self.counters.arrivals, result)
    }

    async fn join_all(
        &self,
        job: &JobId,
        holder: &str,
        joins: &[Join],
    ) -> Result<Vec<Joined>, StorageError> {
        let result = self.inner.join_all(job, holder, joins).await;
        self.count_many(&self.counters.arrivals, joins.len(), result)
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let result = self.inner.acquire(job, name, holder, ttl).await;
        self.count(&self.counters.lease_requests, result)
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let result = self.inner.renew(job, name, holder, ttl).await;
        self.count(&self.counters.lease_requests, result)
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        let result = self.inner.release(job, name, holder).await;
        self.count(&self.counters.lease_requests, result)
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        let result = self.inner.claim(job, name, holder).await;
        self.count(&self.counters.lease_requests, result)
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        let result = self.inner.expired(job).await;
        self.count(&self.counters.lease_requests, result)
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        let result = self.inner.clear_job(job).await;
        self.count(&self.counters.other_requests, result)
    }
}
