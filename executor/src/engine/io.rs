//! I/O and eviction: staging inputs and reading outputs on the driver, an
//! executor's reads and writes through its cache, and what it writes before
//! it ends or when its cache is full.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use wukong_dag::{Dag, DataId, Operation, TaskId};
use wukong_storage::{JobId, ObjectStoreExt, PutMode, SharedValue, StorageError, StoredValue};

use super::executor::Executor;
use super::run::Run;
use super::{Stores, data_key};
use crate::{ExecError, IoReport, Kernels};

/// Runs `work` on every item of `items`, split over `threads` threads
/// (interleaved, so that each thread gets a similar share), and returns the
/// results in the order of `items`; the first error wins.
fn in_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&work).collect();
    }
    let work = &work;
    let parts: Vec<Result<Vec<(usize, R)>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|first| {
                scope.spawn(move || {
                    (first..items.len())
                        .step_by(threads)
                        .map(|i| work(&items[i]).map(|r| (i, r)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut results = Vec::with_capacity(items.len());
    for part in parts {
        results.extend(part?);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Puts the inputs (the in-memory store keeps them as they are, the others
/// get their bytes), on `threads` threads at once; returns the objects and
/// bytes written.
pub(super) fn stage_inputs<V: StoredValue>(
    inputs: Vec<(DataId, Arc<V>)>,
    stores: &Stores,
    job: &JobId,
    threads: usize,
) -> Result<(u64, u64), StorageError> {
    let sizes = in_parallel(&inputs, threads, |(data, value)| {
        let key = data_key(job, *data)?;
        let size = value.encoded_len();
        // The in-memory store keeps the input tile itself; others get its bytes.
        block_on(
            stores.runtime.as_ref(),
            stores.objects.put_value(
                &key,
                Arc::clone(value) as Arc<dyn SharedValue>,
                PutMode::Create,
            ),
        )?;
        Ok::<u64, StorageError>(size)
    })?;
    Ok((inputs.len() as u64, sizes.iter().sum()))
}

/// Gets the graph's outputs (shared from the in-memory store, decoded from
/// the others), on `threads` threads at once.
pub(super) fn read_outputs<Op, V: StoredValue, E: std::error::Error + 'static>(
    dag: &Dag<Op>,
    stores: &Stores,
    job: &JobId,
    threads: usize,
) -> Result<HashMap<DataId, Arc<V>>, ExecError<E>> {
    let outputs: Vec<(DataId, Option<TaskId>)> = dag
        .outputs()
        .iter()
        .map(|&data| (data, dag.producer(data)))
        .collect();
    let values = in_parallel(&outputs, threads, |&(data, task)| {
        let read = || -> Result<Arc<V>, StorageError> {
            let key = data_key(job, data)?;
            block_on(stores.runtime.as_ref(), stores.objects.get_value::<V>(&key))
                .map(|(value, _)| value)
        };
        read()
            .map(|value| (data, value))
            .map_err(|source| (task, source))
    })
    .map_err(|(task, source)| ExecError::Store { task, source })?;
    Ok(values.into_iter().collect())
}

/// Runs a store future to completion: at once if it is ready on the first
/// poll (the in-memory store), else on `runtime`, or on a private runtime
/// when none was given.
pub(super) fn block_on<T, F>(
    runtime: Option<&tokio::runtime::Handle>,
    future: F,
) -> Result<T, StorageError>
where
    F: Future<Output = Result<T, StorageError>>,
{
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(std::task::Waker::noop());
    // Inside the runtime's context, so that timers and sockets the future
    // creates on its first poll belong to it.
    let first = {
        let _context = runtime.map(tokio::runtime::Handle::enter);
        future.as_mut().poll(&mut context)
    };
    if let Poll::Ready(output) = first {
        return output;
    }
    match runtime {
        Some(handle) => handle.block_on(future),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::InvalidConfig {
                what: "async runtime for the store",
                detail: e.to_string(),
            })?
            .block_on(future),
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_hit_bytes: AtomicU64,
    pub(super) store_reads: AtomicU64,
    pub(super) store_read_bytes: AtomicU64,
    pub(super) store_writes: AtomicU64,
    pub(super) store_write_bytes: AtomicU64,
    pub(super) staged_bytes: AtomicU64,
    pub(super) staged_objects: AtomicU64,
    pub(super) inline_inputs: AtomicU64,
    pub(super) arrivals: AtomicU64,
    pub(super) claims: AtomicU64,
    pub(super) invocations: AtomicU64,
    pub(super) deliveries: AtomicU64,
    pub(super) adoptions: AtomicU64,
}

pub(super) fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn report(&self) -> IoReport {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoReport {
            cache_hits: load(&self.cache_hits),
            cache_hit_bytes: load(&self.cache_hit_bytes),
            store_reads: load(&self.store_reads),
            store_read_bytes: load(&self.store_read_bytes),
            store_writes: load(&self.store_writes),
            store_write_bytes: load(&self.store_write_bytes),
            staged_bytes: load(&self.staged_bytes),
            staged_objects: load(&self.staged_objects),
            inline_inputs: load(&self.inline_inputs),
            arrivals: load(&self.arrivals),
            claims: load(&self.claims),
            invocations: load(&self.invocations),
            deliveries: load(&self.deliveries),
            adoptions: load(&self.adoptions),
            // Only a driver re-invokes lost starts.
            reinvocations: 0,
        }
    }
}

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    /// Writes `data` from the cache to the store unless it is there already.
    pub(super) fn make_durable(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        data: DataId,
    ) -> Result<(), ExecError<K::Error>> {
        let Some(entry) = executor.cache.entry(data) else {
            return Ok(());
        };
        if entry.durable {
            return Ok(());
        }
        let value = Arc::clone(&entry.value);
        self.write(task, data, value)?;
        executor.cache.mark_durable(data);
        Ok(())
    }

    /// Stores `value`: the in-memory store keeps it as it is, the others its bytes.
    pub(super) fn write(
        &self,
        task: TaskId,
        data: DataId,
        value: Arc<K::Value>,
    ) -> Result<(), ExecError<K::Error>> {
        let store_error = |source| ExecError::Store {
            task: Some(task),
            source,
        };
        let key = self.key(data).map_err(store_error)?;
        add(&self.io.store_writes, 1);
        add(&self.io.store_write_bytes, value.encoded_len());
        // A duplicated or retried writer of the same deterministic value succeeds.
        self.block(self.stores.objects.put_value_once(&key, value))
            .map_err(store_error)
    }

    pub(super) fn read(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        data: DataId,
    ) -> Result<Arc<K::Value>, ExecError<K::Error>> {
        if let Some(value) = executor.cache.get(data) {
            add(&self.io.cache_hits, 1);
            add(&self.io.cache_hit_bytes, executor.cache.bytes_of(data));
            return Ok(value);
        }
        let store_error = |source| ExecError::Store {
            task: Some(task),
            source,
        };
        let key = self.key(data).map_err(store_error)?;
        let (value, len) = self
            .block(self.stores.objects.get_value::<K::Value>(&key))
            .map_err(store_error)?;
        add(&self.io.store_reads, 1);
        add(&self.io.store_read_bytes, len);
        if self.wukong() {
            let size = value.memory_bytes();
            executor.cache.insert(data, Arc::clone(&value), size, true);
        }
        Ok(value)
    }

    /// Before the executor ends: writes what it held for children that have
    /// not run here, so whoever runs them finds their inputs in the store.
    pub(super) fn flush(
        &self,
        executor: &mut Executor<K::Value>,
    ) -> Result<(), ExecError<K::Error>> {
        let held: Vec<TaskId> = executor.held.drain().collect();
        for child in held {
            for &data in self.dag.reads(child) {
                self.make_durable(executor, child, data)?;
            }
        }
        Ok(())
    }

    /// Keeps the cache within its budget, writing what is not yet durable.
    pub(super) fn evict(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
    ) -> Result<(), ExecError<K::Error>> {
        while let Some(victim) = executor.cache.victim(&[]) {
            self.make_durable(executor, task, victim)?;
            executor.cache.remove(victim);
        }
        Ok(())
    }
}
