//! The conformance suite every backend runs: each function takes a store and
//! a job id that no other test uses.

#![allow(dead_code)] // S3 holds objects only and runs just the object half

/// The object half of the suite as tests, on stores made by the async
/// expression `$store`, with job ids from a `job(name)` function in scope.
macro_rules! object_store_tests {
    ($store:expr) => {
        #[tokio::test]
        async fn objects() {
            conformance::objects(&$store, &job("objects")).await;
        }

        #[tokio::test]
        async fn put_once_is_idempotent() {
            conformance::put_once_is_idempotent(&$store, &job("once")).await;
        }

        #[tokio::test]
        async fn listing_and_job_isolation() {
            conformance::listing_and_job_isolation(&$store, &job("mine"), &job("theirs")).await;
        }

        #[tokio::test]
        async fn values_round_trip_as_values_and_as_bytes() {
            conformance::values_round_trip_as_values_and_as_bytes(&$store, &job("values")).await;
        }

        #[tokio::test]
        async fn tiles_round_trip_and_corruption_is_caught() {
            conformance::tiles_round_trip_and_corruption_is_caught(&$store, &job("tiles")).await;
        }
    };
}
pub(crate) use object_store_tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ndarray::Array2;
use wukong_storage::codec::{decode_tile, encode_tile};
use wukong_storage::{
    Arrival, Coordinator, Edge, Hold, JobId, Join, Joined, ObjectStore, ObjectStoreExt, PutMode,
    StorageError,
};

