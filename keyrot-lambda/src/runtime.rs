//! What both binaries share: JSON logs, the Lambda deadline as a [`Timestamp`], and reporting
//! a failed cold start to the Runtime API.

use std::process::ExitCode;

use keyrot_core::Timestamp;
use keyrot_core::driver::error_chain;
use lambda_runtime::{Context, Diagnostic};
use tracing_subscriber::EnvFilter;

/// The `errorType` of a cold start refused for its configuration: not retryable, a person must
/// fix the function's environment.
pub const CONFIG_ERROR_TYPE: &str = "keyrot.NotRetryable.Config";

/// Installs the log subscriber: one JSON object per line on stdout, which CloudWatch Logs
/// keeps as one event. The level comes from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`,
/// else `info`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| {
            let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok()?;
            EnvFilter::try_new(level.to_ascii_lowercase()).ok()
        })
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// The invocation's deadline, from the `Lambda-Runtime-Deadline-Ms` header.
pub fn deadline_of(context: &Context) -> Option<Timestamp> {
    let millis = i64::try_from(context.deadline).ok()?;
    Timestamp::from_millisecond(millis).ok()
}

/// Tells Lambda that the cold start failed (`POST /runtime/init/error`, with `error_type` and
/// the error's message), logs it, and returns the exit code the binary ends with. Lambda then
/// records the init error and reports it to the caller; the process must not go on.
pub async fn init_failed(error_type: &str, error: &dyn std::error::Error) -> ExitCode {
    let message = error_chain(error);
    tracing::error!(error_type, error = %message, "cold start failed");
    if let Err(e) = report_init_error(error_type, &message).await {
        tracing::error!(error = %error_chain(e.as_ref()), "could not report the init error to Lambda");
    }
    ExitCode::FAILURE
}

async fn report_init_error(error_type: &str, message: &str) -> Result<(), lambda_runtime::Error> {
    let api =
        std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set")?;
    let base: http::Uri = format!("http://{api}").parse()?;
    let client = lambda_runtime_api_client::PooledClient::builder()
        .with_endpoint(base)
        .build();
    let diagnostic = Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message.to_owned(),
    };
    let request = lambda_runtime_api_client::build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", error_type)
        .body(serde_json::to_vec(&diagnostic)?.into())?;
    let response = client.call(request).await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the runtime API answered {}", response.status()).into())
    }
}

/// How the run loop ended: Lambda never ends it, so only a runtime failure gets here.
pub fn loop_ended(result: Result<(), lambda_runtime::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %error_chain(e.as_ref()), "the Lambda run loop failed");
            ExitCode::FAILURE
        }
    }
}
