//! The conformance suite and the failure cases against a real `redis-server`.
//! `scripts/test.sh` starts one on a free 127.0.0.1 port and passes its URL in
//! `WUKONG_TEST_REDIS_URL`; without it these tests fail rather than skip.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wukong_storage::{JobId, ObjectStore, PutMode, RedisStore, StorageError, Woken};

fn url() -> String {
    std::env::var("WUKONG_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("WUKONG_TEST_REDIS_URL is not set: run the suite with `bash scripts/test.sh`, which starts redis-server")
    })
}

async fn store() -> RedisStore {
    RedisStore::connect(&url()).await.unwrap()
}

fn job(name: &str) -> JobId {
    JobId::unique(name).unwrap()
}

conformance::object_store_tests!(store().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_are_idempotent() {
    conformance::arrivals_are_idempotent(Arc::new(store().await), &job("arrivals")).await;
}

#[tokio::test]
async fn clearing_a_job_forgets_its_arrivals_and_leases_only() {
    conformance::clearing_a_job_forgets_its_arrivals_and_leases_only(
        &store().await,
        &job("cleared"),
        &job("kept"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims() {
    conformance::claims(Arc::new(store().await), &job("claims"), &job("other")).await;
}

#[tokio::test]
async fn leases() {
    conformance::leases(&store().await, &job("leases")).await;
}

#[tokio::test]
async fn glob_characters_in_names_match_only_themselves() {
    let store = store().await;
    let job = job("glob");
    for name in ["a*", "a*b", "ab", "a?", "a[1]"] {
        store
            .put(
                &job.key(name).unwrap(),
                Bytes::from_static(b"x"),
                PutMode::Create,
            )
            .await
            .unwrap();
    }
    let names: Vec<String> = store
        .list(&job, "a*")
        .await
        .unwrap()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    assert_eq!(names, ["a*", "a*b"]);
}

/// Connects to `url`, expecting `Unavailable` within 15 seconds.
async fn connect_fails_quickly(url: &str) -> StorageError {
    let start = Instant::now();
    let err = RedisStore::connect(url).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                backend: "redis",
                ..
            }
        ),
        "{err}"
    );
    err
}

#[tokio::test]
async fn a_server_that_is_down_is_reported_in_bounded_time() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect_fails_quickly(&format!("redis://127.0.0.1:{port}")).await;
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_authentication_error_and_never_printed() {
    let admin = redis::Client::open(url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let user = format!("wukong-test-{}", std::process::id());
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">right-password")
        .arg("~*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let host = url().trim_start_matches("redis://").to_owned();
    let err = RedisStore::connect(&format!("redis://{user}:wrong-password@{host}"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unauthorized {
                backend: "redis",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong-password"), "{err}");
    let good = RedisStore::connect(&format!("redis://{user}:right-password@{host}"))
        .await
        .unwrap();
    assert!(!good.endpoint().contains("right-password"));
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_re_established_and_nothing_is_lost() {
    let store = store().await;
    let job = job("dropped");
    let key = job.key("kept").unwrap();
    store
        .put(&key, Bytes::from_static(b"before"), PutMode::Create)
        .await
        .unwrap();
    let admin = redis::Client::open(url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    // Kill every other client connection, ours included.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    // The first call may see the drop; the manager reconnects within a retry or two.
    let mut result = store.get(&key).await;
    for _ in 0..5 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = store.get(&key).await;
    }
    assert_eq!(result.unwrap(), Bytes::from_static(b"before"));
}

/// The TLS server `scripts/test.sh` starts, and the private CA that signed its
/// certificate.
fn tls_server() -> (String, Vec<u8>) {
    let url = std::env::var("WUKONG_TEST_REDISS_URL").unwrap_or_else(|_| {
        panic!("WUKONG_TEST_REDISS_URL is not set: run the suite with `bash scripts/test.sh`, which starts a TLS redis-server")
    });
    let ca = std::env::var("WUKONG_TEST_REDIS_CA").unwrap();
    (url, std::fs::read(ca).unwrap())
}

#[tokio::test]
async fn rediss_urls_connect_over_tls() {
    let (url, ca) = tls_server();
    assert!(url.starts_with("rediss://"), "{url}");
    let store = RedisStore::connect_with_root_certificate(&url, &ca)
        .await
        .unwrap();
    let job = job("tls");
    conformance::objects(&store, &job).await;
    conformance::arrivals_are_idempotent(std::sync::Arc::new(store), &job).await;
}

#[tokio::test]
async fn a_tls_server_with_an_untrusted_certificate_is_a_clear_error() {
    let (url, _) = tls_server();
    // Not signed by any CA in the webpki roots: the handshake must fail.
    let err = connect_fails_quickly(&url).await;
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls"),
        "{err}"
    );
}

#[tokio::test]
async fn a_root_certificate_needs_a_rediss_url() {
    let (_, ca) = tls_server();
    let err = RedisStore::connect_with_root_certificate(&url(), &ca)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidConfig { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_deliver_each_message_once_in_order_and_wake_waiters() {
    let store = store().await;
    let queue = job("queue").to_string();
    let mut listener = store.listener().await.unwrap();
    // Nothing queued: the pop waits for its timeout, then answers None.
    let started = Instant::now();
    assert_eq!(
        listener
            .pop(&[&queue], Duration::from_millis(300))
            .await
            .unwrap(),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A message pushed while a listener waits wakes it at once.
    let mut waiting = store.listener().await.unwrap();
    let name = queue.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = waiting
            .pop(&[&name], Duration::from_secs(20))
            .await
            .unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for message in [b"one".as_slice(), b"two", b"three"] {
        store.push_message(&queue, message).await.unwrap();
    }
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got, Some((queue.clone(), b"one".to_vec())));
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 2);
    // The others come out in order, each once, across listeners.
    assert_eq!(
        listener
            .pop(&[&queue], Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap()
            .1,
        b"two"
    );
    let mut other = store.listener().await.unwrap();
    assert_eq!(
        other
            .pop(&[&queue], Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap()
            .1,
        b"three"
    );
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 0);

    // Counters and presence marks that age out.
    let counter = job("counter").to_string();
    assert_eq!(store.add_to_counter(&counter, 2).await.unwrap(), 2);
    assert_eq!(store.add_to_counter(&counter, -1).await.unwrap(), 1);
    let set = job("idle").to_string();
    store.mark_present(&set, "a", true).await.unwrap();
    store.mark_present(&set, "b", true).await.unwrap();
    let within = Duration::from_secs(5);
    assert_eq!(
        store
            .present_beyond_queued(&set, within, &queue)
            .await
            .unwrap(),
        2
    );
    // A waiting message takes one of them; more messages than members: none.
    store.push_message(&queue, b"waiting").await.unwrap();
    assert_eq!(
        store
            .present_beyond_queued(&set, within, &queue)
            .await
            .unwrap(),
        1
    );
    store.mark_present(&set, "b", false).await.unwrap();
    assert_eq!(
        store
            .present_beyond_queued(&set, within, &queue)
            .await
            .unwrap(),
        0
    );
    listener
        .pop(&[&queue], Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .present_beyond_queued(&set, within, &queue)
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        store
            .present_beyond_queued(&set, Duration::from_millis(100), &queue)
            .await
            .unwrap(),
        0
    );

    store.push_message(&queue, b"left").await.unwrap();
    store.delete_queues(&[&queue], &[&counter]).await.unwrap();
    assert_eq!(store.queued_messages(&queue).await.unwrap(), 0);
    assert_eq!(store.add_to_counter(&counter, 0).await.unwrap(), 0);

    // Mailboxes: deliveries only while open, read again from any cursor,
    // closing and reading in one step.
    let mailbox = job("mailbox").to_string();
    assert!(!store.deliver(&mailbox, b"early").await.unwrap());
    store.open_mailbox(&mailbox).await.unwrap();
    assert!(store.deliver(&mailbox, b"a").await.unwrap());
    assert!(store.deliver(&mailbox, b"b").await.unwrap());
    assert_eq!(
        store.read_mailbox(&mailbox, 0, false).await.unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert!(store.deliver(&mailbox, b"c").await.unwrap());
    assert_eq!(
        store.read_mailbox(&mailbox, 2, true).await.unwrap(),
        vec![b"c".to_vec()]
    );
    assert!(!store.deliver(&mailbox, b"late").await.unwrap());
    assert_eq!(
        store.read_mailbox(&mailbox, 0, false).await.unwrap().len(),
        3
    );
    // A waiter blocked on a queue and mailboxes wakes for a delivery (the
    // three above rang the bell once), takes queued messages, and times out.
    let other = job("mailbox-2").to_string();
    let boxes = [mailbox.clone(), other.clone()];
    let wait = Duration::from_millis(50);
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Mail
    );
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Timeout
    );
    store.open_mailbox(&other).await.unwrap();
    let waiter = {
        let mut listener = store.listener().await.unwrap();
        let (queue, boxes) = (queue.clone(), boxes.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
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
    assert_eq!(
        store
            .read_mailboxes(&[(&mailbox, 1), (&other, 0)], false)
            .await
            .unwrap(),
        vec![vec![b"b".to_vec(), b"c".to_vec()], vec![b"d".to_vec()]]
    );
    // A message put back is taken before those already waiting.
    store.push_message(&queue, b"waiting").await.unwrap();
    store.return_message(&queue, b"returned").await.unwrap();
    for expected in [b"returned".as_slice(), b"waiting"] {
        assert_eq!(
            listener.wait(&queue, &boxes, wait).await.unwrap(),
            Woken::Message(expected.to_vec())
        );
    }
    store.push_message(&queue, b"start").await.unwrap();
    assert_eq!(
        listener.wait(&queue, &boxes, wait).await.unwrap(),
        Woken::Message(b"start".to_vec())
    );
    for name in [&mailbox, &other] {
        store.delete_mailboxes(name).await.unwrap();
        assert!(store.read_mailbox(name, 0, false).await.unwrap().is_empty());
    }

    // Names are checked before anything reaches the server.
    assert!(matches!(
        store.push_message("no spaces", b"x").await,
        Err(StorageError::InvalidKey { .. })
    ));
}
