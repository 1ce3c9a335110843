//! The second stage of the full SVD, in plain Rust for both backends: an
//! upper band matrix is reduced to upper bidiagonal form by chasing bulges
//! with Householder reflections (two per bulge: one from the right that
//! clears a row beyond the superdiagonal, one from the left that clears the
//! column it filled below the diagonal; only the first row and column of each
//! bulge are cleared, the rest falls to later sweeps), and the singular
//! values of the bidiagonal come from implicitly shifted QR sweeps
//! (Golub–Kahan, with Wilkinson shifts and deflation).
//!
//! Both stages cost `O(n²·b)` and `O(n²)` flops against the `O(n³)` of the
//! tile reduction to band form before them; the band is held in a compact
//! row-major window of `3b + 1` entries per row, so a sweep's working set is
//! a few `b × 2b` blocks.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::LinalgError;

/// An `n × n` upper band matrix of bandwidth `b` with room for the fill a
/// bulge chase makes: row `r` holds columns `r − b ..= r + 2b`.
#[derive(Debug, Clone)]
pub struct Band {
    n: usize,
    b: usize,
    width: usize,
    values: Vec<f64>,
}

impl Band {
    /// A zero band matrix of order `n` and bandwidth `b` (`b ≥ 1`): entries
    /// `(i, j)` with `i ≤ j ≤ i + b` may be set.
    pub fn zeros(n: usize, b: usize) -> Self {
        let b = b.max(1);
        let width = 3 * b + 1;
        Self {
            n,
            b,
            width,
            values: vec![0.0; n * width],
        }
    }

    /// Order.
    pub fn order(&self) -> usize {
        self.n
    }

    /// Bandwidth.
    pub fn bandwidth(&self) -> usize {
        self.b
    }

    fn index(&self, r: usize, c: usize) -> usize {
        debug_assert!(
            c + self.b >= r && c <= r + 2 * self.b,
            "({r}, {c}) off the window"
        );
        r * self.width + c + self.b - r
    }

    /// Entry `(r, c)`; zero off the band.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        if c + self.b < r || c > r + 2 * self.b || r >= self.n || c >= self.n {
            0.0
        } else {
            self.values[self.index(r, c)]
        }
    }

    /// Sets entry `(r, c)` with `r ≤ c ≤ r + b`.
    ///
    /// # Panics
    /// When `(r, c)` lies outside the band (a caller's bug).
    pub fn set(&mut self, r: usize, c: usize, value: f64) {
        assert!(
            r <= c && c <= r + self.b && c < self.n,
            "({r}, {c}) is outside an upper band of width {}",
            self.b
        );
        let i = self.index(r, c);
        self.values[i] = value;
    }

    /// The band as a dense column-major `n × n` tile.
    pub fn to_dense(&self) -> crate::Tile {
        let mut dense = crate::tile::zeros(self.n, self.n);
        for r in 0..self.n {
            for c in r..self.n.min(r + self.b + 1) {
                dense[[r, c]] = self.get(r, c);
            }
        }
        dense
    }

    /// The first non-finite entry, as `(row, col, value)`.
    pub fn first_non_finite(&self) -> Option<(usize, usize, f64)> {
        (0..self.n).find_map(|r| {
            (r..self.n.min(r + self.b + 1))
                .map(|c| (r, c, self.get(r, c)))
                .find(|&(_, _, v)| !v.is_finite())
        })
    }

    /// Reduces the band to upper bidiagonal form by orthogonal
    /// transformations (singular values unchanged) and returns the diagonal
    /// `d` (`n`) and superdiagonal `e` (`n − 1`), on one thread.
    pub fn into_bidiagonal(self) -> (Vec<f64>, Vec<f64>) {
        self.into_bidiagonal_on(1)
    }

    /// [`into_bidiagonal`](Self::into_bidiagonal) on up to `threads`
    /// threads: sweep `j` runs on thread `j mod threads` and starts a step
    /// once sweep `j − 1` is three steps past it, when their footprints no
    /// longer meet. Every entry sees the same operations in the same order
    /// as on one thread, so the result is bit for bit the same.
    pub fn into_bidiagonal_on(mut self, threads: usize) -> (Vec<f64>, Vec<f64>) {
        let (n, b) = (self.n, self.b);
        let sweeps = n.saturating_sub(1);
        // Fewer threads than sweeps in flight at once are of no use.
        let threads = threads.clamp(1, (n / (4 * b)).max(1)).min(sweeps.max(1));
        let chase = Chase {
            n,
            b,
            width: self.width,
            values: self.values.as_mut_ptr(),
        };
        if threads == 1 {
            let mut scratch = Scratch::new(b);
            for i in 0..sweeps {
                // SAFETY: one thread, so no step runs beside another.
                (0..)
                    .take_while(|&s| unsafe { chase.step(i, s, &mut scratch) })
                    .for_each(drop);
            }
        } else {
            let progress: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
            std::thread::scope(|scope| {
                for first in 0..threads {
                    let (chase, progress) = (&chase, &progress);
                    scope.spawn(move || {
                        let mut scratch = Scratch::new(b);
                        let mine = &progress[first];
                        for i in (first..sweeps).step_by(threads) {
                            mine.store(pack(i, 0), Ordering::Release);
                            let before = &progress[(i + threads - 1) % threads];
                            for s in 0.. {
                                if i > 0 {
                                    wait_for(before, i - 1, s + LEAD);
                                }
                                // SAFETY: sweep i − 1 has finished every step
                                // whose rows and columns meet those of step s
                                // of sweep i (see `LEAD`), later sweeps wait
                                // for this one, and earlier ones are done.
                                if !unsafe { chase.step(i, s, &mut scratch) } {
                                    break;
                                }
                                mine.store(pack(i, s + 1), Ordering::Release);
                            }
                            mine.store(pack(i, DONE), Ordering::Release);
                        }
                    });
                }
            });
        }
        let d = (0..n).map(|i| self.get(i, i)).collect();
        let e = (1..n).map(|i| self.get(i - 1, i)).collect();
        (d, e)
    }
}

