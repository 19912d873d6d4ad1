//! The `keyrot` binary on the AWS backend, pointed at moto on 127.0.0.1 with `--endpoint-url`:
//! `rotate`, `status` and `serve` with the API's secrets read from Secrets Manager.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// A real server on the wall clock: the test waits for it with real deadlines.
#![allow(clippy::disallowed_methods)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use keyrot_aws::AwsIam;
use keyrot_aws::moto::Moto;
use keyrot_core::token::{ApiKey, ApiKeyDigest};
use keyrot_core::{Iam, UserName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const KEYROT: &str = env!("CARGO_BIN_EXE_keyrot");

async fn moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The lease table the tests' runs share (each test has users of its own).
const LEASE_TABLE: &str = "keyrot-cli-test-leases";

/// The moto server, with the tests' lease table.
async fn moto_with_table() -> &'static Moto {
    let moto = moto().await;
    moto.create_lease_table(LEASE_TABLE).await.unwrap();
    moto
}

/// `keyrot` signed with moto's administrator, selecting users by this test's own tag, claiming
/// them in the tests' lease table.
fn keyrot(moto: &Moto, tag: &str, prefix: &str) -> Command {
    let mut cmd = Command::from(moto.admin_process(KEYROT, moto.endpoint()));
    cmd.env_remove("KEYROT_CONFIG")
        .env("KEYROT_MANAGED_TAG", format!("{tag}=true"))
        .env("KEYROT_SECRET_PREFIX", prefix)
        .env("KEYROT_LEASE_TABLE", LEASE_TABLE)
        .env("KEYROT_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// A user tagged for `tag`, with a key created outside keyrot; the key's id.
async fn tagged_user(moto: &Moto, name: &str, tag: &str) -> String {
    moto.create_user(name, &[(tag, "true")]).await.unwrap();
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&moto.admin_config().await));
    let key = iam.create_key(&UserName::new(name).unwrap()).await.unwrap();
    key.key.id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_status_work_on_aws() {
    let moto = moto_with_table().await;
    let (tag, prefix) = ("keyrot:cli-rotate", "keyrot-cli-rotate/");
    let legacy = tagged_user(moto, "cli-rotate-ci", tag).await;

    let out = keyrot(moto, tag, prefix)
        .args(["status", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["user"], "cli-rotate-ci", "{status}");
    assert_eq!(status[0]["keys"][0]["id"], legacy.as_str());
    assert_eq!(
        status[0]["keys"][0]["stage"], "unknown",
        "not adopted yet: {status}"
    );

    let out = keyrot(moto, tag, prefix)
        .args(["rotate", "--force", "--user", "cli-rotate-ci"])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("1 rotated"), "{table}");

    let out = keyrot(moto, tag, prefix)
        .args(["status", "--json"])
        .output()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages: Vec<&str> = status[0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["stage"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&"current") && stages.contains(&"adopted"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_aws_reads_the_api_secrets_and_serves_the_published_key() {
    let moto = moto_with_table().await;
    let config = moto.admin_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let (tag, prefix) = ("keyrot:cli-serve", "keyrot-cli-serve/");
    tagged_user(moto, "cli-serve-ci", tag).await;

    let api_key = ApiKey::generate_from([7; 32]);
    let registry = serde_json::json!({"clients": [{
        "id": "ci", "api_key_sha256": ApiKeyDigest::of(&api_key).to_hex(),
        "scope": ["cli-serve-ci"], "allowed_cidrs": ["127.0.0.0/8"]}]});
    for (name, value) in [
        (
            "keyrot-cli-serve-api/signing-key",
            serde_json::json!({"kid": "k1", "secret": "0123456789abcdef0123456789abcdef"}),
        ),
        ("keyrot-cli-serve-api/clients", registry),
    ] {
        secrets
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
    }

    // Publish a key first, so that serve has one to hand out.
    let out = keyrot(moto, tag, prefix)
        .args(["rotate", "--force"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut child = keyrot(moto, tag, prefix)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "KEYROT_SIGNING_KEY_SECRET",
            "keyrot-cli-serve-api/signing-key",
        )
        .env("KEYROT_CLIENTS_SECRET", "keyrot-cli-serve-api/clients")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("serve exited before listening");
            assert!(
                !line.contains("KEYROT_API_KEY="),
                "no API key is made up on AWS: {line}"
            );
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                return url.to_owned();
            }
        }
    })
    .await
    .unwrap();
    assert!(!base.is_empty());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(KEYROT)
            .args(["get-key", "--endpoint", &base, "--username", "cli-serve-ci"])
            .env("KEYROT_API_KEY", &api_key)
            .env("KEYROT_LOG", "warn")
            .output()
            .await
            .unwrap();
        if out.status.success() {
            let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(key["UserName"], "cli-serve-ci");
            assert!(key["AccessKeyId"].as_str().unwrap().len() >= 16);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Out of scope: refused, with the API's code.
    let out = Command::new(KEYROT)
        .args(["get-key", "--endpoint", &base, "--username", "someone-else"])
        .env("KEYROT_API_KEY", &api_key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
}

/// One row of `keyrot rotate`'s report: the steps taken and the outcome.
#[derive(Debug)]
struct Row {
    steps: Vec<String>,
    outcome: String,
}

impl Row {
    /// Whether the run changed anything for the user (took a step that is not read-only: those
    /// need no lease).
    fn acted(&self) -> bool {
        const READ_ONLY: [&str; 4] = ["check-last-used", "verify", "wait", "blocked"];
        self.steps.iter().any(|s| !READ_ONLY.contains(&s.as_str()))
    }
}

/// The rows of a report, by user.
fn rows(report: &str) -> std::collections::BTreeMap<String, Row> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("USER "))
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let user = words.next()?.to_owned();
            let steps = words.next()?;
            let outcome: Vec<&str> = words.collect();
            // The summary line ("4 users, 1 rotated, ...") has no steps column.
            (!outcome.is_empty() && !user.chars().all(|c| c.is_ascii_digit())).then(|| {
                let steps = match steps {
                    "-" => Vec::new(),
                    list => list.split(',').map(str::to_owned).collect(),
                };
                let outcome = outcome.join(" ");
                (user, Row { steps, outcome })
            })
        })
        .collect()
}

