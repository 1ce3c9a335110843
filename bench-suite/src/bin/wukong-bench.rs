//! `wukong-bench`: measures tiled runs against whole-matrix library calls.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use wukong::BackendKind;
use wukong::workload::{Algorithm, Workload};

#[derive(Parser)]
#[command(
    name = "wukong-bench",
    version,
    about = "Benchmarks of wukong, as ratios to references measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one algorithm over several tile sizes and backends.
    Sweep {
        /// The algorithm.
        #[arg(value_enum)]
        algorithm: AlgorithmArg,
        /// Matrix order (Cholesky) or square GEMM size.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Tile sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
        tiles: Vec<usize>,
        /// Backends, comma-separated (faer, openblas).
        #[arg(long, value_delimiter = ',', default_value = "faer")]
        backends: Vec<BackendKind>,
        /// Executor threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Timed runs of each side per configuration; the table gives medians.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Also write the reports to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Throughput of the stores: 8 MiB puts and gets, arrivals per second, and
    /// reference clients (`redis-benchmark`, boto3) on the same servers in the same run.
    Storage(StorageArgs),
    /// A matrix of workloads × tiles × backends × stores × schedulers from a
    /// TOML file; prints a table, optionally writes JSON and CSV.
    Matrix {
        /// The TOML file (see bench-suite/matrices/).
        file: PathBuf,
        /// Also write the rows to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the rows to this CSV file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// The kernel ceiling: whole-matrix DGEMM and Cholesky next to concurrent
    /// one-thread tile GEMMs on warm buffers, and the best ratios they allow.
    Ceiling {
        /// Order of the whole matrices.
        #[arg(long, default_value_t = 8192)]
        n: usize,
        /// Tile sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
        tiles: Vec<usize>,
        /// The kernel backend (faer, openblas).
        #[arg(long, default_value = "openblas")]
        backend: BackendKind,
        /// BLAS threads of the whole calls and executor threads of the tiles
        /// (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Alternating rounds; the table gives medians.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also write the figures to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Scheduling overhead: graphs of no-op tasks, tasks per second.
    Overhead {
        /// Tasks per graph (about).
        #[arg(long, default_value_t = 1_000_000)]
        tasks: usize,
        /// Graph shapes, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "chains,tree,ladder"
        )]
        shapes: Vec<wukong_bench::overhead::Shape>,
        /// Schedulers, comma-separated (wukong, numpywren, shared).
        #[arg(long, value_delimiter = ',', default_value = "wukong,numpywren,shared")]
        schedulers: Vec<wukong::Scheduler>,
        /// Executor threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Also write the reports to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct StorageArgs {
    /// Also measure this Redis server, e.g. redis://127.0.0.1:6379 (needs the `redis` feature).
    #[arg(long)]
    redis: Option<String>,
    /// Also measure this S3 endpoint, e.g. http://127.0.0.1:5000 (needs the `s3`
    /// feature; credentials from the standard AWS chain; reference: boto3).
    #[arg(long)]
    s3: Option<String>,
    /// The bucket for `--s3`; it must exist.
    #[arg(long, default_value = "wukong-bench")]
    bucket: String,
    /// Size of each object in MiB.
    #[arg(long, default_value_t = 8)]
    object_mib: usize,
    /// Objects written and then read.
    #[arg(long, default_value_t = 50)]
    objects: usize,
    /// Arrival calls in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Also write the reports to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Gemm,
    Cholesky,
}

#[global_allocator]
static ALLOCATOR: wukong::LargePages = wukong::LargePages;

fn main() -> ExitCode {
    wukong::prepare_process();
    let result = match Cli::parse().command {
        Command::Sweep {
            algorithm,
            n,
            tiles,
            backends,
            threads,
            seed,
            repeat,
            json,
        } => sweep(algorithm, n, tiles, backends, threads, seed, repeat, json),
        Command::Storage(args) => storage(args),
        Command::Matrix { file, json, csv } => matrix(&file, json, csv),
        Command::Ceiling {
            n,
            tiles,
            backend,
            threads,
            repeat,
            seed,
            json,
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            wukong_bench::ceiling::measure(backend, n, &tiles, threads, repeat, seed)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    print!("{}", wukong_bench::ceiling::table(&c));
                    write_json(&json, &c)
                })
        }
        Command::Overhead {
            tasks,
            shapes,
            schedulers,
            threads,
            json,
        } => overhead(tasks, &shapes, &schedulers, threads, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn matrix(file: &PathBuf, json: Option<PathBuf>, csv: Option<PathBuf>) -> Result<(), String> {
    use wukong_bench::matrix::{MatrixFile, run, table};
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let groups = MatrixFile::parse(&text)
        .and_then(|f| f.workloads())
        .map_err(|e| e.to_string())?;
    let total: usize = groups.iter().map(Vec::len).sum();
    let mut done = 0;
    let rows = run(&groups, |r| {
        done += 1;
        eprintln!(
            "[{done}/{total}] {} n={} tile={} {} {} {}: {:.3} s, {:.1} GFLOP/s",
            r.algorithm.name(),
            r.n,
            r.tile,
            r.backend,
            r.scheduler,
            r.store,
            r.seconds,
            r.gflops
        );
    })
    .map_err(|e| e.to_string())?;
    print!("{}", table(&rows));
    if let Some(path) = csv {
        std::fs::write(&path, wukong_bench::matrix::csv(&rows))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    write_json(&json, &rows)
}

fn overhead(
    tasks: usize,
    shapes: &[wukong_bench::overhead::Shape],
    schedulers: &[wukong::Scheduler],
    threads: Option<usize>,
    json: Option<PathBuf>,
) -> Result<(), String> {
    use wukong_bench::overhead::{graph, measure};
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    println!(
        "{:<7} {:<10} {:>9} {:>7} {:>9} {:>12} {:>10} {:>10}",
        "shape", "scheduler", "tasks", "threads", "seconds", "tasks/s", "arrivals", "executors"
    );
    let mut reports = Vec::new();
    for &shape in shapes {
        let dag = graph(shape, tasks).map_err(|e| e.to_string())?;
        for &scheduler in schedulers {
            let r = measure(shape, &dag, scheduler, threads).map_err(|e| e.to_string())?;
            println!(
                "{:<7} {:<10} {:>9} {:>7} {:>9.3} {:>12.0} {:>10} {:>10}",
                format!("{shape:?}").to_lowercase(),
                r.scheduler,
                r.tasks,
                r.threads,
                r.seconds,
                r.tasks_per_second,
                r.arrivals,
                r.executors
            );
            reports.push(r);
        }
    }
    write_json(&json, &reports)
}

fn write_json(path: &Option<PathBuf>, value: &impl serde::Serialize) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn storage(args: StorageArgs) -> Result<(), String> {
    use std::sync::Arc;
    use wukong_bench::storage::{StoreReport, measure};
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let bytes = args.object_mib.max(1) * 1024 * 1024;
    let mut reports: Vec<StoreReport> = Vec::new();
    runtime.block_on(async {
        let memory = Arc::new(wukong::storage::MemoryStore::new());
        let coordinator = Some(Arc::clone(&memory) as Arc<dyn wukong::storage::Coordinator>);
        let report = measure(
            "memory",
            memory,
            coordinator,
            bytes,
            args.objects,
            args.concurrency,
        );
        reports.push(report.await.map_err(|e| e.to_string())?);
        if let Some(url) = &args.redis {
            reports.push(redis_report(url, bytes, args.objects, args.concurrency).await?);
        }
        if let Some(endpoint) = &args.s3 {
            reports.push(s3_report(endpoint, &args.bucket, bytes, args.objects).await?);
        }
        Ok::<(), String>(())
    })?;
    println!(
        "{:<7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>11}  reference",
        "backend",
        "object",
        "objects",
        "put MB/s",
        "get MB/s",
        "ref put",
        "ref get",
        "put/ref",
        "get/ref",
        "arrivals/s"
    );
    for r in &reports {
        let ratio = |ours: f64, reference: Option<f64>| {
            reference.map_or("-".to_owned(), |x| format!("{:.2}", ours / x))
        };
        let number = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.0}"));
        println!(
            "{:<7} {:>5}Mi {:>8} {:>9.0} {:>9.0} {:>9} {:>9} {:>8} {:>8} {:>11}  {}",
            r.backend,
            r.object_bytes / (1024 * 1024),
            r.objects,
            r.put_mb_s,
            r.get_mb_s,
            number(r.reference_put_mb_s),
            number(r.reference_get_mb_s),
            ratio(r.put_mb_s, r.reference_put_mb_s),
            ratio(r.get_mb_s, r.reference_get_mb_s),
            number(r.arrivals_per_s),
            r.reference.as_deref().unwrap_or("-"),
        );
    }
    write_json(&args.json, &reports)
}

#[cfg(feature = "redis")]
async fn redis_report(
    url: &str,
    bytes: usize,
    objects: usize,
    concurrency: usize,
) -> Result<wukong_bench::storage::StoreReport, String> {
    use std::sync::Arc;
    let store = Arc::new(
        wukong::storage::RedisStore::connect(url)
            .await
            .map_err(|e| e.to_string())?,
    );
    let coordinator = Some(Arc::clone(&store) as Arc<dyn wukong::storage::Coordinator>);
    let mut report =
        wukong_bench::storage::measure("redis", store, coordinator, bytes, objects, concurrency)
            .await
            .map_err(|e| e.to_string())?;
    // host:port of the URL, without scheme, credentials or database.
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "6379"));
    let port: u16 = port
        .parse()
        .map_err(|_| format!("cannot read a port in {host_port}"))?;
    match wukong_bench::storage::redis_benchmark(host, port, bytes, objects) {
        Some((set, get)) => {
            report.reference = Some("redis-benchmark -c 1 SET/GET".into());
            report.reference_put_mb_s = Some(set);
            report.reference_get_mb_s = Some(get);
        }
        None => eprintln!("note: redis-benchmark did not run; no reference"),
    }
    Ok(report)
}

