//! Executors in worker processes and Lambda functions, against the real
//! servers `scripts/test.sh` starts on 127.0.0.1: `redis-server` (plain and
//! TLS), `moto_server` as S3, and `cargo lambda watch` as the Lambda API.
//! Every job's result is compared with the same job run on local threads.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array2;
use wukong::linalg::tile::frobenius_norm;
use wukong::remote::{
    Connection, Host, Invocation, ObjectTarget, RemoteConfig, RemoteError, WorkerProcesses,
};
use wukong::storage::JobId;
use wukong::{BlockMatrix, Error, LinalgError, Runtime, Scheduler};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the suite with `bash scripts/test.sh`"))
}

fn redis_url() -> String {
    env("WUKONG_TEST_REDIS_URL")
}

fn wukong_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wukong"))
}

/// A queue no other test uses, so that concurrent tests keep their workers.
fn queue(name: &str) -> String {
    JobId::unique(name).unwrap().to_string()
}

fn workers(count: usize, queue: &str, objects: &ObjectTarget) -> WorkerProcesses {
    WorkerProcesses::spawn(&wukong_exe(), count, &redis_url(), objects, queue, &[]).unwrap()
}

fn process_runtime(
    queue: &str,
    objects: &ObjectTarget,
    change: impl FnOnce(&mut RemoteConfig),
) -> Runtime {
    let connection = Connection::open(&redis_url(), objects).unwrap();
    let mut config = RemoteConfig::processes(queue);
    config.lease = Duration::from_secs(1);
    config.start_timeout = Duration::from_secs(30);
    config.job_timeout = Duration::from_secs(300);
    change(&mut config);
    Runtime::new().with_remote(connection, config)
}

fn relative_difference(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    frobenius_norm((a - b).view()) / frobenius_norm(b.view()).max(f64::MIN_POSITIVE)
}

/// GEMM and Cholesky through `rt`, each checked against local threads.
fn check_both_algorithms(rt: &Runtime, label: &str) {
    let local = Runtime::new().with_threads(2);
    let a = BlockMatrix::random(300, 200, 64, 64, 5).unwrap();
    let b = BlockMatrix::random(200, 150, 64, 64, 6).unwrap();
    let product = rt
        .gemm_with(1.0, &a, &b, None, &Default::default())
        .unwrap();
    let expected = local.gemm(&a, &b).unwrap();
    let error = relative_difference(&product.matrix.to_array(), &expected.to_array());
    assert!(error < 1e-14, "{label} gemm: {error}");
    assert!(
        product.report.executors > 0,
        "{label}: {:?}",
        product.report
    );
    assert!(product.report.cost.is_some());

    let spd = BlockMatrix::random_spd(333, 64, 7).unwrap();
    let factor = rt.cholesky_with(spd.clone(), &Default::default()).unwrap();
    let expected = local.cholesky(&spd).unwrap();
    let error = relative_difference(&factor.matrix.to_array(), &expected.to_array());
    assert!(error < 1e-14, "{label} cholesky: {error}");
    assert!(
        factor.report.tasks.len() >= factor.tasks,
        "{label}: every task reported"
    );

    // Multi-output tasks (QR writing Q blocks and R, SVD writing U, s and Vᵀ)
    // and a least-squares finish, against local threads.
    let tall = BlockMatrix::random(700, 24, 100, 24, 8).unwrap();
    let remote = rt.svd_tall(&tall, 3, true, &Default::default()).unwrap();
    let here = local.svd_tall(&tall, 3, true, &Default::default()).unwrap();
    let (u, u_here) = (remote.u.unwrap().to_array(), here.u.unwrap().to_array());
    assert!(relative_difference(&u, &u_here) < 1e-12, "{label} svd U");
    let s_error = remote
        .s
        .iter()
        .zip(&here.s)
        .map(|(x, y)| (x - y).abs() / here.s[0])
        .fold(0.0, f64::max);
    assert!(s_error < 1e-13, "{label} svd values: {s_error}");
    let b = BlockMatrix::random(700, 2, 100, 2, 9).unwrap();
    let x = rt.lstsq(&tall, &b, 2, &Default::default()).unwrap().x;
    let x_here = local.lstsq(&tall, &b, 2, &Default::default()).unwrap().x;
    assert!(
        relative_difference(&x.to_array(), &x_here.to_array()) < 1e-12,
        "{label} lstsq"
    );
    // The full SVD: tile QR and LQ sweeps, the band task with many outputs.
    let a = BlockMatrix::random(96, 80, 32, 32, 10).unwrap();
    let remote = rt.svd_full(&a, true, &Default::default()).unwrap();
    let here = local.svd_full(&a, true, &Default::default()).unwrap();
    let (u, u_here) = (remote.u.unwrap().to_array(), here.u.unwrap().to_array());
    assert!(
        relative_difference(&u, &u_here) < 1e-12,
        "{label} full svd U"
    );
    assert!(
        relative_difference(&remote.vt.unwrap(), &here.vt.unwrap()) < 1e-12,
        "{label} full svd Vᵀ"
    );
}

