//! The clustering plan: which children stay on the executor that ran their
//! parent, decided once per edge before the run, with the reason recorded.
//!
//! A child that *stays* is never handed to another executor by that parent:
//! the parent's executor runs it (becomes it, or queues it locally), so the
//! data on that edge never crosses the network. A child that is *free* may be
//! given to a new executor when there is spare capacity; an executor with no
//! spare capacity keeps free children too. Executors decide at run time among
//! free children (for example, they become the one whose inputs are most
//! local); the plan only says what must not move.

use std::fmt;

use serde::Serialize;

use crate::{Dag, Operation, TaskId};

/// Thresholds of the clustering plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClusterParams {
    /// A parent whose outputs read by a child add up to at least this many
    /// bytes keeps that child: moving the data would cost more than the
    /// parallelism gains (the Wukong paper's large-output rule).
    pub large_output_bytes: u64,
    /// A child whose cost is at most this (in the graph's cost unit, FLOPs for
    /// linear algebra) stays with a parent: starting it elsewhere costs more
    /// than running it here.
    pub cheap_child_cost: f64,
    /// A task whose only child has it as its only parent keeps that child (a
    /// chain): there is nothing to run in parallel.
    pub chains: bool,
}

impl Default for ClusterParams {
    /// 256 MiB for large outputs (about 2.5 s on a 100 MB/s function link),
    /// 10⁶ for cheap children (well under a millisecond of one core), chains kept.
    fn default() -> Self {
        Self {
            large_output_bytes: 256 << 20,
            cheap_child_cost: 1e6,
            chains: true,
        }
    }
}

/// Why a child stays with its parent's executor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum StayReason {
    /// The parent's only child, and the child's only parent.
    Chain,
    /// The child reads `bytes` from the parent, at least the threshold.
    LargeOutput {
        /// Bytes on the edge.
        bytes: u64,
    },
    /// The child costs only `cost`.
    CheapChild {
        /// The child's cost.
        cost: f64,
    },
}

/// The decision for one parent → child edge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Placement {
    /// The child runs on the parent's executor.
    Stay(StayReason),
    /// The child may run anywhere.
    Free,
}

/// One decision per edge of a graph, see the module docs.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    params: ClusterParams,
    /// Indexed like the graph's children lists, back to back.
    placements: Vec<Placement>,
    edge_bytes: Vec<u64>,
    first_edge: Vec<usize>,
}

impl ClusterPlan {
    /// Decides every edge of `dag` with `params`.
    pub fn new<Op: Operation>(dag: &Dag<Op>, params: ClusterParams) -> Self {
        let mut placements = Vec::with_capacity(dag.num_edges());
        let mut edge_bytes = Vec::with_capacity(dag.num_edges());
        let mut first_edge = Vec::with_capacity(dag.num_tasks() + 1);
        for parent in (0..dag.num_tasks() as u32).map(TaskId) {
            first_edge.push(placements.len());
            let children = dag.children(parent);
            for &child in children {
                let bytes = dag.edge_bytes(parent, child);
                let cost = dag.op(child).cost();
                let placement = if params.chains && children.len() == 1 && dag.fan_in(child) == 1 {
                    Placement::Stay(StayReason::Chain)
                } else if bytes >= params.large_output_bytes {
                    Placement::Stay(StayReason::LargeOutput { bytes })
                } else if cost <= params.cheap_child_cost {
                    Placement::Stay(StayReason::CheapChild { cost })
                } else {
                    Placement::Free
                };
                placements.push(placement);
                edge_bytes.push(bytes);
            }
        }
        first_edge.push(placements.len());
        Self {
            params,
            placements,
            edge_bytes,
            first_edge,
        }
    }

    /// The thresholds the plan was made with.
    pub fn params(&self) -> ClusterParams {
        self.params
    }

    /// The decisions for the edges from `parent`, in the order of
    /// [`Dag::children`].
    pub fn placements(&self, parent: TaskId) -> &[Placement] {
        let index = parent.index();
        &self.placements[self.first_edge[index]..self.first_edge[index + 1]]
    }

    /// Bytes each child of `parent` reads from it, in the order of
    /// [`Dag::children`] (the sizes the graph declares).
    pub fn edge_bytes(&self, parent: TaskId) -> &[u64] {
        let index = parent.index();
        &self.edge_bytes[self.first_edge[index]..self.first_edge[index + 1]]
    }

