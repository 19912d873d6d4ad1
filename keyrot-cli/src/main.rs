//! `keyrot`: see `keyrot --help`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line owns its stdout and stderr

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use keyrot_aws::SystemClock;
use keyrot_cli::accounts::{AccountsError, Fleet};
use keyrot_cli::client::{ApiClient, process_credentials};
use keyrot_cli::config::{BackendKind, Config, Flags};
use keyrot_cli::embedded::DEMO_USERS;
use keyrot_cli::progress::Progress;
use keyrot_cli::service::Backend;
use keyrot_cli::{report, server, status};
use keyrot_config::{ADMIN_API_KEY_VAR, API_KEY_VAR, Setting, Sources};
use keyrot_core::accounts::{AccountId, OrgSummary};
use keyrot_core::driver::Unobserved;
use keyrot_core::duration::parse_duration;
use keyrot_core::report::{GatherOptions, gather};
use keyrot_core::settings::Summary;
use keyrot_core::{Clock, RunOptions, UserName};
use tracing_subscriber::EnvFilter;

mod edge_args;
use edge_args::EdgeArgs;

/// The exit statuses, as `--help`, the man page and the README say them.
const EXIT_STATUS: &str = "Exit status:\n  \
    0  success (users another run holds count as success)\n  \
    1  the work failed: a user failed or is blocked, or the API refused or failed a request\n  \
    2  the command could not do its work: usage, configuration, backend or output";

/// Zero-downtime rotation of IAM access keys, kept in Secrets Manager and handed to
/// authorised callers through a hardened API.
#[derive(Debug, Parser)]
#[command(name = "keyrot", version, about, long_about = None, after_help = EXIT_STATUS)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// A TOML configuration file (see the README); also KEYROT_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The backend: embedded (in-memory demo, no AWS account) or aws. Default: aws when an
    /// endpoint or AWS credentials are configured, embedded otherwise; also KEYROT_BACKEND.
    #[arg(long, global = true, value_parser = ["embedded", "aws"])]
    backend: Option<String>,
    /// Send every AWS call to this endpoint (an emulator such as moto); implies the aws backend.
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The AWS region.
    #[arg(long, global = true)]
    region: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or RUST_LOG syntax; default info); logs go
    /// to stderr; also KEYROT_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the rotation schedule in one process.
    Serve {
        /// Address and port to listen on (default 127.0.0.1:8080; off loopback only with TLS);
        /// also KEYROT_LISTEN.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        edge: EdgeArgs,
    },
    /// Run one reconcile pass and print each user's outcome; exits 1 if any user failed.
    Rotate {
        /// Observe and plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rotate now, whatever the keys' ages.
        #[arg(long)]
        force: bool,
        /// Only this user (repeatable); it must be managed.
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        #[command(flatten)]
        accounts: AccountArgs,
    },
    /// Show each managed user's keys, their ages and stages, and the next action and when.
    /// With --endpoint, those of a running `keyrot serve` or the deployed API (through its
    /// admin route: the client's scope needs the keyrot:admin right).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Read the status of the keyrot API at this base URL instead of the backend.
        #[arg(long, value_name = "URL", conflicts_with_all = ["account", "org"])]
        endpoint: Option<String>,
        /// With --endpoint: the environment variable holding the API key.
        #[arg(long, default_value = API_KEY_VAR, value_name = "VAR")]
        api_key_env: String,
        /// With --endpoint: read the API key from this file instead.
        #[arg(long, value_name = "FILE", conflicts_with = "api_key_env")]
        api_key_file: Option<PathBuf>,
        /// Only this user (repeatable).
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        #[command(flatten)]
        accounts: AccountArgs,
    },
    /// Evidence for auditors: per user (managed or exempt) each key's id, status, stage, age
    /// and last use, the last rotation, the next action, and whether the user passes "no
    /// active key older than N days" (Security Hub IAM.3) and since when. Read-only.
    Report {
        /// The format.
        #[arg(long, value_parser = ["csv", "json", "markdown"], default_value = "csv")]
        format: String,
        /// The rule's N: no active key older than this many days.
        #[arg(long, default_value_t = 90, value_name = "DAYS")]
        max_age_days: u64,
        /// Judge ages and the rule at this time (RFC 3339) instead of now: which users will
        /// fail by then unless keys are rotated. Next actions are always planned from now.
        #[arg(long, value_name = "TIME")]
        as_of: Option<keyrot_core::Timestamp>,
        /// Only this user (repeatable).
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        #[command(flatten)]
        accounts: AccountArgs,
    },
    /// Print a shell completion script (e.g. `keyrot completions bash > /etc/bash_completion.d/keyrot`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, keyrot(1), as roff (`keyrot man | man -l -`).
    Man,
    /// Re-activate a user's previous key and make it current again.
    Rollback {
        /// The user.
        #[arg(long, value_name = "USER")]
        user: String,
        #[command(flatten)]
        accounts: AccountArgs,
    },
    /// Get a short-lived token from a keyrot API.
    Token(ApiArgs),
    /// Fetch a user's current key from a keyrot API (prints the API's JSON).
    GetKey {
        #[command(flatten)]
        api: ApiArgs,
        /// The IAM user whose key to fetch.
        #[arg(long)]
        username: String,
    },
    /// Print a user's current key as an AWS credential_process: put
    /// `credential_process = keyrot credential-process --endpoint URL --username U` in
    /// ~/.aws/config and every AWS SDK and the AWS CLI follow rotations by themselves.
    CredentialProcess {
        #[command(flatten)]
        api: ApiArgs,
        /// The IAM user whose key to fetch.
        #[arg(long)]
        username: String,
        /// How soon the SDK should ask again. Keep it well under the rotation grace period,
        /// and over 15 minutes in production: botocore (the AWS CLI, boto3) refreshes on every
        /// request once fewer than 10 minutes are left, and the API's usage plan throttles.
        #[arg(long, default_value = "1h", value_parser = duration_arg)]
        refresh: Duration,
    },
}

