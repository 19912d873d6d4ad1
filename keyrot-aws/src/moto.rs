//! Test support: moto's AWS emulator on loopback, as keyrot's own tests use it.
//!
//! [`Moto::shared`] starts one `moto_server` per process on 127.0.0.1 on a free port, with
//! authentication enforced: the server accepts a handful of unsigned calls, which create an
//! administrator with a key and an allow-all policy, and from then on refuses any request not
//! signed with a key it knows. Requests signed with keys keyrot created, deactivated or deleted
//! are therefore really checked (within moto's limits, which the contract suite lists).
//!
//! moto answers DynamoDB's conditional writes without making the check and the write one step
//! (two racing `PutItem`s on one item could both pass their condition); the server started here
//! takes a lock around each DynamoDB item operation, so that it is as atomic as DynamoDB and
//! keyrot's lease can be tested on it ([`Moto::create_lease_table`] makes the table).
//!
//! The server runs under a small watchdog that stops it when this process exits. It comes from
//! keyrot's Python venv (`scripts/venv.sh`, pinned in `scripts/requirements.txt`), or from the
//! `moto_server` that `KEYROT_MOTO_SERVER` names. `KEYROT_MOTO_LOG` names a file for the
//! server's log.
//!
//! [`FaultProxy`] stands in front of the server to inject what moto never does: throttling,
//! lost replies, and a crash of the caller at a chosen call.

mod bucket;
mod mail;
mod org;
mod proxy;

pub use org::{ACCOUNT_ACCESS_ROLE, MANAGEMENT_ACCOUNT};
pub use proxy::{Answer, Call, Fault, FaultProxy, Rule};

use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;

use crate::AwsSettings;

/// The unsigned calls moto accepts before it enforces authentication: exactly the bootstrap's
/// (CreateUser, CreateAccessKey, PutUserPolicy).
const UNSIGNED_CALLS: u32 = 3;

/// moto's server, with DynamoDB's item writes and reads made atomic and credential reports
/// dated. moto serves each request on its own thread and checks a `ConditionExpression` and
/// then writes, with nothing in between: two conditional `PutItem`s racing for one item could both succeed, where DynamoDB
/// lets exactly one through. keyrot's lease rests on that, so the tests' server holds one lock
/// around each item operation (nothing else: moto's IAM stays as racy as it is).
///
/// moto dates every credential report 2015-02-02T20:02:02Z (a constant in its IAM responses)
/// while making its content afresh for each GetCredentialReport; the server dates it when it
/// is made, as AWS does, so that keyrot's survey (which refuses a report older than four
/// hours) can be tried on it. And its GetAccountAuthorizationDetails hands the serializer live
/// views of its users, roles and policies, so that a user created or deleted meanwhile by
/// another request fails it with a 500 ("dictionary changed size during iteration"); the
/// server takes a copy first, as AWS answers from a consistent read. And the role
/// Organizations' CreateAccount makes in a new account (`OrganizationAccountAccessRole`) gets
/// no policy in moto, where AWS gives it `AdministratorAccess`; with authentication enforced
/// nothing could then be done in a member account, so the server gives it an allow-all policy,
/// as AWS does.
const PATCHED_SERVER: &str = "import sys, threading\n\
                               from moto.dynamodb.models import DynamoDBBackend\n\
                               lock = threading.RLock()\n\
                               def serial(call):\n\
                               \x20   def locked(*args, **kwargs):\n\
                               \x20       with lock:\n\
                               \x20           return call(*args, **kwargs)\n\
                               \x20   return locked\n\
                               for name in ('put_item', 'update_item', 'delete_item', 'get_item', 'transact_write_items'):\n\
                               \x20   setattr(DynamoDBBackend, name, serial(getattr(DynamoDBBackend, name)))\n\
                               from moto.core.responses import ActionResult\n\
                               from moto.core.utils import utcnow\n\
                               from moto.iam.responses import IamResponse\n\
                               def get_credential_report(self):\n\
                               \x20   content = self.backend.get_credential_report()\n\
                               \x20   at = utcnow().strftime('%Y-%m-%dT%H:%M:%SZ')\n\
                               \x20   return ActionResult({'Content': content, 'ReportFormat': 'text/csv', 'GeneratedTime': at})\n\
                               IamResponse.get_credential_report = get_credential_report\n\
                               from moto.iam.models import IAMBackend\n\
                               details = IAMBackend.get_account_authorization_details\n\
                               def listed(self, policy_filter):\n\
                               \x20   return {k: list(v) for k, v in details(self, policy_filter).items()}\n\
                               IAMBackend.get_account_authorization_details = listed\n\
                               from moto.organizations.models import FakeAccount\n\
                               from moto.iam import iam_backends\n\
                               created = FakeAccount.__init__\n\
                               def administered(self, organization, **kwargs):\n\
                               \x20   created(self, organization, **kwargs)\n\
                               \x20   role = kwargs.get('RoleName', 'OrganizationAccountAccessRole')\n\
                               \x20   admin = '{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}'\n\
                               \x20   iam_backends[self.id]['global'].put_role_policy(role, 'AdministratorAccess', admin)\n\
                               FakeAccount.__init__ = administered\n\
                               from moto.server import main\n\
                               main(sys.argv[1:])\n";

