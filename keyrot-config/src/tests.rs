use std::path::Path;
use std::time::Duration;

use keyrot_core::Selection;
use keyrot_core::settings::PolicySettings;

use super::*;

const DAY: u64 = 24 * 3600;

/// The crate docs' setting table, row by row: (file key, variable, flag).
fn doc_table() -> Vec<(String, String, String)> {
    let docs = include_str!("lib.rs");
    let cell = |text: &str| text.trim().trim_matches('`').to_owned();
    docs.lines()
        .filter_map(|line| line.strip_prefix("//! |"))
        .skip(2) // the header and its rule
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            (cell(cells[0]), cell(cells[1]), cell(cells[2]))
        })
        .collect()
}

#[test]
fn the_documented_table_is_the_settings_spelling() {
    let table = doc_table();
    assert_eq!(table.len(), Setting::ALL.len(), "one row per setting");
    for (setting, (file, var, flag)) in Setting::ALL.into_iter().zip(table) {
        let spelling = setting.spelling();
        let key = match spelling.file {
            Some((Some(section), key)) => format!("[{section}] {key}"),
            Some((None, key)) => key.to_owned(),
            None => String::new(),
        };
        assert_eq!(file, key, "{setting:?}");
        assert_eq!(var, spelling.var.unwrap_or_default(), "{setting:?}");
        assert_eq!(flag, spelling.flag.unwrap_or_default(), "{setting:?}");
    }
}

#[test]
fn every_name_is_spelled_once() {
    let mut vars: Vec<_> = Setting::ALL
        .iter()
        .filter_map(|s| s.spelling().var)
        .collect();
    let mut keys: Vec<_> = Setting::ALL
        .iter()
        .filter_map(|s| s.spelling().file)
        .collect();
    let (v, k) = (vars.len(), keys.len());
    vars.sort_unstable();
    vars.dedup();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((vars.len(), keys.len()), (v, k));
}

#[test]
fn environment_sets_every_policy_field() {
    let s = Sources::lambda(lookup_in(&[
        ("KEYROT_ROTATION_PERIOD", "30d"),
        ("KEYROT_GRACE_PERIOD", "2d"),
        ("KEYROT_MAX_GRACE_PERIOD", "3d"),
        ("KEYROT_RECOVERY_WINDOW", "1d"),
        ("KEYROT_QUIET_PERIOD", "12h"),
        ("KEYROT_VERIFY_TIMEOUT", "2m"),
        ("KEYROT_SCHEDULE_INTERVAL", "15m"),
        ("KEYROT_MANAGED_TAG", "team=platform"),
        ("KEYROT_EXEMPT_USERS", "a, b,,"),
        ("KEYROT_USERS", ""),
    ]));
    let p = s.policy(&PolicySettings::default()).unwrap();
    assert_eq!(p.rotation_period(), Duration::from_secs(30 * DAY));
    assert_eq!(p.grace(), Duration::from_secs(2 * DAY));
    assert_eq!(p.max_grace(), Duration::from_secs(3 * DAY));
    assert_eq!(p.recovery_window(), Duration::from_secs(DAY));
    assert_eq!(p.quiet_period(), Duration::from_secs(12 * 3600));
    assert_eq!(p.verify_timeout(), Duration::from_secs(120));
    assert_eq!(p.schedule_interval(), Duration::from_secs(900));
    assert_eq!(
        p.selection(),
        &Selection::Tagged {
            key: "team".into(),
            value: "platform".into()
        }
    );
    assert_eq!(p.exempt().len(), 2);
}

#[test]
fn a_bad_duration_is_refused_by_its_variable() {
    let s = Sources::lambda(lookup_in(&[("KEYROT_GRACE_PERIOD", "7 days")]));
    let err = s.policy_settings().unwrap_err();
    assert_eq!(err.to_string(), "KEYROT_GRACE_PERIOD");
    assert!(
        err.chain()
            .starts_with("KEYROT_GRACE_PERIOD: \"7 days\" is not a duration"),
        "{}",
        err.chain()
    );
}

fn file(text: &str) -> Result<Sources, ConfigError> {
    Sources::new().file_text(Path::new("/etc/keyrot.toml"), text)
}

#[test]
fn the_file_names_its_keys_with_its_path() {
    let s =
        file("[aws]\nalert_from = \"k@example.com\"\nalert_to = [\"ops@.example.com\"]\n").unwrap();
    assert_eq!(
        s.backend().unwrap_err().chain(),
        "[aws] alert_to in /etc/keyrot.toml: \"ops@.example.com\" is not an email address"
    );
    let s = file("listen = \"nowhere\"\n").unwrap();
    assert_eq!(
        s.listen().unwrap_err().chain(),
        "listen in /etc/keyrot.toml: \"nowhere\" is not an address and port, e.g. 127.0.0.1:8080"
    );
    // Numbers are read as their text; arrays where one value is wanted are refused.
    let s = file("[aws]\nmax_attempts = 8\nregion = [\"a\", \"b\"]\n").unwrap();
    assert_eq!(s.text(Setting::MaxAttempts).unwrap().as_deref(), Some("8"));
    assert_eq!(
        s.aws().unwrap_err().chain(),
        "[aws] region in /etc/keyrot.toml: takes one value, not a list"
    );
    // A list may also be written as one string with commas, as in a variable.
    let s = file("[policy]\nexempt = \"a, b\"\n").unwrap();
    assert_eq!(s.list(Setting::ExemptUsers).unwrap(), ["a", "b"]);
}

