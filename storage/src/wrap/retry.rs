use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Arrival, Coordinator, JobId, Join, Joined, Lease, Object, ObjectKey, ObjectStore,
    ObjectStoreExt, PutMode, SharedValue, StorageError,
};

/// How [`Retrying`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Calls at most, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Retries transient failures ([`StorageError::Unavailable`]) of any store with
/// exponential backoff; other errors return at once. After the last attempt
/// the error says how many were made.
///
/// Every operation is safe to repeat: gets, lists, deletes and overwrites are
/// idempotent, arrivals are idempotent per edge, and a single-assignment put
/// that finds its own bytes already stored (its earlier attempt landed but the
/// reply was lost) counts as done.
#[derive(Debug)]
pub struct Retrying<S> {
    inner: S,
    config: RetryConfig,
}

impl<S> Retrying<S> {
    /// Retries `inner`'s transient failures as `config` says.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        Self { inner, config }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Retries a single-assignment put. Only a retry can meet its own
    /// earlier, unacknowledged write: one that finds the key taken asks
    /// `landed` whether the object there is what it put.
    async fn retry_put<P, PutFut, L, LandedFut>(
        &self,
        put: P,
        landed: L,
    ) -> Result<(), StorageError>
    where
        P: Fn() -> PutFut + Send + Sync,
        PutFut: Future<Output = Result<(), StorageError>> + Send,
        L: Fn() -> LandedFut + Send + Sync,
        LandedFut: Future<Output = Result<bool, StorageError>> + Send,
    {
        self.retry(|attempt| {
            let (put, landed) = (&put, &landed);
            async move {
                match put().await {
                    Err(StorageError::KeyExists { .. }) if attempt > 1 && landed().await? => Ok(()),
                    other => other,
                }
            }
        })
        .await
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, StorageError>
    where
        F: FnMut(u32) -> Fut + Send,
        Fut: Future<Output = Result<T, StorageError>> + Send,
    {
        let attempts = self.config.attempts.max(1);
        let mut delay = self.config.base_delay;
        let mut attempt = 1;
        loop {
            match call(attempt).await {
                Err(StorageError::Unavailable {
                    backend,
                    endpoint,
                    detail,
                }) => {
                    if attempt >= attempts {
                        return Err(StorageError::Unavailable {
                            backend,
                            endpoint,
                            detail: format!("{detail} (gave up after {attempts} attempts)"),
                        });
                    }
                }
                other => return other,
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.config.max_delay);
            attempt += 1;
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Retrying<S> {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        self.retry(|_| self.inner.get(key)).await
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.retry_put(
            || self.inner.put(key, value.clone(), mode),
            || async { Ok(self.inner.get(key).await? == value) },
        )
        .await
    }

    async fn put_value(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        self.retry_put(
            || self.inner.put_value(key, Arc::clone(&value), mode),
            || self.inner.holds(key, &value),
        )
        .await
    }

    async fn get_object(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        self.retry(|_| self.inner.get_object(key)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.retry(|_| self.inner.delete(key)).await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        self.retry(|_| self.inner.exists(key)).await
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        self.retry(|_| self.inner.list(job, prefix)).await
    }
}

#[async_trait]
impl<S: Coordinator> Coordinator for Retrying<S> {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        self.retry(|_| self.inner.arrive(job, child, edge, in_degree))
            .await
    }

    async fn join_all(
        &self,
        job: &JobId,
        holder: &str,
        joins: &[Join],
    ) -> Result<Vec<Joined>, StorageError> {
        // Arrivals and claims are idempotent: a batch repeated after a lost
        // reply answers the same.
        self.retry(|_| self.inner.join_all(job, holder, joins))
            .await
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        // Re-acquiring a lease one already holds succeeds, so a lost reply is harmless.
        self.retry(|_| self.inner.acquire(job, name, holder, ttl))
            .await
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.retry(|_| self.inner.renew(job, name, holder, ttl))
            .await
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        self.retry(|_| self.inner.release(job, name, holder)).await
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        // A claim repeated by its holder answers the same holder.
        self.retry(|_| self.inner.claim(job, name, holder)).await
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        self.retry(|_| self.inner.expired(job)).await
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        self.retry(|_| self.inner.clear_job(job)).await
    }
}
