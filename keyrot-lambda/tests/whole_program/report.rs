//! The rotator's report in the reports bucket, and the deployed API's admin route showing it.

use keyrot_core::report::Snapshot;

use super::api::{call_api, deploy_api_for, token};
use super::*;

fn latest(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, bucket: &str) -> Snapshot {
    rt.block_on(async {
        let object = s3
            .get_object()
            .bucket(bucket)
            .key("reports/latest.json")
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap()
    })
}

#[test]
fn the_rotator_reports_after_it_acts_and_the_api_shows_the_report_to_admins_only() {
    let moto = moto();
    let rt = tokio();
    let config = rt.block_on(moto.admin_config());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = "keyrot-lambda-test-reports";
    let tag = "keyrot:managed:lambda-report";
    let (alice, bob) = ("lambda-report-alice", "lambda-report-bob");
    rt.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for user in [alice, bob] {
            moto.create_user(user, &[(tag, "true")]).await.unwrap();
        }
    });
    let prefix = "keyrot-lambda-test/report/";
    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.extend([
        ("KEYROT_SECRET_PREFIX", prefix.to_owned()),
        ("KEYROT_MANAGED_TAG", format!("{tag}=true")),
        ("KEYROT_REPORT_BUCKET", bucket.to_owned()),
    ]);
    let mut rotate = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);

    // The first run makes both users' keys: it acted, so it reports.
    let report = runtime.invoke(&mut rotate, "report-1", &json!({}));
    assert_eq!(report.kind, "response", "{report:?}\n{}", rotate.output());
    let out = report.json();
    assert_eq!(out["counts"]["rotated"], 2, "{out}");
    let written: Vec<&str> = out["reports"]
        .as_array()
        .unwrap_or_else(|| panic!("no report written: {out}"))
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(written[0], "reports/latest.json");
    assert!(written[1].starts_with("reports/20"), "{written:?}");
    let first = latest(&rt, &s3, bucket);
    let users: Vec<&str> = first.users.iter().map(|u| u.state.user.as_str()).collect();
    assert_eq!(users, [alice, bob]);
    let iam = aws_sdk_iam::Client::new(&config);
    for user in &first.users {
        let keys = rt
            .block_on(
                iam.list_access_keys()
                    .user_name(user.state.user.as_str())
                    .send(),
            )
            .unwrap();
        let in_iam: Vec<&str> = keys
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id())
            .collect();
        let reported: Vec<&str> = user.state.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(reported, in_iam, "{user:?}");
        assert!(user.compliance.passes, "{user:?}");
    }

    // A second run acts on no one and the report is fresh: nothing is written.
    let report = runtime.invoke(&mut rotate, "report-2", &json!({}));
    let out = report.json();
    assert_eq!(out["counts"]["rotated"], 0, "{out}");
    assert!(out.get("reports").is_none(), "{out}");
    assert_eq!(latest(&rt, &s3, bucket), first);

    // The deployed API shows the report to an admin client, and refuses a `*` client.
    for (name, scope, status) in [
        ("report-admin", &["keyrot:admin"][..], 200),
        ("report-star", &["*"][..], 403),
    ] {
        let mut deployment = deploy_api_for(&rt, moto, name, scope);
        deployment
            .env
            .push(("KEYROT_REPORT_BUCKET", bucket.to_owned()));
        let api_runtime = RuntimeApi::start();
        let mut api = Function::start(
            env!("CARGO_BIN_EXE_keyrot-api"),
            &api_runtime,
            &deployment.env,
        );
        let token = token(&api_runtime, &mut api, &deployment);
        let fill = [
            ("{{API_KEY}}", deployment.api_key.as_str()),
            ("{{TOKEN}}", token.as_str()),
        ];
        let admin = event(ACTIVE_KEY, &fill, |e| {
            e["resource"] = json!("/admin/status");
            e["path"] = json!("/admin/status");
            e["requestContext"]["resourcePath"] = json!("/admin/status");
            e["queryStringParameters"] = Value::Null;
            e["multiValueQueryStringParameters"] = Value::Null;
        });
        let (response, body) = call_api(&api_runtime, &mut api, "admin", &admin);
        assert_eq!(response["statusCode"], status, "{name}: {response}");
        if status == 200 {
            assert_eq!(
                body["generated_at"],
                json!(first.generated_at),
                "the page is as of the report"
            );
            let shown: Vec<&str> = body["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["user"].as_str().unwrap())
                .collect();
            assert_eq!(shown, [alice, bob]);
            assert!(
                !response.to_string().contains("SecretAccessKey"),
                "{response}"
            );
        } else {
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
        }
    }
}
