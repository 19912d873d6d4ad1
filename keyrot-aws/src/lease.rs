//! [`Lease`] on aws-sdk-dynamodb: one run per user at a time. The table, each call and what
//! its retry does are described on [`DynamoLease`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use keyrot_core::{
    BoxError, Claim, LEASE_BATCH, Lease, LeaseError, LeaseToken, Timestamp, UserName,
};

use crate::error::{Kind, boxed, kind};

/// The lease table's name unless configured otherwise: the table of the stack that
/// `scripts/deploy.sh` creates by default (stack `keyrot`; the template names it
/// `<stack>-leases`).
pub const DEFAULT_LEASE_TABLE: &str = "keyrot-leases";

/// Whether `table` can name a DynamoDB table: a name of 3 to 255 letters, digits, `_`, `-` and
/// `.`, or a table ARN. The reason, for a person, if not.
pub fn check_table_name(table: &str) -> Result<(), &'static str> {
    if let Some(rest) = table.strip_prefix("arn:") {
        return match rest.split_once(":table/") {
            Some((_, name)) if rest.contains(":dynamodb:") => check_table_name(name),
            _ => {
                Err("write a table name or a DynamoDB table ARN (arn:aws:dynamodb:...:table/NAME)")
            }
        };
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if (3..=255).contains(&table.len()) && table.chars().all(allowed) {
        Ok(())
    } else {
        Err("a DynamoDB table name has 3 to 255 letters, digits, '_', '-' or '.'")
    }
}

/// How long after a claim's `until` DynamoDB's TTL may delete its item.
const TTL_AFTER_UNTIL: Duration = Duration::from_secs(24 * 3600);

/// How many times `acquire` tries again when the claim it was refused by is gone before it
/// could read it (released between the two calls).
const ACQUIRE_ROUNDS: usize = 3;

/// A claim is granted where there is none, or an expired one, or our own (a retry).
const CLAIM_CONDITION: &str = "attribute_not_exists(#user) OR #until <= :now OR #token = :token";

/// What a transaction's cancellation reason says of one action.
const REFUSED: &str = "ConditionalCheckFailed";
/// The action was not the cause; it goes again.
const NOT_THE_CAUSE: [&str; 2] = ["None", "TransactionConflict"];

const USER: &str = "user";
const TOKEN: &str = "token";
const UNTIL: &str = "until";
const TTL: &str = "ttl";

