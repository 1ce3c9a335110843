//! The conformance suite on the in-memory backend.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod conformance;

use std::sync::Arc;

use wukong_storage::{JobId, MemoryStore};

fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

conformance::object_store_tests!(MemoryStore::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_are_idempotent() {
    conformance::arrivals_are_idempotent(Arc::new(MemoryStore::new()), &job("arrivals")).await;
}

#[tokio::test]
async fn clearing_a_job_forgets_its_arrivals_and_leases_only() {
    conformance::clearing_a_job_forgets_its_arrivals_and_leases_only(
        &MemoryStore::new(),
        &job("cleared"),
        &job("kept"),
    )
    .await;
}

#[tokio::test]
async fn leases() {
    conformance::leases(&MemoryStore::new(), &job("leases")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims() {
    conformance::claims(Arc::new(MemoryStore::new()), &job("claims"), &job("other")).await;
}