/// Which accounts a command works on: the credentials' own (neither flag), one member account,
/// or every account in scope.
#[derive(Debug, Args)]
struct AccountArgs {
    /// A member account of the organization: keyrot assumes its member role (`[org]
    /// member_role`, default keyrot-member); the account's secrets are in this account, named
    /// `<prefix><ID>/<user>`.
    #[arg(long, value_name = "ID", value_parser = account_arg, conflicts_with = "org")]
    account: Option<AccountId>,
    /// Every account in scope (`[org] include`, `exclude`, `exempt`), one run per account, at
    /// most `[org] max_parallel_accounts` at once; one account's failure never stops the
    /// others, and each account's outcome is in the summary.
    #[arg(long)]
    org: bool,
}

fn account_arg(text: &str) -> Result<AccountId, String> {
    AccountId::new(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// The API's base URL, e.g. http://127.0.0.1:8080 or the deployed stage URL; also
    /// KEYROT_ENDPOINT.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The environment variable holding the API key (never pass a secret as an argument).
    #[arg(long, default_value = API_KEY_VAR, value_name = "VAR")]
    api_key_env: String,
    /// Read the API key from this file instead.
    #[arg(long, value_name = "FILE", conflicts_with = "api_key_env")]
    api_key_file: Option<PathBuf>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.global);
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keyrot: {}", error_chain(&error));
            ExitCode::from(2)
        }
    }
}

