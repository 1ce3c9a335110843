//! The kernel ceiling: how fast a tiled GEMM or Cholesky could be on this
//! machine if the run were nothing but its tile kernels.
//!
//! Tiled runs call one-thread kernels on several executor threads at once.
//! [`measure`] times, in one run and alternating:
//! - the whole-matrix DGEMM of order `n` on `threads` BLAS threads (the
//!   reference of the GEMM goal);
//! - the whole-matrix Cholesky of order `n` on `threads` BLAS threads (the
//!   reference of the Cholesky goal);
//! - for each tile size `t` (dividing `n`), `threads` threads that each run
//!   one-thread tile GEMMs of order `t` on warm buffers, together the `(n/t)³`
//!   calls of a tiled GEMM of order `n`.
//!
//! The whole calls are timed as the goals time them: allocating and zeroing
//! the DGEMM's result is inside, freeing it is not.
//!
//! The tile GEMMs give the throughput of tile kernels with no scheduling, no
//! store and no fresh memory. Their ratio to the whole DGEMM bounds a tiled
//! GEMM's ratio. A tiled Cholesky runs POTRF, TRSM, SYRK and GEMM tiles, none
//! faster than a GEMM tile, so its ratio to the whole Cholesky is bounded by
//! the tile GEMM throughput over the whole Cholesky's. No Cholesky on these
//! cores is faster than the fastest GEMM measured, whole or tiled.

use std::sync::Barrier;
use std::time::Instant;

use serde::Serialize;
use wukong::BackendKind;
use wukong::linalg::{BlockMatrix, Tile, TileBackend, Transpose, tile};

/// Whole-matrix references and tile-kernel throughput, measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// The kernel backend.
    pub backend: String,
    /// BLAS threads of the whole calls; executor threads of the tile kernels.
    pub threads: usize,
    /// Order of the whole matrices.
    pub n: usize,
    /// Median seconds of the whole-matrix DGEMM.
    pub gemm_seconds: f64,
    /// Its throughput.
    pub gemm_gflops: f64,
    /// Median seconds of the whole-matrix Cholesky.
    pub cholesky_seconds: f64,
    /// Its throughput (n³/3 flops).
    pub cholesky_gflops: f64,
    /// The fastest GEMM measured (whole or tiled) over `cholesky_gflops`:
    /// no Cholesky on these cores gets a higher ratio to the whole Cholesky.
    pub cholesky_bound: f64,
    /// Alternating rounds; the figures are medians.
    pub repeat: usize,
    /// Seed of the whole matrices.
    pub seed: u64,
    /// One entry per tile size.
    pub tiles: Vec<TileCeiling>,
}

/// Concurrent one-thread tile GEMMs of one size.
#[derive(Debug, Clone, Serialize)]
pub struct TileCeiling {
    /// Tile order.
    pub tile: usize,
    /// Tile GEMMs run, over all threads.
    pub calls: usize,
    /// Median seconds for all of them.
    pub seconds: f64,
    /// Their throughput, all threads together.
    pub gflops: f64,
    /// `gflops / gemm_gflops`: the best ratio a tiled GEMM with this tile
    /// size can reach against the whole DGEMM.
    pub gemm_bound: f64,
    /// `gflops / cholesky_gflops`: the same for a tiled Cholesky.
    pub cholesky_bound: f64,
}

/// Measures the ceiling; `repeat` alternating rounds, medians reported.
pub fn measure(
    backend: BackendKind,
    n: usize,
    tiles: &[usize],
    threads: usize,
    repeat: usize,
    seed: u64,
) -> Result<Ceiling, String> {
    if n == 0 || threads == 0 || repeat == 0 {
        return Err("n, threads and repeat must be positive".into());
    }
    if let Some(&t) = tiles.iter().find(|&&t| t == 0 || n % t != 0) {
        return Err(format!("tile size {t} must divide n = {n}"));
    }
    let kernels = backend.kernels().map_err(|e| e.to_string())?;
    let error = |e: wukong::linalg::LinalgError| e.to_string();
    let a = BlockMatrix::random(n, n, n, n, seed)
        .map_err(error)?
        .to_array();
    let b = BlockMatrix::random(n, n, n, n, seed.wrapping_add(1))
        .map_err(error)?
        .to_array();
    let spd = BlockMatrix::random_spd(n, n, seed.wrapping_add(2))
        .map_err(error)?
        .to_array();
    let mut gemm = Vec::with_capacity(repeat);
    let mut cholesky = Vec::with_capacity(repeat);
    let mut tile_seconds = vec![Vec::with_capacity(repeat); tiles.len()];
    for _ in 0..repeat {
        let start = Instant::now();
        let product = kernels
            .matmul_whole(a.view(), b.view(), threads)
            .map_err(error)?;
        gemm.push(start.elapsed().as_secs_f64());
        drop(product);

        let mut factor = spd.clone();
        let start = Instant::now();
        kernels
            .cholesky_whole(factor.view_mut(), threads)
            .map_err(error)?;
        cholesky.push(start.elapsed().as_secs_f64());
        drop(factor);

        for (&t, seconds) in tiles.iter().zip(&mut tile_seconds) {
            seconds.push(concurrent_tile_gemms(backend, t, calls(n, t), threads)?);
        }
    }
    let gemm_seconds = median(&mut gemm);
    let cholesky_seconds = median(&mut cholesky);
    let gemm_gflops = 2.0 * (n as f64).powi(3) / gemm_seconds / 1e9;
    let cholesky_gflops = (n as f64).powi(3) / 3.0 / cholesky_seconds / 1e9;
    let tiles: Vec<TileCeiling> = tiles
        .iter()
        .zip(&mut tile_seconds)
        .map(|(&t, seconds)| {
            let seconds = median(seconds);
            let calls = calls(n, t);
            let gflops = 2.0 * (t as f64).powi(3) * calls as f64 / seconds / 1e9;
            TileCeiling {
                tile: t,
                calls,
                seconds,
                gflops,
                gemm_bound: gflops / gemm_gflops,
                cholesky_bound: gflops / cholesky_gflops,
            }
        })
        .collect();
    Ok(Ceiling {
        backend: backend.name().to_owned(),
        threads,
        n,
        gemm_seconds,
        gemm_gflops,
        cholesky_seconds,
        cholesky_gflops,
        cholesky_bound: tiles.iter().map(|t| t.gflops).fold(gemm_gflops, f64::max)
            / cholesky_gflops,
        repeat,
        seed,
        tiles,
    })
}

