//! Property tests on random graphs: derived structure agrees with declarations.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::collections::BTreeSet;

use common::Step;
use proptest::prelude::*;
use wukong_dag::{Dag, DagBuilder, DagError, DataId, TaskId};

/// A random acyclic set of declarations: each task reads up to three items that
/// exist already (inputs or earlier writes) and writes one or two new ones.
#[derive(Debug, Clone)]
struct Plan {
    inputs: usize,
    tasks: Vec<(Vec<usize>, usize, f64)>,
    outputs: Vec<usize>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (1usize..5, 0usize..60)
        .prop_flat_map(|(inputs, n)| {
            let task = (
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                1usize..3,
                0.0f64..100.0,
            );
            (
                Just(inputs),
                proptest::collection::vec(task, n),
                proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            )
        })
        .prop_map(|(inputs, raw, outs)| {
            let mut available = inputs;
            let mut tasks = Vec::new();
            for (picks, writes, cost) in raw {
                let reads = picks.iter().map(|p| p.index(available)).collect();
                tasks.push((reads, writes, cost));
                available += writes;
            }
            let outputs = outs
                .iter()
                .filter(|_| available > inputs)
                .map(|p| inputs + p.index(available - inputs))
                .collect();
            Plan {
                inputs,
                tasks,
                outputs,
            }
        })
}

fn build(plan: &Plan) -> Result<Dag<Step>, DagError> {
    let mut b = DagBuilder::new();
    for _ in 0..plan.inputs {
        b.input(8);
    }
    for (i, (reads, writes, cost)) in plan.tasks.iter().enumerate() {
        let reads: Vec<DataId> = reads.iter().map(|&r| DataId(r as u32)).collect();
        let writes: Vec<DataId> = (0..*writes).map(|_| b.data(16)).collect();
        b.task(
            Step {
                name: i as u32,
                cost: *cost,
            },
            &reads,
            &writes,
        );
    }
    for &o in &plan.outputs {
        b.output(DataId(o as u32));
    }
    b.build()
}

fn same_structure(a: &Dag<Step>, b: &Dag<Step>) {
    assert_eq!(a.num_tasks(), b.num_tasks());
    assert_eq!(a.num_data(), b.num_data());
    assert_eq!(a.outputs(), b.outputs());
    assert_eq!(a.topological_order(), b.topological_order());
    for t in (0..a.num_tasks() as u32).map(TaskId) {
        assert_eq!(a.op(t), b.op(t));
        assert_eq!(a.reads(t), b.reads(t));
        assert_eq!(a.writes(t), b.writes(t));
        assert_eq!(a.children(t), b.children(t));
        assert_eq!(a.priority(t), b.priority(t));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn derived_structure_matches_declarations(plan in plan()) {
        let dag = build(&plan).unwrap();
        let n = dag.num_tasks();

        // Parents are exactly the distinct producers of what a task reads.
        for t in (0..n as u32).map(TaskId) {
            let expected: BTreeSet<TaskId> =
                dag.reads(t).iter().filter_map(|&d| dag.producer(d)).collect();
            let parents: BTreeSet<TaskId> = dag.parents(t).iter().copied().collect();
            prop_assert_eq!(&parents, &expected);
            prop_assert_eq!(parents.len(), dag.fan_in(t));
            for &p in dag.parents(t) {
                prop_assert!(dag.children(p).contains(&t));
            }
            for &c in dag.children(t) {
                prop_assert!(dag.parents(c).contains(&t));
            }
            for &d in dag.writes(t) {
                prop_assert_eq!(dag.producer(d), Some(t));
            }
            for &d in dag.reads(t) {
                prop_assert!(dag.consumers(d).contains(&t));
            }
        }
        let fan_in: usize = (0..n as u32).map(|t| dag.fan_in(TaskId(t))).sum();
        let fan_out: usize = (0..n as u32).map(|t| dag.fan_out(TaskId(t))).sum();
        prop_assert_eq!(fan_in, fan_out);
        prop_assert_eq!(fan_in, dag.num_edges());

        // The order is a permutation that puts every parent first.
        let order = dag.topological_order();
        prop_assert_eq!(order.len(), n);
        let mut position = vec![usize::MAX; n];
        for (i, t) in order.iter().enumerate() {
            prop_assert_eq!(position[t.index()], usize::MAX);
            position[t.index()] = i;
        }
        for t in (0..n as u32).map(TaskId) {
            for &p in dag.parents(t) {
                prop_assert!(position[p.index()] < position[t.index()]);
            }
        }

        // Priorities are bottom levels: cost plus the most expensive child.
        for t in (0..n as u32).map(TaskId) {
            let below = dag.children(t).iter().map(|&c| dag.priority(c)).fold(0.0, f64::max);
            prop_assert_eq!(dag.priority(t), dag.op(t).cost + below);
        }
        prop_assert_eq!(dag.sources().count(), (0..n).filter(|&t| dag.fan_in(TaskId(t as u32)) == 0).count());
    }

    #[test]
    fn encodings_round_trip(plan in plan()) {
        let dag = build(&plan).unwrap();
        same_structure(&dag, &Dag::from_bytes(&dag.to_bytes().unwrap()).unwrap());
        same_structure(&dag, &Dag::from_json(&dag.to_json().unwrap()).unwrap());
    }

    #[test]
    fn a_second_writer_is_always_caught(plan in plan(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!plan.tasks.is_empty());
        let dag = build(&plan).unwrap();
        let computed: Vec<DataId> = (plan.inputs..dag.num_data()).map(|d| DataId(d as u32)).collect();
        let victim = computed[pick.index(computed.len())];
        let mut b = DagBuilder::new();
        for _ in 0..plan.inputs { b.input(8); }
        for (i, (reads, writes, cost)) in plan.tasks.iter().enumerate() {
            let reads: Vec<DataId> = reads.iter().map(|&r| DataId(r as u32)).collect();
            let writes: Vec<DataId> = (0..*writes).map(|_| b.data(16)).collect();
            b.task(Step { name: i as u32, cost: *cost }, &reads, &writes);
        }
        b.task(Step { name: 999, cost: 1.0 }, &[], &[victim]);
        let is_written_twice = matches!(b.build(), Err(DagError::WrittenTwice { data, .. }) if data == victim);
        prop_assert!(is_written_twice);
    }
}
