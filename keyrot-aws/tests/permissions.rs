//! cfn/template.yaml's roles against the actions the adapters call
//! (`keyrot_aws::permissions`): each role allows every action its function calls, and no
//! other IAM, Secrets Manager, SES or DynamoDB action. The contract suite checks the other half: that
//! the adapters call nothing beyond these lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use keyrot_aws::permissions::{
    API_ACTIONS, MEMBER_ACTIONS, ORG_LIST_ACTIONS, OWNER_ACTIONS, REPORT_ACTIONS, ROTATOR_ACTIONS,
};

/// The text of one top-level resource of the template: from `  <name>:` to the next resource.
fn resource<'a>(template: &'a str, name: &str) -> &'a str {
    let start = template
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name} in the template"));
    let rest = &template[start + 1..];
    let end = rest[3..]
        .find("\n  ")
        .and_then(|_| {
            rest.match_indices("\n  ")
                .map(|(i, _)| i)
                .find(|&i| rest[i + 3..].starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Every `service:Action` named in `text` for the services keyrot's adapters call.
fn actions(text: &str) -> BTreeSet<String> {
    actions_of(
        text,
        &["iam:", "secretsmanager:", "ses:", "dynamodb:", "s3:"],
    )
}

/// As [`actions`], with Organizations and STS (the many accounts' roles).
fn all_actions(text: &str) -> BTreeSet<String> {
    actions_of(
        text,
        &[
            "iam:",
            "secretsmanager:",
            "ses:",
            "dynamodb:",
            "organizations:",
            "sts:",
        ],
    )
}

fn actions_of(text: &str, prefixes: &[&str]) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '*'))
        .filter(|w| prefixes.iter().any(|p| w.starts_with(p)) && w.len() > 4)
        .filter(|w| !w.contains("::") && !w.starts_with("ses:FromAddress"))
        .map(str::to_owned)
        .collect()
}

fn template() -> String {
    template_named("template.yaml")
}

fn template_named(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../cfn/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `role`'s actions in `template` but its trust policy's `sts:AssumeRole`, against `needed`.
fn assert_exactly(template: &str, role: &str, needed: &[&str]) {
    let text = resource(template, role);
    let policies = &text[text.find("Policies:").unwrap()..];
    let granted = all_actions(policies);
    let needed: BTreeSet<String> = needed.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(
        granted, needed,
        "{role} grants exactly what keyrot calls through it"
    );
}

#[test]
fn the_many_accounts_roles_allow_exactly_what_keyrot_calls_through_them() {
    assert_exactly(&template_named("member.yaml"), "MemberRole", MEMBER_ACTIONS);
    assert_exactly(&template_named("org.yaml"), "OrgListRole", ORG_LIST_ACTIONS);
    // The hub's accounts role: the rotator's secrets and lease actions, no IAM action in the
    // hub and no SES (it logs its notices), and sts:AssumeRole of the member and list roles.
    let mut hub: Vec<&str> = ROTATOR_ACTIONS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("iam:") && !a.starts_with("ses:"))
        .collect();
    hub.push("sts:AssumeRole");
    assert_exactly(&template(), "AccountsRole", &hub);
}

#[test]
fn the_rotator_role_allows_exactly_what_the_rotator_calls() {
    let template = template();
    let granted = actions(resource(&template, "RotateRole"));
    let needed: BTreeSet<String> = ROTATOR_ACTIONS
        .iter()
        .chain(OWNER_ACTIONS)
        .chain(REPORT_ACTIONS)
        .map(|a| (*a).to_owned())
        .collect();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(missing.is_empty(), "RotateRole lacks {missing:?}");
    assert!(
        extra.is_empty(),
        "RotateRole grants {extra:?}, which the rotator never calls"
    );
}

#[test]
fn the_api_role_allows_what_the_api_calls_and_only_reads() {
    let template = template();
    let granted = actions(resource(&template, "ApiRole"));
    for action in API_ACTIONS.iter().chain(&["s3:GetObject"]) {
        assert!(
            granted.contains(*action),
            "ApiRole lacks {action}: {granted:?}"
        );
    }
    assert!(
        !granted.iter().any(|a| a.starts_with("dynamodb:")),
        "ApiRole may not touch the lease table: {granted:?}"
    );
    for action in &granted {
        let verb = action.split(':').nth(1).unwrap();
        assert!(
            verb.starts_with("Get") || verb.starts_with("Describe"),
            "ApiRole may only read, but grants {action}"
        );
    }
}

#[test]
fn the_check_sees_a_missing_action() {
    // The parsing above must notice a role that lacks one of the actions.
    let template = template()
        .replace("- secretsmanager:ListSecretVersionIds\n", "")
        .replace("- dynamodb:UpdateItem\n", "");
    let granted = actions(resource(&template, "RotateRole"));
    assert!(!granted.contains("secretsmanager:ListSecretVersionIds"));
    assert!(!granted.contains("dynamodb:UpdateItem"));
    assert!(granted.contains("dynamodb:PutItem"), "{granted:?}");
    assert!(
        granted.contains("secretsmanager:PutSecretValue"),
        "{granted:?}"
    );
}
