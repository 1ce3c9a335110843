//! The conformance suite on the in-memory backend.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod conformance;

use std::sync::Arc;

use wukong_storage::{JobId, MemoryStore};

fn job(name: &str) -> JobId {
    JobId::new(name).unwrap()
}

#[tokio::test]
async fn objects() {
    conformance::objects(&MemoryStore::new(), &job("objects")).await;
}

#[tokio::test]
async fn put_once_is_idempotent() {
    conformance::put_once_is_idempotent(&MemoryStore::new(), &job("once")).await;
}

#[tokio::test]
async fn listing_and_job_isolation() {
    conformance::listing_and_job_isolation(&MemoryStore::new(), &job("mine"), &job("theirs")).await;
}

#[tokio::test]
async fn tiles_round_trip_and_corruption_is_caught() {
    conformance::tiles_round_trip_and_corruption_is_caught(&MemoryStore::new(), &job("tiles"))
        .await;
}

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