pub async fn objects(store: &dyn ObjectStore, job: &JobId) {
    let key = job.key("tiles/a/0_0").unwrap();
    assert!(!store.exists(&key).await.unwrap());
    assert_eq!(
        store.get(&key).await,
        Err(StorageError::KeyNotFound { key: key.clone() })
    );
    store
        .put(&key, Bytes::from_static(b"first"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        store
            .put(&key, Bytes::from_static(b"second"), PutMode::Create)
            .await,
        Err(StorageError::KeyExists { key: key.clone() })
    );
    assert_eq!(
        store.get(&key).await.unwrap(),
        Bytes::from_static(b"first"),
        "Create keeps the first value"
    );
    store
        .put(&key, Bytes::from_static(b"third"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"third"));
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());
    // Empty and large values.
    let empty = job.key("empty").unwrap();
    store
        .put(&empty, Bytes::new(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&empty).await.unwrap().len(), 0);
    let large = job.key("large").unwrap();
    let value: Bytes = (0..9 * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    store
        .put(&large, value.clone(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&large).await.unwrap(), value);
}

pub async fn put_once_is_idempotent(store: &dyn ObjectStore, job: &JobId) {
    let key = job.key("once").unwrap();
    store
        .put_once(&key, Bytes::from_static(b"v"))
        .await
        .unwrap();
    store
        .put_once(&key, Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert!(matches!(
        store.put_once(&key, Bytes::from_static(b"other")).await,
        Err(StorageError::KeyExists { .. })
    ));
}

pub async fn listing_and_job_isolation(store: &dyn ObjectStore, job: &JobId, other: &JobId) {
    for name in ["t/b", "t/a", "u/c"] {
        store
            .put(
                &job.key(name).unwrap(),
                Bytes::from_static(b"x"),
                PutMode::Create,
            )
            .await
            .unwrap();
    }
    let same_name = other.key("t/a").unwrap();
    store
        .put(&same_name, Bytes::from_static(b"theirs"), PutMode::Create)
        .await
        .unwrap();
    let names: Vec<String> = store
        .list(job, "t/")
        .await
        .unwrap()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    assert_eq!(names, ["t/a", "t/b"]);
    assert_eq!(
        store.get(&job.key("t/a").unwrap()).await.unwrap(),
        Bytes::from_static(b"x")
    );
    assert_eq!(store.delete_job(job).await.unwrap(), 3);
    assert!(store.list(job, "").await.unwrap().is_empty());
    assert_eq!(
        store.get(&same_name).await.unwrap(),
        Bytes::from_static(b"theirs"),
        "another job's keys survive"
    );
    store.delete_job(other).await.unwrap();
}

pub async fn tiles_round_trip_and_corruption_is_caught(store: &dyn ObjectStore, job: &JobId) {
    let key = job.key("tiles/l/3_1").unwrap();
    let tile = Array2::from_shape_fn((31, 7), |(i, j)| (i * 7 + j) as f64 / 3.0);
    store
        .put(&key, encode_tile(&key, &tile).unwrap(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        decode_tile(&key, &store.get(&key).await.unwrap()).unwrap(),
        tile
    );
    let mut damaged = store.get(&key).await.unwrap().to_vec();
    damaged[200] ^= 0x40;
    store
        .put(&key, damaged.into(), PutMode::Overwrite)
        .await
        .unwrap();
    let err = decode_tile(&key, &store.get(&key).await.unwrap()).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

/// `put_value` and `get_value` agree with the bytes interface, and keep
/// single assignment, on every backend (the in-memory one keeps the value).
pub async fn values_round_trip_as_values_and_as_bytes(store: &dyn ObjectStore, job: &JobId) {
    use ndarray::ShapeBuilder;
    let key = job.key("tiles/v/2_0").unwrap();
    let tile = Arc::new(Array2::from_shape_fn((9, 5).f(), |(i, j)| {
        i as f64 - j as f64 / 8.0
    }));
    let encoded = encode_tile(&key, &tile).unwrap();
    store
        .put_value(&key, tile.clone(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), encoded);
    let (back, len) = store.get_value::<Array2<f64>>(&key).await.unwrap();
    assert_eq!(*back, *tile);
    assert_eq!(len, encoded.len() as u64);
    assert_eq!(
        store.put_value(&key, tile.clone(), PutMode::Create).await,
        Err(StorageError::KeyExists { key: key.clone() })
    );
    // The same value again is a retry and succeeds; another one does not.
    store.put_value_once(&key, tile.clone()).await.unwrap();
    let other = Arc::new(tile.mapv(|x| x + 1.0));
    assert_eq!(
        store.put_value_once(&key, other.clone()).await,
        Err(StorageError::KeyExists { key: key.clone() })
    );
    assert_eq!(
        *store.get_value::<Array2<f64>>(&key).await.unwrap().0,
        *tile
    );
    // Read as another type, it is a corrupt object that names the key.
    let err = store.get_value::<u64>(&key).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("tiles/v/2_0"), "{err}");
    // Overwriting a value with bytes, and bytes with a value, both work.
    store
        .put(&key, encode_tile(&key, &other).unwrap(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        *store.get_value::<Array2<f64>>(&key).await.unwrap().0,
        *other
    );
    store
        .put_value(&key, tile.clone(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), encoded);
    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());
}

pub async fn arrivals_are_idempotent(coordinator: Arc<dyn Coordinator>, job: &JobId) {
    assert_eq!(
        coordinator.arrive(job, 7, 0, 3).await.unwrap(),
        Arrival::Waiting { missing: 2 }
    );
    assert_eq!(
        coordinator.arrive(job, 7, 0, 3).await.unwrap(),
        Arrival::Duplicate
    );
    assert_eq!(
        coordinator.arrive(job, 7, 2, 3).await.unwrap(),
        Arrival::Waiting { missing: 1 }
    );
    assert_eq!(
        coordinator.arrive(job, 7, 1, 3).await.unwrap(),
        Arrival::Completed
    );
    // A retry of the completing edge (its reply was lost) still learns that it completed.
    assert_eq!(
        coordinator.arrive(job, 7, 1, 3).await.unwrap(),
        Arrival::Completed
    );
    assert_eq!(
        coordinator.arrive(job, 7, 2, 3).await.unwrap(),
        Arrival::Duplicate
    );
    assert!(matches!(
        coordinator.arrive(job, 7, 3, 3).await,
        Err(StorageError::BadArrival { .. })
    ));
    // Many concurrent arrivals, each edge delivered twice: exactly one edge completes.
    let mut handles = Vec::new();
    for edge in (0..64u32).chain(0..64) {
        let (coordinator, job) = (Arc::clone(&coordinator), job.clone());
        handles.push(tokio::spawn(async move {
            (edge, coordinator.arrive(&job, 8, edge, 64).await.unwrap())
        }));
    }
    let mut completing_edges = std::collections::BTreeSet::new();
    for handle in handles {
        let (edge, arrival) = handle.await.unwrap();
        if arrival == Arrival::Completed {
            completing_edges.insert(edge);
        }
    }
    assert_eq!(completing_edges.len(), 1, "{completing_edges:?}");

    // Batches answer each arrival in order, as single calls would, and mix
    // with them; a bad edge anywhere rejects the batch before anything is recorded.
    let never = |child, edge, in_degree| Join {
        edge: Edge {
            child,
            edge,
            in_degree,
        },
        hold: Hold::Never,
    };
    let arrivals = |joined: Vec<Joined>| -> Vec<Arrival> {
        joined
            .into_iter()
            .map(|j| {
                assert_eq!(j.holder, None);
                j.arrival.unwrap()
            })
            .collect()
    };
    assert_eq!(coordinator.join_all(job, "x", &[]).await.unwrap(), []);
    let batch = [
        never(20, 0, 2),
        never(21, 0, 1),
        never(20, 0, 2),
        never(7, 1, 3),
    ];
    assert_eq!(
        arrivals(coordinator.join_all(job, "x", &batch).await.unwrap()),
        [
            Arrival::Waiting { missing: 1 },
            Arrival::Completed,
            Arrival::Duplicate,
            Arrival::Completed,
        ]
    );
    assert!(matches!(
        coordinator
            .join_all(job, "x", &[never(22, 0, 2), never(20, 2, 2)])
            .await,
        Err(StorageError::BadArrival { child: 20, .. })
    ));
    assert_eq!(
        coordinator.arrive(job, 22, 1, 2).await.unwrap(),
        Arrival::Waiting { missing: 1 }
    );
    let batch = [never(20, 1, 2), never(22, 0, 2)];
    assert_eq!(
        arrivals(coordinator.join_all(job, "x", &batch).await.unwrap()),
        [Arrival::Completed, Arrival::Completed]
    );

    // Claims with arrivals: claim first (arrive only if won), claim on completion.
    let join = |child, edge, hold| Join {
        edge: Edge {
            child,
            edge,
            in_degree: 2,
        },
        hold,
    };
    let first = |child: u64| Hold::First(format!("hold/{child}"));
    let on_completion = |child: u64| Hold::OnCompletion(format!("hold/{child}"));
    let joined = |arrival, holder: Option<&str>| Joined {
        arrival,
        holder: holder.map(String::from),
    };
    let batch = [join(40, 0, first(40)), join(41, 0, on_completion(41))];
    assert_eq!(
        coordinator.join_all(job, "exec-a", &batch).await.unwrap(),
        [
            joined(Some(Arrival::Waiting { missing: 1 }), Some("exec-a")),
            joined(Some(Arrival::Waiting { missing: 1 }), None),
        ]
    );
    // exec-b loses the claim of 40 and does not arrive; 41 completes and is claimed.
    let batch = [join(40, 1, first(40)), join(41, 1, on_completion(41))];
    assert_eq!(
        coordinator.join_all(job, "exec-b", &batch).await.unwrap(),
        [
            joined(None, Some("exec-a")),
            joined(Some(Arrival::Completed), Some("exec-b")),
        ]
    );
    // Having written its data, exec-b arrives at 40 and learns who holds it.
    let batch = [join(40, 1, on_completion(40))];
    assert_eq!(
        coordinator.join_all(job, "exec-b", &batch).await.unwrap(),
        [joined(Some(Arrival::Completed), Some("exec-a"))]
    );
    // Repeated by the holder, a join answers the same.
    let batch = [join(41, 1, on_completion(41)), join(40, 0, first(40))];
    assert_eq!(
        coordinator.join_all(job, "exec-b", &batch).await.unwrap(),
        [
            joined(Some(Arrival::Completed), Some("exec-b")),
            joined(None, Some("exec-a")),
        ]
    );
    assert_eq!(
        coordinator.claim(job, "hold/41", "exec-c").await.unwrap(),
        "exec-b"
    );

    // Racing batches over the same children: each child completes once.
    let mut handles = Vec::new();
    for parent in 0..16u32 {
        let (coordinator, job) = (Arc::clone(&coordinator), job.clone());
        handles.push(tokio::spawn(async move {
            let batch: Vec<Join> = (30..38).map(|child| never(child, parent, 16)).collect();
            coordinator.join_all(&job, "x", &batch).await.unwrap()
        }));
    }
    let mut completions = 0;
    for handle in handles {
        completions += handle
            .await
            .unwrap()
            .iter()
            .filter(|j| j.arrival == Some(Arrival::Completed))
            .count();
    }
    assert_eq!(completions, 8);
}

pub async fn claims(coordinator: Arc<dyn Coordinator>, job: &JobId, other: &JobId) {
    assert_eq!(
        coordinator.claim(job, "hold/7", "exec-a").await.unwrap(),
        "exec-a"
    );
    assert_eq!(
        coordinator.claim(job, "hold/7", "exec-b").await.unwrap(),
        "exec-a"
    );
    // A retry by the holder answers the same; other names and jobs are separate.
    assert_eq!(
        coordinator.claim(job, "hold/7", "exec-a").await.unwrap(),
        "exec-a"
    );
    assert_eq!(
        coordinator.claim(job, "hold/8", "exec-b").await.unwrap(),
        "exec-b"
    );
    assert_eq!(
        coordinator.claim(other, "hold/7", "exec-c").await.unwrap(),
        "exec-c"
    );
    // Racing claimants: all learn the same single winner.
    let mut handles = Vec::new();
    for claimant in 0..32 {
        let (coordinator, job) = (Arc::clone(&coordinator), job.clone());
        handles.push(tokio::spawn(async move {
            coordinator
                .claim(&job, "hold/9", &format!("exec-{claimant}"))
                .await
                .unwrap()
        }));
    }
    let mut winners = std::collections::BTreeSet::new();
    for handle in handles {
        winners.insert(handle.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    coordinator.clear_job(job).await.unwrap();
    assert_eq!(
        coordinator.claim(job, "hold/7", "exec-b").await.unwrap(),
        "exec-b"
    );
    assert_eq!(
        coordinator.claim(other, "hold/7", "exec-d").await.unwrap(),
        "exec-c"
    );
    coordinator.clear_job(job).await.unwrap();
    coordinator.clear_job(other).await.unwrap();
}

pub async fn leases(coordinator: &dyn Coordinator, job: &JobId) {
    let short = Duration::from_millis(150);
    assert!(
        coordinator
            .acquire(job, "task-1", "exec-a", short)
            .await
            .unwrap()
    );
    assert!(
        !coordinator
            .acquire(job, "task-1", "exec-b", short)
            .await
            .unwrap()
    );
    assert!(
        coordinator
            .renew(job, "task-1", "exec-a", short)
            .await
            .unwrap()
    );
    assert!(
        !coordinator
            .renew(job, "task-1", "exec-b", short)
            .await
            .unwrap()
    );
    assert!(coordinator.expired(job).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = coordinator.expired(job).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].name.as_str(), expired[0].holder.as_str()),
        ("task-1", "exec-a")
    );
    assert!(
        !coordinator
            .renew(job, "task-1", "exec-a", short)
            .await
            .unwrap(),
        "a lapsed lease cannot be renewed"
    );
    assert!(
        coordinator
            .acquire(job, "task-1", "exec-b", Duration::from_secs(30))
            .await
            .unwrap()
    );
    coordinator.release(job, "task-1", "exec-a").await.unwrap();
    assert!(
        !coordinator
            .acquire(job, "task-1", "exec-c", short)
            .await
            .unwrap(),
        "a stale holder cannot release"
    );
    coordinator.release(job, "task-1", "exec-b").await.unwrap();
    assert!(
        coordinator
            .acquire(job, "task-1", "exec-c", short)
            .await
            .unwrap()
    );
}

pub async fn clearing_a_job_forgets_its_arrivals_and_leases_only(
    coordinator: &dyn Coordinator,
    job: &JobId,
    other: &JobId,
) {
    let ttl = Duration::from_secs(30);
    for owner in [job, other] {
        assert_eq!(
            coordinator.arrive(owner, 1, 0, 2).await.unwrap(),
            Arrival::Waiting { missing: 1 }
        );
        assert!(
            coordinator
                .acquire(owner, "task", "exec-a", ttl)
                .await
                .unwrap()
        );
    }
    coordinator.clear_job(job).await.unwrap();
    // This job starts afresh; the other job remembers everything.
    assert_eq!(
        coordinator.arrive(job, 1, 0, 2).await.unwrap(),
        Arrival::Waiting { missing: 1 }
    );
    assert!(
        coordinator
            .acquire(job, "task", "exec-b", ttl)
            .await
            .unwrap()
    );
    assert_eq!(
        coordinator.arrive(other, 1, 0, 2).await.unwrap(),
        Arrival::Duplicate
    );
    assert!(
        !coordinator
            .acquire(other, "task", "exec-b", ttl)
            .await
            .unwrap()
    );
    coordinator.clear_job(job).await.unwrap();
    coordinator.clear_job(other).await.unwrap();
}
