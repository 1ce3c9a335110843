//! Single-threaded tile GEMM by tile size and backend: the kernel ceiling that
//! tiled runs work against.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wukong::linalg::{BackendKind, Transpose, tile};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tile_gemm");
    group.sample_size(10);
    for backend in [BackendKind::Faer, BackendKind::OpenBlas] {
        let Ok(kernels) = backend.kernels() else {
            continue;
        };
        for size in [128usize, 256, 512, 1024] {
            let a = tile::zeros(size, size) + 0.5;
            let b = tile::zeros(size, size) + 0.25;
            let mut out = tile::zeros(size, size);
            group.throughput(Throughput::Elements((2 * size * size * size) as u64));
            group.bench_with_input(BenchmarkId::new(backend.name(), size), &size, |bench, _| {
                bench.iter(|| {
                    kernels
                        .gemm(
                            Transpose::No,
                            Transpose::No,
                            1.0,
                            a.view(),
                            b.view(),
                            1.0,
                            out.view_mut(),
                        )
                        .expect("shapes agree")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