fn init_logs(global: &Global) {
    let log = Sources::new()
        .env(|name| std::env::var(name).ok())
        .flag(Setting::Log, global.log.clone())
        .log_filter();
    let filter = EnvFilter::try_new(&log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color())
        .with_writer(std::io::stderr);
    if global.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Whether `NO_COLOR` asks for no colours (<https://no-color.org>: set and not empty).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Why a command could not do its work: exit status 2. (The work's own failures, a user that
/// failed or a refused API call, exit with 1.) `main` prints it once, with its sources.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration (file, environment, flags) is not usable.
    #[error(transparent)]
    Config(#[from] keyrot_cli::config::ConfigError),
    /// The backend or the API could not be set up.
    #[error(transparent)]
    Service(#[from] keyrot_cli::service::ServiceError),
    /// A `--user` is not an IAM user name.
    #[error("--user {name:?} is not an IAM user name")]
    UserName {
        /// What was given.
        name: String,
        /// Why it is not one.
        #[source]
        source: keyrot_core::NameError,
    },
    /// The run could not start.
    #[error(transparent)]
    Run(#[from] keyrot_core::driver::RunError),
    /// The users' status could not be read.
    #[error("could not read the managed users")]
    Status(#[source] keyrot_core::IamError),
    /// The server could not listen on its address.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("server failed")]
    Server(#[source] std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// The API key file could not be read.
    #[error("--api-key-file {}", path.display())]
    ApiKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No API key was given.
    #[error(
        "set {variable} to the API key (printed by `keyrot serve`, or read with the command in \
         the stack's outputs), or pass --api-key-file"
    )]
    NoApiKey {
        /// The variable that should hold it.
        variable: String,
    },
    /// The API client could not be made.
    #[error(transparent)]
    Client(#[from] keyrot_cli::client::ClientError),
    /// The accounts could not be reached.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// A member account could not be reached, or the organization listed.
    #[error(transparent)]
    Org(#[from] keyrot_aws::org::OrgError),
    /// The output could not be written as JSON.
    #[error("could not write JSON")]
    Json(#[from] serde_json::Error),
    /// The output could not be written.
    #[error("could not write the output")]
    Output(#[source] std::io::Error),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] keyrot_cli::report::ReportError),
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let mut flags = Flags {
        config: cli.global.config,
        backend: cli.global.backend,
        endpoint_url: cli.global.endpoint_url,
        region: cli.global.region,
        listen: None,
        serve: Vec::new(),
    };
    let env = |name: &str| std::env::var(name).ok();
    match cli.command {
        Command::Serve { listen, edge } => {
            flags.listen = listen;
            flags.serve = edge.flags();
            let config = Config::load(&flags, &env)?;
            config.check_listen()?;
            serve(&config).await
        }
        Command::Rotate {
            dry_run,
            force,
            users,
            accounts,
        } => {
            let (backend, config) = open(&flags).await?;
            let options = RunOptions {
                users: user_names(&users)?,
                force,
                dry_run,
                deadline: None,
            };
            if accounts.org {
                let fleet = Fleet::open(&backend, &config)?;
                let options = &options;
                let reports = fleet
                    .each(|rotator| async move { rotator.run(options).await })
                    .await?;
                for report in &reports {
                    if let Ok(run) = &report.outcome {
                        println!("account {}:\n{run}\n", report.account);
                    }
                }
                let summary = OrgSummary::of(&reports);
                println!("{summary}");
                return Ok(if summary.failed > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let rotator = rotator_for(&backend, &config, &accounts).await?;
            let progress = Progress::on_terminal(true);
            let report = rotator.run_observed(&options, &progress).await?;
            progress.finish();
            println!("{report}");
            Ok(if report.failures() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Status {
            json,
            users,
            endpoint: Some(endpoint),
            api_key_env,
            api_key_file,
            ..
        } => {
            let api = ApiArgs {
                endpoint: Some(endpoint),
                api_key_env,
                api_key_file,
            };
            let status = match client(&api)?.admin_status().await {
                Ok(status) => status,
                Err(e) => return Ok(failed(&e)),
            };
            let only = user_names(&users)?;
            let statuses: Vec<status::UserStatus> = status
                .users
                .iter()
                .filter(|u| only.is_empty() || only.contains(&u.user))
                .map(|u| status::from_state(u, status.generated_at))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", status::table(&statuses));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            json,
            users,
            accounts,
            ..
        } => {
            let (backend, config) = open(&flags).await?;
            let users = user_names(&users)?;
            if accounts.org {
                let fleet = Fleet::open(&backend, &config)?;
                let users = &users;
                let reports = fleet
                    .each(|rotator| async move {
                        status::collect(&rotator, users, SystemClock.now(), &Unobserved).await
                    })
                    .await?;
                if json {
                    let accounts: Vec<_> = reports
                        .iter()
                        .map(|r| match &r.outcome {
                            Ok(users) => serde_json::json!({"account": r.account, "users": users}),
                            Err(e) => serde_json::json!({"account": r.account, "error": e}),
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&accounts)?);
                } else {
                    for r in &reports {
                        match &r.outcome {
                            Ok(users) => print!("account {}:\n{}", r.account, status::table(users)),
                            Err(e) => println!("account {}: unreachable: {e}", r.account),
                        }
                    }
                }
                return Ok(if reports.iter().any(|r| r.outcome.is_err()) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let rotator = rotator_for(&backend, &config, &accounts).await?;
            let progress = Progress::on_terminal(!json);
            let statuses = status::collect(&rotator, &users, SystemClock.now(), &progress)
                .await
                .map_err(CliError::Status)?;
            progress.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", status::table(&statuses));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            format,
            max_age_days,
            as_of,
            users,
            accounts,
        } => {
            let (backend, config) = open(&flags).await?;
            let now = as_of.unwrap_or_else(|| SystemClock.now());
            let options = GatherOptions {
                last_used: true,
                exempt: true,
            };
            let users = &user_names(&users)?;
            let gathered: Vec<(Option<AccountId>, Result<_, String>)> = if accounts.org {
                let fleet = Fleet::open(&backend, &config)?;
                let each = fleet.each(|rotator| async move {
                    gather(&rotator, users, options, now, &Unobserved).await
                });
                let reports = each.await?.into_iter();
                reports.map(|r| (Some(r.account), r.outcome)).collect()
            } else {
                let rotator = rotator_for(&backend, &config, &accounts).await?;
                let states = gather(&rotator, users, options, now, &Unobserved).await;
                vec![(accounts.account, Ok(states.map_err(CliError::Status)?))]
            };
            let mut read = Vec::new();
            for (account, outcome) in &gathered {
                match (outcome, account) {
                    (Ok(users), _) => read.push(report::AccountUsers {
                        account: account.as_ref(),
                        users,
                    }),
                    (Err(e), Some(account)) => eprintln!("keyrot: account {account}: {e}"),
                    (Err(_), None) => {}
                }
            }
            let format = match format.as_str() {
                "json" => report::Format::Json,
                "markdown" => report::Format::Markdown,
                _ => report::Format::Csv,
            };
            print!(
                "{}",
                report::render_accounts(&read, max_age_days, now, format)?
            );
            Ok(if read.len() < gathered.len() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keyrot", &mut script);
            write_stdout(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(CliError::Output)?;
            write_stdout(&page)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { user, accounts } => {
            let (backend, config) = open(&flags).await?;
            let user = UserName::new(user.as_str()).map_err(|source| CliError::UserName {
                name: user.clone(),
                source,
            })?;
            if accounts.org {
                return rollback_everywhere(&Fleet::open(&backend, &config)?, &user).await;
            }
            let rotator = rotator_for(&backend, &config, &accounts).await?;
            let key = match rotator.rollback(&user).await {
                Ok(key) => key,
                Err(e) => return Ok(failed(&e)),
            };
            println!("{user}: {key} is current again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(api) => {
            let token = match client(&api)?.token().await {
                Ok(token) => token,
                Err(e) => return Ok(failed(&e)),
            };
            println!("{}", *token.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::GetKey { api, username } => {
            let key = match client(&api)?.active_key(&username).await {
                Ok(key) => key,
                Err(e) => return Ok(failed(&e)),
            };
            println!("{}", *key.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::CredentialProcess {
            api,
            username,
            refresh,
        } => {
            let key = match client(&api)?.active_key(&username).await {
                Ok(key) => key,
                Err(e) => return Ok(failed(&e)),
            };
            println!("{}", *process_credentials(&key, SystemClock.now(), refresh));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The rotator of the credentials' own account, or of the member account `--account` names.
async fn rotator_for(
    backend: &Backend,
    config: &Config,
    accounts: &AccountArgs,
) -> Result<Arc<keyrot_core::Rotator>, CliError> {
    match &accounts.account {
        None => Ok(backend.rotator.clone()),
        Some(account) => Ok(Arc::new(
            Fleet::open(backend, config)?.rotator(account).await?,
        )),
    }
}

/// `keyrot rollback --org`: the user rolled back in every account in scope that manages it.
async fn rollback_everywhere(fleet: &Fleet, user: &UserName) -> Result<ExitCode, CliError> {
    use keyrot_core::driver::RollbackError;
    let reports = fleet
        .each(|rotator| async move {
            match rotator.rollback(user).await {
                Ok(key) => Ok(Some(key)),
                Err(RollbackError::NotManaged(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
    let mut failed = false;
    for r in &reports {
        match &r.outcome {
            Ok(Some(key)) => println!("account {}: {user}: {key} is current again", r.account),
            Ok(None) => println!("account {}: {user} is not managed there", r.account),
            Err(e) => {
                failed = true;
                println!("account {}: failed: {e}", r.account);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn open(flags: &Flags) -> Result<(Backend, Config), CliError> {
    let config = Config::load(flags, &|name| std::env::var(name).ok())?;
    if config.backend == BackendKind::Embedded {
        eprintln!(
            "keyrot: embedded backend: a fresh in-memory demo that lives only in this command; \
             pass --endpoint-url or configure AWS credentials to work on real keys"
        );
    }
    let backend = Backend::open(&config).await?;
    Ok((backend, config))
}

async fn serve(config: &Config) -> Result<ExitCode, CliError> {
    let backend = Backend::open(config).await?;
    let (api, demo_keys) = backend.api(config).await?;
    let tls = config
        .serve
        .tls
        .as_ref()
        .map(server::tls::acceptor)
        .transpose()?;
    let listen = |source| CliError::Listen {
        address: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let base = match tls {
        Some(_) => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    // curl must trust the certificate keyrot serves.
    let cacert = config
        .serve
        .tls
        .as_ref()
        .map(|tls| format!("--cacert '{}' ", tls.cert.display()))
        .unwrap_or_default();

    match backend.kind {
        BackendKind::Embedded => println!(
            "keyrot serve: embedded in-memory backend (demo data; nothing leaves this process)"
        ),
        BackendKind::Aws => println!(
            "keyrot serve: AWS backend{}",
            config
                .aws
                .endpoint_url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default()
        ),
    }
    println!("  listening on {base}");
    println!("  policy: {}", Summary(&backend.policy));
    if backend.kind == BackendKind::Aws {
        println!(
            "  lease table: {} (the schedule claims each user there before acting on it)",
            config.backend_settings.lease_table
        );
    }
    if let Some(keys) = &demo_keys {
        let api_key = &keys.client;
        let user = DEMO_USERS[0];
        println!("  demo users: {}", DEMO_USERS.join(", "));
        println!();
        println!("API key of client \"demo\" (every user, loopback only; shown once):");
        println!("  export {API_KEY_VAR}={api_key}");
        println!();
        println!(
            "API key of client \"demo-admin\" (the admin right: every user's status, no key):"
        );
        println!("  export {ADMIN_API_KEY_VAR}={}", keys.admin);
        println!("  keyrot status --endpoint {base} --api-key-env {ADMIN_API_KEY_VAR}");
        println!();
        println!("Try it (in bash; the headers come from a file, so no secret shows in `ps`):");
        println!(
            "  TOKEN=$(curl -s {cacert}-X POST -H @<(printf 'x-api-key: %s\\n' \"${API_KEY_VAR}\") {base}/generate-token | sed -E 's/.*\"token\":\"([^\"]+)\".*/\\1/')"
        );
        println!(
            "  curl -s {cacert}-H @<(printf 'x-api-key: %s\\nAuthorization: Bearer %s\\n' \"${API_KEY_VAR}\" \"$TOKEN\") '{base}/active-key?username={user}'"
        );
        println!();
        println!("Or as a consumer would (~/.aws/config):");
        println!("  [profile {user}]");
        // The demo's grace period is a minute: the consumer must ask more often than that.
        println!(
            "  credential_process = keyrot credential-process --endpoint {base} --username {user} --refresh 20s"
        );
        println!();
    }

    let rotation = tokio::spawn(server::rotation_schedule(
        backend.rotator.clone(),
        backend.policy.schedule_interval(),
    ));
    let embedded = backend.embedded.map(Arc::new);
    let app = server::App::new(api, embedded, &config.serve);
    let result = server::serve(listener, app, &config.serve, tls, server::shutdown_signal()).await;
    rotation.abort();
    result.map_err(CliError::Server)?;
    Ok(ExitCode::SUCCESS)
}

fn client(api: &ApiArgs) -> Result<ApiClient, CliError> {
    let endpoint = Sources::new()
        .env(|name| std::env::var(name).ok())
        .flag(Setting::ApiEndpoint, api.endpoint.clone())
        .require(Setting::ApiEndpoint)?;
    let key = zeroize::Zeroizing::new(match &api.api_key_file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| CliError::ApiKeyFile {
            path: path.clone(),
            source,
        })?,
        None => std::env::var(&api.api_key_env).map_err(|_| CliError::NoApiKey {
            variable: api.api_key_env.clone(),
        })?,
    });
    Ok(ApiClient::new(&endpoint, key.trim().to_owned())?)
}

/// Writes `bytes` to stdout: a closed pipe is an error, not a panic.
fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

fn user_names(names: &[String]) -> Result<Vec<UserName>, CliError> {
    names
        .iter()
        .map(|n| {
            UserName::new(n.as_str()).map_err(|source| CliError::UserName {
                name: n.clone(),
                source,
            })
        })
        .collect()
}

/// Reports a failure of the work itself (not of the invocation): exit status 1. Usage and
/// configuration errors exit with 2.
fn failed(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("keyrot: {}", error_chain(error));
    ExitCode::FAILURE
}

fn error_chain(error: &dyn std::error::Error) -> String {
    keyrot_core::driver::error_chain(error)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_error_is_said_once_with_its_cause_as_the_source() {
        let err = user_names(&["ci".to_owned(), "../etc".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "--user \"../etc\" is not an IAM user name");
        let cause = err.source().unwrap().to_string();
        assert_eq!(error_chain(&err), format!("{err}: {cause}"));
        assert!(!cause.contains("--user"), "{cause}");
    }
}
