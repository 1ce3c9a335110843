//! Sharing and invocation: handing ready work to new executors while the
//! platform has room, with small inputs carried along.

use wukong_dag::{Operation, TaskId};
use wukong_storage::StoredValue;

use super::executor::Executor;
use super::io::add;
use super::run::Run;
use crate::cache::TileCache;
use crate::platform::InlineInputs;
use crate::{ExecError, Kernels};

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    pub(super) fn invoke(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        self.invoke_with(task, Vec::new())
    }

    /// Starts an executor at `task`, offering `inputs` inline.
    pub(super) fn invoke_with(
        &self,
        task: TaskId,
        inputs: InlineInputs,
    ) -> Result<(), ExecError<K::Error>> {
        let copies = if self.config.duplicate_invocations {
            2
        } else {
            1
        };
        for _ in 0..copies {
            add(&self.io.invocations, 1);
            let priority = self.dag.priority(task);
            let result = self.platform.invoke(task, priority, inputs.clone());
            result.map_err(|source| ExecError::Invoke {
                task: Some(task),
                source,
            })?;
        }
        Ok(())
    }

    /// The encoded inputs of `task` that this executor holds and that fit
    /// together in [`EngineConfig::inline_bytes`].
    pub(super) fn inline_inputs(
        &self,
        executor: &Executor<K::Value>,
        task: TaskId,
    ) -> Result<InlineInputs, ExecError<K::Error>> {
        let mut budget = self.config.inline_bytes;
        let mut inline = Vec::new();
        if budget == 0 {
            return Ok(inline);
        }
        for &data in self.dag.reads(task) {
            let Some(entry) = executor.cache.entry(data) else {
                continue;
            };
            let len = entry.value.encoded_len();
            if len > budget {
                continue;
            }
            let key = self.key(data).map_err(|source| ExecError::Store {
                task: Some(task),
                source,
            })?;
            let bytes = entry
                .value
                .encode(&key)
                .map_err(|source| ExecError::Store {
                    task: Some(task),
                    source,
                })?;
            budget -= len;
            inline.push((data, bytes.to_vec()));
        }
        Ok(inline)
    }

    /// Hands free queued tasks to new executors while the platform has spare
    /// capacity, keeping the best task (the one this executor becomes next)
    /// and giving away those with the least local data first.
    pub(super) fn share(
        &self,
        executor: &mut Executor<K::Value>,
    ) -> Result<(), ExecError<K::Error>> {
        let keep_one = usize::from(executor.pinned.is_empty());
        // Nothing to give away: do not ask the platform (a round trip remotely).
        if executor.free.len() <= keep_one {
            return Ok(());
        }
        if !self.due(&mut executor.capacity_asked) {
            return Ok(());
        }
        let mut spare = self.platform.spare_capacity();
        if spare == 0 {
            return Ok(());
        }
        let best = if keep_one == 1 {
            executor.free.pop()
        } else {
            None
        };
        let mut candidates = Vec::new();
        while candidates.len() < 8 {
            let Some(next) = executor.free.pop() else {
                break;
            };
            candidates.push(next);
        }
        let local_bytes = |cache: &TileCache<K::Value>, task: TaskId| -> u64 {
            self.dag
                .reads(task)
                .iter()
                .map(|&d| cache.bytes_of(d))
                .sum()
        };
        candidates.sort_by_cached_key(|c| local_bytes(&executor.cache, c.task.0));
        for candidate in candidates {
            if spare == 0 {
                executor.free.push(candidate);
                continue;
            }
            let task = candidate.task.0;
            for &data in self.dag.reads(task) {
                self.make_durable(executor, task, data)?;
            }
            let inline = self.inline_inputs(executor, task)?;
            self.invoke_with(task, inline)?;
            spare -= 1;
        }
        executor.free.extend(best);
        Ok(())
    }
}
