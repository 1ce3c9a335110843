//! The kernel ceiling: how fast a tiled GEMM or Cholesky could be on this
//! machine if the run were nothing but its tile kernels.
//!
//! Tiled runs call one-thread kernels on several executor threads at once.
//! [`measure`] times, in one run and alternating:
//! - the whole-matrix DGEMM of order `n` on `threads` BLAS threads (the
//!   reference of the GEMM goal);
//! - the whole-matrix Cholesky of order `n` on `threads` BLAS threads (the
//!   reference of the Cholesky goal);
//! - for each tile size `t` (dividing `n`), `threads` threads that run
//!   one-thread tile kernels on warm buffers, sharing the calls out evenly:
//!   the `(n/t)³` GEMMs of a tiled GEMM of order `n`, and, in a second
//!   timing, the POTRFs, TRSMs, SYRKs and GEMMs of a tiled Cholesky of order
//!   `n`, kind after kind.
//!
//! The whole calls are timed as the goals time them: allocating and zeroing
//! the DGEMM's result is inside, freeing it is not.
//!
//! The tile timings are runs with nothing but kernels: no scheduling, no
//! store, no fresh memory, no dependencies and perfect balance. So the whole
//! call's time over the tile kernels' time bounds the ratio a tiled run with
//! that tile size can reach. Each POTRF restores its input tile first (an
//! O(t²) copy, inside the timing), since it factors in place. The TRSMs solve
//! with an identity factor and the updates subtract constants, so values
//! neither grow nor turn subnormal, which would change kernel speed.

use std::sync::Barrier;
use std::time::Instant;

use serde::Serialize;

use crate::BenchError;
use wukong::BackendKind;
use wukong::linalg::{
    BlockMatrix, Diagonal, LinalgError, Side, Tile, TileBackend, Transpose, Triangle, flops, tile,
};

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
    /// no Cholesky on these cores gets a higher ratio to the whole Cholesky
    /// than this, whatever its kernels.
    pub cholesky_bound: f64,
    /// Alternating rounds; the figures are medians.
    pub repeat: usize,
    /// Seed of the whole matrices.
    pub seed: u64,
    /// One entry per tile size.
    pub tiles: Vec<TileCeiling>,
}

