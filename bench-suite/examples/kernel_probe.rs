//! Single-threaded GFLOP/s of each tile kernel that Cholesky uses, by backend:
//! `cargo run --release -p wukong-bench --example kernel_probe [--features openblas] -- 1024`.

use std::time::Instant;

use wukong::linalg::{
    BackendKind, Diagonal, LinalgError, Side, TileBackend, Transpose, Triangle, tile,
};

fn time(
    backend: BackendKind,
    size: usize,
    name: &str,
    flops: f64,
    run: &mut dyn FnMut() -> Result<(), LinalgError>,
) {
    let reps = 3;
    let mut best = f64::INFINITY;
    for _ in 0..=reps {
        let start = Instant::now();
        if let Err(error) = run() {
            eprintln!("{name}: {error}");
            return;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{:<9} {size:>5} {name:<8} {:>7.1} GFLOP/s",
        backend.name(),
        flops / best / 1e9
    );
}

fn probe(backend: BackendKind, kernels: &dyn TileBackend, size: usize) {
    let s = size as f64;
    let a = tile::zeros(size, size) + 0.001;
    let b = tile::zeros(size, size) + 0.002;
    let mut c = tile::zeros(size, size);
    let mut l = tile::zeros(size, size);
    l.diag_mut().fill(2.0);
    for (name, trans_b) in [("gemm_nn", Transpose::No), ("gemm_nt", Transpose::Yes)] {
        time(backend, size, name, 2.0 * s * s * s, &mut || {
            kernels.gemm(
                Transpose::No,
                trans_b,
                -1.0,
                a.view(),
                b.view(),
                1.0,
                c.view_mut(),
            )
        });
    }
    time(backend, size, "syrk", s * s * s, &mut || {
        kernels.syrk(
            Triangle::Lower,
            Transpose::No,
            -1.0,
            a.view(),
            1.0,
            c.view_mut(),
        )
    });
    time(backend, size, "trsm", s * s * s, &mut || {
        kernels.trsm(
            Side::Right,
            Triangle::Lower,
            Transpose::Yes,
            Diagonal::NonUnit,
            1.0,
            l.view(),
            c.view_mut(),
        )
    });
    time(backend, size, "potrf", s * s * s / 3.0, &mut || {
        let mut spd = tile::zeros(size, size);
        spd.diag_mut().fill(4.0);
        kernels.potrf(spd.view_mut())
    });
}

fn main() {
    wukong::prepare_process();
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    for backend in [BackendKind::Faer, BackendKind::OpenBlas] {
        match backend.kernels() {
            Ok(kernels) => probe(backend, kernels, size),
            Err(error) => eprintln!("{error}"),
        }
    }
}
