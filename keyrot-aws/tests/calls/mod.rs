//! Records the AWS API action of every call an SDK client makes (an interceptor reading the
//! operation name the SDK stores for each call), so tests can check the adapters call nothing
//! their IAM role does not allow.

// Shared by several test binaries; each uses part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_sdk_iam::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use keyrot_aws::permissions::{action_of, authorized_by};

/// The actions called through the clients this recorder was added to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<BTreeSet<String>>>);

impl Calls {
    pub(crate) fn seen(&self) -> BTreeSet<String> {
        self.0.lock().unwrap().clone()
    }

    /// Panics if any recorded action is not in `allowed`.
    pub(crate) fn assert_within(&self, allowed: &[&str], role: &str) {
        let extra: Vec<String> = self
            .seen()
            .into_iter()
            .filter(|a| {
                !authorized_by(a)
                    .iter()
                    .all(|needed| allowed.contains(needed))
            })
            .collect();
        assert!(
            extra.is_empty(),
            "the adapters called {extra:?}, which the {role} role does not list \
             (keyrot_aws::permissions, cfn/template.yaml)"
        );
    }

    pub(crate) fn iam(&self, config: &aws_config::SdkConfig) -> aws_sdk_iam::Client {
        let conf = aws_sdk_iam::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        aws_sdk_iam::Client::from_conf(conf)
    }

    pub(crate) fn secrets(&self, config: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
        let conf = aws_sdk_secretsmanager::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    pub(crate) fn dynamodb(&self, config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    pub(crate) fn ses(&self, config: &aws_config::SdkConfig) -> aws_sdk_sesv2::Client {
        let conf = aws_sdk_sesv2::config::Builder::from(config)
            .interceptor(self.clone())
            .build();
        aws_sdk_sesv2::Client::from_conf(conf)
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "Calls"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let action = action_of(meta.service(), meta.name());
            self.0.lock().unwrap().insert(action);
        }
        Ok(())
    }
}
