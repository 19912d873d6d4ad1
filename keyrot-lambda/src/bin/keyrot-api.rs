//! The API function behind API Gateway (see `keyrot_lambda::api`).

use std::process::ExitCode;

use keyrot_lambda::api::{ApiFunction, serve};
use keyrot_lambda::runtime::{init_failed, init_logging, loop_ended};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_logging();
    match ApiFunction::from_env(|name| std::env::var(name).ok()).await {
        Ok(function) => loop_ended(serve(function).await),
        Err(error) => init_failed(error.error_type(), &error).await,
    }
}
