//! Metering, caching, fault injection and retries over the in-memory backend.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use wukong_storage::wrap::{
    Cached, FaultConfig, Faulty, MeterReport, Metered, RetryConfig, Retrying,
};
use wukong_storage::{
    Arrival, Coordinator, JobId, MemoryStore, ObjectStore, ObjectStoreExt, PutMode, StorageError,
};

fn job() -> JobId {
    JobId::new("wrapped").unwrap()
}

fn value(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

#[tokio::test]
async fn metered_counts_requests_and_bytes() {
    let store = Metered::new(MemoryStore::new(), "memory");
    for (i, len) in [10usize, 20, 30].into_iter().enumerate() {
        store
            .put(
                &job().key(format!("k{i}")).unwrap(),
                value(len, 1),
                PutMode::Create,
            )
            .await
            .unwrap();
    }
    assert!(
        store
            .put(&job().key("k0").unwrap(), value(5, 2), PutMode::Create)
            .await
            .is_err()
    );
    store.get(&job().key("k1").unwrap()).await.unwrap();
    store.get(&job().key("k2").unwrap()).await.unwrap();
    assert!(store.get(&job().key("missing").unwrap()).await.is_err());
    store.list(&job(), "").await.unwrap();
    store.arrive(&job(), 1, 0, 2).await.unwrap();
    store
        .acquire(&job(), "l", "me", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        store.report(),
        MeterReport {
            tier: "memory".into(),
            gets: 3,
            bytes_read: 50,
            puts: 4,
            bytes_written: 65,
            other_requests: 1,
            arrivals: 1,
            lease_requests: 1,
            errors: 2,
        }
    );
}

#[tokio::test]
async fn cached_serves_hits_and_evicts_least_recently_used_within_its_budget() {
    let store = Cached::new(Metered::new(MemoryStore::new(), "backing"), 100);
    let (a, b, c) = (
        job().key("a").unwrap(),
        job().key("b").unwrap(),
        job().key("c").unwrap(),
    );
    store.put(&a, value(40, 1), PutMode::Create).await.unwrap();
    store.put(&b, value(40, 2), PutMode::Create).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap(), value(40, 1));
    assert_eq!(
        store.inner().report().gets,
        0,
        "both were cached by the puts"
    );
    // c pushes out b, the least recently used.
    store.put(&c, value(40, 3), PutMode::Create).await.unwrap();
    assert_eq!(store.get(&b).await.unwrap(), value(40, 2));
    assert_eq!(store.inner().report().gets, 1);
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
    assert!(stats.bytes <= 100 && stats.evictions >= 1, "{stats:?}");
    // Larger than the whole budget: stored, never cached.
    let big = job().key("big").unwrap();
    store
        .put(&big, value(500, 9), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&big).await.unwrap().len(), 500);
    assert!(store.stats().bytes <= 100);
    // Overwrite and delete keep the cache coherent with this writer.
    store
        .put(&a, value(10, 7), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.get(&a).await.unwrap(), value(10, 7));
    store.delete(&a).await.unwrap();
    assert!(matches!(
        store.get(&a).await,
        Err(StorageError::KeyNotFound { .. })
    ));
}

#[tokio::test]
async fn injected_faults_surface_as_unavailable() {
    let config = FaultConfig {
        seed: 1,
        error_rate: 1.0,
        ..FaultConfig::default()
    };
    let store = Faulty::new(MemoryStore::new(), config);
    let err = store
        .put(&job().key("x").unwrap(), value(1, 1), PutMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                backend: "faulty",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !store
            .inner()
            .exists(&job().key("x").unwrap())
            .await
            .unwrap(),
        "a failed-before call did nothing"
    );
}

#[tokio::test]
async fn retries_ride_out_errors_and_lost_replies_without_losing_or_corrupting_anything() {
    let faults = FaultConfig {
        seed: 42,
        error_rate: 0.3,
        lost_reply_rate: 0.2,
        latency: Duration::ZERO,
    };
    let retry = RetryConfig {
        attempts: 30,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };
    let store = Retrying::new(Faulty::new(MemoryStore::new(), faults), retry);
    for i in 0..200u8 {
        store
            .put(
                &job().key(format!("tile/{i}")).unwrap(),
                value(64, i),
                PutMode::Create,
            )
            .await
            .unwrap();
    }
    let backing = store.inner().inner();
    for i in 0..200u8 {
        let key = job().key(format!("tile/{i}")).unwrap();
        assert_eq!(store.get(&key).await.unwrap(), value(64, i));
        assert_eq!(backing.get(&key).await.unwrap(), value(64, i));
    }
    // A different value at an existing key is still refused: retries never overwrite.
    let err = store
        .put(
            &job().key("tile/3").unwrap(),
            value(64, 99),
            PutMode::Create,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::KeyExists { .. }), "{err}");
    assert_eq!(
        backing.get(&job().key("tile/3").unwrap()).await.unwrap(),
        value(64, 3)
    );

    // Values kept by the in-memory store ride out the same faults: a retry
    // that meets its own unacknowledged write succeeds, and the value kept
    // is the one put, shared and not copied.
    for i in 0..50u8 {
        let key = job().key(format!("value/{i}")).unwrap();
        let tile = std::sync::Arc::new(ndarray::Array2::from_elem((8, 4), f64::from(i)));
        store
            .put_value(&key, tile.clone(), PutMode::Create)
            .await
            .unwrap();
        let (kept, _) = backing
            .get_value::<ndarray::Array2<f64>>(&key)
            .await
            .unwrap();
        assert!(std::sync::Arc::ptr_eq(&kept, &tile));
        assert_eq!(
            *store
                .get_value::<ndarray::Array2<f64>>(&key)
                .await
                .unwrap()
                .0,
            *tile
        );
    }

    // Fan-in through faults: every child is completed by exactly one edge.
    for child in 0..50u64 {
        let mut completing = BTreeSet::new();
        for edge in 0..4u32 {
            if store.arrive(&job(), child, edge, 4).await.unwrap() == Arrival::Completed {
                completing.insert(edge);
            }
        }
        assert_eq!(completing.len(), 1, "child {child}: {completing:?}");
    }
}

#[tokio::test]
async fn retries_give_up_with_a_clear_error_and_do_not_retry_permanent_ones() {
    let faults = FaultConfig {
        seed: 7,
        error_rate: 1.0,
        ..FaultConfig::default()
    };
    let retry = RetryConfig {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    let store = Retrying::new(Faulty::new(MemoryStore::new(), faults), retry);
    let err = store.get(&job().key("x").unwrap()).await.unwrap_err();
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );

    let counted = Retrying::new(Metered::new(MemoryStore::new(), "memory"), retry);
    assert!(matches!(
        counted.get(&job().key("absent").unwrap()).await,
        Err(StorageError::KeyNotFound { .. })
    ));
    assert_eq!(
        counted.inner().report().gets,
        1,
        "a missing key is not retried"
    );
}