#[test]
fn worker_processes_run_gemm_and_cholesky_with_both_schedulers() {
    let queue = queue("q-both");
    let objects = ObjectTarget::default();
    let _workers = workers(2, &queue, &objects);
    for scheduler in [Scheduler::Wukong, Scheduler::Numpywren] {
        let rt = process_runtime(&queue, &objects, |_| {}).with_scheduler(scheduler);
        check_both_algorithms(&rt, scheduler.name());
        // Tiles of 2 KiB travel with the invocations of the tasks that read them.
        let a = BlockMatrix::random(64, 64, 16, 16, 3).unwrap();
        let c = rt
            .gemm_with(1.0, &a, &a, None, &Default::default())
            .unwrap();
        let expected = a.to_array().dot(&a.to_array());
        assert!(relative_difference(&c.matrix.to_array(), &expected) < 1e-13);
        assert!(c.report.io.inline_inputs > 0, "{:?}", c.report.io);
    }
}

#[test]
fn worker_processes_keep_tiles_in_s3_when_asked() {
    let queue = queue("q-s3");
    let objects = ObjectTarget {
        s3_bucket: Some("wukong-test".into()),
        s3_endpoint: Some(env("WUKONG_TEST_S3_ENDPOINT")),
    };
    let _workers = workers(2, &queue, &objects);
    check_both_algorithms(&process_runtime(&queue, &objects, |_| {}), "s3");
}

#[test]
fn worker_processes_reach_redis_over_tls() {
    let url = env("WUKONG_TEST_REDISS_URL");
    let ca = env("WUKONG_TEST_REDIS_CA");
    let queue = queue("q-tls");
    let objects = ObjectTarget::default();
    let _workers = WorkerProcesses::spawn(
        &wukong_exe(),
        1,
        &url,
        &objects,
        &queue,
        &[("WUKONG_REDIS_CA", &ca)],
    )
    .unwrap();
    let pem = std::fs::read(&ca).unwrap();
    let connection = Connection::open_with_root_certificate(&url, &pem, &objects).unwrap();
    let mut config = RemoteConfig::processes(&queue);
    config.start_timeout = Duration::from_secs(30);
    let rt = Runtime::new().with_remote(connection, config);
    let a = BlockMatrix::random(100, 100, 50, 50, 1).unwrap();
    let c = rt.gemm(&a, &a).unwrap();
    let expected = a.to_array().dot(&a.to_array());
    assert!(relative_difference(&c.to_array(), &expected) < 1e-13);
}

#[test]
fn duplicated_invocations_change_nothing() {
    let queue = queue("q-dup");
    let objects = ObjectTarget::default();
    let _workers = workers(2, &queue, &objects);
    let rt = process_runtime(&queue, &objects, |c| c.duplicate_invocations = true);
    check_both_algorithms(&rt, "duplicated");
    // Every fan-in edge held under a claim, children delivered to mailboxes.
    let rt = process_runtime(&queue, &objects, |c| {
        c.duplicate_invocations = true;
        c.hold_min_bytes = 0;
    });
    check_both_algorithms(&rt, "duplicated, holding every edge");
    let spd = BlockMatrix::random_spd(256, 32, 2).unwrap();
    let held = rt.cholesky_with(spd, &Default::default()).unwrap();
    assert!(held.report.io.claims > 0, "{:?}", held.report.io);
}

