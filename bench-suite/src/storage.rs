//! Store throughput: 8 MiB tile puts and gets, and fan-in arrivals per second,
//! next to a reference client on the same server in the same run
//! (`redis-benchmark` for Redis, boto3 for S3).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use wukong::storage::{Coordinator, JobId, ObjectStore, ObjectStoreExt, PutMode, StorageError};

use crate::BenchError;

/// What one store measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// `memory`, `redis` or `s3`.
    pub backend: String,
    /// Size of each object.
    pub object_bytes: usize,
    /// Objects written, then read.
    pub objects: usize,
    /// Sequential single-assignment puts, MB/s (10⁶ bytes).
    pub put_mb_s: f64,
    /// Sequential gets, MB/s.
    pub get_mb_s: f64,
    /// Arrivals per second with `arrival_concurrency` calls in flight; `None`
    /// for object-only stores (S3).
    pub arrivals_per_s: Option<f64>,
    /// Calls in flight during the arrival measurement.
    pub arrival_concurrency: usize,
    /// The reference client, e.g. `redis-benchmark -c 1`.
    pub reference: Option<String>,
    /// The reference's put (SET) throughput on the same server, MB/s.
    pub reference_put_mb_s: Option<f64>,
    /// The reference's get (GET) throughput, MB/s.
    pub reference_get_mb_s: Option<f64>,
}

/// Measures `objects` puts and gets of `object_bytes` each, one at a time, and,
/// given a coordinator, `2000 × 8` arrivals with `concurrency` in flight.
/// Deletes what it wrote.
pub async fn measure(
    backend: &str,
    store: Arc<dyn ObjectStore>,
    coordinator: Option<Arc<dyn Coordinator>>,
    object_bytes: usize,
    objects: usize,
    concurrency: usize,
) -> Result<StoreReport, StorageError> {
    let job = JobId::unique("bench")?;
    let value: Bytes = (0..object_bytes)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let keys = (0..objects)
        .map(|i| job.key(format!("tile/{i}")))
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    for key in &keys {
        store.put(key, value.clone(), PutMode::Create).await?;
    }
    let put_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for key in &keys {
        let got = store.get(key).await?;
        if got.len() != object_bytes {
            return Err(StorageError::Corrupt {
                key: key.clone(),
                reason: "the object read back has another length than was written",
            });
        }
    }
    let get_seconds = start.elapsed().as_secs_f64();
    store.delete_job(&job).await?;

    let arrivals_per_s = match coordinator {
        Some(coordinator) => Some(arrivals(coordinator, &job, concurrency).await?),
        None => None,
    };
    let total = (object_bytes * objects) as f64 / 1e6;
    Ok(StoreReport {
        backend: backend.to_owned(),
        object_bytes,
        objects,
        put_mb_s: total / put_seconds,
        get_mb_s: total / get_seconds,
        arrivals_per_s,
        arrival_concurrency: concurrency,
        reference: None,
        reference_put_mb_s: None,
        reference_get_mb_s: None,
    })
}

/// Arrivals per second: 2000 children of in-degree 8, `concurrency` callers.
async fn arrivals(
    coordinator: Arc<dyn Coordinator>,
    job: &JobId,
    concurrency: usize,
) -> Result<f64, StorageError> {
    let in_degree = 8u32;
    let children = 2000u64;
    let concurrency = concurrency.max(1);
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency as u64 {
        let (coordinator, job) = (Arc::clone(&coordinator), job.clone());
        workers.push(tokio::spawn(async move {
            let mut child = worker;
            while child < children {
                for edge in 0..in_degree {
                    coordinator.arrive(&job, child, edge, in_degree).await?;
                }
                child += concurrency as u64;
            }
            Ok::<(), StorageError>(())
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| StorageError::InvalidConfig {
            what: "benchmark task",
            detail: e.to_string(),
        })??;
    }
    let seconds = start.elapsed().as_secs_f64();
    coordinator.clear_job(job).await?;
    Ok((children * u64::from(in_degree)) as f64 / seconds)
}

/// Runs `redis-benchmark -t set,get -d object_bytes -n objects -c 1 --csv`
/// against `host:port` and returns SET and GET throughput in MB/s.
pub fn redis_benchmark(
    host: &str,
    port: u16,
    object_bytes: usize,
    objects: usize,
) -> Option<(f64, f64)> {
    let output = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-t",
            "set,get",
            "-c",
            "1",
            "--csv",
        ])
        .args(["-d", &object_bytes.to_string(), "-n", &objects.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "\n");
    let rps = |test: &str| {
        text.lines()
            .find(|line| line.starts_with(&format!("\"{test}\"")))
            .and_then(|line| line.split(',').nth(1))
            .and_then(|value| value.trim_matches('"').parse::<f64>().ok())
    };
    let mb = object_bytes as f64 / 1e6;
    Some((rps("SET")? * mb, rps("GET")? * mb))
}

/// The boto3 reference: sequential `put_object` then `get_object` of
/// `objects` objects of `object_bytes` under `bench-reference/` in `bucket`,
/// deleted afterwards. Credentials come from the environment, as for the
/// store. Returns put and get MB/s, or why it could not run.
pub fn boto3_benchmark(
    endpoint: &str,
    bucket: &str,
    object_bytes: usize,
    objects: usize,
) -> Result<(f64, f64), BenchError> {
    const SCRIPT: &str = r#"
import sys, time, boto3
endpoint, bucket, size, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint)
body = bytes(i % 253 for i in range(size))
keys = [f"bench-reference/{time.time_ns()}/{i}" for i in range(count)]
start = time.perf_counter()
for key in keys:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
put = time.perf_counter() - start
start = time.perf_counter()
for key in keys:
    assert len(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == size
get = time.perf_counter() - start
for key in keys:
    s3.delete_object(Bucket=bucket, Key=key)
print(size * count / 1e6 / put, size * count / 1e6 / get)
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, endpoint, bucket])
        .args([object_bytes.to_string(), objects.to_string()])
        .output()
        .map_err(|e| BenchError::Reference(format!("cannot run python3: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("python3 failed");
        return Err(BenchError::Reference(last.to_owned()));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut values = text.split_whitespace().map(str::parse::<f64>);
    match (values.next(), values.next()) {
        (Some(Ok(put)), Some(Ok(get))) => Ok((put, get)),
        _ => Err(BenchError::Reference(format!("unexpected output {text:?}"))),
    }
}
