//! The conformance suite and the failure cases against a real `redis-server`.
//! `scripts/test.sh` starts one on a free 127.0.0.1 port and passes its URL in
//! `WUKONG_TEST_REDIS_URL`; without it these tests fail rather than skip.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wukong_storage::{JobId, ObjectStore, PutMode, RedisStore, StorageError};

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
    conformance::queues(&store().await, &job("queues").to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_presence_marks_that_age_out() {
    conformance::counters_and_presence(&store().await, &job("presence").to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_accept_while_open_and_ring_their_bells() {
    conformance::mailboxes(&store().await, &job("mailboxes").to_string()).await;
}