/// Steps of sweep `i − 1` that must be done before step `s` of sweep `i`
/// starts: `s + LEAD`. Step `s` of sweep `i` touches rows
/// `i + 1 + (s − 1)·b ..= i + (s + 1)·b` and columns from `i + 1 + s·b` to
/// `i + (s + 2)·b`; those of sweep `i − 1` from step `s + 3` on lie below
/// and right of them.
const LEAD: usize = 3;
/// The step count of a finished sweep.
const DONE: usize = u32::MAX as usize;

fn pack(sweep: usize, steps: usize) -> u64 {
    ((sweep as u64) << 32) | steps.min(DONE) as u64
}

/// Spins (then yields) until the thread behind `progress` has finished
/// `steps` steps of `sweep`, or the sweep.
fn wait_for(progress: &AtomicU64, sweep: usize, steps: usize) {
    let mut spins = 0u32;
    loop {
        let state = progress.load(Ordering::Acquire);
        let (at, done) = (
            (state >> 32) as usize,
            (state & u64::from(u32::MAX)) as usize,
        );
        if at > sweep || (at == sweep && done >= steps.min(DONE)) {
            return;
        }
        spins += 1;
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A thread's reflector and work vectors.
struct Scratch {
    v: Vec<f64>,
    w: Vec<f64>,
    column: Vec<f64>,
}

impl Scratch {
    fn new(b: usize) -> Self {
        Self {
            v: vec![0.0; b],
            w: vec![0.0; 2 * b + 1],
            column: vec![0.0; b],
        }
    }
}

/// The band's storage as the chase's threads share it.
struct Chase {
    n: usize,
    b: usize,
    width: usize,
    values: *mut f64,
}

// SAFETY: threads touch disjoint parts of the storage at any one time (the
// schedule in `into_bidiagonal_on`), and the storage outlives the threads.
unsafe impl Sync for Chase {}

impl Chase {
    /// Row `r`, columns `from ..= to` (panics outside the band's window).
    ///
    /// # Safety
    /// No other thread touches these entries while the slice lives, and no
    /// other slice of them is alive.
    unsafe fn row<'a>(&self, r: usize, from: usize, to: usize) -> &'a mut [f64] {
        // Checked in release builds too: the slice is built from a raw pointer.
        assert!(
            from + self.b >= r && to <= r + 2 * self.b && from <= to && to < self.n,
            "row {r}, columns {from}..={to} leave the band window"
        );
        // SAFETY: in the window (checked above), so inside the allocation;
        // exclusive by the caller's promise.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.values.add(r * self.width + from + self.b - r),
                to - from + 1,
            )
        }
    }

    /// Step `s` of sweep `i`: a reflection from the right clears row
    /// `pivot` right of column `c0`, one from the left clears column `c0`
    /// below the diagonal. Returns `false` when the sweep has no step `s`.
    ///
    /// # Safety
    /// No other thread touches rows `pivot ..= c0 + b − 1`, columns
    /// `c0 ..= c0 + 2b − 1` meanwhile.
    unsafe fn step(&self, i: usize, s: usize, scratch: &mut Scratch) -> bool {
        let (n, b) = (self.n, self.b);
        let c0 = i + 1 + s * b;
        if c0 >= n {
            return false;
        }
        let pivot = if s == 0 { i } else { c0 - b };
        let c1 = (c0 + b - 1).min(n - 1);
        if c1 == c0 {
            return true;
        }
        let len = c1 - c0 + 1;
        let v = &mut scratch.v[..len];
        // SAFETY: row `pivot`, columns `c0..=c1` lie in this step's
        // footprint, which the caller keeps to this thread; no other slice
        // of it is alive.
        let tau = reflector(unsafe { self.row(pivot, c0, c1) }, v);
        if tau != 0.0 {
            for r in pivot + 1..=c1 {
                // SAFETY: in the footprint; the previous row's slice is gone.
                let row = unsafe { self.row(r, c0, c1) };
                let scale = tau * dot(row, v);
                for (x, y) in row.iter_mut().zip(v.iter()) {
                    *x -= scale * y;
                }
            }
        }
        let column = &mut scratch.column[..len];
        for (k, r) in (c0..=c1).enumerate() {
            // SAFETY: in the footprint; the slice lives for this statement.
            column[k] = unsafe { self.row(r, c0, c0) }[0];
        }
        let tau = reflector(column, v);
        for (k, r) in (c0..=c1).enumerate() {
            // SAFETY: in the footprint; the slice lives for this iteration.
            let entry = unsafe { self.row(r, c0, c0) };
            entry[0] = column[k];
        }
        let last = (c1 + b).min(n - 1);
        if tau != 0.0 && last > c0 {
            let w = &mut scratch.w[..last - c0];
            w.fill(0.0);
            for (k, r) in (c0..=c1).enumerate() {
                // SAFETY: in the footprint; the slice lives for this iteration.
                let row = unsafe { self.row(r, c0 + 1, last) };
                for (acc, x) in w.iter_mut().zip(row.iter()) {
                    *acc += v[k] * x;
                }
            }
            for (k, r) in (c0..=c1).enumerate() {
                let scale = tau * v[k];
                // SAFETY: in the footprint; the slice lives for this iteration.
                let row = unsafe { self.row(r, c0 + 1, last) };
                for (x, acc) in row.iter_mut().zip(w.iter()) {
                    *x -= scale * acc;
                }
            }
        }
        true
    }
}

