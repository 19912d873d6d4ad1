//! cfn/template.yaml's roles against the actions the adapters call
//! (`keyrot_aws::permissions`): each role allows every action its function calls, and no
//! other IAM, Secrets Manager, SES or DynamoDB action. The contract suite checks the other half: that
//! the adapters call nothing beyond these lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use keyrot_aws::permissions::{
    API_ACTIONS, DELIVERY_ACTIONS, MEMBER_ACTIONS, ORG_LIST_ACTIONS, OWNER_ACTIONS, REPORT_ACTIONS,
    ROTATOR_ACTIONS,
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

/// The conditions under which a role's statements deliver (the stack's delivery parameters).
const DELIVERY_CONDITIONS: &[&str] = &[
    "DeliversToSsm",
    "DeliversToSecrets",
    "DeliversWithKmsKeys",
    "ReadsDeliverTagsByName",
    "HasGitHubCredential",
];

/// The statements of `role`'s policies in `template`, each with the condition of the `!If` it
/// sits in (`None`: granted whatever the parameters).
fn statements<'a>(template: &'a str, role: &str) -> Vec<(Option<&'a str>, &'a str)> {
    let text = resource(template, role);
    let policies = &text[text.find("Policies:").unwrap()..];
    let list = &policies[policies.find("Statement:").unwrap()..];
    let indent = "\n              - ";
    list.split(indent)
        .skip(1)
        .map(|chunk| match chunk.strip_prefix("!If") {
            Some(rest) => {
                let condition = rest.trim_start().strip_prefix("- ").unwrap();
                (Some(condition.split_whitespace().next().unwrap()), chunk)
            }
            None => (None, chunk),
        })
        .collect()
}

/// `role`'s statements' actions, split: (not delivering, delivering). Every delivery action
/// must sit under a delivery condition.
fn split_by_delivery(template: &str, role: &str) -> (String, String) {
    let (mut plain, mut delivery) = (String::new(), String::new());
    for (condition, chunk) in statements(template, role) {
        match condition {
            Some(c) if DELIVERY_CONDITIONS.contains(&c) => delivery.push_str(chunk),
            _ => plain.push_str(chunk),
        }
    }
    (plain, delivery)
}

/// Every action `text` names, KMS and SSM included.
fn delivery_actions(text: &str) -> BTreeSet<String> {
    let mut found = actions_of(text, &["iam:", "secretsmanager:", "ssm:", "kms:"]);
    found.remove("kms:ViaService"); // a condition key
    found
}

/// `role`'s actions in `template` but its trust policy's `sts:AssumeRole` and its delivery
/// statements (see [`delivery_is_conditional_and_exact`]), against `needed`.
fn assert_exactly(template: &str, role: &str, needed: &[&str]) {
    let (plain, _) = split_by_delivery(template, role);
    let granted = all_actions(&plain);
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
    // The hub's accounts role: the rotator's secrets, lease and SES actions (the member
    // accounts' notices are mailed from the hub), no IAM action in the hub, and sts:AssumeRole
    // of the member and list roles.
    let mut hub: Vec<&str> = ROTATOR_ACTIONS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("iam:"))
        .collect();
    hub.push("sts:AssumeRole");
    assert_exactly(&template(), "AccountsRole", &hub);
}

/// `role`'s delivery statements grant exactly [`DELIVERY_ACTIONS`], each only under a
/// condition on the delivery parameters, and nothing else grants them; but the users' tags,
/// when `owners` (the rotator reads the `keyrot:owner` tag for its notices, [`OWNER_ACTIONS`]).
fn delivery_is_conditional_and_exact(template: &str, role: &str, owners: bool) {
    let (plain, delivery) = split_by_delivery(template, role);
    let granted = delivery_actions(&delivery);
    let needed: BTreeSet<String> = DELIVERY_ACTIONS.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(granted, needed, "{role}'s delivery statements");
    // Secrets Manager's and KMS's actions serve keyrot's own secrets too; SSM serves only
    // delivery, and the users' tags only delivery and the owners' notices.
    assert!(
        !plain.contains("ssm:"),
        "{role}: delivery only under its conditions"
    );
    assert_eq!(
        plain.contains("iam:ListUserTags"),
        owners && OWNER_ACTIONS.contains(&"iam:ListUserTags"),
        "{role}: the users' tags only for delivery and the owners"
    );
}