/// The lease table on DynamoDB, one item per user.
///
/// # The table
///
/// One item per user, partition key `user` (S):
///
/// | attribute | type | what                                                               |
/// |-----------|------|--------------------------------------------------------------------|
/// | `user`    | S    | the IAM user name                                                  |
/// | `token`   | S    | the claim's [`LeaseToken`]: 128 random bits, drawn by this adapter |
/// | `until`   | N    | when the claim expires, epoch milliseconds                         |
/// | `ttl`     | N    | epoch seconds, a day after `until`: DynamoDB's TTL cleanup         |
///
/// Expiry is decided by the callers' clocks (a claim is free once a caller's `now` reaches its
/// `until`), never by the table: DynamoDB deletes expired items only eventually (within days),
/// so `ttl` only keeps the table small. Times are kept to the millisecond.
///
/// # The calls, and what a retry does
///
/// The SDK retries a call after a transient failure (a 5xx, a timeout, a lost connection, a
/// throttle), and a failed attempt may have taken effect with its reply lost. Each call is
/// safe to repeat with the same arguments, which the SDK's retry does:
///
/// - `acquire` is `PutItem` with `ConditionExpression = attribute_not_exists(#user) OR #until
///   <= :now OR #token = :token` and `ReturnValuesOnConditionCheckFailure = ALL_OLD`. The token
///   is drawn once per `acquire`, before the first attempt, so a retry after a lost reply finds
///   its own claim (`#token = :token`) and is granted again, with the same values. A failed
///   condition answers [`Claim::Taken`] with the holder's token and `until` from the item the
///   condition saw; should the answer carry no item, a consistent `GetItem` reads it.
/// - `renew` is `UpdateItem` setting `until` and `ttl`, conditioned on `#token = :token`; a
///   retry sets the same values. A failed condition (the claim expired and another run took
///   it, or it is gone) is `Ok(false)`.
/// - `release` is `DeleteItem` conditioned on `#token = :token`. A retry after the item is gone
///   fails the condition, which is `Ok(())`: a claim that is gone or someone else's is left as
///   it is.
///
/// - `acquire_all` and `release_all` are one `TransactWriteItems` of those conditional puts or
///   deletes for up to 100 users, all or nothing: a refused condition cancels the whole
///   transaction, and its `CancellationReasons` (one per action, with the item the condition
///   saw) say which. The refused users are answered (taken; or, for a release, not ours or
///   gone) and the rest go again in the next transaction. A retry after a lost reply finds its
///   own claims or nothing left to delete, as above.
///
/// The role needs `dynamodb:PutItem`, `UpdateItem`, `DeleteItem` and `GetItem` on the table
/// ([`crate::permissions::ROTATOR_ACTIONS`]); batches are writes of the same items (DynamoDB
/// authorizes each action of a transaction as the single call).
#[derive(Debug, Clone)]
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLease {
    /// Claims users in `table` (name or ARN).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name or ARN.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// One transaction of `actions`: `Ok(None)` when it went through, the cancellation reasons
    /// (one per action, in order) when a condition refused it.
    async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<CancellationReason>>, LeaseError> {
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    Ok(Some(e.cancellation_reasons().to_vec()))
                }
                _ => Err(self.error(err)),
            },
        }
    }

    /// One `PutItem` of a claim with `token`: granted, or the holder as DynamoDB saw it (if
    /// the answer said).
    async fn put_claim(
        &self,
        user: &UserName,
        token: &LeaseToken,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Result<(), Option<Holder>>, LeaseError> {
        let claim = ClaimPut::new(user, token, now, until);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim.item))
            .condition_expression(CLAIM_CONDITION)
            .set_expression_attribute_names(Some(claim.names))
            .set_expression_attribute_values(Some(claim.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Ok(())),
            Err(err) if is_condition_failure(&err) => {
                let holder = err
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => e.item(),
                        _ => None,
                    })
                    .map(Holder::from_item)
                    .transpose()?;
                Ok(Err(holder))
            }
            Err(err) => Err(self.error(err)),
        }
    }

    /// The claim recorded for `user`, read consistently.
    async fn holder(&self, user: &UserName) -> Result<Option<Holder>, LeaseError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(USER, s(user.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        got.item().map(Holder::from_item).transpose()
    }

    /// `err` as a [`LeaseError`]; a missing table says which, and where it is configured.
    fn error<E>(&self, err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err.code() {
            // DynamoDB's own throttling code (also for on-demand tables' partition limits).
            Some("ProvisionedThroughputExceededException") => {
                return LeaseError::Throttled(boxed(err));
            }
            Some("ResourceNotFoundException") => {
                return LeaseError::Other(Box::new(NoTable {
                    table: self.table.clone(),
                    source: boxed(err),
                }));
            }
            _ => {}
        }
        match kind(&err) {
            Kind::Throttled => LeaseError::Throttled(boxed(err)),
            Kind::AccessDenied | Kind::NotAuthenticated => LeaseError::AccessDenied(boxed(err)),
            Kind::NotFound | Kind::Exists | Kind::LimitExceeded | Kind::Other => {
                LeaseError::Other(boxed(err))
            }
        }
    }
}

/// The lease table does not exist.
#[derive(Debug, thiserror::Error)]
#[error(
    "no lease table {table:?}: deploy cfn/template.yaml's LeaseTable or name the table in \
     KEYROT_LEASE_TABLE (aws.lease_table in keyrot's config file)"
)]
struct NoTable {
    table: String,
    #[source]
    source: BoxError,
}

/// An item of the table that keyrot cannot read.
#[derive(Debug, thiserror::Error)]
#[error("lease item for {user:?} has no readable {attribute}")]
struct Malformed {
    user: String,
    attribute: &'static str,
}

/// A claim as recorded.
#[derive(Debug)]
struct Holder {
    token: LeaseToken,
    until: Timestamp,
}

impl Holder {
    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, LeaseError> {
        let user = item
            .get(USER)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let bad = |attribute| {
            LeaseError::Other(Box::new(Malformed {
                user: user.clone(),
                attribute,
            }))
        };
        let token = item
            .get(TOKEN)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| bad(TOKEN))?;
        let until = item
            .get(UNTIL)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| bad(UNTIL))?;
        Ok(Self {
            token: LeaseToken::new(token.clone()),
            until,
        })
    }
}