/// Concurrent one-thread tile kernels of one size.
#[derive(Debug, Clone, Serialize)]
pub struct TileCeiling {
    /// Tile order.
    pub tile: usize,
    /// Tile GEMMs of the tiled GEMM, over all threads.
    pub calls: usize,
    /// Median seconds for all of them.
    pub seconds: f64,
    /// Their throughput, all threads together.
    pub gflops: f64,
    /// `gemm_seconds / seconds`: the best ratio a tiled GEMM with this tile
    /// size can reach against the whole DGEMM.
    pub gemm_bound: f64,
    /// Tile kernels of the tiled Cholesky, over all threads.
    pub cholesky_calls: usize,
    /// Median seconds for all of them.
    pub cholesky_kernel_seconds: f64,
    /// `cholesky_seconds / cholesky_kernel_seconds`: the best ratio a tiled
    /// Cholesky with this tile size can reach against the whole Cholesky.
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
) -> Result<Ceiling, BenchError> {
    if n == 0 || threads == 0 || repeat == 0 {
        return Err(BenchError::Usage(
            "n, threads and repeat must be positive".into(),
        ));
    }
    if let Some(&t) = tiles.iter().find(|&&t| t == 0 || n % t != 0) {
        return Err(BenchError::Usage(format!(
            "tile size {t} must divide n = {n}"
        )));
    }
    let kernels = backend.kernels()?;
    let a = BlockMatrix::random(n, n, n, n, seed)?.to_array();
    let b = BlockMatrix::random(n, n, n, n, seed.wrapping_add(1))?.to_array();
    let spd = BlockMatrix::random_spd(n, n, seed.wrapping_add(2))?.to_array();
    let mut gemm = Vec::with_capacity(repeat);
    let mut cholesky = Vec::with_capacity(repeat);
    let mut tile_seconds = vec![Vec::with_capacity(repeat); tiles.len()];
    let mut cholesky_tiles = vec![Vec::with_capacity(repeat); tiles.len()];
    for _ in 0..repeat {
        let start = Instant::now();
        let product = kernels.matmul_whole(a.view(), b.view(), threads)?;
        gemm.push(start.elapsed().as_secs_f64());
        drop(product);

        let mut factor = spd.clone();
        let start = Instant::now();
        kernels.cholesky_whole(factor.view_mut(), threads)?;
        cholesky.push(start.elapsed().as_secs_f64());
        drop(factor);

        for ((&t, seconds), kernel_seconds) in
            tiles.iter().zip(&mut tile_seconds).zip(&mut cholesky_tiles)
        {
            seconds.push(concurrent_kernels(backend, t, &gemm_calls(n / t), threads)?);
            kernel_seconds.push(concurrent_kernels(
                backend,
                t,
                &cholesky_calls(n / t),
                threads,
            )?);
        }
    }
    let gemm_seconds = median(&mut gemm);
    let cholesky_seconds = median(&mut cholesky);
    let gemm_gflops = flops::gemm(n, n, n) / gemm_seconds / 1e9;
    let cholesky_gflops = flops::cholesky(n) / cholesky_seconds / 1e9;
    let count = |calls: &[(Kernel, usize)]| calls.iter().map(|&(_, c)| c).sum::<usize>();
    let tiles: Vec<TileCeiling> = tiles
        .iter()
        .zip(&mut tile_seconds)
        .zip(&mut cholesky_tiles)
        .map(|((&t, seconds), kernel_seconds)| {
            let seconds = median(seconds);
            let cholesky_kernel_seconds = median(kernel_seconds);
            let calls = count(&gemm_calls(n / t));
            TileCeiling {
                tile: t,
                calls,
                seconds,
                gflops: flops::gemm(t, t, t) * calls as f64 / seconds / 1e9,
                gemm_bound: gemm_seconds / seconds,
                cholesky_calls: count(&cholesky_calls(n / t)),
                cholesky_kernel_seconds,
                cholesky_bound: cholesky_seconds / cholesky_kernel_seconds,
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

/// A tile kernel, as the tiled GEMM and Cholesky call it.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    /// `C += A·B` (tiled GEMM).
    Gemm,
    /// Cholesky of a diagonal tile.
    Potrf,
    /// `B ← B·L⁻ᵀ` (a tile of L below the diagonal).
    Trsm,
    /// `C −= A·Aᵀ` (a diagonal tile's update).
    Syrk,
    /// `C −= A·Bᵀ` (an off-diagonal tile's update).
    GemmNt,
}

/// The calls of a tiled GEMM with `nt`×`nt` tiles.
fn gemm_calls(nt: usize) -> Vec<(Kernel, usize)> {
    vec![(Kernel::Gemm, nt.pow(3))]
}

/// The calls of a tiled Cholesky with `nt` tile rows.
fn cholesky_calls(nt: usize) -> Vec<(Kernel, usize)> {
    let below = nt * nt.saturating_sub(1) / 2;
    vec![
        (Kernel::Potrf, nt),
        (Kernel::Trsm, below),
        (Kernel::Syrk, below),
        (
            Kernel::GemmNt,
            nt * nt.saturating_sub(1) * nt.saturating_sub(2) / 6,
        ),
    ]
}

/// One thread's warm tiles.
struct Tiles {
    a: Tile,
    b: Tile,
    c: Tile,
    /// The identity: the triangular factor of the TRSMs.
    identity: Tile,
    /// A positive definite tile that each POTRF restores into `c`.
    spd: Tile,
}

impl Tiles {
    fn new(t: usize) -> Self {
        let mut identity = tile::zeros(t, t);
        identity.diag_mut().fill(1.0);
        Self {
            a: tile::zeros(t, t) + 0.5,
            b: tile::zeros(t, t) + 0.25,
            c: tile::zeros(t, t),
            spd: &identity * t as f64 + 0.5,
            identity,
        }
    }

    fn run(&mut self, kernels: &dyn TileBackend, kernel: Kernel) -> Result<(), LinalgError> {
        let (no, yes) = (Transpose::No, Transpose::Yes);
        let Self {
            a,
            b,
            c,
            identity,
            spd,
        } = self;
        match kernel {
            Kernel::Gemm => kernels.gemm(no, no, 1.0, a.view(), b.view(), 1.0, c.view_mut()),
            Kernel::GemmNt => kernels.gemm(no, yes, -1.0, a.view(), b.view(), 1.0, c.view_mut()),
            Kernel::Syrk => kernels.syrk(Triangle::Lower, no, -1.0, a.view(), 1.0, c.view_mut()),
            Kernel::Trsm => kernels.trsm(
                Side::Right,
                Triangle::Lower,
                yes,
                Diagonal::NonUnit,
                1.0,
                identity.view(),
                b.view_mut(),
            ),
            Kernel::Potrf => {
                c.assign(spd);
                kernels.potrf(c.view_mut())
            }
        }
    }
}

/// Seconds for `threads` threads to make `calls` between them (each kind
/// shared out evenly, kind after kind), each thread on its own warm tiles.
fn concurrent_kernels(
    backend: BackendKind,
    t: usize,
    calls: &[(Kernel, usize)],
    threads: usize,
) -> Result<f64, BenchError> {
    let kernels = backend.kernels()?;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let barrier = &barrier;
                scope.spawn(move || {
                    // Whatever happens before the barrier, every thread
                    // reaches it, so that none waits there for good.
                    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut tiles = Tiles::new(t);
                        // One untimed call of each kind warms the buffers and kernels.
                        for &(kernel, _) in calls {
                            tiles.run(kernels, kernel)?;
                        }
                        Ok::<_, LinalgError>(tiles)
                    }));
                    barrier.wait();
                    let mut tiles = prepared.map_err(|_| BenchError::Panicked)??;
                    for &(kernel, count) in calls {
                        let share = count / threads + usize::from(worker < count % threads);
                        for _ in 0..share {
                            tiles.run(kernels, kernel)?;
                        }
                    }
                    Ok::<_, BenchError>(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().map_err(|_| BenchError::Panicked)??;
        }
        Ok(start.elapsed().as_secs_f64())
    })
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
         {:>6} | {:>7} {:>9} {:>9} {:>11} | {:>7} {:>9} {:>15}\n",
        c.backend,
        c.threads,
        c.n,
        c.gemm_seconds,
        c.gemm_gflops,
        c.cholesky_seconds,
        c.cholesky_gflops,
        c.cholesky_bound,
        "tile",
        "GEMMs",
        "seconds",
        "GFLOP/s",
        "GEMM bound",
        "kernels",
        "seconds",
        "Cholesky bound"
    );
    for t in &c.tiles {
        out.push_str(&format!(
            "{:>6} | {:>7} {:>9.3} {:>9.1} {:>11.3} | {:>7} {:>9.3} {:>15.3}\n",
            t.tile,
            t.calls,
            t.seconds,
            t.gflops,
            t.gemm_bound,
            t.cholesky_calls,
            t.cholesky_kernel_seconds,
            t.cholesky_bound
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
        // 3 POTRF, 3 TRSM, 3 SYRK, 1 GEMM; then 2, 1, 1, 0.
        assert_eq!(c.tiles[0].cholesky_calls, 10);
        assert_eq!(c.tiles[1].cholesky_calls, 4);
        for t in &c.tiles {
            assert!(t.seconds > 0.0 && t.gflops.is_finite());
            assert!((t.gemm_bound * c.gemm_gflops - t.gflops).abs() < 1e-9 * t.gflops);
            assert!(t.cholesky_kernel_seconds > 0.0);
            let bound = c.cholesky_seconds / t.cholesky_kernel_seconds;
            assert!((t.cholesky_bound - bound).abs() < 1e-12 * bound);
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
    fn repeated_kernels_keep_their_values_in_range() {
        let kernels = BackendKind::Faer.kernels().unwrap();
        let mut tiles = Tiles::new(16);
        for kernel in [
            Kernel::Trsm,
            Kernel::Potrf,
            Kernel::Gemm,
            Kernel::GemmNt,
            Kernel::Syrk,
        ] {
            for _ in 0..200 {
                tiles.run(kernels, kernel).unwrap();
            }
        }
        // The TRSMs solved with the identity: B is untouched.
        assert!(tiles.b.iter().all(|&v| v == 0.25));
        // From the last factor, 200 GEMMs added 400 to every value, 200 GEMMᵀs
        // took 400 off, 200 SYRKs 800 off the lower triangle: nothing subnormal.
        assert!(
            tiles
                .c
                .iter()
                .all(|&v| (v == 0.0 || v.is_normal()) && v.abs() <= 805.0)
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let usage = |n, tile, threads| match measure(BackendKind::Faer, n, &[tile], threads, 1, 7) {
            Err(BenchError::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        };
        let err = usage(64, 128, 2);
        assert!(err.contains("tile size 128 must divide n = 64"), "{err}");
        let err = usage(64, 24, 2);
        assert!(err.contains("tile size 24"), "{err}");
        let err = usage(64, 32, 0);
        assert!(err.contains("positive"), "{err}");
    }
}
