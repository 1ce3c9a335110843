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
use std::time::{Duration, Instant};

use bytes::Bytes;
use ndarray::Array2;
use wukong_storage::codec::{decode_tile, encode_tile};
use wukong_storage::{
    Arrival, Broker, Coordinator, Edge, Hold, JobId, Join, Joined, ObjectStore, ObjectStoreExt,
    PutMode, StorageError, Woken,
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

/// Queues of a [`Broker`]: FIFO, each message taken once across listeners,
/// a waiting listener woken by a push, a returned message taken first.
/// Names start with `prefix`, which no other test uses.
pub async fn queues(store: &dyn Broker, prefix: &str) {
    let queue = format!("{prefix}.q");
    let mut listener = store.listener().await.unwrap();
    // Nothing queued: the pop waits for its timeout, then answers None.
    let started = Instant::now();
    let popped = listener.pop(&[&queue], Duration::from_millis(300)).await;
    assert_eq!(popped.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A message pushed while a listener waits wakes it at once.
    let mut waiting = store.listener().await.unwrap();
    let name = queue.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = waiting.pop(&[&name], Duration::from_secs(20)).await;
        (got.unwrap(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for message in [b"one".as_slice(), b"two", b"three"] {
        store.push_message(&queue, message).await.unwrap();
    }
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got, Some((queue.clone(), b"one".to_vec())));
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 2);
    // The others come out in order, each once, across listeners; the first
    // non-empty queue of several is taken from.
    let empty = format!("{prefix}.empty");
    let popped = listener
        .pop(&[&empty, &queue], Duration::from_secs(1))
        .await;
    assert_eq!(popped.unwrap(), Some((queue.clone(), b"two".to_vec())));
    let mut other = store.listener().await.unwrap();
    let popped = other.pop(&[&queue], Duration::from_secs(1)).await;
    assert_eq!(popped.unwrap().unwrap().1, b"three");
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 0);

    // A message put back is taken before those already waiting, by `wait`
    // as by `pop`.
    store.push_message(&queue, b"waiting").await.unwrap();
    store.return_message(&queue, b"returned").await.unwrap();
    let wait = Duration::from_millis(50);
    for expected in [b"returned".as_slice(), b"waiting"] {
        let woken = listener.wait(&queue, &[], wait).await.unwrap();
        assert_eq!(woken, Woken::Message(expected.to_vec()));
    }
    assert_eq!(
        listener.wait(&queue, &[], wait).await.unwrap(),
        Woken::Timeout
    );

    // Deleting a queue drops what it held.
    store.push_message(&queue, b"left").await.unwrap();
    store.delete_queues(&[&queue], &[]).await.unwrap();
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 0);

    // Names are checked before anything is sent.
    for bad in ["no spaces", "", &"x".repeat(201)] {
        assert!(matches!(
            store.push_message(bad, b"x").await,
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(matches!(
            listener.pop(&[bad], wait).await,
            Err(StorageError::InvalidKey { .. })
        ));
    }
}

/// Counters of a [`Broker`], and presence marks that age out.
pub async fn counters_and_presence(store: &dyn Broker, prefix: &str) {
    let counter = format!("{prefix}.n");
    assert_eq!(store.add_to_counter(&counter, 0).await.unwrap(), 0);
    assert_eq!(store.add_to_counter(&counter, 2).await.unwrap(), 2);
    assert_eq!(store.add_to_counter(&counter, -1).await.unwrap(), 1);
    store.delete_queues(&[], &[&counter]).await.unwrap();
    assert_eq!(store.add_to_counter(&counter, 0).await.unwrap(), 0);

    let (set, queue) = (format!("{prefix}.idle"), format!("{prefix}.q"));
    let within = Duration::from_secs(5);
    let spare = || store.present_beyond_queued(&set, within, &queue);
    assert_eq!(spare().await.unwrap(), 0);
    store.mark_present(&set, "a", true).await.unwrap();
    store.mark_present(&set, "b", true).await.unwrap();
    store.mark_present(&set, "b", true).await.unwrap();
    assert_eq!(spare().await.unwrap(), 2);
    // A waiting message takes one of them; more messages than members: none.
    store.push_message(&queue, b"waiting").await.unwrap();
    assert_eq!(spare().await.unwrap(), 1);
    store.mark_present(&set, "b", false).await.unwrap();
    assert_eq!(spare().await.unwrap(), 0);
    let mut listener = store.listener().await.unwrap();
    let popped = listener.pop(&[&queue], Duration::from_secs(1)).await;
    assert!(popped.unwrap().is_some());
    assert_eq!(spare().await.unwrap(), 1);
    // A member that stops refreshing its mark ages out.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let recent = store.present_beyond_queued(&set, Duration::from_millis(100), &queue);
    assert_eq!(recent.await.unwrap(), 0);
}

/// Mailboxes of a [`Broker`]: deliveries only while open, read again from
/// any cursor, closed and read in one step, bells that wake a listener.
pub async fn mailboxes(store: &dyn Broker, prefix: &str) {
    let mailbox = format!("{prefix}.mb.1");
    assert!(!store.deliver(&mailbox, b"early").await.unwrap());
    store.open_mailbox(&mailbox).await.unwrap();
    assert!(store.deliver(&mailbox, b"a").await.unwrap());
    assert!(store.deliver(&mailbox, b"b").await.unwrap());
    let read = store.read_mailbox(&mailbox, 0, false).await.unwrap();
    assert_eq!(read, vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(store.deliver(&mailbox, b"c").await.unwrap());
    let read = store.read_mailbox(&mailbox, 2, true).await.unwrap();
    assert_eq!(read, vec![b"c".to_vec()]);
    assert!(!store.deliver(&mailbox, b"late").await.unwrap());
    assert_eq!(
        store.read_mailbox(&mailbox, 0, false).await.unwrap().len(),
        3
    );
    assert!(
        store
            .read_mailbox(&mailbox, 7, false)
            .await
            .unwrap()
            .is_empty()
    );

    // A listener waiting on a queue and mailboxes wakes for a delivery (the
    // three above rang the bell once), and then times out.
    let queue = format!("{prefix}.q");
    let other = format!("{prefix}.mb.2");
    let boxes = [mailbox.clone(), other.clone()];
    let wait = Duration::from_millis(50);
    let mut listener = store.listener().await.unwrap();
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Mail
    );
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Timeout
    );
    // A delivery while a listener waits wakes it at once.
    store.open_mailbox(&other).await.unwrap();
    let waiter = {
        let mut listener = store.listener().await.unwrap();
        let (queue, boxes) = (queue.clone(), boxes.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let woken = listener.wait(&queue, &boxes, Duration::from_secs(10)).await;
            (woken.unwrap(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.deliver(&other, b"d").await.unwrap());
    let (woken, waited) = waiter.await.unwrap();
    assert_eq!(woken, Woken::Mail);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Several mailboxes read in one step, each from its own cursor.
    let read = store
        .read_mailboxes(&[(&mailbox, 1), (&other, 0)], false)
        .await;
    assert_eq!(
        read.unwrap(),
        vec![vec![b"b".to_vec(), b"c".to_vec()], vec![b"d".to_vec()]]
    );
    // A queued message is taken by `wait` before a rung bell is heard.
    store.push_message(&queue, b"start").await.unwrap();
    assert!(store.deliver(&other, b"e").await.unwrap());
    let woken = listener.wait(&queue, &boxes, wait).await.unwrap();
    assert_eq!(woken, Woken::Message(b"start".to_vec()));
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Mail
    );
    // Deleting by prefix removes the mailboxes with it, and only them.
    let kept = format!("{prefix}.kept");
    store.open_mailbox(&kept).await.unwrap();
    assert!(store.deliver(&kept, b"k").await.unwrap());
    store
        .delete_mailboxes(&format!("{prefix}.mb."))
        .await
        .unwrap();
    for name in [&mailbox, &other] {
        assert!(store.read_mailbox(name, 0, false).await.unwrap().is_empty());
        assert!(!store.deliver(name, b"gone").await.unwrap());
    }
    assert_eq!(store.read_mailbox(&kept, 0, false).await.unwrap().len(), 1);
    assert!(matches!(
        store.open_mailbox("bad name").await,
        Err(StorageError::InvalidKey { .. })
    ));
}