#[test]
fn the_file_refuses_what_is_not_a_setting() {
    for (text, message) in [
        ("nonsense = 1\n", "/etc/keyrot.toml has no setting nonsense"),
        (
            "[aws]\nregoin = \"x\"\n",
            "/etc/keyrot.toml has no setting [aws] regoin",
        ),
        ("[awz]\n", "/etc/keyrot.toml has no setting [awz]"),
        (
            "[aws]\nregion = { a = 1 }\n",
            "[aws] region in /etc/keyrot.toml: takes a string",
        ),
        ("[aws\n", "/etc/keyrot.toml is not a TOML file"),
    ] {
        let err = file(text).unwrap_err();
        assert!(
            err.chain().starts_with(message),
            "{text:?}: {}",
            err.chain()
        );
    }
}

#[test]
fn later_sources_win_and_empty_values_leave_the_earlier_ones() {
    let s = file("[aws]\nsecret_prefix = \"file/\"\nregion = \"eu-west-1\"\n")
        .unwrap()
        .env(lookup_in(&[
            ("KEYROT_SECRET_PREFIX", "env/"),
            ("AWS_REGION", " "),
        ]))
        .flag(Setting::Region, None);
    assert_eq!(s.secret_prefix().unwrap(), "env/");
    assert_eq!(s.aws().unwrap().region.as_deref(), Some("eu-west-1"));
    let s = s.flag(Setting::Region, Some("us-east-1".into()));
    assert_eq!(s.aws().unwrap().region.as_deref(), Some("us-east-1"));
    assert_eq!(s.name(Setting::Region).to_string(), "--region");
    assert_eq!(
        s.name(Setting::Region).source,
        Some(Source::Flag),
        "and a flag is named as one"
    );
}

#[test]
fn a_setting_nobody_wrote_is_named_by_its_variable() {
    let s = Sources::new();
    assert_eq!(
        s.name(Setting::MaxGrace).to_string(),
        "KEYROT_MAX_GRACE_PERIOD"
    );
    assert_eq!(s.name(Setting::Profile).to_string(), "[aws] profile");
    assert_eq!(
        ConfigError::Missing(Setting::ApiEndpoint).to_string(),
        "--endpoint (or KEYROT_ENDPOINT) is required but not set"
    );
    assert_eq!(
        ConfigError::Missing(Setting::LeaseTable).to_string(),
        "KEYROT_LEASE_TABLE is required but not set"
    );
}

/// Every policy field and token error maps to a setting whose spelling names that field.
#[test]
fn policy_and_token_errors_blame_their_setting() {
    use keyrot_core::PolicyField;
    for field in [
        PolicyField::RotationPeriod,
        PolicyField::Grace,
        PolicyField::MaxGrace,
        PolicyField::RecoveryWindow,
        PolicyField::QuietPeriod,
        PolicyField::LastUsedLag,
        PolicyField::VerifyTimeout,
        PolicyField::ScheduleInterval,
        PolicyField::ManagedTag,
        PolicyField::Users,
        PolicyField::Exempt,
    ] {
        let spelling = Setting::of_policy(field).spelling();
        assert_eq!(
            spelling.file,
            Some((Some("policy"), field.name())),
            "{field}"
        );
    }
    use keyrot_core::token::TokenConfigError as E;
    for (error, setting) in [
        (E::InvalidIssuer, Setting::TokenIssuer),
        (E::InvalidAudience, Setting::TokenAudience),
        (E::InvalidLifetime(Duration::ZERO), Setting::TokenTtl),
        (E::InvalidKeyId("x y".into()), Setting::SigningKeySecret),
        (E::DuplicateKeyId("a".into()), Setting::SigningKeySecret),
    ] {
        assert_eq!(Setting::of_token_error(&error), setting, "{error}");
    }
}

/// The engine knows no variable: every `KEYROT_*` name is spelled here (keyrot-core's docs
/// may point here, in comments).
#[test]
fn keyrot_core_spells_no_variable() {
    fn visit(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if line.contains("KEYROT_") && !line.trim_start().starts_with("//") {
                        found.push(format!("{}:{}: {line}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keyrot-core/src");
    let mut found = Vec::new();
    visit(&core, &mut found);
    assert!(found.is_empty(), "{found:#?}");
}
