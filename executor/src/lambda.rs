//! AWS Lambda: the client that invokes executors as asynchronous events, and
//! the function side that runs them (the `wukong-lambda` binary, feature
//! `lambda`).
//!
//! The function reads its settings from its environment:
//! - `WUKONG_REDIS_URL` (required): Redis for arrivals, leases and messages
//!   (`rediss://` for TLS; a password in the URL is never logged);
//! - `WUKONG_S3_BUCKET`, `WUKONG_S3_ENDPOINT` (optional): tiles in S3 instead of Redis;
//! - `WUKONG_LAMBDA_ENDPOINT` (optional): a Lambda API endpoint other than
//!   AWS's, for the invocations the executors make (a local emulator);
//! - AWS credentials and region from the standard chain (the function's role).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::InvokeError;
use crate::remote::{Connection, Handled, Host, KernelRegistry, ObjectTarget, RemoteError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

/// Invokes functions with asynchronous (`Event`) invocations.
#[derive(Clone, Debug)]
pub struct LambdaClient {
    client: aws_sdk_lambda::Client,
    /// Requests not answered yet, with when they started.
    pending: Arc<Mutex<Vec<Pending>>>,
}

/// A request on its way, and when it started.
type Pending = (Instant, tokio::task::JoinHandle<()>);

/// Where a failed invocation is reported: the job's outcome queue.
pub(crate) struct FailureReport {
    pub(crate) broker: Arc<dyn wukong_storage::Broker>,
    pub(crate) queue: String,
    pub(crate) message: fn(String) -> Vec<u8>,
}

impl LambdaClient {
    /// A client for `region` (else the standard chain's) and `endpoint`
    /// (else AWS's), with credentials from the standard chain.
    pub async fn connect(region: Option<String>, endpoint: Option<String>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Self {
            client: aws_sdk_lambda::Client::new(&config),
            pending: Arc::default(),
        }
    }

    /// Sends one event without waiting for the answer: AWS answers an
    /// `Event` invocation with 202 at once, but a local emulator only when the
    /// function has finished. A request that fails (refused, throttled, no
    /// such function) is reported to `failure`, which fails the job with the
    /// platform's message instead of leaving it waiting.
    pub(crate) fn invoke(
        &self,
        runtime: &tokio::runtime::Handle,
        function: &str,
        payload: Vec<u8>,
        failure: FailureReport,
    ) -> Result<(), InvokeError> {
        let request = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload));
        let function = function.to_owned();
        let task = runtime.spawn(async move {
            let problem = match request.send().await {
                Ok(output) if (200..300).contains(&output.status_code()) => return,
                Ok(output) => format!("HTTP {}", output.status_code()),
                Err(e) => aws_sdk_lambda::error::DisplayErrorContext(e).to_string(),
            };
            let message = (failure.message)(format!("invoking {function}: {problem}"));
            if failure.broker.push_message(&failure.queue, &message).await.is_err() {
                eprintln!("wukong: invoking {function} failed and the failure cannot be reported: {problem}");
            }
        });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|(_, task)| !task.is_finished());
        pending.push((Instant::now(), task));
        Ok(())
    }

    /// Waits until every request sent so far has been answered or has been
    /// on its way for `grace`: a function must not return (and be frozen)
    /// before its invocations have left.
    pub fn settle(&self, grace: Duration) {
        loop {
            let waiting = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.retain(|(_, task)| !task.is_finished());
                pending.iter().any(|(since, _)| since.elapsed() < grace)
            };
            if !waiting {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The function side: builds a host with the kernels of `registry` from the
/// environment, once per container.
pub async fn host_from_env<R: KernelRegistry>(registry: R) -> Result<Arc<Host<R>>, RemoteError> {
    let redis_url = env("WUKONG_REDIS_URL").ok_or_else(|| RemoteError::Setup {
        what: "WUKONG_REDIS_URL",
        detail: "not set: the function needs the Redis URL in its environment".into(),
    })?;
    let objects = ObjectTarget {
        s3_bucket: env("WUKONG_S3_BUCKET"),
        s3_endpoint: env("WUKONG_S3_ENDPOINT"),
    };
    let client = LambdaClient::connect(None, env("WUKONG_LAMBDA_ENDPOINT")).await;
    let runtime = tokio::runtime::Handle::current();
    let connection =
        tokio::task::spawn_blocking(move || Connection::open_on(runtime, &redis_url, &objects))
            .await
            .map_err(|e| RemoteError::Setup {
                what: "connecting",
                detail: e.to_string(),
            })??;
    let worker = std::process::id();
    Ok(Arc::new(Host::new(
        registry,
        connection.with_lambda(client),
        worker,
    )))
}

/// The function side: runs one event. A payload that is not a valid
/// invocation of a known job is an error (nothing ran); anything else,
/// including an executor's failure (already reported to the driver), answers
/// with what happened, so that the platform does not retry it.
pub async fn handle_event<R: KernelRegistry>(
    host: Arc<Host<R>>,
    payload: serde_json::Value,
) -> Result<serde_json::Value, RemoteError> {
    let bytes = serde_json::to_vec(&payload).map_err(|e| RemoteError::Payload {
        reason: e.to_string(),
    })?;
    let handled = tokio::task::spawn_blocking(move || host.handle(&bytes))
        .await
        .map_err(|e| RemoteError::Setup {
            what: "executor thread",
            detail: e.to_string(),
        })??;
    Ok(match handled {
        Handled::Ran { tasks } => serde_json::json!({ "ran": tasks }),
        Handled::Duplicate => serde_json::json!({ "duplicate": true }),
        Handled::Failed { message } => serde_json::json!({ "failed": message }),
    })
}

/// The function's main loop: builds the host with the kernels of `registry`
/// from the environment and runs each event the Lambda runtime hands over.
pub async fn serve<R: KernelRegistry>(registry: R) -> Result<(), lambda_runtime::Error> {
    let host = host_from_env(registry).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let host = Arc::clone(&host);
            async move {
                handle_event(host, event.payload)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
}
