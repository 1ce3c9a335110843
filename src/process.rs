/// Call first thing in `main` of a program that runs tiled algorithms.
///
/// Tiles are megabytes each, and executors allocate and free them all the
/// time (kernel outputs, and in remote modes decoding from the store and
/// encoding for it). glibc serves blocks that
/// large with a fresh `mmap` each time, so every tile costs hundreds of page
/// faults; this raises its threshold to the largest glibc allows (32 MiB) so
/// that freed tiles are reused; [`LargePages`](crate::LargePages) keeps freed
/// blocks above it.
///
/// OpenBLAS picks its kernels when the library is loaded. On CPUs it does not
/// recognise (virtual machines often report a generic model) it falls back to
/// pre-AVX kernels that run DGEMM several times slower. When that happened and
/// `OPENBLAS_CORETYPE` is not set, this re-executes the program with
/// `OPENBLAS_CORETYPE` naming the best kernel set the CPU supports. It returns
/// normally in every other case, including when re-executing fails; without the
/// `openblas` feature it does nothing.
pub fn prepare_process() {
    keep_large_blocks();
    #[cfg(all(feature = "openblas", unix))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
            return;
        }
        let Some(core) = wukong_linalg::kernels::openblas_better_core_type() else {
            return;
        };
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        // `exec` only returns on failure; then carry on with the slow kernels.
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OPENBLAS_CORETYPE", core)
            .exec();
        eprintln!(
            "note: cannot restart with OPENBLAS_CORETYPE={core} ({error}): OpenBLAS may pick slower kernels"
        );
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_blocks() {
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    let threshold = std::ffi::c_int::try_from(crate::alloc::GLIBC_MAX_MMAP_THRESHOLD)
        .unwrap_or(std::ffi::c_int::MAX);
    // SAFETY: mallopt only changes allocator tunables; it is safe at any time.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, threshold);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_blocks() {}
