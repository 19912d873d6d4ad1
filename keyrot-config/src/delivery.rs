//! The delivery settings: each user's destinations (the text form of
//! [`keyrot_core::delivery`]), whether the users' `keyrot:deliver` tags are read, and GitHub's.

use std::collections::BTreeMap;

use keyrot_aws::{DEFAULT_GITHUB_API_URL, DeliverySettings, GitHubSettings};
use keyrot_core::UserName;
use keyrot_core::delivery::{Destination, Target, parse_destinations};

use crate::error::{ConfigError, Reason};
use crate::setting::Setting;
use crate::sources::{Sources, Value};

impl Sources {
    /// What is delivered where. Destinations are written per user: in the file a table
    /// (`[delivery.users]`, `alice = "ci=ssm:eu-west-1:/ci/aws-key"`), in the variable
    /// `alice: ci=ssm:eu-west-1:/ci/aws-key prod=sm:us-east-2:app/aws; bob: ...`. Every entry
    /// is checked: a bad one is refused with the user and the destination named.
    pub fn delivery(&self) -> Result<DeliverySettings, ConfigError> {
        let users = self.delivery_users()?;
        let user_tags = match self.text(Setting::DeliveryUserTags)?.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(self.invalid(Setting::DeliveryUserTags, Reason::Bool(other.to_owned())));
            }
        };
        let credential_secret = self.secret_id(Setting::GitHubCredentialSecret)?;
        let api_url = match self.text(Setting::GitHubApiUrl)? {
            None => DEFAULT_GITHUB_API_URL.to_owned(),
            Some(url) if is_github_api_url(&url) => url.trim_end_matches('/').to_owned(),
            Some(url) => return Err(self.invalid(Setting::GitHubApiUrl, Reason::GitHubUrl(url))),
        };
        if credential_secret.is_none() {
            let github = users.iter().find_map(|(user, destinations)| {
                let d = destinations
                    .iter()
                    .find(|d| matches!(d.target, Target::GitHub { .. }))?;
                Some((user, d))
            });
            if let Some((user, destination)) = github {
                return Err(self.invalid(
                    Setting::DeliveryUsers,
                    Reason::GitHubWithoutCredential {
                        user: user.to_string(),
                        id: destination.id.to_string(),
                        credential: self.name(Setting::GitHubCredentialSecret),
                    },
                ));
            }
        }
        Ok(DeliverySettings {
            users,
            user_tags,
            github: GitHubSettings {
                credential_secret,
                api_url,
            },
        })
    }

    fn delivery_users(&self) -> Result<BTreeMap<UserName, Vec<Destination>>, ConfigError> {
        let setting = Setting::DeliveryUsers;
        let entries: Vec<(String, String)> = match self.value(setting) {
            None => Vec::new(),
            Some(Value::Table(entries)) => entries.clone(),
            Some(Value::One(text)) => text
                .split(';')
                .filter(|entry| !entry.trim().is_empty())
                .map(|entry| {
                    // A user name has no space: `alice ci=...` lacks its `:`.
                    entry
                        .split_once(':')
                        .filter(|(user, _)| !user.trim().contains(char::is_whitespace))
                        .map(|(user, text)| (user.trim().to_owned(), text.to_owned()))
                        .ok_or_else(|| {
                            self.invalid(setting, Reason::DeliveryEntry(entry.trim().to_owned()))
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Many(_)) => return Err(self.invalid(setting, Reason::Kind("a list"))),
        };
        let mut users = BTreeMap::new();
        for (user, text) in entries {
            let name = UserName::new(&user)
                .map_err(|_| self.invalid(setting, Reason::DeliveryUser(user.clone())))?;
            let destinations = parse_destinations(&text).map_err(|source| {
                self.invalid(
                    setting,
                    Reason::Destinations {
                        user: user.clone(),
                        source,
                    },
                )
            })?;
            if destinations.is_empty() {
                return Err(self.invalid(setting, Reason::NoDestinations(user)));
            }
            if users.insert(name, destinations).is_some() {
                return Err(self.invalid(setting, Reason::DeliveryUserTwice(user)));
            }
        }
        Ok(users)
    }
}

/// `https://HOST[:PORT][/PATH]`, or `http://` to a loopback host (a test server).
fn is_github_api_url(url: &str) -> bool {
    let (rest, plain) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return false,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if !port.chars().all(|c| c.is_ascii_digit()) || port.is_empty() {
                return false;
            }
            host
        }
        _ => authority,
    };
    let well_formed = !host.is_empty()
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && !authority.contains('@')
        && !url.contains(['?', '#']);
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    well_formed && (!plain || loopback)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::lookup_in;

    fn env(vars: &[(&str, &str)]) -> Result<DeliverySettings, ConfigError> {
        Sources::lambda(lookup_in(vars)).delivery()
    }

    fn file(text: &str) -> Result<DeliverySettings, ConfigError> {
        Sources::new()
            .file_text(Path::new("keyrot.toml"), text)?
            .delivery()
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    #[test]
    fn nothing_configured_delivers_nothing() {
        let settings = env(&[]).unwrap();
        assert_eq!(settings, DeliverySettings::default());
        assert!(!settings.is_configured());
        assert_eq!(settings.github.api_url, "https://api.github.com");
    }

    #[test]
    fn the_file_gives_each_user_destinations_in_the_tags_form() {
        let settings = file(
            "[delivery]\nuser_tags = true\ngithub_credential_secret = \"keyrot/github\"\n\
             github_api_url = \"https://github.example.com/api/v3/\"\n\
             [delivery.users]\nalice = \"ci=ssm:eu-west-1:/ci/aws-key@alias/ci\"\n\
             \"bob@example\" = [\"prod=sm:us-west-2:consumers/bob\", \"gh=gh-repo:acme/app:AWS\"]\n",
        )
        .unwrap();
        assert!(settings.user_tags && settings.is_configured());
        assert_eq!(settings.users[&user("alice")][0].id.as_str(), "ci");
        let bob = &settings.users[&user("bob@example")];
        assert_eq!(bob.len(), 2);
        assert_eq!(bob[1].target.kind(), "GitHub");
        assert_eq!(
            settings.github.credential_secret.as_deref(),
            Some("keyrot/github")
        );
        assert_eq!(settings.github.api_url, "https://github.example.com/api/v3");
    }

    #[test]
    fn the_variable_separates_users_with_semicolons() {
        let settings = env(&[(
            "KEYROT_DELIVERY_USERS",
            "alice: ci=ssm:eu-west-1:/ci/aws-key prod=sm:us-east-2:app/aws ; bob:x=sm:eu-west-1:b;",
        )])
        .unwrap();
        assert_eq!(settings.users.len(), 2);
        assert_eq!(settings.users[&user("alice")].len(), 2);
        assert!(!settings.user_tags);
        let tags = env(&[("KEYROT_DELIVERY_USER_TAGS", "true")]).unwrap();
        assert!(tags.is_configured() && tags.users.is_empty());
    }

    #[test]
    fn every_bad_value_is_refused_with_the_setting_and_the_user_named() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (
                &[("KEYROT_DELIVERY_USERS", "alice: ci=ftp:somewhere")],
                "KEYROT_DELIVERY_USERS: user alice: destination ci: unknown kind \"ftp\"",
            ),
            (
                &[("KEYROT_DELIVERY_USERS", "alice: ci=ssm:mars-1:/p")],
                "KEYROT_DELIVERY_USERS: user alice: destination ci: \"mars-1\" is not an AWS \
                 region",
            ),
            (
                &[(
                    "KEYROT_DELIVERY_USERS",
                    "ok: a=sm:eu-west-1:s; alice ci=sm:eu-west-1:s",
                )],
                "KEYROT_DELIVERY_USERS: \"alice ci=sm:eu-west-1:s\" is not a user's destinations",
            ),
            (
                &[("KEYROT_DELIVERY_USERS", "bad/user: ci=sm:eu-west-1:s")],
                "KEYROT_DELIVERY_USERS: \"bad/user\" is not an IAM user name",
            ),
            (
                &[(
                    "KEYROT_DELIVERY_USERS",
                    "alice: a=sm:eu-west-1:s; alice: b=sm:eu-west-1:t",
                )],
                "KEYROT_DELIVERY_USERS: user alice is given destinations twice",
            ),
            (
                &[("KEYROT_DELIVERY_USERS", "alice:   ")],
                "KEYROT_DELIVERY_USERS: user alice is given no destinations",
            ),
            (
                &[("KEYROT_DELIVERY_USERS", "alice: gh=gh-repo:acme/app:AWS")],
                "KEYROT_DELIVERY_USERS: user alice: destination gh is a GitHub destination, \
                 which needs KEYROT_GITHUB_CREDENTIAL_SECRET",
            ),
            (
                &[("KEYROT_DELIVERY_USER_TAGS", "yes")],
                "KEYROT_DELIVERY_USER_TAGS: \"yes\" is not true or false",
            ),
            (
                &[("KEYROT_GITHUB_CREDENTIAL_SECRET", "keyrot github")],
                "KEYROT_GITHUB_CREDENTIAL_SECRET: \"keyrot github\" is not a secret name or ARN",
            ),
            (
                &[("KEYROT_GITHUB_API_URL", "http://github.example.com/api/v3")],
                "KEYROT_GITHUB_API_URL: \"http://github.example.com/api/v3\" is not GitHub's \
                 API",
            ),
        ];
        for (vars, message) in cases {
            let err = env(vars).unwrap_err();
            assert!(
                err.chain().starts_with(message),
                "{vars:?}: {}",
                err.chain()
            );
            let var = err.setting().unwrap().spelling().var.unwrap();
            assert!(vars.iter().any(|(v, _)| *v == var), "{vars:?}: {var}");
        }
    }

    #[test]
    fn the_file_names_the_key_and_the_user() {
        let err = file("[delivery.users]\nalice = \"ci=ssm:eu-west-1:aws/ci\"\n").unwrap_err();
        assert!(
            err.chain().starts_with(
                "[delivery] users in keyrot.toml: user alice: destination ci: \"aws/ci\" is \
                 not an SSM parameter name"
            ),
            "{}",
            err.chain()
        );
        let err = file("[delivery.users]\nalice = { ci = \"x\" }\n").unwrap_err();
        assert!(
            err.chain()
                .starts_with("[delivery] users in keyrot.toml: takes a string"),
            "{}",
            err.chain()
        );
        // A table is refused where a setting takes one value.
        let err = file("[delivery]\ngithub_api_url = { a = \"b\" }\n").unwrap_err();
        assert!(err.chain().contains("not a table"), "{}", err.chain());
    }

    #[test]
    fn github_api_urls() {
        for good in [
            "https://api.github.com",
            "https://ghe.example.com/api/v3",
            "https://ghe.example.com:8443/api/v3",
            "http://127.0.0.1:9000",
            "http://localhost:1234/api",
            "http://[::1]:80",
        ] {
            assert!(is_github_api_url(good), "{good}");
        }
        for bad in [
            "api.github.com",
            "ftp://api.github.com",
            "http://api.github.com",
            "https://",
            "https://user@api.github.com",
            "https://api.github.com/?x=1",
            "https://api.github.com:x",
            "https://api github.com",
        ] {
            assert!(!is_github_api_url(bad), "{bad}");
        }
    }
}
