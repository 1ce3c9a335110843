//! What a workload will hold in memory at its peak, estimated from its
//! shapes before anything is allocated. The figures follow what the
//! workload code keeps alive at once (tiles of the operands and results, the
//! whole-matrix copies of the reference and its residual, the products of
//! the tiled check, the task graph), rounded up; `peak_rss_bytes` in the
//! report measures the same thing after the fact.

use serde::Serialize;

use super::{Algorithm, Inputs, SolveKind, SvdKind, Workload};

/// Bytes a run will hold at its peak, by what holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemoryEstimate {
    /// The operands' tiles.
    pub inputs: u64,
    /// The results' tiles and the intermediate tiles the executors keep.
    pub results: u64,
    /// Whole-matrix copies for the reference call and its residual.
    pub reference: u64,
    /// Products and differences of the tiled residual check.
    pub check: u64,
    /// The task graph, the executors' bookkeeping and the program itself.
    pub overhead: u64,
}

impl MemoryEstimate {
    /// All of it.
    pub fn total(&self) -> u64 {
        self.inputs
            .saturating_add(self.results)
            .saturating_add(self.reference)
            .saturating_add(self.check)
            .saturating_add(self.overhead)
    }

    /// One line naming each part, e.g. `inputs 1.0 GiB, results 512.0 MiB`.
    pub fn breakdown(&self) -> String {
        let parts = [
            ("inputs", self.inputs),
            ("results and intermediates", self.results),
            ("whole-matrix reference", self.reference),
            ("residual check", self.check),
            ("task graph and program", self.overhead),
        ];
        parts
            .iter()
            .filter(|(_, bytes)| *bytes > 0)
            .map(|(what, bytes)| format!("{what} {}", crate::memory::format_bytes(*bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Bytes per task of a built graph and its run state (measured on Cholesky
/// graphs: about 300 bytes per task, doubled for safety).
const BYTES_PER_TASK: f64 = 600.0;
/// The program, its threads and its allocator's reserves.
const PROGRAM: f64 = 64.0 * 1024.0 * 1024.0;

fn bytes(elements: f64) -> u64 {
    let value = elements * 8.0;
    if value >= u64::MAX as f64 {
        u64::MAX
    } else {
        value.ceil() as u64
    }
}

fn tiles(size: usize, tile: usize) -> f64 {
    (size as f64 / tile.max(1) as f64).ceil()
}

impl Workload {
    /// The memory this workload needs at its peak, from its (resolved) shape.
    pub fn memory_estimate(&self) -> MemoryEstimate {
        let p = &self.params;
        let (m, n, k) = (
            self.m.unwrap_or(self.n) as f64,
            self.n as f64,
            self.k.unwrap_or(self.n) as f64,
        );
        let rhs = p.rhs as f64;
        let t = self.tile;
        let tile = (t as f64).min(m.max(n));
        let reference = self.uses_reference();
        let check = self.check;
        let on = |flag: bool, value: f64| if flag { value } else { 0.0 };
        let (tm, tn, tk) = (
            tiles(m as usize, t),
            tiles(n as usize, t),
            tiles(k as usize, t),
        );
        // Elements held by: inputs, results, reference, check; and tasks.
        let (inputs, results, whole, checked, tasks) = match self.algorithm {
            Algorithm::Gemm => (
                m * k + k * n,
                m * n,
                // Whole A, B and C, and C again and their difference for the residual.
                m * k + k * n + 3.0 * m * n,
                2.0 * m * n,
                tm * tn * (tk + 1.0),
            ),
            Algorithm::Cholesky => (
                n * n,
                n * n,
                // The factor in place, then A, L, L·Lᵀ and A − L·Lᵀ whole.
                5.0 * n * n,
                2.0 * n * n,
                tn * tn * tn / 6.0 + tn * tn,
            ),
            Algorithm::Tsqr | Algorithm::Qr => {
                let q = p.explicit_q;
                let tall = self.algorithm == Algorithm::Tsqr;
                let grid = if tall {
                    tm * 2.0
                } else {
                    tm * tn * tn / 2.0 + tm * tn
                };
                (
                    m * n,
                    // Tile QR keeps its reflector tiles and their T factors.
                    on(q, m * n) + n * n + on(!tall, 2.0 * m * n),
                    // Whole A, the reference's copy and factors, and the residual's products.
                    4.0 * m * n + on(q, 4.0 * m * n) + 5.0 * n * n,
                    if q { 2.0 * m * n } else { 3.0 * n * n },
                    grid * if q { 2.0 } else { 1.0 },
                )
            }
            Algorithm::Svd => {
                let v = p.vectors;
                match p.svd {
                    SvdKind::Tall => (
                        m * n,
                        on(v, m * n) + 2.0 * n * n,
                        4.0 * m * n + on(v, 6.0 * m * n) + 2.0 * n * n,
                        on(v, 2.0 * m * n + n * n),
                        tm * if v { 4.0 } else { 2.0 },
                    ),
                    SvdKind::Randomized => {
                        let l = (p.rank + p.oversampling) as f64;
                        let sketches = (4.0 + 2.0 * p.power_iterations as f64) * l * (m + n);
                        (
                            m * n,
                            sketches + on(v, l * (m + n)),
                            2.0 * m * n + sketches + on(v, 3.0 * m * n),
                            on(v, 2.0 * m * n + l * (m + n)),
                            tm * tn
                                * (2.0 + 2.0 * p.power_iterations as f64)
                                * tiles(l as usize, t),
                        )
                    }
                    SvdKind::Full => (
                        m * n,
                        // The band reduction keeps its reflector tiles; with
                        // vectors, the band's dense SVD and the reflectors'
                        // application to its vectors (measured: 8 and 21
                        // times A at 2000², tile 250, in one process).
                        6.0 * m * n + on(v, 13.0 * m * n),
                        2.0 * m * n + on(v, 3.0 * m * n + n * n),
                        on(v, 2.0 * m * n + n * n),
                        tm * tn * tn * if v { 4.0 } else { 2.0 },
                    ),
                }
            }
            Algorithm::Solve => match p.solve {
                SolveKind::Triangular | SolveKind::Cholesky => (
                    // A generated triangle starts as a full random matrix.
                    n * n
                        + n * rhs
                        + on(
                            p.solve == SolveKind::Triangular && self.inputs == Inputs::Generated,
                            n * n,
                        ),
                    n * rhs + on(p.solve == SolveKind::Cholesky, n * n),
                    2.0 * n * n + 4.0 * n * rhs,
                    2.0 * n * rhs,
                    tn * tn * tiles(p.rhs, t) + tn * tn * tn / 6.0,
                ),
                SolveKind::Lstsq => (
                    // A and B, and the joined [A B] the graph factors.
                    2.0 * m * (n + rhs),
                    (n + rhs) * (n + rhs) + n * rhs,
                    4.5 * m * (n + rhs),
                    2.0 * m * rhs,
                    tm * 2.0,
                ),
            },
        };
        // Tiles in flight: each thread's inputs and outputs.
        let working = self.threads as f64 * 4.0 * tile * tile.min(n);
        MemoryEstimate {
            inputs: bytes(inputs),
            results: bytes(results + working),
            reference: bytes(on(reference, whole)),
            check: bytes(on(check && !reference, checked)),
            overhead: {
                let graph = tasks * BYTES_PER_TASK * if check && !reference { 2.0 } else { 1.0 };
                bytes((graph + PROGRAM) / 8.0)
            },
        }
    }
}
