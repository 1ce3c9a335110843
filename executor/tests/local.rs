//! The local executor against graphs of several shapes, and its failure modes.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wukong_dag::{Dag, DagBuilder, DataId, Operation};
use wukong_executor::{ExecError, Kernels, LocalExecutor, Progress, RunOptions};

/// Each task sums its inputs and adds its own constant; `Fail` and `Panic` misbehave.
#[derive(Debug, Clone)]
enum Op {
    Add(i64),
    Fail,
    Panic,
    TwoOutputs,
}

impl Operation for Op {
    fn cost(&self) -> f64 {
        1.0
    }
    fn label(&self) -> String {
        format!("{self:?}")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused on purpose")]
struct Refused;

struct Arith;

impl Kernels<Op> for Arith {
    type Value = i64;
    type Error = Refused;
    fn execute(&self, op: &Op, inputs: Vec<Arc<i64>>) -> Result<Vec<i64>, Refused> {
        let sum: i64 = inputs.iter().map(|v| **v).sum();
        match op {
            Op::Add(c) => Ok(vec![sum + c]),
            Op::Fail => Err(Refused),
            Op::Panic => panic!("kernel exploded"),
            Op::TwoOutputs => Ok(vec![sum, sum]),
        }
    }
}

fn run(
    dag: &Dag<Op>,
    inputs: &[(DataId, i64)],
    threads: usize,
) -> Result<Vec<i64>, ExecError<Refused>> {
    let inputs = inputs.iter().map(|&(d, v)| (d, Arc::new(v)));
    let outcome = LocalExecutor::new(threads).run(dag, &Arith, inputs, &RunOptions::default())?;
    assert_eq!(outcome.report.tasks.len(), dag.num_tasks());
    Ok(dag.outputs().iter().map(|d| *outcome.outputs[d]).collect())
}

/// x -> a, b (fan-out) -> c (fan-in).
fn diamond() -> (Dag<Op>, DataId) {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let (l, r, out) = (b.data(8), b.data(8), b.data(8));
    b.task(Op::Add(1), &[x], &[l]);
    b.task(Op::Add(2), &[x], &[r]);
    b.task(Op::Add(0), &[l, r], &[out]);
    b.output(out);
    (b.build().unwrap(), x)
}

#[test]
fn a_diamond_joins_both_branches() {
    let (dag, x) = diamond();
    for threads in [1, 2, 4] {
        assert_eq!(run(&dag, &[(x, 10)], threads).unwrap(), vec![23]);
    }
}

#[test]
fn a_single_task_runs() {
    let mut b = DagBuilder::new();
    let out = b.data(8);
    b.task(Op::Add(7), &[], &[out]);
    b.output(out);
    assert_eq!(run(&b.build().unwrap(), &[], 2).unwrap(), vec![7]);
}

#[test]
fn wide_fan_out_and_deep_fan_in() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let leaves: Vec<DataId> = (0..1000)
        .map(|i| {
            let d = b.data(8);
            b.task(Op::Add(i), &[x], &[d]);
            d
        })
        .collect();
    let out = b.data(8);
    b.task(Op::Add(0), &leaves, &[out]);
    b.output(out);
    let expected = 1000 + (0..1000).sum::<i64>();
    assert_eq!(
        run(&b.build().unwrap(), &[(x, 1)], 3).unwrap(),
        vec![expected]
    );
}

#[test]
fn a_hundred_thousand_tiny_tasks_in_chains() {
    let mut b = DagBuilder::new();
    let mut outs = Vec::new();
    for _ in 0..100 {
        let mut prev = b.input(8);
        let first = prev;
        for _ in 0..1000 {
            let next = b.data(8);
            b.task(Op::Add(1), &[prev], &[next]);
            prev = next;
        }
        b.output(prev);
        outs.push(first);
    }
    let dag = b.build().unwrap();
    assert_eq!(dag.num_tasks(), 100_000);
    let inputs: Vec<(DataId, i64)> = outs
        .iter()
        .enumerate()
        .map(|(i, &d)| (d, i as i64))
        .collect();
    let result = run(&dag, &inputs, 2).unwrap();
    assert_eq!(result, (0..100).map(|i| i + 1000).collect::<Vec<i64>>());
}

#[test]
fn a_failing_kernel_stops_the_run_with_its_error() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let mid = b.data(8);
    let out = b.data(8);
    let failing = b.task(Op::Fail, &[x], &[mid]);
    b.task(Op::Add(1), &[mid], &[out]);
    // Independent work that may or may not run before the failure is noticed.
    for _ in 0..50 {
        let d = b.data(8);
        b.task(Op::Add(1), &[x], &[d]);
    }
    b.output(out);
    let err = run(&b.build().unwrap(), &[(x, 1)], 2).unwrap_err();
    assert!(
        matches!(err, ExecError::Task { task, .. } if task == failing),
        "{err}"
    );
    assert!(err.to_string().contains("refused on purpose"));
}

#[test]
fn a_panicking_kernel_is_reported_not_hung() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let out = b.data(8);
    b.task(Op::Panic, &[x], &[out]);
    b.output(out);
    let err = run(&b.build().unwrap(), &[(x, 1)], 2).unwrap_err();
    assert!(
        matches!(&err, ExecError::Panicked { message, .. } if message == "kernel exploded"),
        "{err}"
    );
}

#[test]
fn a_kernel_returning_the_wrong_number_of_outputs_is_reported() {
    let mut b = DagBuilder::new();
    let out = b.data(8);
    b.task(Op::TwoOutputs, &[], &[out]);
    b.output(out);
    let err = run(&b.build().unwrap(), &[], 1).unwrap_err();
    assert!(matches!(
        err,
        ExecError::WrongOutputCount {
            expected: 1,
            got: 2,
            ..
        }
    ));
}

#[test]
fn inputs_are_checked_before_anything_runs() {
    let (dag, x) = diamond();
    assert!(matches!(run(&dag, &[], 2), Err(ExecError::MissingInput { data }) if data == x));
    let not_input = DataId(1);
    assert!(matches!(
        run(&dag, &[(x, 1), (not_input, 2)], 2),
        Err(ExecError::NotAnInput { data }) if data == not_input
    ));
    assert!(matches!(
        run(&dag, &[(x, 1), (DataId(99), 2)], 2),
        Err(ExecError::NotAnInput { .. })
    ));
    assert!(matches!(run(&dag, &[(x, 1)], 0), Err(ExecError::NoThreads)));
}

#[test]
fn progress_reaches_the_total() {
    let (dag, x) = diamond();
    let calls = AtomicUsize::new(0);
    let last = AtomicUsize::new(0);
    let progress = |p: Progress| {
        calls.fetch_add(1, Ordering::Relaxed);
        last.fetch_max(p.done, Ordering::Relaxed);
        assert_eq!(p.total, 3);
    };
    let options = RunOptions {
        progress: Some(&progress),
    };
    LocalExecutor::new(2)
        .run(&dag, &Arith, [(x, Arc::new(1))], &options)
        .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(last.load(Ordering::Relaxed), 3);
}
