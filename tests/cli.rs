//! The `wukong` binary: JSON fields, summaries and errors.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::process::Command;

mod common;

fn wukong(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wukong"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_json_has_every_documented_field() {
    for algorithm in ["gemm", "cholesky"] {
        let out = wukong(&[
            "run",
            algorithm,
            "--n",
            "150",
            "--tile",
            "40",
            "--threads",
            "2",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for field in [
            "algorithm",
            "n",
            "tile",
            "threads",
            "backend",
            "tasks",
            "seconds",
            "gflops",
            "reference_seconds",
            "reference_gflops",
            "ratio",
            "residual",
            "scheduler",
            "store",
            "store_bytes_read",
            "store_bytes_written",
            "invocations",
            "cache_hits",
        ] {
            assert!(
                json.get(field).is_some(),
                "{algorithm}: missing {field} in {json}"
            );
        }
        assert_eq!(json["algorithm"], algorithm);
        assert_eq!(json["threads"], 2);
        assert_eq!(json["backend"], "faer");
        assert!(json["residual"].as_f64().unwrap() < 1e-14, "{json}");
        let expected_tasks = if algorithm == "gemm" {
            4 * 4 * 4
        } else {
            4 + 6 + 6 + 4
        };
        assert_eq!(json["tasks"], expected_tasks);
    }
}

#[test]
fn qr_svd_and_solves_from_the_command_line() {
    let runs: [&[&str]; 11] = [
        &[
            "qr", "--m", "300", "--n", "200", "--tile", "64", "--q", "--panel", "binary",
        ],
        &[
            "svd",
            "--svd",
            "full",
            "--m",
            "150",
            "--n",
            "120",
            "--tile",
            "32",
            "--vectors",
        ],
        &["qr", "--m", "300", "--n", "200", "--tile", "64"],
        &["qr", "--m", "300", "--n", "200", "--tile", "64", "--q"],
        &["tsqr", "--m", "1000", "--n", "30", "--tile", "128"],
        &[
            "tsqr", "--m", "1000", "--n", "30", "--tile", "128", "--q", "--arity", "4",
        ],
        &[
            "svd",
            "--m",
            "900",
            "--n",
            "20",
            "--tile",
            "100",
            "--vectors",
        ],
        &[
            "svd",
            "--svd",
            "randomized",
            "--m",
            "300",
            "--n",
            "200",
            "--tile",
            "64",
            "--rank",
            "10",
        ],
        &[
            "solve",
            "--solve",
            "triangular",
            "--n",
            "200",
            "--tile",
            "64",
            "--rhs",
            "5",
        ],
        &["solve", "--n", "200", "--tile", "64", "--rhs", "5"],
        &[
            "solve", "--solve", "lstsq", "--m", "700", "--n", "20", "--tile", "128", "--rhs", "2",
        ],
    ];
    for args in runs {
        let json = common::run_json(args);
        assert_eq!(json["algorithm"], args[0], "{json}");
        assert!(json["tasks"].as_u64().unwrap() > 1, "{json}");
        assert!(
            json["residual"].as_f64().unwrap() < 1e-10,
            "{args:?}: {json}"
        );
        assert!(json["reference_seconds"].as_f64().unwrap() > 0.0);
        assert!(json["params"].is_object(), "{json}");
    }
    // And the summary names the problem.
    let out = wukong(&["run", "tsqr", "--m", "500", "--n", "10", "--tile", "100"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("A(500×10) = Q·R"), "{text}");
    let out = wukong(&["run", "tsqr", "--m", "500", "--n", "10", "--arity", "1"]);
    assert!(!out.status.success());
    let out = wukong(&["run", "solve", "--n", "50", "--m", "60"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--m does not apply"));
}

#[test]
fn rectangular_gemm_from_the_command_line() {
    let out = wukong(&[
        "run", "gemm", "--n", "33", "--m", "70", "--k", "5", "--tile", "16", "--json",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["m"].as_u64(), json["k"].as_u64(), json["n"].as_u64()),
        (Some(70), Some(5), Some(33))
    );
}

#[test]
fn the_summary_is_readable() {
    let out = wukong(&["run", "cholesky", "--n", "100", "--tile", "30"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "cholesky A = L·Lᵀ, n = 100",
        "tiled",
        "reference",
        "ratio",
        "residual",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn bad_arguments_fail_with_a_message() {
    for (args, needle) in [
        (&["run", "cholesky", "--n", "0"][..], "0 is not in 1.."),
        (
            &["run", "gemm", "--n", "10", "--tile", "0"][..],
            "0 is not in 1..",
        ),
        (
            &["run", "cholesky", "--n", "10", "--m", "3"][..],
            "--m does not apply: the matrix is n×n",
        ),
        (
            &["run", "tsqr", "--n", "10", "--k", "3"][..],
            "--k applies to gemm only",
        ),
        (&["run", "svd2", "--n", "10"][..], "invalid value 'svd2'"),
        (&["run", "gemm", "--n", "-4"][..], "unexpected argument"),
    ] {
        let out = wukong(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn schedulers_stores_and_timeline_files() {
    let dir = std::env::temp_dir().join(format!("wukong-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (gantt, dot, report) = (dir.join("g.svg"), dir.join("g.dot"), dir.join("r.json"));
    let mut bytes = Vec::new();
    for scheduler in ["wukong", "numpywren", "shared"] {
        let out = wukong(&[
            "run",
            "cholesky",
            "--n",
            "200",
            "--tile",
            "50",
            "--scheduler",
            scheduler,
            "--json",
            "--gantt",
            gantt.to_str().unwrap(),
            "--dot",
            dot.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["scheduler"], scheduler);
        assert_eq!(json["store"], "memory");
        assert!(json["residual"].as_f64().unwrap() < 1e-14);
        bytes.push(
            json["store_bytes_read"].as_u64().unwrap()
                + json["store_bytes_written"].as_u64().unwrap(),
        );
        let svg = std::fs::read_to_string(&gantt).unwrap();
        assert!(
            svg.contains(&format!("{scheduler} scheduler: 20 tasks")),
            "{svg}"
        );
        assert!(svg.contains(">potrf</text>"));
        assert!(
            std::fs::read_to_string(&dot)
                .unwrap()
                .starts_with("digraph")
        );
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(run["tasks"].as_array().unwrap().len(), 20);
    }
    // The baseline moves every tile through the store; wukong much less; shared none.
    assert!(bytes[0] < bytes[1], "{bytes:?}");
    assert_eq!(bytes[2], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_store_is_a_clear_error() {
    let out = wukong(&["run", "gemm", "--n", "10", "--store", "s3://bucket"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use memory or a redis:// URL"), "{stderr}");
    // A Redis server that is not there: a clear error in bounded time.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = wukong(&[
        "run",
        "gemm",
        "--n",
        "10",
        "--store",
        &format!("redis://127.0.0.1:{port}"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unreachable") || stderr.contains("no Redis support"),
        "{stderr}"
    );
}

/// `--mode processes` starts its own workers against the suite's Redis.
#[cfg(feature = "redis")]
#[test]
fn process_mode_from_the_command_line() {
    let url = std::env::var("WUKONG_TEST_REDIS_URL")
        .expect("WUKONG_TEST_REDIS_URL is not set: run the suite with `bash scripts/test.sh`");
    let queue = wukong::storage::JobId::unique("cli-queue")
        .unwrap()
        .to_string();
    for (algorithm, scheduler) in [("cholesky", "wukong"), ("gemm", "numpywren")] {
        let out = wukong(&[
            "run",
            algorithm,
            "--n",
            "200",
            "--tile",
            "64",
            "--mode",
            "processes",
            "--workers",
            "2",
            "--queue",
            &queue,
            "--scheduler",
            scheduler,
            "--store",
            &url,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["mode"], "processes");
        assert_eq!(json["scheduler"], scheduler);
        assert!(json["residual"].as_f64().unwrap() < 1e-12, "{json}");
        assert!(json["executors"].as_u64().unwrap() >= 1, "{json}");
        assert!(json["cost"]["total_usd"].as_f64().unwrap() > 0.0, "{json}");
    }
    // Remote modes need Redis.
    let out = wukong(&["run", "gemm", "--n", "10", "--mode", "processes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Redis"));
    // A worker pointed at nothing says so and stops.
    let out = wukong(&["worker", "--redis", "redis://127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}