#[test]
fn delivery_is_granted_only_with_destinations_and_only_what_it_calls() {
    delivery_is_conditional_and_exact(&template(), "RotateRole", true);
    delivery_is_conditional_and_exact(&template_named("member.yaml"), "MemberRole", false);
    // Each delivery condition is on the stack's delivery parameters.
    let template = template();
    let conditions = &template[template.find("\nConditions:\n").unwrap()..];
    for (condition, parameter) in [
        ("DeliversToSsm", "DeliverySsmPrefix"),
        ("DeliversToSecrets", "DeliverySecretArns"),
        ("DeliversWithKmsKeys", "DeliveryKmsKeyArns"),
        ("ReadsDeliverTagsByName", "DeliveryUserTags"),
        ("HasGitHubCredential", "GitHubCredentialSecretArn"),
    ] {
        let line = conditions
            .lines()
            .find(|l| l.starts_with(&format!("  {condition}:")))
            .unwrap_or_else(|| panic!("no condition {condition}"));
        assert!(line.contains(parameter), "{line}");
    }
}

#[test]
fn the_check_sees_a_delivery_action_granted_unconditionally() {
    // The parsing above must notice an SSM write outside the delivery conditions.
    let template = template().replace(
        "              # Delivery: each statement only when the stack is given its destinations.\n              - !If\n                - DeliversToSsm\n",
        "              - !If\n                - UseCmk\n",
    );
    let (plain, delivery) = split_by_delivery(&template, "RotateRole");
    assert!(plain.contains("ssm:PutParameter"));
    assert!(!delivery_actions(&delivery).contains("ssm:PutParameter"));
}

#[test]
fn the_rotator_role_allows_exactly_what_the_rotator_calls() {
    let template = template();
    let (plain, _) = split_by_delivery(&template, "RotateRole");
    let granted = actions(&plain);
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

/// The statement of `role` named `sid`: from its `Sid:` to the next statement.
fn statement<'a>(role: &'a str, sid: &str) -> &'a str {
    let start = role
        .find(&format!("Sid: {sid}"))
        .unwrap_or_else(|| panic!("no statement {sid}"));
    let rest = &role[start..];
    let end = rest[1..].find("- Sid:").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn the_summary_reads_the_run_and_writes_only_summaries() {
    let template = template();
    let role = resource(&template, "AccountsRole");
    let granted = actions_of(role, &["s3:"]);
    let needed: BTreeSet<String> = keyrot_aws::permissions::SUMMARY_ACTIONS
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    assert_eq!(granted, needed);
    let read = statement(role, "ReadRun");
    assert_eq!(
        actions_of(read, &["s3:"]),
        BTreeSet::from(["s3:GetObject".to_owned()])
    );
    assert!(
        read.contains("${AccountsBucket.Arn}/inventory/*")
            && read.contains("${AccountsBucket.Arn}/runs/*"),
        "{read}"
    );
    assert_eq!(read.matches("AccountsBucket.Arn").count(), 2, "{read}");
    let write = statement(role, "WriteSummary");
    assert_eq!(
        actions_of(write, &["s3:"]),
        BTreeSet::from(["s3:PutObject".to_owned()])
    );
    assert!(
        write.contains("${AccountsBucket.Arn}/summaries/*\""),
        "{write}"
    );
    assert_eq!(write.matches("AccountsBucket.Arn").count(), 1, "{write}");
    // The state machine writes the inventory and the results, never a summary.
    let machine = resource(&template, "AccountsStateMachineRole");
    assert!(!machine.contains("summaries"), "{machine}");
    assert!(!machine.contains("${AccountsBucket.Arn}/*"), "{machine}");
}
