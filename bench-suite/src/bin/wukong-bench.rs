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
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Gemm,
    Cholesky,
}

fn main() -> ExitCode {
    wukong::prepare_process();
    let Command::Sweep {
        algorithm,
        n,
        tiles,
        backends,
        threads,
        seed,
        repeat,
        json,
    } = Cli::parse().command;
    if tiles.contains(&0) {
        eprintln!("error: tile sizes must be positive");
        return ExitCode::FAILURE;
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
    };
    print!("{}", wukong_bench::table(&[]));
    let reports = match wukong_bench::sweep(&base, &tiles, &backends, |r| {
        print!("{}", wukong_bench::row(r))
    }) {
        Ok(reports) => reports,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    for best in wukong_bench::best_per_backend(&reports) {
        println!(
            "best tile for {}: {} ({:.1} GFLOP/s, ratio {:.3})",
            best.backend, best.tile, best.gflops, best.ratio
        );
    }
    if let Some(path) = json {
        let written = serde_json::to_string_pretty(&reports)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(&path, text).map_err(|e| e.to_string()));
        if let Err(error) = written {
            eprintln!("error: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
