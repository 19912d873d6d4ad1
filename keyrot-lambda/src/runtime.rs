//! What both binaries share: JSON logs, the Lambda deadline as a [`Timestamp`], and reporting
//! a failed cold start to the Runtime API.

use std::process::ExitCode;

use keyrot_core::Timestamp;
use keyrot_core::driver::error_chain;
use lambda_runtime::{Context, Diagnostic};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The `errorType` of a cold start refused for its configuration: not retryable, a person must
/// fix the function's environment.
pub const CONFIG_ERROR_TYPE: &str = "keyrot.NotRetryable.Config";

/// Crates whose `DEBUG` and `TRACE` events may carry what a caller or AWS sent: lambda_runtime
/// logs every raw event at `TRACE` ("raw JSON event received from Lambda", with the API key and
/// the bearer token in its headers), the AWS SDK logs requests, responses and signing inputs
/// (and `GetSecretValue`'s body, should `LOG_SENSITIVE_BODIES` be set), hyper and h2 their
/// connections. A target matches every target it prefixes: `aws_` is aws-config, the SDK
/// clients, smithy, sigv4 and aws_lambda_events.
pub const CAPPED_TARGETS: [&str; 6] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_",
    "hyper",
    "h2",
];

/// Installs the log subscriber: one JSON object per line on stdout, which CloudWatch Logs
/// keeps as one event. The level comes from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`,
/// else `info`; whatever they say, [`CAPPED_TARGETS`] log at `info` at most (see
/// [`capped_targets`]).
///
/// `RUST_LOG` is read as a list of `target=level` directives ([`Targets`]: no span or field
/// filters, so no regex engine in the bootstrap). Release builds compile out every event below
/// `info` (keyrot-lambda's `tracing` features), so there `debug` and `trace` show nothing more.
pub fn init_logging() {
    let filter = log_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .with_filter(capped_targets());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .try_init();
}

/// The filter [`init_logging`] installs, from `RUST_LOG` and `AWS_LAMBDA_LOG_LEVEL`: the first
/// of them that parses, else `info`. Lambda's levels are `TRACE` to `ERROR` and `FATAL`, which
/// `tracing` calls `error`.
fn log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> Targets {
    rust_log
        .and_then(|directives| directives.parse().ok())
        .or_else(|| {
            let level = match lambda_level?.to_ascii_lowercase().as_str() {
                "fatal" => LevelFilter::ERROR,
                level => level.parse().ok()?,
            };
            Some(Targets::new().with_default(level))
        })
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// The cap on [`CAPPED_TARGETS`], a filter of its own applied after the user's rather than
/// merged into it, so that no directive of the user's (`RUST_LOG=lambda_runtime=trace`) lifts it.
pub fn capped_targets() -> Targets {
    CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, target| targets.with_target(*target, LevelFilter::INFO),
    )
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn raw_events_and_bodies_are_never_logged_below_info() {
        let targets = capped_targets();
        for target in [
            "lambda_runtime::layers::api_response",
            "lambda_runtime_api_client",
            "lambda_http::request",
            "aws_smithy_runtime::client::orchestrator::http",
            "aws_sigv4::http_request::sign",
            "aws_config::imds",
            "hyper_util::client::legacy::pool",
            "h2::codec::framed_read",
        ] {
            assert!(targets.would_enable(target, &Level::INFO), "{target}");
            assert!(!targets.would_enable(target, &Level::DEBUG), "{target}");
        }
        assert!(targets.would_enable("keyrot::audit", &Level::TRACE));
        assert!(targets.would_enable("keyrot_core::driver", &Level::DEBUG));
    }

    #[test]
    fn the_level_comes_from_rust_log_then_lambda_then_info() {
        let debug = log_filter(Some("warn,keyrot_core=debug"), Some("ERROR"));
        assert!(debug.would_enable("keyrot_core::driver", &Level::DEBUG));
        assert!(!debug.would_enable("keyrot_aws::iam", &Level::INFO));

        let lambda = log_filter(Some("keyrot=loud"), Some("DEBUG"));
        assert!(lambda.would_enable("keyrot_aws::iam", &Level::DEBUG));

        let fatal = log_filter(None, Some("FATAL"));
        assert!(fatal.would_enable("keyrot_aws::iam", &Level::ERROR));
        assert!(!fatal.would_enable("keyrot_aws::iam", &Level::WARN));

        for default in [log_filter(None, None), log_filter(None, Some("LOUD"))] {
            assert!(default.would_enable("keyrot_aws::iam", &Level::INFO));
            assert!(!default.would_enable("keyrot_aws::iam", &Level::DEBUG));
        }
    }
}
