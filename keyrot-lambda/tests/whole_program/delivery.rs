//! `keyrot-rotate` delivering as its environment says: a destination declared in
//! `KEYROT_DELIVERY_USERS` (SSM, and Secrets Manager in another region) and one in a user's
//! `keyrot:deliver` tag (`KEYROT_DELIVERY_USER_TAGS`), read from the listing of users
//! without a call of its own.

use keyrot_aws::moto::FaultProxy;
use keyrot_core::delivery::{Destination, parse_destinations};

use super::*;

#[test]
fn keyrot_rotate_delivers_new_keys_to_the_configured_and_the_tagged_destinations() {
    let moto = moto();
    let rt = tokio();
    let config = rt.block_on(moto.admin_config());
    let tag = "keyrot:managed:lambda-delivery";
    let (configured, tagged) = ("lambda-deliver-conf", "lambda-deliver-tag");
    let conf_text = "ci=ssm:eu-west-1:/keyrot-lambda-test/deliver/conf \
                     app=sm:us-west-2:keyrot-lambda-test/deliver/conf";
    let tag_text = "ci=ssm:eu-west-2:/keyrot-lambda-test/deliver/tag";
    rt.block_on(async {
        moto.create_user(configured, &[(tag, "true")])
            .await
            .unwrap();
        moto.create_user(tagged, &[(tag, "true"), ("keyrot:deliver", tag_text)])
            .await
            .unwrap();
    });
    let prefix = "keyrot-lambda-test/deliver/";
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();

    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.extend([
        ("AWS_ENDPOINT_URL", proxy.endpoint().to_owned()),
        ("KEYROT_SECRET_PREFIX", prefix.to_owned()),
        ("KEYROT_MANAGED_TAG", format!("{tag}=true")),
        ("KEYROT_METRICS_NAMESPACE", "keyrot-test".to_owned()),
        (
            "KEYROT_DELIVERY_USERS",
            format!("{configured}: {conf_text}"),
        ),
        ("KEYROT_DELIVERY_USER_TAGS", "true".to_owned()),
    ]);
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);
    let scheduled = event(SCHEDULED, &[("{{TIME}}", "2025-06-01T12:00:00Z")], |_| {});
    let report = runtime.invoke(&mut function, "deliver-1", &scheduled);
    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let out = report.json();
    assert_eq!(out["counts"]["rotated"], 2, "{out}");

    let store =
        AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config)).with_prefix(prefix);
    rt.block_on(async {
        for (user, text) in [(configured, conf_text), (tagged, tag_text)] {
            let current = store
                .current(&UserName::new(user).unwrap())
                .await
                .unwrap()
                .unwrap()
                .access_key_id
                .to_string();
            let destinations: Vec<Destination> = parse_destinations(text).unwrap();
            for destination in &destinations {
                let value = moto.held(&destination.target).await;
                let value: Value = serde_json::from_str(&value.unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{user}: {destination}: {e}"));
                assert_eq!(value["UserName"], user, "{destination}");
                assert_eq!(value["AccessKeyId"], current.as_str(), "{destination}");
            }
        }
    });
    // The tag came with the listing of users: no ListUserTags.
    assert_eq!(proxy.forwarded("iam:ListUserTags"), 0);
    assert!(proxy.forwarded("iam:GetAccountAuthorizationDetails") >= 1);
}
