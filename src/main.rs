//! The `wukong` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wukong::dag::Operation;
use wukong::executor::Progress;
use wukong::linalg::npy::Overwrite;
use wukong::memory::format_bytes;
use wukong::workload::{
    Algorithm, Inputs, Mode, Output, Params, Remote, SolveKind, SvdKind, Workload, WorkloadReport,
};
use wukong::{BackendKind, Panel, QrMethod, Scheduler};

#[derive(Parser)]
#[command(
    name = "wukong",
    version,
    about = "Dense linear algebra as task graphs on serverless-style executors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a tiled algorithm on random input or on `.npy` files (--a, --b),
    /// time the whole-matrix library call on the same input, verify the
    /// result, and write it as `.npy` files (--out).
    Run(Box<RunArgs>),
    /// Host executors for process mode: take invocations from a Redis queue
    /// and run them, one at a time, until killed.
    Worker(WorkerArgs),
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// Redis URL (`redis://[:password@]host:port`, `rediss://` for TLS).
    #[arg(long, env = "WUKONG_REDIS_URL", hide_env_values = true)]
    redis: String,
    /// Keep tiles in this S3 bucket instead of Redis (feature `s3`).
    #[arg(long)]
    bucket: Option<String>,
    /// S3 endpoint other than AWS's.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// The queue to take invocations from.
    #[arg(long, default_value = "wukong")]
    queue: String,
    /// This worker's number in reports (default: its process id).
    #[arg(long)]
    index: Option<u32>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The algorithm.
    #[arg(value_enum)]
    algorithm: Algorithm,
    /// Order of the matrix (Cholesky, triangular and Cholesky solves),
    /// columns of C (GEMM) or of A (TSQR, SVD, least squares). Not with
    /// --a: the shape comes from the file.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..),
          required_unless_present = "a", conflicts_with = "a")]
    n: Option<u64>,
    /// Rows of A (GEMM, TSQR, SVD, least squares; default n).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "a")]
    m: Option<u64>,
    /// Inner dimension (GEMM only; default n).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "a")]
    k: Option<u64>,
    /// The matrix A from a `.npy` file (2-D float64, C or Fortran order;
    /// float32 is converted) instead of random input; sets the shape.
    #[arg(long, value_name = "A.npy")]
    a: Option<std::path::PathBuf>,
    /// GEMM's second factor B, or the right-hand sides B of a solve (2-D, or
    /// 1-D for one right-hand side), from a `.npy` file.
    #[arg(long, value_name = "B.npy", requires = "a")]
    b: Option<std::path::PathBuf>,
    /// Write the results as `.npy` files into this directory (created if
    /// missing): C.npy, L.npy, Q.npy and R.npy, U.npy s.npy and Vt.npy, or X.npy.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
    /// Replace result files that exist in --out (by default they are kept
    /// and the run refuses to start).
    #[arg(long, requires = "out")]
    force: bool,
    /// Time the whole-matrix library call on the same input (the default for
    /// random inputs; with --a it needs a second copy of the matrix).
    #[arg(long, conflicts_with = "no_reference")]
    reference: bool,
    /// Do not run the whole-matrix reference (the default with --a).
    #[arg(long)]
    no_reference: bool,
    /// Do not compute the residual of the result.
    #[arg(long)]
    no_check: bool,
    /// Start even if the run's estimated peak memory exceeds the memory
    /// available (the estimate is a model, and the kernel may kill the run).
    #[arg(long)]
    no_memory_check: bool,
    /// Tile size; a tile larger than the matrix makes one tile. TSQR, tall
    /// SVD and least squares: rows per tile (tiles span all columns).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    tile: u64,
    /// TSQR, tall SVD, least squares: factors combined per node of the
    /// reduction tree.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..))]
    arity: u64,
    /// TSQR, SVD, least squares: how tiles are factored (cholesky-qr2 is
    /// faster on tall tiles and falls back to Householder where it would
    /// lose accuracy).
    #[arg(long, value_enum, default_value = "cholesky-qr2")]
    leaf: QrMethod,
    /// TSQR: form Q explicitly, not only R.
    #[arg(long)]
    q: bool,
    /// Tile QR and full SVD: how the tiles of a panel are reduced (binary:
    /// communication-avoiding, shorter critical path, more flops).
    #[arg(long, value_enum, default_value = "flat")]
    panel: Panel,
    /// SVD: which one.
    #[arg(long, value_enum, default_value = "tall")]
    svd: SvdKind,
    /// SVD: compute the singular vectors too.
    #[arg(long)]
    vectors: bool,
    /// Randomized SVD: singular triplets wanted.
    #[arg(long, default_value_t = 100)]
    rank: usize,
    /// Randomized SVD: extra sketch columns.
    #[arg(long, default_value_t = 10)]
    oversampling: usize,
    /// Randomized SVD: power iterations.
    #[arg(long, default_value_t = 1)]
    power: usize,
    /// Solve: which system.
    #[arg(long, value_enum, default_value = "cholesky")]
    solve: SolveKind,
    /// Solve: right-hand sides (not with --b, whose columns they are).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with = "b")]
    rhs: u64,
    /// Executor threads (default: one per core); the reference uses as many.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Tile-kernel backend of both the tiled run and the reference.
    #[arg(long, value_enum, default_value = "faer")]
    backend: BackendKind,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Time the tiled run and the reference this many times each, alternating,
    /// and report medians (a noisy machine needs 3 or more).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Scheduler of the tiled run.
    #[arg(long, value_enum, default_value = "wukong")]
    scheduler: Scheduler,
    /// Where executors exchange tiles: `memory`, or a Redis URL such as
    /// redis://127.0.0.1:6379 (needs the `redis` feature).
    #[arg(long, default_value = "memory")]
    store: String,
    /// Where executors run. `processes` and `lambda` need `--store redis://…`.
    #[arg(long, value_enum, default_value = "local")]
    mode: Mode,
    /// Process mode: worker processes to start for this run (0: use workers
    /// already running against the same Redis and queue).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Process mode: the workers' queue.
    #[arg(long, default_value = "wukong")]
    queue: String,
    /// Lambda mode: the function's name or ARN.
    #[arg(long, default_value = "wukong-lambda")]
    function: String,
    /// Lambda mode: a Lambda API endpoint other than AWS's (e.g. a local emulator).
    #[arg(long)]
    lambda_endpoint: Option<String>,
    /// Lambda mode: the AWS region (default: from the environment or profile).
    #[arg(long)]
    region: Option<String>,
    /// Lambda mode: executors that may run at once.
    #[arg(long, default_value_t = 1000)]
    concurrency: u32,
    /// Remote modes: seconds an executor's lease lasts without renewal before
    /// its work is invoked again.
    #[arg(long, default_value_t = 10.0)]
    lease: f64,
    /// Remote modes: keep tiles in this S3 bucket instead of Redis.
    #[arg(long)]
    bucket: Option<String>,
    /// Remote modes: S3 endpoint other than AWS's.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Function size (MB) assumed by the cost estimate.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Write the last tiled run's timeline to this SVG file.
    #[arg(long)]
    gantt: Option<std::path::PathBuf>,
    /// Write the task graph as Graphviz DOT to this file.
    #[arg(long)]
    dot: Option<std::path::PathBuf>,
    /// Write the last tiled run's full report (every task and executor) as JSON.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