/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server and the administrator key that signs the tests' own calls.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    admin_key_id: String,
    admin_secret: String,
    _child: Child,
}

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// The venv could not be made.
    #[error(
        "could not install moto with scripts/venv.sh ({0}); run ./scripts/venv.sh to see why, or \
         set KEYROT_MOTO_SERVER to a moto_server (pip install 'moto[server]==5.2.5')"
    )]
    Venv(String),
    /// The server did not start.
    #[error("moto_server did not start: {0}")]
    Start(String),
    /// The bootstrap calls failed.
    #[error("could not create moto's administrator: {0}")]
    Bootstrap(String),
}

impl Moto {
    /// The process's moto server, started (and bootstrapped) on first use. Blocks; call it
    /// from a blocking context or `spawn_blocking`.
    pub fn shared() -> Result<&'static Self, &'static MotoError> {
        static SHARED: OnceLock<Result<Moto, MotoError>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Settings that reach this server (region us-east-1, quick retries).
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            initial_backoff: Some(Duration::from_millis(20)),
            ..AwsSettings::default()
        }
    }

    /// The administrator's access key id and secret, for a process a test starts
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`). It exists only in this moto server.
    pub fn admin_credentials(&self) -> (&str, &str) {
        (&self.admin_key_id, &self.admin_secret)
    }

    /// A command running `program` as a process signed with the administrator's key and
    /// reaching `endpoint` (this server, or a proxy in front of it) through the `AWS_*`
    /// variables; `AWS_PROFILE` is removed and instance metadata is off.
    pub fn admin_process(&self, program: impl AsRef<OsStr>, endpoint: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", &self.admin_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin_secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// An SDK configuration signed with the administrator's key.
    pub async fn admin_config(&self) -> SdkConfig {
        self.admin_config_with(&self.settings()).await
    }

    /// As [`Moto::admin_config`], with other settings (another endpoint in front of moto,
    /// other retries).
    pub async fn admin_config_with(&self, settings: &AwsSettings) -> SdkConfig {
        settings
            .load_with_key(&self.admin_key_id, &self.admin_secret)
            .await
    }

    /// Creates the IAM user `name`, carrying `tags`, as the administrator: a user keyrot finds
    /// as people leave them (give it keys with [`crate::AwsIam`]'s `create_key`).
    pub async fn create_user(
        &self,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<(), keyrot_core::BoxError> {
        create_user_with(&self.admin_config().await, name, tags).await
    }

    /// The value an SSM or Secrets Manager destination holds (its current value, decrypted),
    /// read with the administrator's credentials in the destination's region; `None` when
    /// there is none yet, or for a GitHub destination.
    pub async fn held(&self, target: &keyrot_core::delivery::Target) -> Option<String> {
        held_by(&self.admin_config().await, target).await
    }

    /// Creates the lease table `name` as the template does (partition key `user`, on
    /// demand, TTL on `ttl`), for [`crate::DynamoLease`]. A table that exists already is left
    /// as it is.
    pub async fn create_lease_table(&self, name: &str) -> Result<(), keyrot_core::BoxError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.admin_config().await);
        let created = dynamodb
            .create_table()
            .table_name(name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("user")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("user")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
            other => other.map_err(crate::error::boxed)?,
        };
        dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("ttl")
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(crate::error::boxed)?;
        Ok(())
    }

    fn start() -> Result<Self, MotoError> {
        let server = server_path()?;
        let port = free_port().map_err(|e| MotoError::Start(format!("no free port: {e}")))?;
        // The watchdog holds the read end of our stdin pipe: when this process exits, it reads
        // EOF and stops the server, so no moto outlives the tests.
        let watchdog = "import subprocess, sys\n\
                        p = subprocess.Popen(sys.argv[1:])\n\
                        sys.stdin.read()\n\
                        p.terminate()\n\
                        p.wait(10)\n";
        // KEYROT_MOTO_LOG names a file for the server's log, to see why it answered as it did.
        let log = match std::env::var_os("KEYROT_MOTO_LOG") {
            Some(path) => std::fs::File::create(&path)
                .map(Stdio::from)
                .map_err(|e| MotoError::Start(format!("KEYROT_MOTO_LOG: {e}")))?,
            None => Stdio::null(),
        };
        // With the server's own Python (its venv), the server runs with DynamoDB's writes
        // made atomic (see PATCHED_SERVER); a bare moto_server elsewhere runs as it is.
        let venv_python = server.with_file_name("python");
        let (python, server_command) = if venv_python.exists() {
            let command = vec![
                venv_python.clone().into_os_string(),
                "-c".into(),
                PATCHED_SERVER.into(),
            ];
            (venv_python, command)
        } else {
            (
                PathBuf::from("python3"),
                vec![server.clone().into_os_string()],
            )
        };
        let child = Command::new(python)
            .arg("-c")
            .arg(watchdog)
            .args(server_command)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", UNSIGNED_CALLS.to_string())
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| MotoError::Start(format!("{}: {e}", server.display())))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until_listening(addr)?;
        let endpoint = format!("http://{addr}");
        let (admin_key_id, admin_secret) = bootstrap(&endpoint)?;
        Ok(Self {
            endpoint,
            admin_key_id,
            admin_secret,
            _child: child,
        })
    }
}

/// Creates the IAM user `name` carrying `tags`, signed with `config` (an account's
/// administrator).
pub(crate) async fn create_user_with(
    config: &SdkConfig,
    name: &str,
    tags: &[(&str, &str)],
) -> Result<(), keyrot_core::BoxError> {
    let iam = aws_sdk_iam::Client::new(config);
    let mut create = iam.create_user().user_name(name);
    for (key, value) in tags {
        create = create.tags(
            aws_sdk_iam::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build()?,
        );
    }
    create.send().await.map_err(crate::error::boxed)?;
    Ok(())
}

fn server_path() -> Result<PathBuf, MotoError> {
    if let Some(path) = std::env::var_os("KEYROT_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/venv.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| MotoError::Venv(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(MotoError::Venv(format!(
            "{} exited with {}",
            script.display(),
            out.status
        )));
    }
    let venv = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(PathBuf::from(venv).join("bin/moto_server"))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until_listening(addr: SocketAddr) -> Result<(), MotoError> {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < START_TIMEOUT {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, step) {
            // An HTTP answer, not just a bound socket.
            let request = "GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n";
            use io::Write;
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/") {
                    return Ok(());
                }
            }
        }
        thread::sleep(step);
        waited += step;
    }
    Err(MotoError::Start(format!(
        "nothing answered on {addr} within {START_TIMEOUT:?}"
    )))
}

/// Creates the administrator with moto's unsigned calls and returns its key.
fn bootstrap(endpoint: &str) -> Result<(String, String), MotoError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MotoError::Bootstrap(e.to_string()))?;
    runtime.block_on(async {
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(endpoint.to_owned()),
            max_attempts: Some(1),
            ..AwsSettings::default()
        };
        let iam = aws_sdk_iam::Client::new(&settings.load_with_key("bootstrap", "bootstrap").await);
        let fail = |e: aws_sdk_iam::error::SdkError<_, _>| {
            MotoError::Bootstrap(crate::error::boxed(e).to_string())
        };
        iam.create_user().user_name("keyrot-test-admin").send().await.map_err(fail)?;
        let key = iam
            .create_access_key()
            .user_name("keyrot-test-admin")
            .send()
            .await
            .map_err(|e| MotoError::Bootstrap(crate::error::boxed(e).to_string()))?;
        let key = key
            .access_key()
            .ok_or_else(|| MotoError::Bootstrap("CreateAccessKey returned no key".into()))?;
        let allow_all =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        iam.put_user_policy()
            .user_name("keyrot-test-admin")
            .policy_name("allow-all")
            .policy_document(allow_all)
            .send()
            .await
            .map_err(|e| MotoError::Bootstrap(crate::error::boxed(e).to_string()))?;
        Ok((key.access_key_id().to_owned(), key.secret_access_key().to_owned()))
    })
}

/// The value an SSM or Secrets Manager destination holds, read with `config`'s credentials in
/// the destination's region (see [`Moto::held`]).
pub async fn held_by(config: &SdkConfig, target: &keyrot_core::delivery::Target) -> Option<String> {
    use keyrot_core::delivery::Target;
    let config = |region: &str| {
        config
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build()
    };
    match target {
        Target::Ssm { region, name, .. } => aws_sdk_ssm::Client::new(&config(region))
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .ok()?
            .parameter()?
            .value()
            .map(str::to_owned),
        Target::SecretsManager { region, secret } => {
            aws_sdk_secretsmanager::Client::new(&config(region))
                .get_secret_value()
                .secret_id(secret)
                .send()
                .await
                .ok()?
                .secret_string()
                .map(str::to_owned)
        }
        Target::GitHub { .. } => None,
    }
}
