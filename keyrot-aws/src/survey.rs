//! The bulk reads of a [survey](keyrot_core::survey): IAM's credential report and the users
//! selected by tag, each in a few calls for the whole account.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iam::types::{EntityType, ReportStateType};
use keyrot_core::delivery::DELIVER_TAG;
use keyrot_core::survey::{CredentialReport, ReportedKey};
use keyrot_core::{BoxError, IamError, Timestamp, UserName};

use crate::error::iam_error;
use crate::time::from_aws;
use crate::user_tags::UserTags;

/// How long to wait for IAM to finish a credential report it started, and how often to ask.
/// IAM makes one in seconds for most accounts (IAM User Guide, "Getting credential reports").
const REPORT_POLLS: u32 = 30;
const REPORT_POLL_EVERY: Duration = Duration::from_secs(1);

/// IAM's credential report: asks IAM for one (it hands back the last one while that is younger
/// than four hours), waits until it is complete, and reads it.
pub(crate) async fn credential_report(
    client: &aws_sdk_iam::Client,
) -> Result<CredentialReport, IamError> {
    for _ in 0..REPORT_POLLS {
        let state = client
            .generate_credential_report()
            .send()
            .await
            .map_err(iam_error)?;
        if state.state() == Some(&ReportStateType::Complete) {
            let report = client
                .get_credential_report()
                .send()
                .await
                .map_err(iam_error)?;
            let generated = report
                .generated_time()
                .and_then(from_aws)
                .ok_or_else(|| other("the credential report has no generation time"))?;
            let content = report
                .content()
                .ok_or_else(|| other("the credential report is empty"))?;
            return parse_report(content.as_ref(), generated).map_err(IamError::Other);
        }
        tokio::time::sleep(REPORT_POLL_EVERY).await;
    }
    Err(other("IAM did not finish the credential report in time"))
}

fn other(message: &'static str) -> IamError {
    IamError::Other(message.into())
}

/// Reads the report's CSV: for every user row, `access_key_1_*` and `access_key_2_*`. A key
/// exists when its `last_rotated` is a time (`N/A` otherwise); the account's root row
/// (`<root_account>`) is skipped.
pub(crate) fn parse_report(csv: &[u8], generated: Timestamp) -> Result<CredentialReport, BoxError> {
    let mut reader = csv::Reader::from_reader(csv);
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("the credential report has no column {name}"))
    };
    let user = column("user")?;
    let keys = [
        (
            column("access_key_1_active")?,
            column("access_key_1_last_rotated")?,
        ),
        (
            column("access_key_2_active")?,
            column("access_key_2_last_rotated")?,
        ),
    ];
    let mut report = CredentialReport {
        generated,
        ..CredentialReport::default()
    };
    for row in reader.records() {
        let row = row?;
        let field = |i: usize| row.get(i).unwrap_or_default();
        if field(user) == "<root_account>" {
            continue;
        }
        let name = UserName::new(field(user))?;
        let mut reported = Vec::new();
        for (active, rotated) in keys {
            let rotated = field(rotated);
            if rotated == "N/A" || rotated.is_empty() {
                continue;
            }
            let created: Timestamp = rotated
                .parse()
                .map_err(|e| format!("{name}: {rotated:?} is not a time: {e}"))?;
            reported.push(ReportedKey {
                active: field(active).eq_ignore_ascii_case("true"),
                created,
            });
        }
        report.users.insert(name, reported);
    }
    Ok(report)
}

/// The users carrying the tag `key=value`, from GetAccountAuthorizationDetails: one call per
/// page of users with their tags (ListUsers returns no tags, so it would take a ListUserTags
/// per user). The selected users' [`DELIVER_TAG`]s, in the same pages, are recorded in
/// `tags`.
pub(crate) async fn tagged_users(
    client: &aws_sdk_iam::Client,
    key: &str,
    value: &str,
    tags: &UserTags,
) -> Result<Vec<UserName>, IamError> {
    let mut pages = client
        .get_account_authorization_details()
        .filter(EntityType::User)
        .max_items(1000)
        .into_paginator()
        .send();
    let mut users = Vec::new();
    let mut seen = BTreeMap::new();
    while let Some(page) = pages.try_next().await.map_err(iam_error)? {
        for user in page.user_detail_list() {
            let tagged = user
                .tags()
                .iter()
                .any(|t| t.key() == key && t.value() == value);
            if let (true, Some(name)) = (tagged, user.user_name()) {
                let name = UserName::new(name).map_err(|e| IamError::Other(Box::new(e)))?;
                let deliver = user.tags().iter().find(|t| t.key() == DELIVER_TAG);
                seen.insert(name.clone(), deliver.map(|t| t.value().to_owned()));
                users.push(name);
            }
        }
    }
    tags.replace(seen);
    users.sort();
    Ok(users)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    #[test]
    fn the_report_gives_each_users_keys_and_skips_the_root_row() {
        let csv = format!(
            "{HEADER}\n\
             <root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             ci,arn:aws:iam::123456789012:user/ci,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-03-01T10:00:03+00:00,2026-03-02T00:00:00+00:00,us-east-1,sts,false,2025-12-01T09:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A\n\
             \"odd,name\",arn:aws:iam::123456789012:user/odd,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
        );
        let generated: Timestamp = "2026-03-02T12:00:00Z".parse().unwrap();
        let report = parse_report(csv.as_bytes(), generated).unwrap();
        assert_eq!(report.generated, generated);
        assert_eq!(report.users.len(), 2);
        let ci = &report.users[&UserName::new("ci").unwrap()];
        assert_eq!(
            ci,
            &[
                ReportedKey {
                    active: true,
                    created: "2026-03-01T10:00:03Z".parse().unwrap()
                },
                ReportedKey {
                    active: false,
                    created: "2025-12-01T09:00:00Z".parse().unwrap()
                },
            ]
        );
        assert!(report.users[&UserName::new("odd,name").unwrap()].is_empty());
    }

    #[test]
    fn a_report_keyrot_cannot_read_is_an_error() {
        let at = Timestamp::UNIX_EPOCH;
        for bad in [
            "user,arn\nci,arn:aws:iam::1:user/ci\n".to_owned(),
            format!("{HEADER}\nci,a,b,c,d,e,f,g,true,yesterday,x,x,x,false,N/A,x,x,x,x,x,x,x\n"),
            format!(
                "{HEADER}\nnot a user name!,a,b,c,d,e,f,g,true,N/A,x,x,x,false,N/A,x,x,x,x,x,x,x\n"
            ),
        ] {
            assert!(parse_report(bad.as_bytes(), at).is_err(), "{bad}");
        }
    }
}
