//! Single-threaded GFLOP/s of each tile kernel a Cholesky uses, by backend.

use std::time::Instant;

use wukong::linalg::{BackendKind, Diagonal, Side, Transpose, Triangle, tile};

fn main() {
    wukong::prepare_process();
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let s = size as f64;
    for backend in [BackendKind::Faer, BackendKind::OpenBlas] {
        let Ok(k) = backend.kernels() else { continue };
        let a = tile::zeros(size, size) + 0.001;
        let b = tile::zeros(size, size) + 0.002;
        let mut c = tile::zeros(size, size);
        let mut l = tile::zeros(size, size);
        for i in 0..size {
            l[[i, i]] = 2.0;
        }
        let time = |name: &str, flops: f64, f: &mut dyn FnMut()| {
            f();
            let reps = 3;
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            let secs = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{:<9} {size:>5} {name:<8} {:>7.1} GFLOP/s",
                backend.name(),
                flops / secs / 1e9
            );
        };
        time("gemm_nn", 2.0 * s * s * s, &mut || {
            k.gemm(
                Transpose::No,
                Transpose::No,
                -1.0,
                a.view(),
                b.view(),
                1.0,
                c.view_mut(),
            )
            .unwrap()
        });
        time("gemm_nt", 2.0 * s * s * s, &mut || {
            k.gemm(
                Transpose::No,
                Transpose::Yes,
                -1.0,
                a.view(),
                b.view(),
                1.0,
                c.view_mut(),
            )
            .unwrap()
        });
        time("syrk", s * s * s, &mut || {
            k.syrk(
                Triangle::Lower,
                Transpose::No,
                -1.0,
                a.view(),
                1.0,
                c.view_mut(),
            )
            .unwrap()
        });
        time("trsm", s * s * s, &mut || {
            k.trsm(
                Side::Right,
                Triangle::Lower,
                Transpose::Yes,
                Diagonal::NonUnit,
                1.0,
                l.view(),
                c.view_mut(),
            )
            .unwrap()
        });
        time("potrf", s * s * s / 3.0, &mut || {
            let mut spd = tile::zeros(size, size);
            for i in 0..size {
                spd[[i, i]] = 4.0;
            }
            k.potrf(spd.view_mut()).unwrap()
        });
    }
}
