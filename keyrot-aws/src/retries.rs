//! Which AWS calls the SDK retries, and why a retry is safe.
//!
//! The SDK retries a call after throttling, a 5xx, a timeout or a broken connection, up to
//! [`crate::AwsSettings::max_attempts`] attempts (5 by default, as the CLI and the Lambda run
//! it). Such a failure can be ambiguous: the service performed the call and its reply was
//! lost. A retry then asks for the effect a second time, so every call the adapters make is
//! either never retried or one whose repetition changes nothing keyrot relies on:
//!
//! | Call | Adapter | Retried by the SDK | Why that is safe |
//! |---|---|---|---|
//! | `iam:CreateAccessKey` | [`AwsIam`] `create_key` | **no**: sent once, with retries disabled for that one operation, whatever the client's settings | A retry after a lost reply would make a second key whose secret nobody holds, or ask IAM for a third (`LimitExceeded`). The failure goes to the driver as retryable; it observes again, and the key IAM made, if any, is an orphan it recognises by the intent recorded before the call and deletes. |
//! | `iam:UpdateAccessKey` | `set_status` | yes | Sets the status to a value; setting it twice is setting it once. |
//! | `iam:DeleteAccessKey` | `delete_key` | yes | A retry after the key is gone is answered `NoSuchEntity`, which the driver takes as done. |
//! | `iam:GetAccountAuthorizationDetails`, `iam:ListAccessKeys`, `iam:GetAccessKeyLastUsed`, `iam:GetCredentialReport` | `managed_users`, `list_keys`, `last_used`, `credential_report` | yes | Reads. |
//! | `iam:GenerateCredentialReport` | `credential_report` | yes | Asks IAM to make the account's report if it has none fresh; asking twice is asking once. |
//! | `secretsmanager:CreateSecret` | [`AwsSecretStore`], on a user's first write | yes | Creates the secret with its placeholder version under a fixed `ClientRequestToken`: Secrets Manager ignores a repeat with the same token and value (moto answers it as the first attempt). A `ResourceExistsException` (a secret another run created) is taken as "the secret is there". |
//! | `secretsmanager:PutSecretValue` | `put_pending` | yes | The version's `ClientRequestToken` is derived from the key id and the value is the same: Secrets Manager ignores a repeat with the same token and value (moto writes the same version again, to the same effect). A different value under the same token is refused (`Conflict`). |
//! | `secretsmanager:UpdateSecretVersionStage` | `promote` | yes | If the lost attempt moved `AWSCURRENT`, the retry's `RemoveFromVersionId` names a version that no longer holds it, and Secrets Manager refuses it (moto: `InvalidParameterException`). `promote` then reads the secret again and reports success when the key's version is current; otherwise the error stands. |
//! | `secretsmanager:TagResource` | `record_marks`, `record_intent`, `record_notice` | yes | Replaces a tag's value with the same value. |
//! | `secretsmanager:UntagResource` | `clear_marks` | yes | Removing a tag that is gone is no error. |
//! | `secretsmanager:DescribeSecret`, `secretsmanager:ListSecretVersionIds`, `secretsmanager:GetSecretValue`, `secretsmanager:ListSecrets` | `load`, `load_for`, `credentials`, `current`, `list_stored`, [`load_api_secrets`](crate::load_api_secrets) | yes | Reads. |
//! | `dynamodb:PutItem` | [`DynamoLease`] `acquire` | yes | Conditioned on the item's absence, its expiry or the claim's own token, drawn once before the first attempt: a retry after a lost reply finds its own claim and is granted again, with the same values. |
//! | `dynamodb:UpdateItem` | `renew` | yes | Sets `until` to the same value, conditioned on the claim's token. |
//! | `dynamodb:DeleteItem` | `release` | yes | Conditioned on the claim's token; a retry after the item is gone fails the condition, which `release` takes as done. |
//! | `dynamodb:TransactWriteItems` | `acquire_all`, `release_all` | yes | The conditional puts and deletes of `acquire` and `release`, up to 100 at once, all or nothing, each claim's token drawn once before the first attempt: a retry after a lost reply finds its own claims (granted again) or nothing left to delete (refused, taken as done). |
//! | `dynamodb:GetItem` | `acquire`, when a refusal carries no item | yes | A read. |
//! | `sts:GetCallerIdentity` | [`AwsVerifier`] | yes | A read, signed with the candidate key. |
//! | `ses:SendEmail` | [`SesNotifier`] | yes | A retry after a lost reply may send the mail twice. Accepted: a duplicate notification, never a lost one, and no key or secret changes. |
//! | `iam:ListUserTags` | [`Owners`] (a user's `keyrot:owner`), when a notice is mailed | yes | A read. |
//! | `secretsmanager:GetSecretValue` | [`WebhookNotifier`], the webhook's URL | yes | A read. |
//!
//! The webhook's own `POST` is not an AWS call: [`WebhookNotifier`] tries it up to three times
//! after a 429, a 5xx or no answer. A retry after a lost answer may post the notice twice:
//! like a second mail, a duplicate notification, never a lost one.
//!
//! Every claim is proven against moto through [`FaultProxy`](crate::moto::FaultProxy), which
//! lets moto perform a call and then loses its reply, with the SDK's default retries on
//! (`tests/contract/`, "lost replies"; `tests/ses.rs` for SendEmail; `tests/lease.rs` for
//! the lease), and `keyrot rotate` survives a lost reply, or a crash, at each call of a
//! lifecycle (`keyrot-cli/tests/faults.rs`).
//!
//! [`AwsIam`]: crate::AwsIam
//! [`AwsSecretStore`]: crate::AwsSecretStore
//! [`AwsVerifier`]: crate::AwsVerifier
//! [`DynamoLease`]: crate::DynamoLease
//! [`SesNotifier`]: crate::SesNotifier
//! [`Owners`]: crate::Owners
//! [`WebhookNotifier`]: crate::WebhookNotifier
