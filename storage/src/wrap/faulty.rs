use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::{
    Arrival, Coordinator, JobId, Lease, Object, ObjectKey, ObjectStore, PutMode, SharedValue,
    StorageError,
};

/// What [`Faulty`] injects. Rates are probabilities per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Seed of the fault sequence: the same seed and calls give the same faults.
    pub seed: u64,
    /// A transient error before the call reaches the store (nothing happens).
    pub error_rate: f64,
    /// A dropped connection after the store applied the call (the reply is lost).
    pub lost_reply_rate: f64,
    /// Added to every call.
    pub latency: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            error_rate: 0.0,
            lost_reply_rate: 0.0,
            latency: Duration::ZERO,
        }
    }
}

/// Injects seeded transient errors, lost replies and latency into any store,
/// for tests of retries and recovery. Injected errors are
/// [`StorageError::Unavailable`] with backend `faulty`.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    config: FaultConfig,
    state: Mutex<u64>,
}

enum Fault {
    None,
    Before,
    After,
}

impl<S> Faulty<S> {
    /// Wraps `inner` with the faults of `config`.
    pub fn new(inner: S, config: FaultConfig) -> Self {
        Self {
            inner,
            state: Mutex::new(config.seed),
            config,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn draw(&self) -> f64 {
        let mut state = self.state.lock();
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn fault(&self) -> Fault {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let draw = self.draw();
        if draw < self.config.error_rate {
            Fault::Before
        } else if draw < self.config.error_rate + self.config.lost_reply_rate {
            Fault::After
        } else {
            Fault::None
        }
    }

    fn injected(detail: &str) -> StorageError {
        StorageError::Unavailable {
            backend: "faulty",
            endpoint: "injected".into(),
            detail: detail.into(),
        }
    }

    /// Runs `call` unless a fault comes first; a lost reply runs it and then fails.
    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        match self.fault().await {
            Fault::Before => Err(Self::injected("injected fault: the request was not sent")),
            Fault::After => {
                let _ = call.await;
                Err(Self::injected(
                    "injected dropped connection: the request was applied, the reply lost",
                ))
            }
            Fault::None => call.await,
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Faulty<S> {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        self.run(self.inner.get(key)).await
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.run(self.inner.put(key, value, mode)).await
    }

    async fn put_value(
        &self,
        key: &ObjectKey,
        value: Arc<dyn SharedValue>,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        self.run(self.inner.put_value(key, value, mode)).await
    }

    async fn get_object(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        self.run(self.inner.get_object(key)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.run(self.inner.delete(key)).await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        self.run(self.inner.exists(key)).await
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        self.run(self.inner.list(job, prefix)).await
    }
}

#[async_trait]
impl<S: Coordinator> Coordinator for Faulty<S> {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        self.run(self.inner.arrive(job, child, edge, in_degree))
            .await
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.run(self.inner.acquire(job, name, holder, ttl)).await
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.run(self.inner.renew(job, name, holder, ttl)).await
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        self.run(self.inner.release(job, name, holder)).await
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        self.run(self.inner.claim(job, name, holder)).await
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        self.run(self.inner.expired(job)).await
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        self.run(self.inner.clear_job(job)).await
    }
}