/// The acceptance test of "one run per user at a time": for every scheduled run of a dozen,
/// two `keyrot rotate` processes start together against the same moto and the same lease
/// table, on a seconds-scale policy, over four users. Every pair leaves every invariant
/// intact, neither process ever asks IAM for a third key, and where one process found a user
/// taken it says so while the other acted on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotate_processes_at_once_never_act_on_one_user_together() {
    let moto = moto_with_table().await;
    let (tag, prefix) = ("keyrot:cli-pair", "keyrot-cli-pair/");
    let users: Vec<String> = (0..4).map(|i| format!("cli-pair-{i}")).collect();
    for user in &users {
        tagged_user(moto, user, tag).await;
    }
    let config = moto.admin_config().await;
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&config));
    let store = keyrot_aws::AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config))
        .with_prefix(prefix);
    // Periods of seconds (rotation 5 s >= verify 2 s + max grace 2 s + recovery 1 s), a run
    // every second; moto reports no last use late, so the lag is zero.
    let policy = [
        ("KEYROT_SCHEDULE_INTERVAL", "1s"),
        ("KEYROT_ROTATION_PERIOD", "5s"),
        ("KEYROT_GRACE_PERIOD", "1s"),
        ("KEYROT_MAX_GRACE_PERIOD", "2s"),
        ("KEYROT_RECOVERY_WINDOW", "1s"),
        ("KEYROT_QUIET_PERIOD", "1s"),
        ("KEYROT_LAST_USED_LAG", "0s"),
        ("KEYROT_VERIFY_TIMEOUT", "2s"),
    ];
    let rotate = |force: bool| {
        let mut cmd = keyrot(moto, tag, prefix);
        cmd.envs(policy).arg("rotate");
        if force {
            cmd.arg("--force");
        }
        cmd.output()
    };

    let started = Instant::now();
    let mut schedule = tokio::time::interval(Duration::from_secs(1));
    let (mut busy, mut rotations) = (0, 0);
    for run in 0..12 {
        schedule.tick().await;
        // The first run rotates every user at once; later ones as keys come due.
        let (a, b) = tokio::join!(rotate(run == 0), rotate(run == 0));
        let (a, b) = (a.unwrap(), b.unwrap());
        let text = |out: &std::process::Output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let (text_a, text_b) = (text(&a), text(&b));
        let both = format!("run {run}, process A:\n{text_a}\nprocess B:\n{text_b}");
        assert!(a.status.success() && b.status.success(), "{both}");
        for bad in [
            "two access keys",
            "LimitExceeded",
            "not managed by keyrot",
            "blocked:",
            "failed to",
            "lease",
        ] {
            assert!(!both.contains(bad), "{bad:?} in {both}");
        }
        let (rows_a, rows_b) = (rows(&text_a), rows(&text_b));
        for user in &users {
            let (ra, rb) = (&rows_a[user], &rows_b[user]);
            for (mine, other) in [(ra, rb), (rb, ra)] {
                if mine
                    .outcome
                    .starts_with("skipped: another run holds the user until")
                {
                    busy += 1;
                    // The other process held the user: it acted, and was not refused.
                    assert!(
                        other.acted() && !other.outcome.starts_with("skipped"),
                        "{user}: refused, but the other process did not act: {both}"
                    );
                    assert!(!mine.acted(), "{user}: acted without the lease: {both}");
                }
            }
            let published = [ra, rb]
                .iter()
                .filter(|r| r.steps.iter().any(|s| s == "publish"))
                .count();
            assert!(published <= 1, "{user}: published twice in one run: {both}");
            rotations += published;

            // The invariants, read off moto as the administrator.
            let name = UserName::new(user.as_str()).unwrap();
            let keys = iam.list_keys(&name).await.unwrap();
            assert!(
                keys.len() <= 2,
                "{user}: {} keys after run {run}",
                keys.len()
            );
            let current = keyrot_core::SecretStore::current(&store, &name)
                .await
                .unwrap()
                .expect("the first run publishes a key");
            let key = keys.iter().find(|k| k.id == current.access_key_id);
            assert!(
                key.is_some_and(|k| k.status == keyrot_core::KeyStatus::Active),
                "{user}: the current key {} is missing or inactive after run {run}: {keys:?}",
                current.access_key_id
            );
        }
    }
    eprintln!(
        "12 pairs of runs in {:?}: {rotations} rotations, {busy} users found taken",
        started.elapsed()
    );
    assert!(
        busy > 0,
        "the two processes never met on a user: the test proved nothing"
    );
    assert!(
        rotations >= 2 * users.len(),
        "each user rotates at least twice over the lifecycle: {rotations} rotations"
    );
}

