use std::fmt::Write;

use crate::{Dag, Operation};

impl<Op: Operation> Dag<Op> {
    /// Draws the task graph in Graphviz DOT: one node per task, labelled with its
    /// operation, one edge per parent-child pair. Source tasks are boxes, tasks
    /// that write an output of the graph are double octagons.
    pub fn to_dot(&self) -> String {
        let mut out = String::with_capacity(64 * self.num_tasks() + 32);
        out.push_str("digraph wukong {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n");
        for &task in self.topological_order() {
            let shape = if self.writes(task).iter().any(|&d| self.is_output(d)) {
                "doubleoctagon"
            } else if self.fan_in(task) == 0 {
                "box"
            } else {
                "ellipse"
            };
            let label = self
                .op(task)
                .label()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            // Writing into a String cannot fail.
            let _ = writeln!(out, "  {} [label=\"{}\", shape={}];", task.0, label, shape);
        }
        for &task in self.topological_order() {
            for child in self.children(task) {
                let _ = writeln!(out, "  {} -> {};", task.0, child.0);
            }
        }
        out.push_str("}\n");
        out
    }
}
