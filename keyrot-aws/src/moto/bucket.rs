//! Test support for S3: a bucket in moto, for [`crate::Objects`].

use keyrot_core::BoxError;

use super::Moto;
use crate::AwsClients;
use crate::error::boxed;

impl Moto {
    /// Makes bucket `name` in the administrator's account, if it is not there yet.
    pub async fn create_bucket(&self, name: &str) -> Result<(), BoxError> {
        let s3 = AwsClients::new(self.admin_config().await).s3;
        let exists = s3.head_bucket().bucket(name).send().await.is_ok();
        if !exists {
            s3.create_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(boxed)?;
        }
        Ok(())
    }
}
