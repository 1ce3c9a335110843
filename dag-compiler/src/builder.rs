use crate::dag::{Csr, Dag, DataInfo, DataRole};
use crate::{DagError, DataId, Operation, TaskId};

/// Collects task declarations; [`build`](DagBuilder::build) validates them and
/// derives the graph.
///
/// Ids are handed out densely in declaration order, so a caller that knows the
/// structure of its algorithm can compute them instead of storing them.
#[derive(Debug, Clone)]
pub struct DagBuilder<Op> {
    pub(crate) ops: Vec<Op>,
    pub(crate) reads: Csr<DataId>,
    pub(crate) writes: Csr<DataId>,
    pub(crate) data: Vec<DataInfo>,
    pub(crate) outputs: Vec<DataId>,
}

impl<Op> Default for DagBuilder<Op> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Op> DagBuilder<Op> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty builder with room for `tasks` tasks and `data` items.
    pub fn with_capacity(tasks: usize, data: usize) -> Self {
        Self {
            ops: Vec::with_capacity(tasks),
            reads: Csr::with_capacity(tasks, tasks * 3),
            writes: Csr::with_capacity(tasks, tasks),
            data: Vec::with_capacity(data),
            outputs: Vec::new(),
        }
    }

    /// Declares an input of the graph: an item that exists before any task runs.
    pub fn input(&mut self, bytes: u64) -> DataId {
        self.declare(bytes, DataRole::Input)
    }

    /// Declares an item that some task will write.
    pub fn data(&mut self, bytes: u64) -> DataId {
        self.declare(bytes, DataRole::Computed)
    }

    fn declare(&mut self, bytes: u64, role: DataRole) -> DataId {
        let id = DataId(self.data.len() as u32);
        self.data.push(DataInfo { bytes, role });
        id
    }

    /// Declares a task that reads `reads` and writes `writes`.
    ///
    /// The order of `reads` and `writes` is kept: the executor hands the task its
    /// inputs in that order and expects its outputs in that order.
    pub fn task(&mut self, op: Op, reads: &[DataId], writes: &[DataId]) -> TaskId {
        let id = TaskId(self.ops.len() as u32);
        self.ops.push(op);
        self.reads.push_row(reads);
        self.writes.push_row(writes);
        id
    }

    /// Marks an item as a result of the graph: it is kept after the run.
    pub fn output(&mut self, data: DataId) {
        self.outputs.push(data);
    }

    /// Number of tasks declared so far.
    pub fn num_tasks(&self) -> usize {
        self.ops.len()
    }

    /// Number of data items declared so far.
    pub fn num_data(&self) -> usize {
        self.data.len()
    }

    /// Validates the declarations and derives edges, order and priorities.
    pub fn build(self) -> Result<Dag<Op>, DagError>
    where
        Op: Operation,
    {
        Dag::compile(self)
    }
}