#[test]
fn two_jobs_at_once_on_the_same_workers_stay_apart() {
    let queue = queue("q-two");
    let objects = ObjectTarget::default();
    let _workers = workers(2, &queue, &objects);
    let rt = Arc::new(process_runtime(&queue, &objects, |_| {}));
    let jobs: Vec<_> = (0..2)
        .map(|seed| {
            let rt = Arc::clone(&rt);
            std::thread::spawn(move || {
                let a = BlockMatrix::random(200, 200, 50, 50, seed).unwrap();
                let c = rt.gemm(&a, &a).unwrap();
                relative_difference(&c.to_array(), &a.to_array().dot(&a.to_array()))
            })
        })
        .collect();
    for job in jobs {
        assert!(job.join().unwrap() < 1e-13);
    }
}

/// The lease holders of every job in Redis: `(hash key, holder)`.
fn lease_holders(redis: &mut redis::Connection) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("wk:l:*").query(redis).unwrap();
    let mut holders = Vec::new();
    for key in keys {
        let values: Vec<String> = redis::cmd("HVALS").arg(&key).query(redis).unwrap();
        holders.extend(values);
    }
    holders
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let queue = queue("q-kill");
    let objects = ObjectTarget::default();
    let mut workers = workers(2, &queue, &objects);
    let rt = process_runtime(&queue, &objects, |_| {});
    let spd = BlockMatrix::random_spd(1536, 128, 3).unwrap();
    let expected = Runtime::new().with_threads(2).cholesky(&spd).unwrap();
    let job = {
        let spd = spd.clone();
        std::thread::spawn(move || rt.cholesky_with(spd, &Default::default()))
    };
    // Kill worker 0 while it holds two leases: its executor runs there and
    // has taken over a second start while it waited with claims held. Each
    // start's work holds its own claims, so each re-run finds what it needs.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = lease_holders(&mut redis);
        if held.iter().filter(|h| h.contains(".w0.")).count() >= 2 {
            workers.kill(0).unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker 0 never took over a start"
        );
        assert!(
            !job.is_finished(),
            "the job ended before worker 0 took over a start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let factor = job.join().unwrap().unwrap();
    // Without a re-invocation of the killed executor's start the job would
    // have stopped with `TimedOut`.
    let error = relative_difference(&factor.matrix.to_array(), &expected.to_array());
    assert!(error < 1e-14, "{error}");
}

#[test]
fn a_failing_executor_fails_the_job_with_the_kernel_error() {
    let queue = queue("q-fail");
    let objects = ObjectTarget::default();
    let _workers = workers(1, &queue, &objects);
    let rt = process_runtime(&queue, &objects, |_| {});
    let mut a = BlockMatrix::random_spd(128, 64, 1).unwrap().to_array();
    a[[100, 100]] = -1.0;
    let a = BlockMatrix::from_array(a.view(), 64, 64).unwrap();
    // The same typed error as on local threads, with the same tile and pivot.
    let local = Runtime::new().cholesky(&a).unwrap_err();
    match (rt.cholesky(&a), &local) {
        (
            Err(Error::Linalg(LinalgError::NotPositiveDefinite { tile, pivot, row })),
            Error::Linalg(LinalgError::NotPositiveDefinite {
                tile: t,
                pivot: p,
                row: r,
            }),
        ) => {
            assert_eq!((tile, pivot, row), (*t, *p, *r));
            assert_eq!(row, 100);
            assert!(local.to_string().contains("not positive definite"));
        }
        (other, _) => panic!("expected the kernel's error as locally ({local}), got {other:?}"),
    }
    // Bad input is still caught before anything is sent.
    let mut nan = a.to_array();
    nan[[3, 1]] = f64::NAN;
    let nan = BlockMatrix::from_array(nan.view(), 64, 64).unwrap();
    assert!(matches!(
        rt.cholesky(&nan),
        Err(Error::Linalg(LinalgError::NonFinite { .. }))
    ));
}

#[test]
fn no_worker_is_a_clear_error_not_a_hang() {
    let queue = queue("q-none");
    let rt = process_runtime(&queue, &ObjectTarget::default(), |c| {
        c.start_timeout = Duration::from_secs(2);
    });
    let a = BlockMatrix::random(64, 64, 32, 32, 1).unwrap();
    match rt.gemm(&a, &a) {
        Err(Error::Remote(RemoteError::NoExecutors { seconds: 2 })) => {}
        other => panic!("expected NoExecutors, got {other:?}"),
    }
}

