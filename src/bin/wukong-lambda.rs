//! The Lambda function: runs wukong executors for asynchronous invocations.
//! Build with `cargo lambda build --release --features lambda --bin wukong-lambda`;
//! see the README's deployment guide for its environment and permissions.

use lambda_runtime::{LambdaEvent, service_fn};

#[global_allocator]
static ALLOCATOR: wukong::LargePages = wukong::LargePages;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wukong::prepare_process();
    let host = wukong::lambda::host_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let host = std::sync::Arc::clone(&host);
        async move {
            wukong::lambda::handle_event(host, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
