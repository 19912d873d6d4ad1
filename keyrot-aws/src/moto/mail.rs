//! Test support for notices: a verified SES sender in moto, and the mails moto "sent" (it
//! keeps every message, readable at `/moto-api/data.json`).
//!
//! moto 5.2.5 cannot render that page once a user has been deleted (its IAM model raises
//! while listing the deleted user's groups): read mails only in a test binary whose tests
//! delete no user.

use std::io::{Read, Write};
use std::net::TcpStream;

use keyrot_core::BoxError;
use serde_json::Value;

use super::Moto;
use crate::error::boxed;

impl Moto {
    /// Makes `address` a verified SES identity of the administrator's account (the hub).
    pub async fn verify_sender(&self, address: &str) -> Result<(), BoxError> {
        aws_sdk_sesv2::Client::new(&self.admin_config().await)
            .create_email_identity()
            .email_identity(address)
            .send()
            .await
            .map_err(boxed)?;
        Ok(())
    }

    /// Every mail moto sent from `sender`, oldest first, as moto records it (`subject`,
    /// `body`, `destinations`, ...).
    pub fn sent_mails(&self, sender: &str) -> Result<Vec<Value>, BoxError> {
        let host = self.endpoint().trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)?;
        write!(
            stream,
            "GET /moto-api/data.json HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or("moto's answer has no body")?;
        if !head.contains(" 200 ") {
            return Err(format!("moto answered /moto-api/data.json with {head}").into());
        }
        let state: Value = serde_json::from_str(body)?;
        Ok(state["ses"]["Message"]
            .as_array()
            .map(|mails| {
                mails
                    .iter()
                    .filter(|m| m["source"] == sender)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}
