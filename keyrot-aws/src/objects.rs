//! Objects in one S3 bucket: the documents keyrot writes for people and other programs to read
//! (the compliance report after a run, the fan-out's summary over all accounts), and reads back.
//!
//! Nothing here is secret: what keyrot writes to S3 holds key ids, dates and outcomes, never a
//! secret access key. The bucket's encryption, public access block and lifecycle are the
//! template's business (`cfn/template.yaml`).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use keyrot_core::{BoxError, Timestamp};

use crate::error::{Kind, boxed, kind};
use crate::time::from_aws;

/// Why an object call failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// keyrot's role may not read or write there (or the bucket is another account's).
    #[error("access denied to s3://{bucket}/{key}")]
    AccessDenied {
        /// The bucket.
        bucket: String,
        /// The object's key (or the prefix listed).
        key: String,
        /// S3's answer.
        #[source]
        source: BoxError,
    },
    /// Any other failure: no such bucket, throttling after the SDK's retries, no reply.
    #[error("s3 call on s3://{bucket}/{key} failed")]
    Other {
        /// The bucket.
        bucket: String,
        /// The object's key (or the prefix listed).
        key: String,
        /// S3's answer, or why there was none.
        #[source]
        source: BoxError,
    },
}

/// An object's key and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// When it was last written, as S3 says.
    pub modified: Option<Timestamp>,
}

/// One bucket, through aws-sdk-s3.
///
/// - [`put`](Self::put) is `PutObject`: S3 replaces an object whole, so a retried put leaves
///   the object as one put would (the SDK retries it safely).
/// - [`get`](Self::get) is `GetObject`; a missing object (`NoSuchKey`, or 404) is `None`.
/// - [`info`](Self::info) is `HeadObject`, for when an object was written, without its body.
/// - [`list`](Self::list) is `ListObjectsV2`, every page, in key order.
#[derive(Debug, Clone)]
pub struct Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Objects {
    /// Objects in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes `body` to `key`, replacing what was there.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(key, kind(&e), boxed(e)))?;
        Ok(())
    }

    /// The body of `key`, or `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if missing(kind(&e), e.code()) => return Ok(None),
            Err(e) => return Err(self.error(key, kind(&e), boxed(e))),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| self.error(key, Kind::Other, Box::new(e)))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// When `key` was last written, or `None` when there is no such object.
    pub async fn info(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                modified: output.last_modified.as_ref().and_then(from_aws),
            })),
            Err(e) if missing(kind(&e), e.code()) => Ok(None),
            Err(e) => Err(self.error(key, kind(&e), boxed(e))),
        }
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(prefix, kind(&e), boxed(e)))?;
            found.extend(
                page.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|object| {
                        Some(ObjectInfo {
                            modified: object.last_modified.as_ref().and_then(from_aws),
                            key: object.key?,
                        })
                    }),
            );
        }
        Ok(found)
    }

    fn error(&self, key: &str, kind: Kind, source: BoxError) -> ObjectError {
        let (bucket, key) = (self.bucket.clone(), key.to_owned());
        match kind {
            Kind::AccessDenied | Kind::NotAuthenticated => ObjectError::AccessDenied {
                bucket,
                key,
                source,
            },
            _ => ObjectError::Other {
                bucket,
                key,
                source,
            },
        }
    }
}

/// Whether S3 said the object is not there: `NoSuchKey` from `GetObject`, a bare 404 from
/// `HeadObject` (a HEAD reply has no body to carry a code).
fn missing(kind: Kind, code: Option<&str>) -> bool {
    kind == Kind::NotFound || matches!(code, Some("NoSuchKey" | "NotFound"))
}
