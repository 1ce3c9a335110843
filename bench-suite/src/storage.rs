//! Store throughput: 8 MiB tile puts and gets, and fan-in arrivals per second,
//! next to `redis-benchmark` on the same server in the same run.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use wukong::storage::{Coordinator, JobId, ObjectStore, ObjectStoreExt, PutMode, StorageError};

/// What one store measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// `memory` or `redis`.
    pub backend: String,
    /// Size of each object.
    pub object_bytes: usize,
    /// Objects written, then read.
    pub objects: usize,
    /// Sequential single-assignment puts, MB/s (10⁶ bytes).
    pub put_mb_s: f64,
    /// Sequential gets, MB/s.
    pub get_mb_s: f64,
    /// Arrivals per second with `arrival_concurrency` calls in flight.
    pub arrivals_per_s: f64,
    /// Calls in flight during the arrival measurement.
    pub arrival_concurrency: usize,
    /// `redis-benchmark -c 1` SET throughput on the same server, MB/s.
    pub reference_set_mb_s: Option<f64>,
    /// `redis-benchmark -c 1` GET throughput, MB/s.
    pub reference_get_mb_s: Option<f64>,
}

/// Measures `objects` puts and gets of `object_bytes` each, one at a time, then
/// `children × 8` arrivals with `concurrency` in flight. Deletes what it wrote.
pub async fn measure<S>(
    backend: &str,
    store: Arc<S>,
    object_bytes: usize,
    objects: usize,
    concurrency: usize,
) -> Result<StoreReport, StorageError>
where
    S: ObjectStore + Coordinator + 'static,
{
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let job = JobId::new(format!("bench-{}-{nanos}", std::process::id()))?;
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
            return Err(StorageError::KeyNotFound { key: key.clone() });
        }
    }
    let get_seconds = start.elapsed().as_secs_f64();
    store.delete_job(&job).await?;

    let in_degree = 8u32;
    let children = 2000u64;
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency as u64 {
        let (store, job) = (Arc::clone(&store), job.clone());
        workers.push(tokio::spawn(async move {
            let mut child = worker;
            while child < children {
                for edge in 0..in_degree {
                    store.arrive(&job, child, edge, in_degree).await?;
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
    let arrival_seconds = start.elapsed().as_secs_f64();

    let total = (object_bytes * objects) as f64 / 1e6;
    Ok(StoreReport {
        backend: backend.to_owned(),
        object_bytes,
        objects,
        put_mb_s: total / put_seconds,
        get_mb_s: total / get_seconds,
        arrivals_per_s: (children * u64::from(in_degree)) as f64 / arrival_seconds,
        arrival_concurrency: concurrency,
        reference_set_mb_s: None,
        reference_get_mb_s: None,
    })
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