/// `x·y` in eight independent sums, so that the adds pipeline and vectorize.
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for k in 0..8 {
            lanes[k] += a[k] * b[k];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Householder reflection `H = I − τ·v·vᵀ` (`v₀ = 1`) with `H·x = β·e₁`:
/// overwrites `x` with `[β, 0, …]`, fills `v` and returns `τ` (zero when `x`
/// is already a multiple of `e₁`).
fn reflector(x: &mut [f64], v: &mut [f64]) -> f64 {
    let alpha = x[0];
    let tail = &x[1..];
    // Scaled norm, safe from overflow and underflow.
    let scale = tail.iter().fold(alpha.abs(), |m, y| m.max(y.abs()));
    v[0] = 1.0;
    if scale == 0.0 || tail.iter().all(|&y| y == 0.0) {
        v[1..].fill(0.0);
        return 0.0;
    }
    let norm = scale
        * x.iter()
            .map(|y| (y / scale) * (y / scale))
            .sum::<f64>()
            .sqrt();
    let beta = if alpha >= 0.0 { -norm } else { norm };
    let denominator = alpha - beta;
    for (vi, xi) in v[1..].iter_mut().zip(tail) {
        *vi = xi / denominator;
    }
    x[0] = beta;
    x[1..].fill(0.0);
    (beta - alpha) / beta
}

/// `(c, s, r)` with `c·f + s·g = r` and `−s·f + c·g = 0`.
fn rotation(f: f64, g: f64) -> (f64, f64, f64) {
    if g == 0.0 {
        (1.0, 0.0, f)
    } else if f == 0.0 {
        (0.0, 1.0, g)
    } else {
        let r = f.hypot(g);
        (f / r, g / r, r)
    }
}

/// Singular values, largest first, of the upper bidiagonal matrix with
/// diagonal `d` and superdiagonal `e` (`d.len() − 1` entries), by implicitly
/// shifted QR sweeps. Accurate to a few units of roundoff times the largest
/// singular value.
pub fn bidiagonal_singular_values(
    mut d: Vec<f64>,
    mut e: Vec<f64>,
) -> Result<Vec<f64>, LinalgError> {
    let n = d.len();
    if e.len() + 1 != n.max(1) {
        return Err(crate::error::shape_mismatch(
            "bidiagonal svd",
            format!("{} diagonal and {} superdiagonal entries", n, e.len()),
        ));
    }
    if let Some(v) = d.iter().chain(&e).find(|v| !v.is_finite()) {
        return Err(LinalgError::NoConvergence {
            operation: "bidiagonal svd",
            detail: format!("the bidiagonal holds {v}"),
        });
    }
    let norm = d.iter().chain(&e).fold(0.0f64, |m, v| m.max(v.abs()));
    if n == 0 || norm == 0.0 {
        return Ok(vec![0.0; n]);
    }
    // Work on B/‖B‖ so that squares neither overflow nor underflow.
    d.iter_mut().chain(e.iter_mut()).for_each(|v| *v /= norm);
    let eps = f64::EPSILON;
    let tol = eps;
    let negligible =
        |e: f64, a: f64, b: f64| e.abs() <= eps * (a.abs() + b.abs()) || e.abs() <= tol * 1e-3;
    let mut hi = n - 1;
    let mut sweeps = 0usize;
    let limit = 40 * n + 100;
    while hi > 0 {
        if negligible(e[hi - 1], d[hi - 1], d[hi]) {
            e[hi - 1] = 0.0;
            hi -= 1;
            continue;
        }
        let mut lo = hi - 1;
        while lo > 0 {
            if negligible(e[lo - 1], d[lo - 1], d[lo]) {
                e[lo - 1] = 0.0;
                break;
            }
            lo -= 1;
        }
        // A negligible diagonal entry splits the block once its row (or,
        // for the last, its column) is rotated clear.
        if let Some(z) = (lo..=hi).find(|&k| d[k].abs() <= tol) {
            d[z] = 0.0;
            if z < hi {
                let mut f = std::mem::take(&mut e[z]);
                for j in z + 1..=hi {
                    let (c, s, r) = rotation(d[j], f);
                    d[j] = r;
                    if j < hi {
                        f = -s * e[j];
                        e[j] *= c;
                    }
                }
            } else {
                let mut f = std::mem::take(&mut e[hi - 1]);
                for k in (lo..hi).rev() {
                    let (c, s, r) = rotation(d[k], f);
                    d[k] = r;
                    if k > lo {
                        f = -s * e[k - 1];
                        e[k - 1] *= c;
                    }
                }
            }
            continue;
        }
        sweeps += 1;
        if sweeps > limit {
            return Err(LinalgError::NoConvergence {
                operation: "bidiagonal svd",
                detail: format!("{limit} QR sweeps on a bidiagonal of order {n}"),
            });
        }
        // Wilkinson shift: the eigenvalue of the trailing 2×2 of BᵀB nearer
        // its last diagonal entry.
        let (dm, dn, em) = (d[hi - 1], d[hi], e[hi - 1]);
        let el = if hi - 1 > lo { e[hi - 2] } else { 0.0 };
        let (t11, t12, t22) = (dm * dm + el * el, dm * em, dn * dn + em * em);
        let delta = (t11 - t22) / 2.0;
        let sign = if delta >= 0.0 { 1.0 } else { -1.0 };
        let mu = t22 - t12 * t12 / (delta + sign * delta.hypot(t12));
        let (mut y, mut z) = (d[lo] * d[lo] - mu, d[lo] * e[lo]);
        for k in lo..hi {
            let (c, s, r) = rotation(y, z);
            if k > lo {
                e[k - 1] = r;
            }
            y = c * d[k] + s * e[k];
            e[k] = c * e[k] - s * d[k];
            z = s * d[k + 1];
            d[k + 1] *= c;
            let (c, s, r) = rotation(y, z);
            d[k] = r;
            y = c * e[k] + s * d[k + 1];
            d[k + 1] = c * d[k + 1] - s * e[k];
            if k + 1 < hi {
                z = s * e[k + 1];
                e[k + 1] *= c;
            }
        }
        e[hi - 1] = y;
    }
    let mut s: Vec<f64> = d.into_iter().map(|v| v.abs() * norm).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{FaerBackend, TileBackend};

    fn random(seed: u64, len: usize) -> Vec<f64> {
        let mut rng = crate::rng::TileRng::for_tile(seed, 0, 0);
        (0..len).map(|_| rng.symmetric_unit()).collect()
    }

    fn dense_values(a: crate::Tile) -> Vec<f64> {
        FaerBackend.svd(a, false).unwrap().s
    }

    /// The dense upper bidiagonal matrix with diagonal `d`, superdiagonal `e`.
    fn bidiagonal(d: &[f64], e: &[f64]) -> crate::Tile {
        let mut band = Band::zeros(d.len(), 1);
        for (i, &v) in d.iter().enumerate() {
            band.set(i, i, v);
        }
        for (i, &v) in e.iter().enumerate() {
            band.set(i, i + 1, v);
        }
        band.to_dense()
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let scale = want.first().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * scale,
                "{what}: σ{i} = {g}, want {w}"
            );
        }
    }

    #[test]
    fn bidiagonal_values_match_a_dense_svd() {
        for (seed, n) in [(1, 1), (2, 2), (3, 3), (4, 17), (5, 200)] {
            let (d, e) = (random(seed, n), random(seed + 100, n - 1));
            let a = bidiagonal(&d, &e);
            let got = bidiagonal_singular_values(d, e).unwrap();
            assert_close(&got, &dense_values(a), &format!("n = {n}"));
        }
    }

    #[test]
    fn zero_diagonal_entries_and_graded_values() {
        let n = 40;
        let mut d = random(7, n);
        let e = random(8, n - 1);
        for k in [0, 11, n - 1] {
            d[k] = 0.0;
        }
        let want = dense_values(bidiagonal(&d, &e));
        assert_close(&bidiagonal_singular_values(d, e).unwrap(), &want, "zeros");
        let d: Vec<f64> = (0..60).map(|i| 10f64.powf(-f64::from(i) / 4.0)).collect();
        let e: Vec<f64> = (0..59)
            .map(|i| 10f64.powf(-f64::from(i) / 4.0 - 0.3))
            .collect();
        let want = dense_values(bidiagonal(&d, &e));
        assert_close(&bidiagonal_singular_values(d, e).unwrap(), &want, "graded");
        // Diagonal already, huge and tiny scales.
        let got = bidiagonal_singular_values(vec![3e200, -2e-200, 1.0], vec![0.0, 0.0]).unwrap();
        // Accurate relative to the largest: the tiny one may round to zero.
        assert_eq!(got[..2], [3e200, 1.0]);
        assert!(got[2] <= f64::EPSILON * 3e200);
        let got = bidiagonal_singular_values(vec![3.0, -2e-200, 1.0], vec![0.0, 0.0]).unwrap();
        assert_eq!(got, vec![3.0, 1.0, 2e-200]);
        assert!(bidiagonal_singular_values(vec![1.0, f64::NAN], vec![1.0]).is_err());
        assert!(bidiagonal_singular_values(vec![1.0, 2.0], vec![]).is_err());
    }

    fn random_band(seed: u64, n: usize, b: usize) -> Band {
        let values = random(seed, n * (b + 1));
        let mut band = Band::zeros(n, b);
        for r in 0..n {
            for c in r..n.min(r + b + 1) {
                band.set(r, c, values[r * (b + 1) + c - r]);
            }
        }
        band
    }

    #[test]
    fn threads_give_the_same_bidiagonal_bit_for_bit() {
        for (seed, n, b) in [
            (21, 200, 5),
            (22, 301, 7),
            (23, 64, 3),
            (24, 97, 1),
            (25, 40, 16),
        ] {
            let serial = random_band(seed, n, b).into_bidiagonal();
            for threads in [2, 3, 4] {
                let parallel = random_band(seed, n, b).into_bidiagonal_on(threads);
                assert!(
                    serial.0 == parallel.0 && serial.1 == parallel.1,
                    "n = {n}, b = {b}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn band_reduction_keeps_singular_values() {
        for (seed, n, b) in [
            (11, 50, 7),
            (12, 64, 8),
            (13, 37, 5),
            (14, 20, 1),
            (15, 33, 2),
            (16, 41, 40),
            (17, 100, 13),
            (18, 9, 30),
            (19, 1, 4),
        ] {
            let band = random_band(seed, n, b);
            let a = band.to_dense();
            let (d, e) = band.into_bidiagonal();
            let got = bidiagonal_singular_values(d, e).unwrap();
            assert_close(&got, &dense_values(a), &format!("n = {n}, b = {b}"));
        }
    }
}
