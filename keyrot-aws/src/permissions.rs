//! The AWS API actions the adapters call: what the functions' IAM roles must allow, and all
//! they need. cfn/template.yaml's roles are checked against these lists
//! (`tests/permissions.rs`), and the contract suite records every call the adapters make
//! against moto and checks it is listed here.

/// Every action the rotator calls: IAM for users and keys, Secrets Manager on its own secrets,
/// SES for alerts, DynamoDB on the lease table. (`sts:GetCallerIdentity` is signed with the candidate key itself and needs
/// no permission.)
pub const ROTATOR_ACTIONS: &[&str] = &[
    "iam:GetAccountAuthorizationDetails",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListAccessKeys",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
    "secretsmanager:ListSecrets",
    "secretsmanager:CreateSecret",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:TagResource",
    "secretsmanager:UntagResource",
    "ses:SendEmail",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
];

/// The actions owner notices add ([`crate::Owners`]): the tags of a user a notice is about
/// (`keyrot:owner`), read in the account keyrot runs in, on managed users only. Never through
/// the member role: a member account's notices go to the administrators alone.
pub const OWNER_ACTIONS: &[&str] = &["iam:ListUserTags"];

/// Every action keyrot calls in a member account, through the member role
/// (`cfn/member.yaml`): the IAM part of [`ROTATOR_ACTIONS`], nothing else (secrets, the lease
/// and alerts stay in the hub).
pub const MEMBER_ACTIONS: &[&str] = ROTATOR_ACTIONS.split_at(8).0;

/// Every action keyrot calls through the management account's list-only role: the
/// organization's tree and accounts, read.
pub const ORG_LIST_ACTIONS: &[&str] = &[
    "organizations:ListAccounts",
    "organizations:ListRoots",
    "organizations:ListChildren",
    "organizations:ListAccountsForParent",
];

/// The actions delivery adds (`AwsDelivery`), needed only by a rotator with destinations and
/// only on them: SSM parameters and Secrets Manager secrets named by the destinations, the
/// users' tags when destinations may be declared there, and the KMS keys of SSM destinations
/// with a key of their own (SSM and Secrets Manager encrypt and decrypt with the caller's
/// permissions). The template's rotator role and the member role grant each only under a
/// condition on the stack's delivery parameters (`tests/permissions.rs`,
/// `cfn/rules/delivery_scoped.guard`); `iam:ListUserTags` only for users selected by name
/// (a listing by tag brings the tags).
pub const DELIVERY_ACTIONS: &[&str] = &[
    "ssm:PutParameter",
    "ssm:GetParameter",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:CreateSecret",
    "iam:ListUserTags",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

/// The actions of the fan-out's run summary (keyrot-lambda's `summary`, through
/// [`Objects`](crate::Objects)): `GetObject` of the inventory (`inventory/`) and the map's
/// results (`runs/`), `PutObject` of the summary (`summaries/`), nothing else in the bucket.
pub const SUMMARY_ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject"];

/// The actions of the deployed rotator's report ([`Objects`](crate::Objects)): `PutObject`, and
/// `GetObject` for `HeadObject` (when the latest report was written), both only under the
/// reports bucket's `reports/` prefix. The API reads the latest report with `GetObject` alone.
pub const REPORT_ACTIONS: &[&str] = &["s3:PutObject", "s3:GetObject"];

/// Every action the API calls: it only reads secrets (each user's current key, its signing
/// keys and its client registry).
pub const API_ACTIONS: &[&str] = &["secretsmanager:GetSecretValue"];

/// The IAM action of an SDK operation, from the service and operation names the SDK records
/// for each call (`"IAM"`, `"CreateAccessKey"` → `iam:CreateAccessKey`).
pub fn action_of(service: &str, operation: &str) -> String {
    let prefix = match service.to_ascii_lowercase().as_str() {
        "sesv2" => "ses".to_owned(),
        other => other.replace(' ', ""),
    };
    format!("{prefix}:{operation}")
}

/// The actions a policy must allow for `action` as keyrot calls it: itself, except for an
/// operation that IAM authorizes by what it does. DynamoDB authorizes each action of a
/// `TransactWriteItems` as the single call (PutItem, DeleteItem, ...; "Using IAM with DynamoDB
/// transactions"), and keyrot's transactions put and delete claims.
pub fn authorized_by(action: &str) -> Vec<&str> {
    match action {
        "dynamodb:TransactWriteItems" => vec!["dynamodb:PutItem", "dynamodb:DeleteItem"],
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_role_gets_every_iam_action_of_the_rotator_and_nothing_else() {
        let iam: Vec<&str> = ROTATOR_ACTIONS
            .iter()
            .copied()
            .filter(|a| a.starts_with("iam:"))
            .collect();
        assert_eq!(MEMBER_ACTIONS, iam);
    }

    #[test]
    fn sdk_names_map_to_iam_actions() {
        assert_eq!(action_of("IAM", "CreateAccessKey"), "iam:CreateAccessKey");
        assert_eq!(action_of("SESv2", "SendEmail"), "ses:SendEmail");
        assert_eq!(action_of("DynamoDB", "PutItem"), "dynamodb:PutItem");
        assert_eq!(
            action_of("Secrets Manager", "ListSecretVersionIds"),
            "secretsmanager:ListSecretVersionIds"
        );
    }
}