    /// Whether the `i`-th child of `parent` stays on `parent`'s executor.
    pub fn stays(&self, parent: TaskId, i: usize) -> bool {
        matches!(self.placements(parent)[i], Placement::Stay(_))
    }

    /// Number of edges that stay, and of all edges.
    pub fn counts(&self) -> (usize, usize) {
        let stay = self
            .placements
            .iter()
            .filter(|p| matches!(p, Placement::Stay(_)))
            .count();
        (stay, self.placements.len())
    }

    /// Every decision with its reason, one line per edge, for debugging:
    /// `potrf(0,0) -> trsm(1,0): free (2097152 bytes, cost 1.3e8)`.
    pub fn explain<Op: Operation>(&self, dag: &Dag<Op>) -> String {
        let mut text = String::new();
        for parent in (0..dag.num_tasks() as u32).map(TaskId) {
            let first = self.first_edge[parent.index()];
            for (i, &child) in dag.children(parent).iter().enumerate() {
                let line = Decision {
                    parent: dag.op(parent).label(),
                    child: dag.op(child).label(),
                    placement: self.placements[first + i],
                    bytes: self.edge_bytes[first + i],
                    cost: dag.op(child).cost(),
                };
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
        text
    }
}

struct Decision {
    parent: String,
    child: String,
    placement: Placement,
    bytes: u64,
    cost: f64,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: ", self.parent, self.child)?;
        match self.placement {
            Placement::Stay(StayReason::Chain) => write!(f, "stay (chain)"),
            Placement::Stay(StayReason::LargeOutput { bytes }) => {
                write!(f, "stay (large output: {bytes} bytes)")
            }
            Placement::Stay(StayReason::CheapChild { cost }) => {
                write!(f, "stay (cheap child: cost {cost:.3e})")
            }
            Placement::Free => write!(f, "free ({} bytes, cost {:.3e})", self.bytes, self.cost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DagBuilder;

    #[derive(Debug)]
    struct Op(f64, &'static str);
    impl Operation for Op {
        fn cost(&self) -> f64 {
            self.0
        }
        fn label(&self) -> String {
            self.1.into()
        }
    }

    /// a → b → {c, d}; c reads a large item; d is cheap; e is free.
    fn graph() -> Dag<Op> {
        let mut g = DagBuilder::new();
        let x = g.input(8);
        let (ab, big, small, other) = (g.data(8), g.data(1 << 30), g.data(8), g.data(8));
        let (y, z, w) = (g.data(8), g.data(8), g.data(8));
        g.task(Op(1e9, "a"), &[x], &[ab]);
        g.task(Op(1e9, "b"), &[ab], &[big, small, other]);
        g.task(Op(1e9, "c"), &[big], &[y]);
        g.task(Op(10.0, "d"), &[small], &[z]);
        g.task(Op(1e9, "e"), &[other], &[w]);
        for out in [y, z, w] {
            g.output(out);
        }
        g.build().unwrap()
    }

    #[test]
    fn each_rule_decides_its_edge() {
        let dag = graph();
        let plan = ClusterPlan::new(&dag, ClusterParams::default());
        assert_eq!(
            plan.placements(TaskId(0)),
            &[Placement::Stay(StayReason::Chain)]
        );
        assert_eq!(
            plan.placements(TaskId(1)),
            &[
                Placement::Stay(StayReason::LargeOutput { bytes: 1 << 30 }),
                Placement::Stay(StayReason::CheapChild { cost: 10.0 }),
                Placement::Free,
            ]
        );
        assert!(plan.stays(TaskId(1), 0) && !plan.stays(TaskId(1), 2));
        assert_eq!(plan.edge_bytes(TaskId(1)), &[1 << 30, 8, 8]);
        assert_eq!(plan.counts(), (3, 4));
        let text = plan.explain(&dag);
        assert!(text.contains("a -> b: stay (chain)"), "{text}");
        assert!(
            text.contains("b -> c: stay (large output: 1073741824 bytes)"),
            "{text}"
        );
        assert!(text.contains("b -> e: free (8 bytes"), "{text}");
    }

    #[test]
    fn rules_can_be_switched_off() {
        let dag = graph();
        let params = ClusterParams {
            large_output_bytes: u64::MAX,
            cheap_child_cost: -1.0,
            chains: false,
        };
        let plan = ClusterPlan::new(&dag, params);
        assert_eq!(plan.counts(), (0, 4));
    }
}
