//! What the API function's tests share: API Gateway event fixtures and the clock they run at.

use keyrot_core::Timestamp;
use serde_json::{Value, json};

pub(super) const ACTIVE_KEY: &str = include_str!("../../tests/fixtures/apigw-rest-active-key.json");
pub(super) const BASE_PATH_ACTIVE_KEY: &str =
    include_str!("../../tests/fixtures/apigw-rest-base-path-active-key.json");
pub(super) const GENERATE_TOKEN: &str =
    include_str!("../../tests/fixtures/apigw-rest-generate-token.json");
pub(super) const HEALTH: &str = include_str!("../../tests/fixtures/apigw-rest-health.json");

pub(super) fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

/// Sends `event` from an address the test clients are allowed from.
pub(super) fn from_allowed_address(event: &mut Value) {
    event["requestContext"]["identity"]["sourceIp"] = json!("52.255.255.12");
}
