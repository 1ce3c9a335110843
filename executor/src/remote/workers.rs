//! Worker hosts on threads of this process, and worker processes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::connection::{Connection, ObjectTarget, setup};
use super::host::Host;
use super::{KernelRegistry, RemoteError};

/// Worker hosts on threads of this process, each taking invocations from a
/// queue as a worker process does (one executor at a time, its own tile
/// cache); stopped when dropped, within a second. Over
/// [`Connection::in_memory`] they run remote jobs with no server at all.
#[derive(Debug)]
pub struct WorkerThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Result<(), RemoteError>>>,
}

impl WorkerThreads {
    /// Starts `count` hosts with the kernels of `registry` on `connection`,
    /// taking invocations from `queue`.
    pub fn spawn<R: KernelRegistry + Clone>(
        registry: &R,
        connection: &Connection,
        count: usize,
        queue: &str,
    ) -> Result<Self, RemoteError> {
        let mut workers = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            let host = Host::new(registry.clone(), connection.clone(), index as u32);
            let (stop, queue) = (Arc::clone(&workers.stop), queue.to_owned());
            let thread = std::thread::Builder::new()
                .name(format!("wukong-worker-{index}"))
                .spawn(move || host.serve_queue(&queue, &stop))
                .map_err(|e| setup("starting a worker thread")(e.to_string()))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Stops the hosts after their current invocation and returns the first
    /// error one of them ended with.
    pub fn stop(mut self) -> Result<(), RemoteError> {
        self.join()
    }

    pub(super) fn join(&mut self) -> Result<(), RemoteError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(setup("a worker thread")("it panicked".into())));
            if result.is_ok() {
                result = ended;
            }
        }
        result
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        if let Err(error) = self.join() {
            eprintln!("wukong: a worker thread ended with an error: {error}");
        }
    }
}

/// Worker processes started by this process, stopped (killed) when dropped.
#[derive(Debug)]
pub struct WorkerProcesses {
    children: Vec<std::process::Child>,
}

impl WorkerProcesses {
    /// Starts `count` `wukong worker` processes of the executable `exe`
    /// against `redis_url`, taking invocations from `queue`, each running
    /// kernels on one thread, with `env` added to their environment.
    pub fn spawn(
        exe: &Path,
        count: usize,
        redis_url: &str,
        objects: &ObjectTarget,
        queue: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, RemoteError> {
        let mut workers = Self {
            children: Vec::with_capacity(count),
        };
        for index in 0..count {
            let mut command = std::process::Command::new(exe);
            command
                .arg("worker")
                // Not an argument: other users can read a process's arguments.
                .env("WUKONG_REDIS_URL", redis_url)
                .arg("--queue")
                .arg(queue)
                .arg("--index")
                .arg(index.to_string())
                .env("OPENBLAS_NUM_THREADS", "1")
                .env("RAYON_NUM_THREADS", "1")
                .envs(env.iter().copied())
                .stdin(std::process::Stdio::null());
            if let Some(bucket) = &objects.s3_bucket {
                command.arg("--bucket").arg(bucket);
            }
            if let Some(endpoint) = &objects.s3_endpoint {
                command.arg("--s3-endpoint").arg(endpoint);
            }
            let child = command.spawn().map_err(|e| {
                setup("starting a worker process")(format!("{}: {e}", exe.display()))
            })?;
            workers.children.push(child);
        }
        Ok(workers)
    }

    /// The process ids, in start order.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(std::process::Child::id).collect()
    }

    /// Kills worker `index` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, index: usize) -> std::io::Result<()> {
        let Some(child) = self.children.get_mut(index) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("there is no worker {index}"),
            ));
        };
        child.kill()?;
        child.wait().map(|_| ())
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
