//! [`Objects`] against moto's S3: a put is read back whole, a second put replaces it, a missing
//! object is `None` (for `GetObject` and for `HeadObject`, whose 404 has no body), listing
//! follows every page in key order, and a bucket that does not exist is an error that names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyrot_aws::moto::Moto;
use keyrot_aws::{AwsClients, ObjectError, Objects};

async fn bucket(name: &str) -> Objects {
    let moto = tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let clients = AwsClients::new(moto.admin_config().await);
    clients
        .s3
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
    Objects::new(clients.s3, name)
}

#[tokio::test]
async fn an_object_is_written_replaced_read_and_listed() {
    let objects = bucket("keyrot-objects-basic").await;
    assert_eq!(objects.get("reports/latest.json").await.unwrap(), None);
    assert_eq!(objects.info("reports/latest.json").await.unwrap(), None);

    objects
        .put(
            "reports/latest.json",
            b"{\"users\":[]}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    objects
        .put(
            "reports/latest.json",
            b"{\"users\":[1]}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(
        objects.get("reports/latest.json").await.unwrap().as_deref(),
        Some(&b"{\"users\":[1]}"[..])
    );
    let info = objects.info("reports/latest.json").await.unwrap().unwrap();
    assert_eq!(info.key, "reports/latest.json");
    assert!(info.modified.is_some());
}

#[tokio::test]
async fn listing_follows_every_page_in_key_order() {
    let objects = bucket("keyrot-objects-pages").await;
    // ListObjectsV2 answers at most 1,000 keys a page.
    let keys: Vec<String> = (0..1_005).map(|i| format!("runs/r1/{i:05}.json")).collect();
    for key in &keys {
        objects
            .put(key, b"{}".to_vec(), "application/json")
            .await
            .unwrap();
    }
    objects
        .put("other/x.json", b"{}".to_vec(), "application/json")
        .await
        .unwrap();

    let listed: Vec<String> = objects
        .list("runs/r1/")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key)
        .collect();
    assert_eq!(listed, keys);
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_that_names_it() {
    let moto = tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let clients = AwsClients::new(moto.admin_config().await);
    let objects = Objects::new(clients.s3, "keyrot-objects-nowhere");
    let error = objects
        .put("a.json", b"{}".to_vec(), "application/json")
        .await
        .unwrap_err();
    assert!(matches!(error, ObjectError::Other { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "s3 call on s3://keyrot-objects-nowhere/a.json failed"
    );
    assert!(
        format!("{:?}", std::error::Error::source(&error)).contains("NoSuchBucket"),
        "{error:?}"
    );
}
