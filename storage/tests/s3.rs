//! The conformance suite and failure cases against `moto_server` as the S3
//! endpoint. `scripts/test.sh` starts it on a free 127.0.0.1 port, creates the
//! bucket and passes the endpoint in `WUKONG_TEST_S3_ENDPOINT`; without it
//! these tests fail rather than skip.

#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod conformance;

use std::time::{Duration, Instant};

use bytes::Bytes;
use wukong_storage::{JobId, ObjectStore, PutMode, S3Config, S3Credentials, S3Store, StorageError};

const BUCKET: &str = "wukong-test";

fn endpoint() -> String {
    std::env::var("WUKONG_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("WUKONG_TEST_S3_ENDPOINT is not set: run the suite with `bash scripts/test.sh`, which starts moto_server")
    })
}

fn config(endpoint: String, bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        path_style: true,
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..S3Config::new(bucket)
    }
}

async fn store() -> S3Store {
    S3Store::connect(config(endpoint(), BUCKET)).await.unwrap()
}

fn job(name: &str) -> JobId {
    JobId::unique(name).unwrap()
}

// `config` sets the multipart threshold at 6 MiB: `objects` uploads in parts too.
conformance::object_store_tests!(store().await);

#[tokio::test]
async fn a_multipart_create_never_replaces_an_object() {
    let store = store().await;
    let key = job("multi").key("big").unwrap();
    let first: Bytes = vec![1u8; 12 << 20].into();
    store
        .put(&key, first.clone(), PutMode::Create)
        .await
        .unwrap();
    let err = store
        .put(&key, vec![2u8; 12 << 20].into(), PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::KeyExists { .. }), "{err}");
    assert_eq!(store.get(&key).await.unwrap(), first);
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let err = S3Store::connect(config(endpoint(), "no-such-bucket-here"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-bucket-here"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_down_is_reported_in_bounded_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let err = S3Store::connect(config(format!("http://127.0.0.1:{port}"), BUCKET))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, StorageError::Unavailable { backend: "s3", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_authentication_error_and_never_printed() {
    // A second moto_server that checks signatures against its (empty) IAM
    // user list, so every key is unknown there.
    let endpoint = std::env::var("WUKONG_TEST_S3_AUTH_ENDPOINT").unwrap_or_else(|_| {
        panic!("WUKONG_TEST_S3_AUTH_ENDPOINT is not set: run the suite with `bash scripts/test.sh`")
    });
    let secret = "not-a-real-secret-7c1f";
    let config = S3Config {
        credentials: Some(S3Credentials {
            access_key_id: "AKIAWRONGWRONGWRONG0".into(),
            secret_access_key: secret.into(),
        }),
        ..config(endpoint, BUCKET)
    };
    assert!(!format!("{config:?}").contains(secret));
    let err = S3Store::connect(config).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unauthorized { backend: "s3", .. }),
        "{err}"
    );
    assert!(!err.to_string().contains(secret), "{err}");
}
