//! Unit tests of user code (`examples::publish_check`) with keyrot-core's mockall mocks
//! (feature `mock`): each test says exactly which port calls it expects, with which arguments
//! and how often, and what they answer. A mock panics on a call nobody expected, and on drop
//! when an expected call did not happen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use examples::{CheckError, Health, publish_check};
use keyrot_core::{
    AccessKeyId, Credentials, MockSecretStore, MockVerifier, SecretAccessKey, StoreError, UserName,
    VerifyError,
};
use mockall::predicate::{eq, function};

fn user() -> UserName {
    UserName::new("ci-deployer").unwrap()
}

fn credentials(id: &str) -> Credentials {
    Credentials {
        access_key_id: AccessKeyId::new(id).unwrap(),
        secret_access_key: SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    }
}

/// A store that holds `published` as the user's current key, read exactly once.
fn store_with(published: Option<Credentials>) -> MockSecretStore {
    let mut store = MockSecretStore::new();
    store
        .expect_current()
        .with(eq(user()))
        .times(1)
        .returning(move |_| Ok(published.clone()));
    store
}

/// A verifier asked exactly once about `key` for the user, answering `answer`.
fn verifier_answering(
    key: &Credentials,
    answer: fn() -> Result<bool, VerifyError>,
) -> MockVerifier {
    let expected = key.clone();
    let mut verifier = MockVerifier::new();
    verifier
        .expect_authenticates()
        .with(
            eq(user()),
            // The whole key, secret included, must reach the verifier.
            function(move |c: &Credentials| *c == expected),
        )
        .times(1)
        .returning(move |_, _| answer());
    verifier
}

/// `publish_check` for the user, with `published` in the store and `verifier` to ask.
async fn check(
    published: Option<Credentials>,
    verifier: MockVerifier,
) -> Result<Health, CheckError> {
    publish_check(&store_with(published), &verifier, &user()).await
}

/// A verifier that must not be called.
fn verifier_never_called() -> MockVerifier {
    let mut verifier = MockVerifier::new();
    verifier.expect_authenticates().never();
    verifier
}

#[tokio::test]
async fn a_published_key_that_authenticates_works() {
    let key = credentials("AKIAWORKSWORKSWORKS1");
    let verifier = verifier_answering(&key, || Ok(true));

    let health = check(Some(key.clone()), verifier).await.unwrap();

    assert_eq!(health, Health::Works(key.access_key_id));
    assert_eq!(
        health.to_string(),
        "published key AKIAWORKSWORKSWORKS1 authenticates"
    );
}

#[tokio::test]
async fn a_published_key_that_no_longer_authenticates_is_refused() {
    let key = credentials("AKIAREVOKEDREVOKED01");
    let verifier = verifier_answering(&key, || Ok(false));

    let health = check(Some(key.clone()), verifier).await.unwrap();

    assert_eq!(health, Health::Refused(key.access_key_id));
}

#[tokio::test]
async fn a_store_error_is_reported_and_nothing_is_verified() {
    let mut store = MockSecretStore::new();
    store
        .expect_current()
        .with(eq(user()))
        .times(1)
        .returning(|_| Err(StoreError::Throttled("slow down".into())));
    let verifier = verifier_never_called();

    let err = publish_check(&store, &verifier, &user()).await.unwrap_err();

    assert!(
        matches!(err, CheckError::Store(StoreError::Throttled(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "could not read the published key");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "throttled by the secret store");
}

#[tokio::test]
async fn without_a_stored_key_nothing_is_verified() {
    let health = check(None, verifier_never_called()).await.unwrap();

    assert_eq!(health, Health::Unpublished);
}

#[tokio::test]
async fn a_key_of_someone_else_is_an_error_not_a_verdict() {
    let key = credentials("AKIAWRONGOWNERWRONG1");
    let verifier = verifier_answering(&key, || {
        Err(VerifyError::WrongIdentity {
            actual: "arn:aws:iam::123456789012:user/mallory".into(),
        })
    });

    let err = check(Some(key.clone()), verifier).await.unwrap_err();

    assert!(
        matches!(&err, CheckError::Verify(VerifyError::WrongIdentity { actual }) if actual.ends_with("/mallory")),
        "{err:?}"
    );
}
