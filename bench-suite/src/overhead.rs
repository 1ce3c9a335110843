//! Scheduling overhead: graphs of no-op tasks with empty values, so that all
//! the time is the scheduler's (arrivals, claims, queues, store calls).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wukong::dag::{Dag, DagBuilder, DagError, DataId, Operation};
use wukong::executor::{Engine, EngineConfig, ExecError, Kernels, RunOptions, Scheduler, Stores};

/// A task that does nothing.
#[derive(Debug, Clone, Copy)]
pub struct NoOp;

impl Operation for NoOp {
    fn cost(&self) -> f64 {
        1.0
    }
    fn label(&self) -> String {
        "noop".into()
    }
}

/// Kernels that return one empty value per declared output.
#[derive(Debug)]
pub struct NoOpKernels;

impl Kernels<NoOp> for NoOpKernels {
    type Value = ();
    type Error = std::convert::Infallible;
    fn execute(&self, _: &NoOp, _: Vec<Arc<()>>) -> Result<Vec<()>, Self::Error> {
        Ok(vec![()])
    }
}

/// The shapes of no-op graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Independent chains of 1000 tasks (fan-in 1).
    Chains,
    /// A binary fan-out tree whose leaves feed a binary reduction tree.
    Tree,
    /// Layers of 1000 tasks, each reading two tasks of the layer before (fan-in 2).
    Ladder,
}

/// A no-op graph of about `tasks` tasks.
pub fn graph(shape: Shape, tasks: usize) -> Result<Dag<NoOp>, DagError> {
    let mut b = DagBuilder::new();
    let add = |b: &mut DagBuilder<NoOp>, reads: &[DataId]| {
        let out = b.data(0);
        b.task(NoOp, reads, &[out]);
        out
    };
    match shape {
        Shape::Chains => {
            for _ in 0..tasks.div_ceil(1000) {
                let mut last = add(&mut b, &[]);
                for _ in 1..1000 {
                    last = add(&mut b, &[last]);
                }
                b.output(last);
            }
        }
        Shape::Tree => {
            let leaves = (tasks / 2).next_power_of_two().max(2);
            let mut level = vec![add(&mut b, &[])];
            while level.len() < leaves {
                level = level
                    .iter()
                    .flat_map(|&d| [d, d])
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|d| add(&mut b, &[d]))
                    .collect();
            }
            while level.len() > 1 {
                level = level.chunks(2).map(|pair| add(&mut b, pair)).collect();
            }
            b.output(level[0]);
        }
        Shape::Ladder => {
            let width = 1000;
            let mut layer: Vec<DataId> = (0..width).map(|_| add(&mut b, &[])).collect();
            for _ in 1..tasks.div_ceil(width) {
                layer = (0..width)
                    .map(|i| add(&mut b, &[layer[i], layer[(i + 1) % width]]))
                    .collect();
            }
            for d in layer {
                b.output(d);
            }
        }
    }
    b.build()
}

/// What one overhead run measured.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    /// The graph's shape.
    pub shape: Shape,
    /// `wukong`, `numpywren` or `shared`.
    pub scheduler: &'static str,
    /// Tasks in the graph.
    pub tasks: usize,
    /// Threads.
    pub threads: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Tasks per second.
    pub tasks_per_second: f64,
    /// Arrivals recorded.
    pub arrivals: u64,
    /// Executors started.
    pub executors: usize,
}

/// Runs `dag` with `scheduler` on `threads` threads over the in-memory store.
pub fn measure(
    shape: Shape,
    dag: &Dag<NoOp>,
    scheduler: Scheduler,
    threads: usize,
) -> Result<OverheadReport, ExecError<std::convert::Infallible>> {
    let mut config = EngineConfig::new(threads);
    config.scheduler = scheduler;
    let start = Instant::now();
    let outcome = Engine::new(config).run(
        dag,
        &NoOpKernels,
        std::iter::empty(),
        &Stores::memory(),
        &RunOptions::default(),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(OverheadReport {
        shape,
        scheduler: scheduler.name(),
        tasks: dag.num_tasks(),
        threads,
        seconds,
        tasks_per_second: dag.num_tasks() as f64 / seconds,
        arrivals: outcome.report.io.arrivals,
        executors: outcome.report.executors,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_shape_runs_on_every_scheduler() {
        for shape in [Shape::Chains, Shape::Tree, Shape::Ladder] {
            let dag = graph(shape, 4000).unwrap();
            assert!(dag.num_tasks() >= 3000, "{shape:?}: {}", dag.num_tasks());
            for scheduler in [Scheduler::Wukong, Scheduler::Numpywren, Scheduler::Shared] {
                let report = measure(shape, &dag, scheduler, 2).unwrap();
                assert_eq!(report.tasks, dag.num_tasks());
            }
        }
    }
}
