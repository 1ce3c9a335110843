//! Each way a set of declarations can be wrong gets its own error.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use common::{Step, step};
use wukong_dag::{DagBuilder, DagError, DataId, TaskId};

#[test]
fn a_version_written_twice_is_rejected() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let y = b.data(8);
    b.task(step(0), &[x], &[y]);
    b.task(step(1), &[x], &[y]);
    let err = b.build().unwrap_err();
    assert!(
        matches!(err, DagError::WrittenTwice { data, first: TaskId(0), second: TaskId(1) } if data == y),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("written by task t0 and again by task t1")
    );
}

#[test]
fn a_read_of_a_version_nobody_writes_is_rejected() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let orphan = b.data(8);
    let y = b.data(8);
    b.task(step(0), &[x, orphan], &[y]);
    let err = b.build().unwrap_err();
    assert!(matches!(err, DagError::Unwritten { data, task: TaskId(0) } if data == orphan));
}

#[test]
fn writing_an_input_is_rejected() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    b.task(step(0), &[], &[x]);
    assert!(matches!(b.build(), Err(DagError::InputWritten { .. })));
}

#[test]
fn an_undeclared_item_is_rejected() {
    let mut b = DagBuilder::<Step>::new();
    b.task(step(0), &[DataId(7)], &[]);
    assert!(matches!(
        b.build(),
        Err(DagError::UnknownData {
            data: DataId(7),
            ..
        })
    ));
}

#[test]
fn an_output_nobody_writes_is_rejected() {
    let mut b = DagBuilder::<Step>::new();
    let y = b.data(8);
    b.output(y);
    assert!(matches!(b.build(), Err(DagError::OutputUnwritten { data }) if data == y));
}

#[test]
fn a_cycle_is_rejected_naming_a_task_on_it() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let d1 = b.data(8);
    let d2 = b.data(8);
    let d3 = b.data(8);
    b.task(step(0), &[x], &[d3]);
    // t1 and t2 feed each other; t3 is only downstream of the cycle.
    b.task(step(1), &[d3, d2], &[d1]);
    b.task(step(2), &[d1], &[d2]);
    let d4 = b.data(8);
    b.task(step(3), &[d2], &[d4]);
    match b.build() {
        Err(DagError::Cycle { task, label }) => {
            assert!(task == TaskId(1) || task == TaskId(2), "{task}");
            assert!(label.starts_with("step"));
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn a_bad_cost_is_rejected() {
    let mut b = DagBuilder::new();
    b.task(
        Step {
            name: 0,
            cost: f64::NAN,
        },
        &[],
        &[],
    );
    assert!(matches!(b.build(), Err(DagError::BadCost { .. })));
}

#[test]
fn corrupt_encodings_are_rejected() {
    assert!(matches!(
        wukong_dag::Dag::<Step>::from_bytes(&[0xff, 0xff, 0xff]),
        Err(DagError::Decode {
            format: "binary",
            ..
        })
    ));
    assert!(matches!(
        wukong_dag::Dag::<Step>::from_json("{\"ops\": 3}"),
        Err(DagError::Decode { format: "JSON", .. })
    ));
    // Well-formed JSON whose offsets disagree with its task list.
    let text = r#"{"ops":[{"name":0,"cost":1.0}],"reads":{"offsets":[0],"values":[]},
        "writes":{"offsets":[0,0],"values":[]},"data":[],"outputs":[]}"#;
    assert!(wukong_dag::Dag::<Step>::from_json(text).is_err());
}

#[test]
fn an_empty_graph_is_valid() {
    let dag = DagBuilder::<Step>::new().build().unwrap();
    assert_eq!(dag.num_tasks(), 0);
    assert_eq!(dag.critical_path_cost(), 0.0);
    assert!(dag.to_dot().starts_with("digraph"));
}

#[test]
fn dot_output_names_every_task_and_edge() {
    let mut b = DagBuilder::new();
    let x = b.input(8);
    let y = b.data(8);
    let z = b.data(8);
    b.task(step(0), &[x], &[y]);
    b.task(step(1), &[y], &[z]);
    b.output(z);
    let dot = b.build().unwrap().to_dot();
    assert!(dot.contains("0 [label=\"step0\", shape=box]"));
    assert!(dot.contains("1 [label=\"step1\", shape=doubleoctagon]"));
    assert!(dot.contains("0 -> 1;"));
}
