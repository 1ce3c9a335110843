//! What the integration tests of the algorithms share.

#![allow(dead_code, clippy::unwrap_used)]

use ndarray::Array2;
use wukong::linalg::tile::frobenius_norm;
use wukong::{BackendKind, Runtime, Scheduler};

/// Every scheduler on the in-memory store, both backends, and (feature
/// `redis`) the Redis server that `scripts/test.sh` starts.
pub fn runtimes() -> Vec<Runtime> {
    let mut all = vec![
        Runtime::new().with_threads(2),
        Runtime::new()
            .with_threads(3)
            .with_scheduler(Scheduler::Numpywren),
        Runtime::new()
            .with_threads(2)
            .with_scheduler(Scheduler::Shared),
        // Claims, deliveries, sharing and evictions on every edge.
        Runtime::new().with_threads(3).with_config(|c| {
            c.hold_min_bytes = 0;
            c.cache_bytes = 4096;
            c.cluster.cheap_child_cost = -1.0;
        }),
    ];
    if let Ok(openblas) = Runtime::new()
        .with_threads(3)
        .with_backend(BackendKind::OpenBlas)
    {
        all.push(openblas);
    }
    #[cfg(feature = "redis")]
    {
        let url = std::env::var("WUKONG_TEST_REDIS_URL").unwrap_or_else(|_| {
            panic!("WUKONG_TEST_REDIS_URL is not set: run the suite with `bash scripts/test.sh`")
        });
        all.push(Runtime::new().with_threads(2).with_redis(&url).unwrap());
    }
    all
}

pub fn relative_difference(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    frobenius_norm((a - b).view()) / frobenius_norm(b.view()).max(f64::MIN_POSITIVE)
}

/// Runs `wukong run ARGS --threads 2 --json` and returns its report; fails
/// the test with the command's stderr if it does not succeed.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--threads", "2", "--json"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wukong"))
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