/// Tile GEMMs in a tiled GEMM of order `n` with tiles of order `t`.
fn calls(n: usize, t: usize) -> usize {
    (n / t).pow(3)
}

/// Seconds for `threads` threads to run `calls` one-thread GEMMs of order
/// `t` between them, each thread on its own warm tiles.
fn concurrent_tile_gemms(
    backend: BackendKind,
    t: usize,
    calls: usize,
    threads: usize,
) -> Result<f64, String> {
    let kernels = backend.kernels().map_err(|e| e.to_string())?;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let share = calls / threads + usize::from(worker < calls % threads);
                let barrier = &barrier;
                scope.spawn(move || {
                    // Whatever happens before the barrier, every thread
                    // reaches it, so that none waits there for good.
                    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let a = tile::zeros(t, t) + 0.5;
                        let b = tile::zeros(t, t) + 0.25;
                        let mut c = tile::zeros(t, t);
                        // One untimed call warms the buffers and the kernel.
                        gemm(kernels, &a, &b, &mut c, 0.0).map(|()| (a, b, c))
                    }));
                    barrier.wait();
                    let (a, b, mut c) = prepared
                        .map_err(|_| "a tile GEMM thread panicked".to_owned())?
                        .map_err(|e| e.to_string())?;
                    for _ in 0..share {
                        gemm(kernels, &a, &b, &mut c, 1.0).map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker
                .join()
                .map_err(|_| "a tile GEMM thread panicked".to_owned())??;
        }
        Ok(start.elapsed().as_secs_f64())
    })
}

/// `c = a·b + beta·c` on one thread.
fn gemm(
    kernels: &dyn TileBackend,
    a: &Tile,
    b: &Tile,
    c: &mut Tile,
    beta: f64,
) -> Result<(), wukong::linalg::LinalgError> {
    let n = Transpose::No;
    kernels.gemm(n, n, 1.0, a.view(), b.view(), beta, c.view_mut())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

/// The ceiling as a table.
pub fn table(c: &Ceiling) -> String {
    let mut out = format!(
        "{} on {} threads, n = {}\n\
         whole DGEMM     {:>9.3} s {:>8.1} GFLOP/s\n\
         whole Cholesky  {:>9.3} s {:>8.1} GFLOP/s   Cholesky bound on these cores: {:.3}\n\
         {:>6} {:>7} {:>9} {:>9} {:>11} {:>15}\n",
        c.backend,
        c.threads,
        c.n,
        c.gemm_seconds,
        c.gemm_gflops,
        c.cholesky_seconds,
        c.cholesky_gflops,
        c.cholesky_bound,
        "tile",
        "calls",
        "seconds",
        "GFLOP/s",
        "GEMM bound",
        "Cholesky bound"
    );
    for t in &c.tiles {
        out.push_str(&format!(
            "{:>6} {:>7} {:>9.3} {:>9.1} {:>11.3} {:>15.3}\n",
            t.tile, t.calls, t.seconds, t.gflops, t.gemm_bound, t.cholesky_bound
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_ceiling_has_consistent_figures() {
        let c = measure(BackendKind::Faer, 96, &[32, 48], 2, 1, 7).unwrap();
        assert_eq!(c.tiles.len(), 2);
        assert_eq!(c.tiles[0].calls, 27);
        assert_eq!(c.tiles[1].calls, 8);
        for t in &c.tiles {
            assert!(t.seconds > 0.0 && t.gflops.is_finite());
            assert!((t.gemm_bound * c.gemm_gflops - t.gflops).abs() < 1e-9 * t.gflops);
        }
        let fastest = c
            .tiles
            .iter()
            .map(|t| t.gflops)
            .fold(c.gemm_gflops, f64::max);
        assert!((c.cholesky_bound - fastest / c.cholesky_gflops).abs() < 1e-12);
        assert!(table(&c).contains("whole Cholesky"));
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = measure(BackendKind::Faer, 64, &[128], 2, 1, 7).unwrap_err();
        assert!(err.contains("tile size 128 must divide n = 64"), "{err}");
        let err = measure(BackendKind::Faer, 64, &[24], 2, 1, 7).unwrap_err();
        assert!(err.contains("tile size 24"), "{err}");
        let err = measure(BackendKind::Faer, 64, &[32], 0, 1, 7).unwrap_err();
        assert!(err.contains("positive"), "{err}");
    }
}
