use serde::{Deserialize, Serialize};

use crate::{DagBuilder, DagError, DataId, Operation, TaskId};

const NONE: u32 = u32::MAX;

/// Rows of variable length stored back to back (compressed sparse rows), so a
/// graph of millions of tasks costs a few flat allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Csr<T> {
    offsets: Vec<u32>,
    values: Vec<T>,
}

impl<T: Copy> Csr<T> {
    pub(crate) fn with_capacity(rows: usize, values: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(values),
        }
    }

    pub(crate) fn push_row(&mut self, row: &[T]) {
        self.values.extend_from_slice(row);
        // Saturates instead of wrapping; `Dag::compile` rejects the overflow.
        self.offsets
            .push(u32::try_from(self.values.len()).unwrap_or(u32::MAX));
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    #[inline]
    pub(crate) fn row(&self, index: usize) -> &[T] {
        &self.values[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// Builds rows from `(row, value)` pairs produced twice by `pairs`: once to
    /// count, once to fill. Values keep the order in which they are produced.
    /// Rows of the `(row, value)` pairs that `pairs` yields (twice, in the
    /// same order); `fill` only pre-sizes the storage and is overwritten.
    fn from_pairs<I: Iterator<Item = (usize, T)>>(
        rows: usize,
        fill: T,
        pairs: impl Fn() -> I,
    ) -> Self
    where
        T: Clone,
    {
        let mut offsets = vec![0u32; rows + 1];
        for (row, _) in pairs() {
            offsets[row + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor: Vec<u32> = offsets[..rows].to_vec();
        let mut values = vec![fill; offsets[rows] as usize];
        for (row, value) in pairs() {
            values[cursor[row] as usize] = value;
            cursor[row] += 1;
        }
        Self { offsets, values }
    }

    fn is_well_formed(&self, rows: usize) -> bool {
        self.offsets.len() == rows + 1
            && self.offsets.first() == Some(&0)
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.offsets.last().map(|&last| last as usize) == Some(self.values.len())
    }
}

/// Whether an item exists before the run or is computed by a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataRole {
    /// Provided by the caller before any task runs.
    Input,
    /// Written by exactly one task.
    Computed,
}

/// What the graph knows about one data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Size in bytes, for clustering and transfer accounting.
    pub bytes: u64,
    /// Input or computed.
    pub role: DataRole,
}

/// A validated task graph with its derived structure.
///
/// Built by [`DagBuilder::build`] or decoded by [`Dag::from_bytes`] /
/// [`Dag::from_json`], which validate again.
#[derive(Debug, Clone)]
pub struct Dag<Op> {
    pub(crate) ops: Vec<Op>,
    pub(crate) reads: Csr<DataId>,
    pub(crate) writes: Csr<DataId>,
    pub(crate) data: Vec<DataInfo>,
    pub(crate) outputs: Vec<DataId>,
    is_output: Vec<bool>,
    producer: Vec<u32>,
    consumers: Csr<TaskId>,
    parents: Csr<TaskId>,
    children: Csr<TaskId>,
    order: Vec<TaskId>,
    priority: Vec<f64>,
}

impl<Op: Operation> Dag<Op> {
    pub(crate) fn compile(spec: DagBuilder<Op>) -> Result<Self, DagError> {
        let DagBuilder {
            ops,
            reads,
            writes,
            data,
            outputs,
        } = spec;
        let limit = u64::from(u32::MAX - 1);
        for (what, len) in [
            ("tasks", ops.len()),
            ("data items", data.len()),
            ("reads", reads.len()),
            ("writes", writes.len()),
        ] {
            if len as u64 > limit {
                return Err(DagError::TooLarge { what, limit });
            }
        }
        let num_tasks = ops.len();
        if !reads.is_well_formed(num_tasks) || !writes.is_well_formed(num_tasks) {
            return Err(DagError::Decode {
                format: "declarations",
                source: "read or write lists do not match the number of tasks".into(),
            });
        }

        let mut producer = vec![NONE; data.len()];
        for (t, op) in ops.iter().enumerate() {
            let task = TaskId(t as u32);
            let cost = op.cost();
            if !(cost.is_finite() && cost >= 0.0) {
                return Err(DagError::BadCost { task, cost });
            }
            for &d in writes.row(t) {
                let info = data
                    .get(d.index())
                    .ok_or(DagError::UnknownData { data: d, task })?;
                if info.role == DataRole::Input {
                    return Err(DagError::InputWritten { data: d, task });
                }
                let slot = &mut producer[d.index()];
                if *slot != NONE {
                    return Err(DagError::WrittenTwice {
                        data: d,
                        first: TaskId(*slot),
                        second: task,
                    });
                }
                *slot = t as u32;
            }
        }
        for t in 0..num_tasks {
            for &d in reads.row(t) {
                let task = TaskId(t as u32);
                let info = data
                    .get(d.index())
                    .ok_or(DagError::UnknownData { data: d, task })?;
                if info.role == DataRole::Computed && producer[d.index()] == NONE {
                    return Err(DagError::Unwritten { data: d, task });
                }
            }
        }
        let mut is_output = vec![false; data.len()];
        for &d in &outputs {
            let info = data
                .get(d.index())
                .ok_or(DagError::OutputUnwritten { data: d })?;
            if info.role == DataRole::Computed && producer[d.index()] == NONE {
                return Err(DagError::OutputUnwritten { data: d });
            }
            is_output[d.index()] = true;
        }

        // A task that names an item twice among its reads still consumes it once.
        let reads_ref = &reads;
        let consumers = Csr::from_pairs(data.len(), TaskId(NONE), || {
            (0..num_tasks).flat_map(move |t| {
                let row = reads_ref.row(t);
                row.iter()
                    .enumerate()
                    .filter(move |&(i, d)| !row[..i].contains(d))
                    .map(move |(_, d)| (d.index(), TaskId(t as u32)))
            })
        });
        let mut parents = Csr::with_capacity(num_tasks, reads.len());
        let mut scratch: Vec<TaskId> = Vec::with_capacity(8);
        for t in 0..num_tasks {
            scratch.clear();
            scratch.extend(
                reads
                    .row(t)
                    .iter()
                    .map(|d| producer[d.index()])
                    .filter(|&p| p != NONE)
                    .map(TaskId),
            );
            scratch.sort_unstable();
            scratch.dedup();
            parents.push_row(&scratch);
        }
        let parents_ref = &parents;
        let children = Csr::from_pairs(num_tasks, TaskId(NONE), || {
            (0..num_tasks).flat_map(move |t| {
                parents_ref
                    .row(t)
                    .iter()
                    .map(move |p| (p.index(), TaskId(t as u32)))
            })
        });

        let order = topological_order(&ops, &parents, &children)?;
        let mut priority = vec![0.0f64; num_tasks];
        for &task in order.iter().rev() {
            let t = task.index();
            let below = children
                .row(t)
                .iter()
                .map(|c| priority[c.index()])
                .fold(0.0, f64::max);
            priority[t] = ops[t].cost() + below;
        }

        Ok(Self {
            ops,
            reads,
            writes,
            data,
            outputs,
            is_output,
            producer,
            consumers,
            parents,
            children,
            order,
            priority,
        })
    }
}

/// Kahn's algorithm; tasks become available in the order their last parent is
/// placed, so independent chains interleave.
fn topological_order<Op: Operation>(
    ops: &[Op],
    parents: &Csr<TaskId>,
    children: &Csr<TaskId>,
) -> Result<Vec<TaskId>, DagError> {
    let n = ops.len();
    let mut waiting: Vec<u32> = (0..n).map(|t| parents.row(t).len() as u32).collect();
    let mut order: Vec<TaskId> = Vec::with_capacity(n);
    order.extend(
        (0..n)
            .filter(|&t| waiting[t] == 0)
            .map(|t| TaskId(t as u32)),
    );
    let mut next = 0;
    while next < order.len() {
        let task = order[next];
        next += 1;
        for &child in children.row(task.index()) {
            let w = &mut waiting[child.index()];
            *w -= 1;
            if *w == 0 {
                order.push(child);
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n)
            .find(|&t| waiting[t] > 0)
            .map_or(TaskId(0), |t| TaskId(t as u32)); // some task waits: fewer ran than exist
        let on_cycle = walk_to_cycle(stuck, parents, &waiting);
        return Err(DagError::Cycle {
            task: on_cycle,
            label: ops[on_cycle.index()].label(),
        });
    }
    Ok(order)
}

/// From a task that never became ready, follow unfinished parents until a task
/// repeats: that task lies on a cycle (not merely downstream of one).
fn walk_to_cycle(start: TaskId, parents: &Csr<TaskId>, waiting: &[u32]) -> TaskId {
    let mut seen = vec![false; waiting.len()];
    let mut task = start;
    while !seen[task.index()] {
        seen[task.index()] = true;
        match parents
            .row(task.index())
            .iter()
            .find(|p| waiting[p.index()] > 0)
        {
            Some(&parent) => task = parent,
            None => break,
        }
    }
    task
}

impl<Op> Dag<Op> {
    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.ops.len()
    }

    /// Number of data items.
    pub fn num_data(&self) -> usize {
        self.data.len()
    }

    /// Number of task-to-task edges.
    pub fn num_edges(&self) -> usize {
        self.children.len()
    }

    /// The operation of a task.
    pub fn op(&self, task: TaskId) -> &Op {
        &self.ops[task.index()]
    }

    /// All operations, indexed by task.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The items a task reads, in declaration order.
    pub fn reads(&self, task: TaskId) -> &[DataId] {
        self.reads.row(task.index())
    }

    /// The items a task writes, in declaration order.
    pub fn writes(&self, task: TaskId) -> &[DataId] {
        self.writes.row(task.index())
    }

    /// What is known of an item.
    pub fn data_info(&self, data: DataId) -> DataInfo {
        self.data[data.index()]
    }

    /// The task that writes an item, or `None` for an input.
    pub fn producer(&self, data: DataId) -> Option<TaskId> {
        let p = self.producer[data.index()];
        (p != NONE).then_some(TaskId(p))
    }

    /// The tasks that read an item, each once.
    pub fn consumers(&self, data: DataId) -> &[TaskId] {
        self.consumers.row(data.index())
    }

    /// The inputs of the graph.
    pub fn inputs(&self) -> impl Iterator<Item = DataId> + '_ {
        self.data
            .iter()
            .enumerate()
            .filter(|(_, info)| info.role == DataRole::Input)
            .map(|(i, _)| DataId(i as u32))
    }

    /// The items kept after the run, in the order they were marked.
    pub fn outputs(&self) -> &[DataId] {
        &self.outputs
    }

    /// Whether an item is kept after the run.
    pub fn is_output(&self, data: DataId) -> bool {
        self.is_output[data.index()]
    }

    /// Distinct tasks whose outputs this task reads.
    pub fn parents(&self, task: TaskId) -> &[TaskId] {
        self.parents.row(task.index())
    }

    /// Distinct tasks that read an output of this task.
    pub fn children(&self, task: TaskId) -> &[TaskId] {
        self.children.row(task.index())
    }

    /// Bytes that `child` reads from what `parent` writes (each item once):
    /// what crosses the network if they run on different executors.
    pub fn edge_bytes(&self, parent: TaskId, child: TaskId) -> u64 {
        let reads = self.reads(child);
        let writes = self.writes(parent);
        writes
            .iter()
            .enumerate()
            .filter(|&(i, d)| reads.contains(d) && !writes[..i].contains(d))
            .map(|(_, &d)| self.data[d.index()].bytes)
            .sum()
    }

    /// Number of distinct parents: arrivals needed before the task is ready.
    pub fn fan_in(&self, task: TaskId) -> usize {
        self.parents(task).len()
    }

    /// Number of distinct children.
    pub fn fan_out(&self, task: TaskId) -> usize {
        self.children(task).len()
    }

    /// Tasks with no parents: ready as soon as the inputs exist.
    pub fn sources(&self) -> impl Iterator<Item = TaskId> + '_ {
        (0..self.num_tasks() as u32)
            .map(TaskId)
            .filter(|&t| self.fan_in(t) == 0)
    }

    /// Every task after all of its parents.
    pub fn topological_order(&self) -> &[TaskId] {
        &self.order
    }

    /// The task's cost plus the most expensive path below it (its bottom level):
    /// running higher priorities first shortens the critical path.
    pub fn priority(&self, task: TaskId) -> f64 {
        self.priority[task.index()]
    }

    /// The cost of the most expensive path through the graph.
    pub fn critical_path_cost(&self) -> f64 {
        self.priority.iter().copied().fold(0.0, f64::max)
    }
}
