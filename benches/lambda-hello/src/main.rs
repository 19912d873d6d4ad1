//! A hello world Lambda function with the AWS SDK: aws-config's standard chain and the IAM,
//! Secrets Manager and STS clients built at init, then every event answered with itself. It
//! calls no AWS API. benches/lambda.sh measures keyrot's bootstraps against it, built with the
//! same profile and the same SDK features.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_from_env().await;
    let clients = (
        aws_sdk_iam::Client::new(&config),
        aws_sdk_secretsmanager::Client::new(&config),
        aws_sdk_sts::Client::new(&config),
    );
    let clients = &clients;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The clients live as long as the loop, as a real function's would.
        let _ = clients;
        Ok::<_, Error>(event.payload)
    }))
    .await
}
