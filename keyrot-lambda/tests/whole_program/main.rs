//! The two binaries as whole programs: each runs as Lambda runs it, against a small fake of
//! the Lambda Runtime API on 127.0.0.1 (`GET .../invocation/next` hands out an event with the
//! request id and deadline headers; `.../response`, `.../error` and `.../init/error` are
//! recorded), with its AWS calls going to moto's server on 127.0.0.1
//! ([`keyrot_aws::moto::Moto::shared`], authentication enforced).
//!
//! No test sleeps: the fake answers `next` as soon as an event is queued, and every wait is on
//! a condition (a report arrived, a line was printed, the process closed its output), bounded
//! by [`TIMEOUT`]. Every child process is killed when its test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyrot_aws::AwsSecretStore;
use keyrot_aws::moto::Moto;
use keyrot_core::token::{ApiKey, ApiKeyDigest};
use keyrot_core::{AccessKeyId, Credentials, SecretAccessKey, SecretStore, Timestamp, UserName};
use serde_json::{Value, json};

/// How long any one wait may take (moto answers in milliseconds; a loaded CI machine is slow).
const TIMEOUT: Duration = Duration::from_secs(120);

const HEALTH: &str = include_str!("../fixtures/apigw-rest-health.json");
const GENERATE_TOKEN: &str = include_str!("../fixtures/apigw-rest-generate-token.json");
const ACTIVE_KEY: &str = include_str!("../fixtures/apigw-rest-active-key.json");
const SCHEDULED: &str = include_str!("../fixtures/eventbridge-scheduled.json");

mod api;
mod cold_start;
mod fanout;
mod function;
mod report;
mod rotate;
mod runtime_api;

use function::Function;
use runtime_api::RuntimeApi;

// ------------------------------------------------------------------ moto

fn moto() -> &'static Moto {
    Moto::shared().unwrap_or_else(|e| panic!("{e}"))
}

/// One runtime per test: SDK clients keep their connections on the runtime they first ran on.
fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The lease table the tests' rotators share (each test has users of its own).
const LEASE_TABLE: &str = "keyrot-lambda-test-leases";

/// The AWS part of a function's environment: moto, signed with its administrator's key, and
/// the lease table (made if need be), as the template passes it to the rotator.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    tokio()
        .block_on(moto.create_lease_table(LEASE_TABLE))
        .unwrap();
    let (key_id, secret) = moto.admin_credentials();
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint().to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", key_id.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
        ("KEYROT_LEASE_TABLE", LEASE_TABLE.to_owned()),
    ]
}

fn event(fixture: &str, fill: &[(&str, &str)], edit: impl FnOnce(&mut Value)) -> Value {
    let mut text = fixture.to_owned();
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    let mut value: Value = serde_json::from_str(&text).unwrap();
    edit(&mut value);
    value
}