#[cfg(not(feature = "redis"))]
async fn redis_report(
    _: &str,
    _: usize,
    _: usize,
    _: usize,
) -> Result<wukong_bench::storage::StoreReport, String> {
    Err("this build has no Redis support: rebuild with `--features redis`".into())
}

#[cfg(feature = "s3")]
async fn s3_report(
    endpoint: &str,
    bucket: &str,
    bytes: usize,
    objects: usize,
) -> Result<wukong_bench::storage::StoreReport, String> {
    let config = wukong::storage::S3Config {
        endpoint: Some(endpoint.to_owned()),
        path_style: true,
        ..wukong::storage::S3Config::new(bucket)
    };
    let store = wukong::storage::S3Store::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    let mut report =
        wukong_bench::storage::measure("s3", std::sync::Arc::new(store), None, bytes, objects, 0)
            .await
            .map_err(|e| e.to_string())?;
    match wukong_bench::storage::boto3_benchmark(endpoint, bucket, bytes, objects) {
        Ok((put, get)) => {
            report.reference = Some("boto3 put_object/get_object".into());
            report.reference_put_mb_s = Some(put);
            report.reference_get_mb_s = Some(get);
        }
        Err(why) => eprintln!("note: the boto3 reference did not run ({why})"),
    }
    Ok(report)
}

