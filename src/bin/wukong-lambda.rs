//! The Lambda function: runs wukong executors for asynchronous invocations.
//! Build with `cargo lambda build --release --features lambda --bin wukong-lambda`;
//! see the README's deployment guide for its environment and permissions.

#[global_allocator]
static ALLOCATOR: wukong::LargePages = wukong::LargePages;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wukong::prepare_process();
    wukong::executor::lambda::serve(wukong::TileRegistry).await
}
