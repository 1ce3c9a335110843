//! Compiling the Cholesky task graph: tasks per second, and bytes per task at
//! three grid sizes (memory must grow linearly with tasks).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wukong::TileLayout;
use wukong::linalg::{cholesky_plan, cholesky_task_count};

/// Counts live and peak heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn layout(grid: usize) -> TileLayout {
    TileLayout::square_tiles(grid * 64, grid * 64, 64).expect("valid layout")
}

fn memory_per_task() {
    for grid in [32, 64, 128] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let plan = cholesky_plan(layout(grid)).expect("valid plan");
        let kept = LIVE.load(Ordering::Relaxed) - before;
        let peak = PEAK.load(Ordering::Relaxed) - before;
        let tasks = plan.dag.num_tasks();
        println!(
            "cholesky dag {grid}x{grid}: {tasks} tasks, {:.0} bytes/task kept, {:.0} bytes/task at peak",
            kept as f64 / tasks as f64,
            peak as f64 / tasks as f64
        );
    }
}

fn bench(c: &mut Criterion) {
    memory_per_task();
    let mut group = c.benchmark_group("cholesky_dag");
    group.sample_size(10);
    for grid in [32, 128] {
        group.throughput(Throughput::Elements(cholesky_task_count(grid) as u64));
        group.bench_function(format!("{grid}x{grid}"), |b| {
            b.iter(|| cholesky_plan(layout(grid)).expect("valid plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
