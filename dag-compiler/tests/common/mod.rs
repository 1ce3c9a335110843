//! A test operation for graphs built in tests.
#![allow(dead_code)] // each test file uses a different part

use serde::{Deserialize, Serialize};
use wukong_dag::Operation;

/// An operation that only has a name and a cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: u32,
    pub cost: f64,
}

impl Operation for Step {
    fn cost(&self) -> f64 {
        self.cost
    }
    fn label(&self) -> String {
        format!("step{}", self.name)
    }
}

pub fn step(name: u32) -> Step {
    Step { name, cost: 1.0 }
}
