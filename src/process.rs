/// Call first thing in `main` of a program that uses the OpenBLAS backend.
///
/// OpenBLAS picks its kernels when the library is loaded. On CPUs it does not
/// recognise (virtual machines often report a generic model) it falls back to
/// pre-AVX kernels that run DGEMM several times slower. When that happened and
/// `OPENBLAS_CORETYPE` is not set, this re-executes the program with
/// `OPENBLAS_CORETYPE` naming the best kernel set the CPU supports. It returns
/// normally in every other case, including when re-executing fails; without the
/// `openblas` feature it does nothing.
pub fn prepare_process() {
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
        let _ = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OPENBLAS_CORETYPE", core)
            .exec();
    }
}