#[test]
fn hosts_reject_bad_payloads_and_unknown_jobs() {
    let connection = Connection::open(&redis_url(), &ObjectTarget::default()).unwrap();
    let host = Host::new(wukong::TileRegistry, connection, 9);
    let rejected = |payload: &[u8]| match host.handle(payload) {
        Err(error) => error.to_string(),
        Ok(handled) => panic!(
            "accepted {:?}: {handled:?}",
            String::from_utf8_lossy(payload)
        ),
    };
    assert!(rejected(b"{not json").contains("not a wukong invocation"));
    assert!(rejected(&vec![b' '; 20_000]).contains("more than the limit"));
    assert!(rejected(br#"{"wukong":1,"job":"a b","task":0,"attempt":0}"#).contains("job id"));
    assert!(rejected(br#"{"wukong":7,"job":"j","task":0,"attempt":0}"#).contains("format 7"));
    assert!(
        rejected(br#"{"wukong":1,"job":"j","task":0,"attempt":0,"extra":1}"#)
            .contains("unknown field")
    );
    assert!(
        rejected(br#"{"wukong":1,"job":"j","task":0,"attempt":0,"inline":[{"data":0,"bytes":"not base64!"}]}"#)
            .contains("inline tile 0")
    );
    let stranger = JobId::unique("stranger").unwrap();
    let payload = Invocation::new(&stranger, wukong::dag::TaskId(0), 0)
        .to_bytes()
        .unwrap();
    assert!(rejected(&payload).contains("unknown to this store"));
}

#[cfg(feature = "lambda")]
mod lambda {
    use super::*;

    /// Function instances polling the `cargo lambda watch` endpoint; killed on drop.
    struct Functions(Vec<std::process::Child>);

    impl Drop for Functions {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn functions(count: usize, endpoint: &str) -> Functions {
        let runtime_api = format!("{endpoint}/.rt/wukong-lambda");
        Functions(
            (0..count)
                .map(|_| {
                    std::process::Command::new(env!("CARGO_BIN_EXE_wukong-lambda"))
                        .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
                        .env("AWS_LAMBDA_FUNCTION_NAME", "wukong-lambda")
                        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
                        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                        .env("WUKONG_REDIS_URL", redis_url())
                        .env("WUKONG_LAMBDA_ENDPOINT", endpoint)
                        .env("AWS_EC2_METADATA_DISABLED", "true")
                        .env_remove("WUKONG_REDIS_CA")
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }

    fn lambda_runtime(endpoint: &str, change: impl FnOnce(&mut RemoteConfig)) -> Runtime {
        let connection = Connection::open(&redis_url(), &ObjectTarget::default()).unwrap();
        let client =
            connection
                .runtime()
                .block_on(wukong::executor::lambda::LambdaClient::connect(
                    Some("us-east-1".into()),
                    Some(endpoint.to_owned()),
                ));
        let mut config = RemoteConfig::lambda("wukong-lambda", 3);
        config.lease = Duration::from_secs(2);
        config.start_timeout = Duration::from_secs(60);
        config.job_timeout = Duration::from_secs(300);
        change(&mut config);
        Runtime::new().with_remote(connection.with_lambda(client), config)
    }

    /// One test, so that the shared endpoint serves one job at a time.
    #[test]
    fn lambda_functions_run_gemm_and_cholesky_also_with_duplicated_events() {
        let endpoint = env("WUKONG_TEST_LAMBDA_ENDPOINT");
        let _functions = functions(3, &endpoint);
        for scheduler in [Scheduler::Wukong, Scheduler::Numpywren] {
            let rt = lambda_runtime(&endpoint, |_| {}).with_scheduler(scheduler);
            check_both_algorithms(&rt, &format!("lambda {}", scheduler.name()));
        }
        let rt = lambda_runtime(&endpoint, |c| {
            c.duplicate_invocations = true;
            c.hold_min_bytes = 0;
        });
        check_both_algorithms(&rt, "lambda, duplicated events, holding every edge");

        let rt = lambda_runtime(&endpoint, |c| {
            c.target = wukong::remote::Target::Lambda {
                function: "no-such-function".into(),
                concurrency: 3,
            };
        });
        let a = BlockMatrix::random(64, 64, 32, 32, 1).unwrap();
        match rt.gemm(&a, &a) {
            Err(Error::Remote(RemoteError::Invocation { message })) => {
                assert!(message.contains("no-such-function"), "{message}");
            }
            other => panic!("expected a refused invocation, got {other:?}"),
        }
    }
}
