//! The scheduled rotation function (see `keyrot_lambda::rotate`).

use std::process::ExitCode;

use keyrot_lambda::rotate::{RotateFunction, serve};
use keyrot_lambda::runtime::{CONFIG_ERROR_TYPE, init_failed, init_logging, loop_ended};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_logging();
    match RotateFunction::from_env(|name| std::env::var(name).ok()).await {
        Ok(function) => loop_ended(serve(function).await),
        Err(error) => init_failed(CONFIG_ERROR_TYPE, &error).await,
    }
}