#[global_allocator]
static ALLOCATOR: wukong::LargePages = wukong::LargePages;

fn main() -> ExitCode {
    wukong::prepare_process();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Worker(args) => worker(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "redis")]
fn worker(args: &WorkerArgs) -> Result<(), wukong::Error> {
    use wukong::remote::{Connection, Host, ObjectTarget};
    let objects = ObjectTarget {
        s3_bucket: args.bucket.clone(),
        s3_endpoint: args.s3_endpoint.clone(),
    };
    let connection = Connection::open(&args.redis, &objects)?;
    let index = args.index.unwrap_or_else(std::process::id);
    eprintln!(
        "wukong worker {index}: taking invocations from queue {} at {}",
        args.queue,
        connection.endpoint()
    );
    let host = Host::new(wukong::TileRegistry, connection, index);
    host.serve_queue(&args.queue, &std::sync::atomic::AtomicBool::new(false))?;
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn worker(_: &WorkerArgs) -> Result<(), wukong::Error> {
    Err(usage(
        "wukong worker: this build has no Redis support: rebuild with `--features redis`".into(),
    ))
}

fn run(args: &RunArgs) -> Result<(), wukong::Error> {
    let algorithm = args.algorithm;
    let square_only = algorithm == Algorithm::Cholesky
        || (algorithm == Algorithm::Solve && args.solve != SolveKind::Lstsq);
    if square_only && args.m.is_some() {
        return Err(usage(format!(
            "{}: --m does not apply: the matrix is n×n",
            algorithm.name()
        )));
    }
    if algorithm != Algorithm::Gemm && args.k.is_some() {
        return Err(usage(format!(
            "{}: --k applies to gemm only",
            algorithm.name()
        )));
    }
    let workload = Workload {
        algorithm,
        n: args.n.unwrap_or(1) as usize,
        m: args.m.map(|m| m as usize),
        k: args.k.map(|k| k as usize),
        tile: args.tile as usize,
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |t| t as usize,
        ),
        backend: args.backend,
        seed: args.seed,
        repeat: args.repeat as usize,
        scheduler: args.scheduler,
        redis: match args.store.as_str() {
            "memory" => None,
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(url.to_owned())
            }
            other => {
                return Err(usage(format!(
                    "--store {other:?}: use memory or a redis:// URL"
                )));
            }
        },
        remote: match args.mode {
            Mode::Local => None,
            mode => Some(Remote {
                mode,
                workers: args.workers,
                worker_exe: None,
                queue: args.queue.clone(),
                function: args.function.clone(),
                lambda_endpoint: args.lambda_endpoint.clone(),
                region: args.region.clone(),
                concurrency: args.concurrency.max(1),
                lease: Duration::try_from_secs_f64(args.lease)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(100))
                    .ok_or_else(|| {
                        usage(format!("--lease {}: give at least 0.1 seconds", args.lease))
                    })?,
                s3_bucket: args.bucket.clone(),
                s3_endpoint: args.s3_endpoint.clone(),
                memory_mb: args.memory,
            }),
        },
        params: Params {
            arity: args.arity as usize,
            leaf: args.leaf,
            explicit_q: args.q,
            panel: args.panel,
            svd: args.svd,
            vectors: args.vectors,
            rank: args.rank,
            oversampling: args.oversampling,
            power_iterations: args.power,
            solve: args.solve,
            rhs: args.rhs as usize,
        },
        inputs: match &args.a {
            Some(a) => Inputs::Files {
                a: a.clone(),
                b: args.b.clone(),
            },
            None => Inputs::Generated,
        },
        output: args.out.as_ref().map(|dir| Output {
            dir: dir.clone(),
            overwrite: if args.force {
                Overwrite::Replace
            } else {
                Overwrite::Refuse
            },
        }),
        reference: match (args.reference, args.no_reference) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        check: !args.no_check,
        memory_check: !args.no_memory_check,
    };
    // Shapes from the files, memory and output checks, before anything large.
    let prepared = workload.prepare()?;
    let graph = match (&args.dot, &args.gantt) {
        (None, None) => None,
        _ => Some(prepared.workload.graph()?),
    };
    if let (Some(path), Some(dag)) = (&args.dot, &graph) {
        write_file(path, &dag.to_dot())?;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if args.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} tasks ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} tiled", algorithm.name()));
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        if p.done == p.total {
            bar.set_message("reference and verification");
        }
    };
    let report = prepared.run(Some(&progress));
    bar.finish_and_clear();
    let report = report?;
    for warning in &report.run.warnings {
        eprintln!("warning: {warning}");
    }
    if let (Some(path), Some(dag)) = (&args.gantt, &graph) {
        let svg = report.run.gantt_svg(|task| {
            let label = dag.op(task).label();
            label.split('(').next().unwrap_or(&label).to_owned()
        });
        write_file(path, &svg)?;
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string(&report.run).map_err(|e| wukong::Error::Output {
            path: path.clone(),
            detail: format!("the run report cannot be encoded as JSON: {e}"),
        })?;
        write_file(path, &text)?;
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: cannot encode the report as JSON: {error}"),
        }
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn usage(detail: String) -> wukong::Error {
    wukong::Error::Usage { detail }
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), wukong::Error> {
    std::fs::write(path, text).map_err(|e| wukong::Error::Output {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn print_summary(r: &WorkloadReport) {
    let shape = match r.algorithm {
        Algorithm::Gemm => format!("C({}×{}) = A({}×{})·B({}×{})", r.m, r.n, r.m, r.k, r.k, r.n),
        Algorithm::Cholesky => format!("A = L·Lᵀ, n = {}", r.n),
        Algorithm::Tsqr | Algorithm::Qr => format!("A({}×{}) = Q·R", r.m, r.n),
        Algorithm::Svd => format!("A({}×{}) = U·Σ·Vᵀ", r.m, r.n),
        Algorithm::Solve => format!(
            "{} solve: A {}×{}, {} right-hand sides",
            r.params.as_ref().map_or("a", |p| match p.solve {
                SolveKind::Triangular => "triangular",
                SolveKind::Cholesky => "Cholesky",
                SolveKind::Lstsq => "least-squares",
            }),
            r.m,
            r.n,
            r.k
        ),
    };
    println!("{} {shape}", r.algorithm.name());
    println!(
        "  tiles {}, {} tasks, {} threads, {} kernels{}",
        r.tile,
        r.tasks,
        r.threads,
        r.backend,
        if r.repeat > 1 {
            format!(", medians of {} runs", r.repeat)
        } else {
            String::new()
        }
    );
    println!(
        "  tiled      {:>9.3} s  {:>8.1} GFLOP/s  ({:.0}% of thread time in kernels)",
        r.seconds,
        r.gflops,
        100.0 * r.utilization
    );
    if let (Some(seconds), Some(gflops), Some(ratio)) =
        (r.reference_seconds, r.reference_gflops, r.ratio)
    {
        println!(
            "  reference  {:>9.3} s  {:>8.1} GFLOP/s  (whole-matrix {} call, {} threads)",
            seconds, gflops, r.backend, r.threads
        );
        println!("  ratio      {ratio:>9.3}  (tiled / reference throughput)");
    }
    println!(
        "  {} scheduler, {} store: {} executors; store read {}, written {}; {} cache hits ({})",
        r.scheduler,
        r.store,
        r.executors,
        mib(r.store_bytes_read),
        mib(r.store_bytes_written),
        r.cache_hits,
        mib(r.cache_hit_bytes)
    );
    match (r.residual, r.reference_residual) {
        (Some(residual), Some(reference)) => {
            println!("  residual   {residual:>9.2e}  (reference {reference:.2e})")
        }
        (Some(residual), None) => println!("  residual   {residual:>9.2e}"),
        (None, _) => println!("  residual   not computed (--no-check)"),
    }
    if let Some(peak) = r.peak_rss_bytes {
        println!(
            "  memory     {} peak resident (estimated {}{})",
            format_bytes(peak),
            format_bytes(r.memory_estimate_bytes),
            r.memory_available_bytes
                .map(|a| format!(", {} available", format_bytes(a)))
                .unwrap_or_default()
        );
    }
    for path in &r.inputs {
        println!("  input      {}", path.display());
    }
    for path in &r.outputs {
        println!("  wrote      {}", path.display());
    }
    for note in &r.notes {
        println!("  note       {note}");
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
