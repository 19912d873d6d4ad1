//! Another Rust tool that embeds keyrot: one reconcile pass over AWS for the users named on the
//! command line (every managed user when none is named), as a dry run unless `--apply` is
//! given, then a check that each user's published key authenticates.
//!
//! ```sh
//! cargo run -p examples --bin embed -- ci-deployer              # plan only
//! cargo run -p examples --bin embed -- --apply ci-deployer      # act
//! cargo run -p examples --bin embed -- --endpoint-url http://127.0.0.1:5000 --apply --force ci-deployer
//! ```
//!
//! AWS access comes from aws-config's standard chain (`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, ...);
//! the rotation policy from the `KEYROT_*` variables of keyrot-config's setting table. Exit status:
//! 0 when every user is fine, 1 when a user failed, is blocked or not managed, or a published
//! key does not authenticate, 2 for bad arguments or settings.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command: stdout is its output

use std::process::ExitCode;

use clap::Parser;
use clap::builder::NonEmptyStringValueParser;
use examples::{Health, Mode, endpoint_url, publish_check, rotate_once};
use keyrot_aws::{AwsClients, AwsSettings, BackendSettings, DEFAULT_LEASE_TABLE, DEFAULT_PREFIX};
use keyrot_config::Sources;
use keyrot_core::driver::error_chain;
use keyrot_core::settings::PolicySettings;
use keyrot_core::{Outcome, UserName};

/// One keyrot pass over AWS IAM users, printed as a report.
#[derive(Debug, Parser)]
#[command(
    name = "embed",
    after_help = "The rotation policy comes from KEYROT_ROTATION_PERIOD, KEYROT_GRACE_PERIOD, \
                  KEYROT_MANAGED_TAG, ... (see keyrot-config); AWS credentials and \
                  region from the standard AWS chain."
)]
struct Args {
    /// IAM users to reconcile; none means every managed user.
    #[arg(value_name = "USER")]
    users: Vec<UserName>,
    /// Take the steps that are due (without it, only print the plan).
    #[arg(long)]
    apply: bool,
    /// Rotate now whatever the keys' ages.
    #[arg(long, requires = "apply")]
    force: bool,
    /// One endpoint for every AWS service, e.g. an emulator [env: AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL", value_parser = endpoint_url)]
    endpoint_url: Option<String>,
    /// The AWS region (default: the standard chain's, e.g. AWS_REGION).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Per-user secrets are named PREFIX followed by the user name in Secrets Manager
    /// [env: KEYROT_SECRET_PREFIX] [default: keyrot/users/]
    #[arg(long, value_name = "PREFIX", value_parser = NonEmptyStringValueParser::new())]
    secret_prefix: Option<String>,
    /// The DynamoDB table of the runs' claims on users, which keeps this run apart from the
    /// deployed rotator and `keyrot rotate` [env: KEYROT_LEASE_TABLE] [default: keyrot-leases]
    #[arg(long, value_name = "TABLE", value_parser = NonEmptyStringValueParser::new())]
    lease_table: Option<String>,
}

const BAD_INPUT: u8 = 2;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Bad arguments: clap prints what is wrong and exits with status 2.
    let args = Args::parse();
    // keyrot logs through tracing; show warnings and the notices of what it did.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,keyrot::notice=info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();

    // The environment is read here rather than by clap so that, as everywhere in keyrot, an
    // empty variable counts as unset.
    let policy = match Sources::new().env(env).policy(&PolicySettings::default()) {
        Ok(policy) => policy,
        Err(e) => return bad_input(error_chain(&e)),
    };
    let endpoint_url = match (args.endpoint_url, env("AWS_ENDPOINT_URL")) {
        (Some(url), _) => Some(url),
        (None, Some(text)) => match endpoint_url(&text) {
            Ok(url) => Some(url),
            Err(e) => return bad_input(format!("AWS_ENDPOINT_URL: {e}")),
        },
        (None, None) => None,
    };
    let mode = match (args.apply, args.force) {
        (false, _) => Mode::DryRun,
        (true, false) => Mode::Apply,
        (true, true) => Mode::Force,
    };

    let aws = AwsSettings {
        region: args.region,
        endpoint_url,
        ..AwsSettings::default()
    };
    let backend = BackendSettings {
        secret_prefix: args
            .secret_prefix
            .or_else(|| env("KEYROT_SECRET_PREFIX"))
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
        lease_table: args
            .lease_table
            .or_else(|| env("KEYROT_LEASE_TABLE"))
            .unwrap_or_else(|| DEFAULT_LEASE_TABLE.to_owned()),
        ..BackendSettings::default()
    };
    let ports = backend.ports(&AwsClients::from_settings(&aws).await);

    let report = match rotate_once(ports.clone(), policy, &args.users, mode).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("embed: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if mode == Mode::DryRun {
        println!("dry run: nothing was changed (run with --apply to take these steps)");
    }
    println!("{report}");

    let mut healthy = report.failures() == 0;
    println!();
    for user in &report.users {
        if matches!(user.outcome, Outcome::NotManaged) {
            continue;
        }
        match publish_check(&*ports.store, &*ports.verifier, &user.user).await {
            Ok(health) => {
                healthy &= !matches!(health, Health::Refused(_));
                println!("{}: {health}", user.user);
            }
            Err(e) => {
                healthy = false;
                println!("{}: {}", user.user, error_chain(&e));
            }
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An environment variable; empty counts as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("embed: {message}");
    ExitCode::from(BAD_INPUT)
}
