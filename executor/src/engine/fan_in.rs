//! Fan-in and claims: the arrivals a finished task makes at its children,
//! who holds a child's data, and where a completed child runs.

use wukong_dag::{ClusterPlan, DataId, Operation, TaskId};
use wukong_storage::{Arrival, Edge, Hold, Join, Joined, StoredValue};

use super::executor::Executor;
use super::io::add;
use super::run::Run;
use crate::platform::{Delivered, Holder};
use crate::{ExecError, Kernels};

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    /// The arrival of `parent` at `child`.
    pub(super) fn edge(&self, parent: TaskId, child: TaskId) -> Edge {
        let parents = self.dag.parents(child);
        Edge {
            child: u64::from(child.0),
            edge: parents.iter().position(|&p| p == parent).unwrap_or(0) as u32,
            in_degree: parents.len() as u32,
        }
    }

    /// Makes the arrivals (and claims) of `parent` in one request, with
    /// `count` (the arrival that counts `parent` as finished in remote modes)
    /// last; ends the run if that one completed. Answers the others.
    pub(super) fn join_all(
        &self,
        parent: TaskId,
        holder: Option<Holder>,
        mut joins: Vec<Join>,
        count: Option<Edge>,
    ) -> Result<Vec<Joined>, ExecError<K::Error>> {
        let arrivals = joins.len();
        joins.extend(count.map(|edge| Join {
            edge,
            hold: Hold::Never,
        }));
        if joins.is_empty() {
            return Ok(Vec::new());
        }
        add(&self.io.arrivals, arrivals as u64);
        let mut joined = self
            .block(self.stores.coordinator.join_all(
                &self.job,
                &holder.map(|h| h.to_string()).unwrap_or_default(),
                &joins,
            ))
            .map_err(|source| ExecError::Store {
                task: Some(parent),
                source,
            })?;
        // A claim was made where a holder came back (not for a claim on
        // completion of a child that did not complete).
        let claims = joined.iter().filter(|j| j.holder.is_some()).count();
        add(&self.io.claims, claims as u64);
        if count.is_some() && joined.pop().and_then(|j| j.arrival) == Some(Arrival::Completed) {
            self.finish(parent)?;
        }
        Ok(joined)
    }

    /// Wukong: records arrivals, keeps or claims data, and queues the ready
    /// children. The arrivals at all children, their claims and `count` (see
    /// [`Self::join_all`]) take one request; a second one arrives where
    /// another executor's claim made this one write its data first.
    pub(super) fn route_children(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        origin: Option<TaskId>,
        plan: &ClusterPlan,
        holdable: &[bool],
        count: Option<Edge>,
    ) -> Result<(), ExecError<K::Error>> {
        let dag = self.dag;
        let edge_bytes = plan.edge_bytes(task);
        let me = self.platform.holder(executor.id, origin);
        // Children with other parents: (index among the children, child,
        // this edge's data that only this executor has, whether it claims first).
        let mut fan_in: Vec<(usize, TaskId, Vec<DataId>, bool)> = Vec::new();
        let mut joins = Vec::new();
        for (i, &child) in dag.children(task).iter().enumerate() {
            if dag.fan_in(child) == 1 {
                self.push(executor, child, plan.stays(task, i), origin);
                continue;
            }
            let reads = dag.reads(child);
            let pending: Vec<DataId> = dag
                .writes(task)
                .iter()
                .copied()
                .filter(|&d| reads.contains(&d))
                .filter(|&d| executor.cache.entry(d).is_some_and(|e| !e.durable))
                .collect();
            let name = || format!("hold/{}", child.0);
            // Declared sizes decide who holds, so that completers know whom to ask.
            let hold = if executor.mailbox.is_some()
                && !pending.is_empty()
                && edge_bytes[i] >= self.config.hold_min_bytes
            {
                Hold::First(name())
            } else {
                // Write before arrive.
                for &data in &pending {
                    self.make_durable(executor, task, data)?;
                }
                match holdable[child.index()] {
                    true => Hold::OnCompletion(name()),
                    false => Hold::Never,
                }
            };
            let first = matches!(hold, Hold::First(_));
            joins.push(Join {
                edge: self.edge(task, child),
                hold,
            });
            fan_in.push((i, child, pending, first));
        }
        let mut joined = self.join_all(task, Some(me), joins, count)?;
        // Another executor holds these children: write, then arrive.
        let mut late = Vec::new();
        for (j, (_, child, pending, first)) in fan_in.iter().enumerate() {
            if joined[j].arrival.is_none() {
                for &data in pending {
                    self.make_durable(executor, task, data)?;
                }
                late.push(j);
            } else if *first {
                // Won: the data stays here and the child comes here.
                executor.held.insert(*child);
            }
        }
        let joins = late
            .iter()
            .map(|&j| Join {
                edge: self.edge(task, fan_in[j].1),
                hold: Hold::Never,
            })
            .collect();
        for (&j, answer) in late.iter().zip(self.join_all(task, Some(me), joins, None)?) {
            joined[j].arrival = answer.arrival;
        }
        // The arrivals that completed a child: run it where its held data is.
        for (j, &(i, child, ..)) in fan_in.iter().enumerate() {
            if joined[j].arrival != Some(Arrival::Completed) {
                continue;
            }
            let pinned = plan.stays(task, i);
            let holder = match joined[j].holder.take() {
                None => me,
                Some(name) => name.parse::<Holder>().map_err(|_| ExecError::BadClaim {
                    child,
                    holder: name,
                })?,
            };
            if holder == me {
                let pinned = pinned || executor.held.contains(&child);
                self.push(executor, child, pinned, origin);
                continue;
            }
            let delivered =
                self.platform
                    .deliver(holder, child)
                    .map_err(|source| ExecError::Invoke {
                        task: Some(child),
                        source,
                    })?;
            match delivered {
                Delivered::Yes => add(&self.io.deliveries, 1),
                // The holder has ended, after writing what it held.
                Delivered::Ended => self.push(executor, child, pinned, origin),
                Delivered::Unknown => {
                    return Err(ExecError::BadClaim {
                        child,
                        holder: holder.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}
