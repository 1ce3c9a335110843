//! The `wukong` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wukong::dag::Operation;
use wukong::executor::Progress;
use wukong::storage::StorageError;
use wukong::workload::{Algorithm, Workload, WorkloadReport};
use wukong::{BackendKind, Scheduler};

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
    /// Run a tiled algorithm on random input, time the whole-matrix library call
    /// on the same input, and verify the result.
    Run(RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Gemm,
    Cholesky,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Faer,
    Openblas,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    /// Decentralized executors that become their children and keep data local.
    Wukong,
    /// A central queue; every tile through the store (the baseline).
    Numpywren,
    /// Threads sharing memory, no store (the in-process upper bound).
    Shared,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The algorithm.
    #[arg(value_enum)]
    algorithm: AlgorithmArg,
    /// Order of the matrix (Cholesky) or columns of C (GEMM).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    n: u64,
    /// Rows of A and C (GEMM only; default n).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    m: Option<u64>,
    /// Inner dimension (GEMM only; default n).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    k: Option<u64>,
    /// Tile size; a tile larger than the matrix makes one tile.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    tile: u64,
    /// Executor threads (default: one per core); the reference uses as many.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Tile-kernel backend of both the tiled run and the reference.
    #[arg(long, value_enum, default_value = "faer")]
    backend: BackendArg,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Time the tiled run and the reference this many times each, alternating,
    /// and report medians (a noisy machine needs 3 or more).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Scheduler of the tiled run.
    #[arg(long, value_enum, default_value = "wukong")]
    scheduler: SchedulerArg,
    /// Where executors exchange tiles: `memory`, or a Redis URL such as
    /// redis://127.0.0.1:6379 (needs the `redis` feature).
    #[arg(long, default_value = "memory")]
    store: String,
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

fn main() -> ExitCode {
    wukong::prepare_process();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match run(&args) {
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
        },
    }
}

fn run(args: &RunArgs) -> Result<(), wukong::Error> {
    let algorithm = match args.algorithm {
        AlgorithmArg::Gemm => Algorithm::Gemm,
        AlgorithmArg::Cholesky => Algorithm::Cholesky,
    };
    if algorithm == Algorithm::Cholesky && (args.m.is_some() || args.k.is_some()) {
        return Err(wukong::LinalgError::ShapeMismatch {
            operation: "cholesky",
            detail: "--m and --k apply to gemm only; a Cholesky matrix is n×n".into(),
        }
        .into());
    }
    let workload = Workload {
        algorithm,
        n: args.n as usize,
        m: args.m.map(|m| m as usize),
        k: args.k.map(|k| k as usize),
        tile: args.tile as usize,
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |t| t as usize,
        ),
        backend: match args.backend {
            BackendArg::Faer => BackendKind::Faer,
            BackendArg::Openblas => BackendKind::OpenBlas,
        },
        seed: args.seed,
        repeat: args.repeat as usize,
        scheduler: match args.scheduler {
            SchedulerArg::Wukong => Scheduler::Wukong,
            SchedulerArg::Numpywren => Scheduler::Numpywren,
            SchedulerArg::Shared => Scheduler::Shared,
        },
        redis: match args.store.as_str() {
            "memory" => None,
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(url.to_owned())
            }
            other => {
                return Err(wukong::Error::Storage(StorageError::InvalidConfig {
                    what: "--store",
                    detail: format!("{other:?}: use memory or a redis:// URL"),
                }));
            }
        },
    };
    let graph = match (&args.dot, &args.gantt) {
        (None, None) => None,
        _ => Some(workload.graph()?),
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
    let report = workload.run(Some(&progress));
    bar.finish_and_clear();
    let report = report?;
    if let (Some(path), Some(dag)) = (&args.gantt, &graph) {
        let svg = report.run.gantt_svg(|task| {
            let label = dag.op(task).label();
            label.split('(').next().unwrap_or(&label).to_owned()
        });
        write_file(path, &svg)?;
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string(&report.run).map_err(|e| StorageError::InvalidConfig {
            what: "run report",
            detail: e.to_string(),
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

fn write_file(path: &std::path::Path, text: &str) -> Result<(), wukong::Error> {
    std::fs::write(path, text).map_err(|e| {
        wukong::Error::Storage(StorageError::InvalidConfig {
            what: "output file",
            detail: format!("cannot write {}: {e}", path.display()),
        })
    })
}

fn print_summary(r: &WorkloadReport) {
    let shape = match r.algorithm {
        Algorithm::Gemm => format!("C({}×{}) = A({}×{})·B({}×{})", r.m, r.n, r.m, r.k, r.k, r.n),
        Algorithm::Cholesky => format!("A = L·Lᵀ, n = {}", r.n),
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
    println!(
        "  reference  {:>9.3} s  {:>8.1} GFLOP/s  (whole-matrix {} call, {} threads)",
        r.reference_seconds, r.reference_gflops, r.backend, r.threads
    );
    println!(
        "  ratio      {:>9.3}  (tiled / reference throughput)",
        r.ratio
    );
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
    match r.reference_residual {
        Some(reference) => println!(
            "  residual   {:>9.2e}  (reference {:.2e})",
            r.residual, reference
        ),
        None => println!("  residual   {:>9.2e}", r.residual),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