#[cfg(not(feature = "s3"))]
async fn s3_report(
    _: &str,
    _: &str,
    _: usize,
    _: usize,
) -> Result<wukong_bench::storage::StoreReport, String> {
    Err("this build has no S3 support: rebuild with `--features s3`".into())
}

#[allow(clippy::too_many_arguments)] // one per command-line option
fn sweep(
    algorithm: AlgorithmArg,
    n: u64,
    tiles: Vec<usize>,
    backends: Vec<BackendKind>,
    threads: Option<usize>,
    seed: u64,
    repeat: usize,
    json: Option<PathBuf>,
) -> Result<(), String> {
    if tiles.contains(&0) {
        return Err("tile sizes must be positive".into());
    }
    let base = Workload {
        algorithm: match algorithm {
            AlgorithmArg::Gemm => Algorithm::Gemm,
            AlgorithmArg::Cholesky => Algorithm::Cholesky,
        },
        n: n as usize,
        m: None,
        k: None,
        tile: tiles.first().copied().unwrap_or(512),
        threads: threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        backend: BackendKind::Faer,
        seed,
        repeat,
        scheduler: wukong::Scheduler::Wukong,
        ..Workload::new(Algorithm::Cholesky, n as usize)
    };
    print!("{}", wukong_bench::table(&[]));
    let reports = wukong_bench::sweep(&base, &tiles, &backends, |r| {
        print!("{}", wukong_bench::row(r))
    })
    .map_err(|e| e.to_string())?;
    for best in wukong_bench::best_per_backend(&reports) {
        println!(
            "best tile for {}: {} ({:.1} GFLOP/s, ratio {:.3})",
            best.backend,
            best.tile,
            best.gflops,
            best.ratio.unwrap_or(f64::NAN)
        );
    }
    write_json(&json, &reports)
}