#[async_trait]
impl Lease for DynamoLease {
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError> {
        let token = new_token()?;
        for _ in 0..ACQUIRE_ROUNDS {
            let seen = match self.put_claim(user, &token, now, until).await? {
                Ok(()) => return Ok(Claim::Granted(token)),
                Err(Some(holder)) => Some(holder),
                Err(None) => self.holder(user).await?,
            };
            // A claim that is gone or expired by the time it was read was released or ran out
            // in between: try again.
            if let Some(holder) = seen.filter(|h| h.until > now && h.token != token) {
                return Ok(Claim::Taken {
                    holder: holder.token,
                    until: holder.until,
                });
            }
        }
        Err(LeaseError::Other(
            format!("the claim on {user} changed hands {ACQUIRE_ROUNDS} times while acquiring")
                .into(),
        ))
    }

    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        let mut answers = Vec::with_capacity(users.len());
        for chunk in users.chunks(LEASE_BATCH) {
            answers.extend(self.acquire_batch(chunk, now, until).await?);
        }
        Ok(answers)
    }

    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        for chunk in held.chunks(LEASE_BATCH) {
            self.release_batch(chunk).await?;
        }
        Ok(())
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(USER, s(user.as_str()))
            .update_expression("SET #until = :until, #ttl = :ttl")
            .condition_expression("#token = :token")
            .expression_attribute_names("#until", UNTIL)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_values(":until", millis(until))
            .expression_attribute_values(":ttl", ttl(until))
            .expression_attribute_values(":token", s(token.as_str()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(self.error(err)),
        }
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(USER, s(user.as_str()))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_values(":token", s(token.as_str()))
            .send()
            .await;
        match delete {
            Err(err) if !is_condition_failure(&err) => Err(self.error(err)),
            _ => Ok(()),
        }
    }
}