/// How the report writes a last-use answer.
fn last_use_cell(answer: keyrot_core::LastUsed) -> String {
    match answer {
        keyrot_core::LastUsed::Never => "never".to_owned(),
        keyrot_core::LastUsed::At(at) => at.to_string(),
        keyrot_core::LastUsed::Unknown => "unknown".to_owned(),
    }
}

/// `keyrot report --format csv`: a user whose only key is older than 90 days fails the rule
/// from the day it turned 90 days old; a user keyrot just rotated (its old key then removed)
/// passes since that rotation; an exempt user is listed, untouched. moto dates keys by the
/// wall clock, so "90 days later" is the report's `--as-of`: the freshly rotated key is then
/// exactly 90 days old (not older), the old one a second more. The rotated user's next step is
/// to forget the marks of the key removed outside keyrot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_csv_fails_an_old_key_and_passes_a_freshly_rotated_user() {
    let moto = moto_with_table().await;
    let (tag, prefix) = ("keyrot:cli-report", "keyrot-cli-report/");
    let config = moto.admin_config().await;
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&config));
    let store = keyrot_aws::AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config))
        .with_prefix(prefix);
    let name = |n: &str| UserName::new(n).unwrap();
    tagged_user(moto, "cli-report-old", tag).await;
    tagged_user(moto, "cli-report-exempt", tag).await;
    // The rotated user's keys are a second younger at least than the old user's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let legacy = tagged_user(moto, "cli-report-fresh", tag).await;
    let run = |args: &[&str]| {
        let mut cmd = keyrot(moto, tag, prefix);
        cmd.env("KEYROT_EXEMPT_USERS", "cli-report-exempt")
            .args(args);
        cmd.output()
    };
    let out = run(&["rotate", "--force", "--user", "cli-report-fresh"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An operator removes the superseded key at once.
    iam.delete_key(
        &name("cli-report-fresh"),
        &keyrot_core::AccessKeyId::new(legacy.as_str()).unwrap(),
    )
    .await
    .unwrap();

    let old = iam
        .list_keys(&name("cli-report-old"))
        .await
        .unwrap()
        .remove(0);
    let exempt = iam
        .list_keys(&name("cli-report-exempt"))
        .await
        .unwrap()
        .remove(0);
    let fresh = iam
        .list_keys(&name("cli-report-fresh"))
        .await
        .unwrap()
        .remove(0);
    let stored = keyrot_core::SecretStore::load(&store, &name("cli-report-fresh"))
        .await
        .unwrap();
    let rotated = stored.marks.values().find_map(|m| m.superseded).unwrap();
    let as_of = fresh.created + Duration::from_secs(90 * 86_400);
    let out = run(&["report", "--format", "csv", "--as-of", &as_of.to_string()])
        .await
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{csv} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let iam = &iam;
    let used = |id| async move { last_use_cell(iam.last_used(id).await) };
    let expected = [
        "user,managed,key_id,status,stage,created,age_days,last_used,last_rotation,next_action,next_at,max_age_days,compliant,compliant_since".to_owned(),
        format!(
            "cli-report-exempt,false,{id},active,unknown,{c},90,{u},,exempt: untouched,,90,fail,{due}",
            id = exempt.id,
            c = exempt.created,
            u = used(&exempt.id).await,
            due = exempt.created + Duration::from_secs(90 * 86_400),
        ),
        format!(
            "cli-report-fresh,true,{id},active,current,{c},90,{u},{rotated},forget marks of {legacy},,90,pass,{rotated}",
            id = fresh.id,
            c = fresh.created,
            u = used(&fresh.id).await,
        ),
        format!(
            "cli-report-old,true,{id},active,unknown,{c},90,{u},,adopt {id},,90,fail,{due}",
            id = old.id,
            c = old.created,
            u = used(&old.id).await,
            due = old.created + Duration::from_secs(90 * 86_400),
        ),
    ];
    assert_eq!(csv.lines().collect::<Vec<_>>(), expected, "{csv}");
}
