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

#[tokio::test]
async fn a_kept_value_is_shared_and_metered_as_its_bytes() {
    use ndarray::Array2;
    use wukong_storage::wrap::Metered;
    use wukong_storage::{ObjectStore, ObjectStoreExt, PutMode, StoredValue};

    let store = Metered::new(MemoryStore::new(), "memory");
    let key = job("kept").key("d3").unwrap();
    let tile = Arc::new(Array2::from_elem((64, 32), 0.5));
    store
        .put_value(&key, tile.clone(), PutMode::Create)
        .await
        .unwrap();
    let (back, len) = store.get_value::<Array2<f64>>(&key).await.unwrap();
    assert!(
        Arc::ptr_eq(&back, &tile),
        "the in-memory store hands out the value itself"
    );
    assert_eq!(len, tile.encoded_len());
    let report = store.report();
    assert_eq!((report.puts, report.gets), (1, 1));
    assert_eq!(report.bytes_written, tile.encoded_len());
    assert_eq!(report.bytes_read, tile.encoded_len());
    let missing = job("kept").key("d4").unwrap();
    assert!(store.get_object(&missing).await.is_err());
    assert_eq!((store.report().gets, store.report().errors), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_deliver_each_message_once_in_order_and_wake_waiters() {
    conformance::queues(&MemoryStore::new(), "queues").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_presence_marks_that_age_out() {
    conformance::counters_and_presence(&MemoryStore::new(), "presence").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_accept_while_open_and_ring_their_bells() {
    conformance::mailboxes(&MemoryStore::new(), "mailboxes").await;
}