impl DynamoLease {
    /// [`Lease::acquire_all`] for at most [`LEASE_BATCH`] users.
    async fn acquire_batch(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        // Drawn once, before the first attempt, as for `acquire`.
        let tokens = users
            .iter()
            .map(|_| new_token())
            .collect::<Result<Vec<_>, _>>()?;
        let mut answers: Vec<Option<Claim>> = vec![None; users.len()];
        let mut pending: Vec<usize> = (0..users.len()).collect();
        let mut stalled = 0;
        while !pending.is_empty() {
            let actions = pending
                .iter()
                .map(|&i| self.claim_action(&users[i], &tokens[i], now, until))
                .collect::<Result<Vec<_>, _>>()?;
            let Some(reasons) = self.transact(actions).await? else {
                for i in pending.drain(..) {
                    answers[i] = Some(Claim::Granted(tokens[i].clone()));
                }
                break;
            };
            let before = pending.len();
            let mut again = Vec::with_capacity(pending.len());
            for (&i, reason) in pending.iter().zip(reasons_for(&reasons, before)?) {
                match reason.code() {
                    Some(REFUSED) => {
                        let seen = match reason.item() {
                            Some(item) => Some(Holder::from_item(item)?),
                            None => self.holder(&users[i]).await?,
                        };
                        // Released or run out in between: it goes again.
                        match seen.filter(|h| h.until > now && h.token != tokens[i]) {
                            Some(holder) => {
                                answers[i] = Some(Claim::Taken {
                                    holder: holder.token,
                                    until: holder.until,
                                });
                            }
                            None => again.push(i),
                        }
                    }
                    code => again.push(check_not_the_cause(code, i)?),
                }
            }
            pending = again;
            if pending.len() == before {
                stalled += 1;
                if stalled >= ACQUIRE_ROUNDS {
                    return Err(LeaseError::Other(
                        format!(
                            "{before} claims were refused {ACQUIRE_ROUNDS} times in a row while \
                             acquiring them together"
                        )
                        .into(),
                    ));
                }
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// [`Lease::release_all`] for at most [`LEASE_BATCH`] claims.
    async fn release_batch(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        let mut pending: Vec<&(UserName, LeaseToken)> = held.iter().collect();
        let mut stalled = 0;
        while !pending.is_empty() {
            let actions = pending
                .iter()
                .map(|(user, token)| self.release_action(user, token))
                .collect::<Result<Vec<_>, _>>()?;
            let Some(reasons) = self.transact(actions).await? else {
                return Ok(());
            };
            let before = pending.len();
            let mut again = Vec::with_capacity(before);
            for (i, (held, reason)) in pending
                .iter()
                .zip(reasons_for(&reasons, before)?)
                .enumerate()
            {
                // Refused: gone, or someone else's; left as it is.
                if reason.code() != Some(REFUSED) {
                    check_not_the_cause(reason.code(), i)?;
                    again.push(*held);
                }
            }
            pending = again;
            if pending.len() == before {
                stalled += 1;
                if stalled >= ACQUIRE_ROUNDS {
                    return Err(LeaseError::Other(
                        format!("{before} releases were cancelled {ACQUIRE_ROUNDS} times in a row")
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The conditional put of a claim, as `acquire`'s `PutItem`.
    fn claim_action(
        &self,
        user: &UserName,
        token: &LeaseToken,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<TransactWriteItem, LeaseError> {
        let claim = ClaimPut::new(user, token, now, until);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(claim.item))
            .condition_expression(CLAIM_CONDITION)
            .set_expression_attribute_names(Some(claim.names))
            .set_expression_attribute_values(Some(claim.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LeaseError::Other(Box::new(e)))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The conditional delete of our claim, as `release`'s `DeleteItem`.
    fn release_action(
        &self,
        user: &UserName,
        token: &LeaseToken,
    ) -> Result<TransactWriteItem, LeaseError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(USER, s(user.as_str()))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_values(":token", s(token.as_str()))
            .build()
            .map_err(|e| LeaseError::Other(Box::new(e)))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

/// The item, names and values of a claim's conditional put ([`CLAIM_CONDITION`]), for
/// `PutItem` and for a transaction's `Put` alike.
struct ClaimPut {
    item: HashMap<String, AttributeValue>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl ClaimPut {
    fn new(user: &UserName, token: &LeaseToken, now: Timestamp, until: Timestamp) -> Self {
        let owned = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Self {
            item: HashMap::from([
                (USER.to_owned(), s(user.as_str())),
                (TOKEN.to_owned(), s(token.as_str())),
                (UNTIL.to_owned(), millis(until)),
                (TTL.to_owned(), ttl(until)),
            ]),
            names: owned(&[("#user", USER), ("#until", UNTIL), ("#token", TOKEN)]),
            values: HashMap::from([
                (":now".to_owned(), millis(now)),
                (":token".to_owned(), s(token.as_str())),
            ]),
        }
    }
}

/// The cancellation reasons of a transaction of `actions` actions: one per action, in order.
fn reasons_for(
    reasons: &[CancellationReason],
    actions: usize,
) -> Result<&[CancellationReason], LeaseError> {
    if reasons.len() == actions {
        Ok(reasons)
    } else {
        Err(LeaseError::Other(
            format!(
                "a cancelled transaction of {actions} actions came back with {} reasons",
                reasons.len()
            )
            .into(),
        ))
    }
}

/// `Ok(i)` when a cancellation reason says action `i` was not the cause (it goes again); the
/// transaction's failure otherwise (a validation error, a throttle of the item, ...).
fn check_not_the_cause(code: Option<&str>, i: usize) -> Result<usize, LeaseError> {
    match code {
        None => Ok(i),
        Some(code) if NOT_THE_CAUSE.contains(&code) => Ok(i),
        Some(code) if code.contains("Throttl") || code.contains("ThroughputExceeded") => {
            Err(LeaseError::Throttled(
                format!("a claim in a transaction was throttled ({code})").into(),
            ))
        }
        Some(code) => Err(LeaseError::Other(
            format!("a claim in a transaction was refused: {code}").into(),
        )),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// A fresh claim token: 128 bits from the operating system's generator, in hex.
fn new_token() -> Result<LeaseToken, LeaseError> {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| LeaseError::Other(Box::new(e)))?;
    Ok(LeaseToken::new(hex::encode(bytes)))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn millis(at: Timestamp) -> AttributeValue {
    AttributeValue::N(at.as_millisecond().to_string())
}

fn ttl(until: Timestamp) -> AttributeValue {
    let seconds = until
        .as_second()
        .saturating_add(TTL_AFTER_UNTIL.as_secs().cast_signed());
    AttributeValue::N(seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_and_arns() {
        for good in [
            DEFAULT_LEASE_TABLE,
            "a.b_c-1",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/keyrot-leases",
        ] {
            assert_eq!(check_table_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "ab",
            "has space",
            "slash/ed",
            "arn:aws:s3:::bucket",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/x",
        ] {
            assert!(check_table_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_distinct_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn items_round_trip_to_the_millisecond() {
        let until: Timestamp = "2026-12-01T10:00:00.123Z".parse().unwrap();
        let item = HashMap::from([
            (USER.to_owned(), s("alice")),
            (TOKEN.to_owned(), s("abc")),
            (UNTIL.to_owned(), millis(until)),
            (TTL.to_owned(), ttl(until)),
        ]);
        let holder = Holder::from_item(&item).unwrap();
        assert_eq!(holder.token.as_str(), "abc");
        assert_eq!(holder.until, until);
        assert_eq!(
            item[TTL].as_n().unwrap(),
            &(until.as_second() + 24 * 3600).to_string()
        );
    }

    #[test]
    fn an_unreadable_item_is_an_error_naming_the_attribute() {
        let item = HashMap::from([(USER.to_owned(), s("alice")), (TOKEN.to_owned(), s("abc"))]);
        let err = Holder::from_item(&item).unwrap_err();
        let LeaseError::Other(source) = err else {
            panic!("{err:?}");
        };
        assert_eq!(
            source.to_string(),
            "lease item for \"alice\" has no readable until"
        );
    }
}
