//! The client registry: who the API's clients are, the digest of their API key, what they may
//! fetch and where they may call from.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{
    ApiKeyDigest, ClientId, ClientIdError, DigestParseError, MAX_API_KEY_LEN, Scope, ScopeError,
};

/// A registered API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    id: ClientId,
    api_key_digest: ApiKeyDigest,
    scope: Scope,
    allowed_cidrs: Vec<IpNet>,
}

impl Client {
    /// The client's id.
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// The SHA-256 of the client's API key.
    pub fn api_key_digest(&self) -> &ApiKeyDigest {
        &self.api_key_digest
    }

    /// The users whose key the client may fetch.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The networks the client may call from. Never empty.
    pub fn allowed_cidrs(&self) -> &[IpNet] {
        &self.allowed_cidrs
    }

    /// Whether `ip` (the true source address, from the API Gateway request context) is in one
    /// of the client's networks. An IPv4-mapped IPv6 address such as `::ffff:10.0.0.1` matches
    /// IPv4 blocks as the IPv4 address it stands for.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allowed_cidrs
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
    }
}

/// Why an API key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No API key was presented.
    #[error("no api key was presented")]
    Missing,
    /// The presented key is longer than [`MAX_API_KEY_LEN`]; it was not hashed.
    #[error("api key is too long")]
    TooLong,
    /// The presented key belongs to no registered client.
    #[error("api key is not recognised")]
    Unknown,
}

/// A client registry that cannot be loaded. Each message names the client (by its position in
/// `clients` and its id) and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The document is not JSON of the shape
    /// `{"clients": [{"id", "api_key_sha256", "scope", "allowed_cidrs"}]}`.
    #[error(
        "client registry is not JSON of the form {{\"clients\": [{{\"id\", \"api_key_sha256\", \"scope\", \"allowed_cidrs\"}}]}}"
    )]
    Json(#[source] serde_json::Error),
    /// A client's id is not valid.
    #[error("clients[{index}]: id {id:?} is not valid; use 1 to 64 of a-z 0-9 . _ -")]
    InvalidId {
        /// The client's position in `clients`.
        index: usize,
        /// The id as given, cut to 64 characters.
        id: String,
        /// What is wrong with it.
        #[source]
        source: ClientIdError,
    },
    /// Two clients share an id.
    #[error("clients[{index}]: id {id:?} is already used by an earlier client; ids must be unique")]
    DuplicateId {
        /// The later client's position in `clients`.
        index: usize,
        /// The shared id.
        id: ClientId,
    },
    /// A client's `api_key_sha256` is not a hex SHA-256 digest.
    #[error(
        "clients[{index}] ({id}): api_key_sha256 must be the SHA-256 of the client's api key as 64 hex digits"
    )]
    InvalidDigest {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// What is wrong with it.
        #[source]
        source: DigestParseError,
    },
    /// Two clients have the same API key digest, so one key would authenticate as both.
    #[error(
        "clients[{index}] ({id}): api_key_sha256 is the same as client {other}'s; give each client its own api key"
    )]
    DuplicateDigest {
        /// The later client's position in `clients`.
        index: usize,
        /// The later client's id.
        id: ClientId,
        /// The earlier client with the same digest.
        other: ClientId,
    },
    /// A client's scope is not valid (empty, a bad user name, `*` mixed with names, too long).
    #[error(
        "clients[{index}] ({id}): scope is not valid; list IAM user names, or [\"*\"] for every managed user"
    )]
    InvalidScope {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// What is wrong with it.
        #[source]
        source: ScopeError,
    },
    /// A client's `allowed_cidrs` is empty, so it could never call the API.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs is empty; list the client's networks (0.0.0.0/0 and ::/0 allow any address)"
    )]
    NoCidrs {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
    },
    /// An `allowed_cidrs` entry is not a CIDR block.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs entry {value:?} is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32 (write 10.0.0.1/32 for one address)"
    )]
    InvalidCidr {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// The entry, cut to 64 characters.
        value: String,
        /// Why it does not parse.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// An `allowed_cidrs` entry has bits set after the prefix, which is usually a typo.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs entry {value} has host bits set; did you mean {suggestion}?"
    )]
    HostBitsSet {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// The entry as given.
        value: IpNet,
        /// The block with the host bits cleared.
        suggestion: IpNet,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    api_key_sha256: String,
    scope: Vec<String>,
    allowed_cidrs: Vec<String>,
}

/// The API's clients: who they are, the digest of their API key, what they may fetch and where
/// they may call from.
///
/// Loaded from JSON such as
///
/// ```json
/// {"clients": [{"id": "ci",
///               "api_key_sha256": "<64 hex digits>",
///               "scope": ["deployer"],
///               "allowed_cidrs": ["10.0.0.0/8", "::1/128"]}]}
/// ```
///
/// with [`ClientRegistry::from_json`] (or serde). Ids and digests are unique, every scope and
/// every allowlist is non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistry {
    clients: Vec<Client>,
}

impl ClientRegistry {
    /// Parses and checks a registry document.
    pub fn from_json(json: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = serde_json::from_str(json).map_err(RegistryError::Json)?;
        Self::try_from(raw)
    }

    /// The client whose API key is `presented_api_key`.
    ///
    /// The key's SHA-256 is compared with every registered digest in constant time, without
    /// stopping at a match, so timing reveals neither whether nor which client matched.
    pub fn authenticate(&self, presented_api_key: &str) -> Result<&Client, AuthError> {
        if presented_api_key.is_empty() {
            return Err(AuthError::Missing);
        }
        if presented_api_key.len() > MAX_API_KEY_LEN {
            return Err(AuthError::TooLong);
        }
        let presented = ApiKeyDigest::of(presented_api_key);
        let mut found = u64::MAX;
        for (index, client) in self.clients.iter().enumerate() {
            let index = u64::try_from(index).unwrap_or(u64::MAX);
            found.conditional_assign(&index, client.api_key_digest.ct_eq(&presented));
        }
        usize::try_from(found)
            .ok()
            .and_then(|index| self.clients.get(index))
            .ok_or(AuthError::Unknown)
    }

    /// The client with id `id`.
    pub fn get(&self, id: &ClientId) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == *id)
    }

    /// Every client, in document order.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }
}

impl TryFrom<RawRegistry> for ClientRegistry {
    type Error = RegistryError;

    fn try_from(raw: RawRegistry) -> Result<Self, Self::Error> {
        let mut clients: Vec<Client> = Vec::with_capacity(raw.clients.len());
        for (index, rc) in raw.clients.into_iter().enumerate() {
            let id = ClientId::new(rc.id.as_str()).map_err(|source| RegistryError::InvalidId {
                index,
                id: rc.id.chars().take(64).collect(),
                source,
            })?;
            if clients.iter().any(|c| c.id == id) {
                return Err(RegistryError::DuplicateId { index, id });
            }
            let api_key_digest: ApiKeyDigest = match rc.api_key_sha256.parse() {
                Ok(digest) => digest,
                Err(source) => return Err(RegistryError::InvalidDigest { index, id, source }),
            };
            if let Some(other) = clients.iter().find(|c| c.api_key_digest == api_key_digest) {
                return Err(RegistryError::DuplicateDigest {
                    index,
                    id,
                    other: other.id.clone(),
                });
            }
            let scope = match Scope::from_entries(&rc.scope) {
                Ok(scope) => scope,
                Err(source) => return Err(RegistryError::InvalidScope { index, id, source }),
            };
            if rc.allowed_cidrs.is_empty() {
                return Err(RegistryError::NoCidrs { index, id });
            }
            let mut allowed_cidrs = Vec::with_capacity(rc.allowed_cidrs.len());
            for value in &rc.allowed_cidrs {
                let net: IpNet = match value.trim().parse() {
                    Ok(net) => net,
                    Err(source) => {
                        return Err(RegistryError::InvalidCidr {
                            index,
                            id,
                            value: value.chars().take(64).collect(),
                            source,
                        });
                    }
                };
                if net.trunc() != net {
                    return Err(RegistryError::HostBitsSet {
                        index,
                        id,
                        value: net,
                        suggestion: net.trunc(),
                    });
                }
                allowed_cidrs.push(net);
            }
            clients.push(Client {
                id,
                api_key_digest,
                scope,
                allowed_cidrs,
            });
        }
        Ok(Self { clients })
    }
}

impl<'de> Deserialize<'de> for ClientRegistry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRegistry::deserialize(deserializer)?;
        Self::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_json(clients: &str) -> String {
        format!(r#"{{"clients":[{clients}]}}"#)
    }

    fn client_json(id: &str, key: &str, scope: &str, cidrs: &str) -> String {
        format!(
            r#"{{"id":"{id}","api_key_sha256":"{}","scope":{scope},"allowed_cidrs":{cidrs}}}"#,
            ApiKeyDigest::of(key)
        )
    }

    fn registry() -> ClientRegistry {
        let clients = [
            client_json(
                "ci",
                "krk_ci",
                r#"["deployer"]"#,
                r#"["10.0.0.0/8","::1/128"]"#,
            ),
            client_json("ops", "krk_ops", r#"["*"]"#, r#"["2001:db8::/32"]"#),
            client_json(
                "batch",
                "krk_batch",
                r#"["a","b"]"#,
                r#"["192.168.1.7/32"]"#,
            ),
        ]
        .join(",");
        ClientRegistry::from_json(&registry_json(&clients)).unwrap()
    }

    #[test]
    fn authenticate_picks_the_right_client() {
        let registry = registry();
        for id in ["ci", "ops", "batch"] {
            let client = registry.authenticate(&format!("krk_{id}")).unwrap();
            assert_eq!(client.id().as_str(), id);
        }
        assert_eq!(
            registry.authenticate("krk_nobody").unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(
            registry.authenticate("krk_ci ").unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(registry.authenticate("").unwrap_err(), AuthError::Missing);
        assert_eq!(
            registry
                .authenticate(&"k".repeat(MAX_API_KEY_LEN + 1))
                .unwrap_err(),
            AuthError::TooLong
        );
        // The digest itself is not the key.
        let digest = ApiKeyDigest::of("krk_ci").to_hex();
        assert_eq!(
            registry.authenticate(&digest).unwrap_err(),
            AuthError::Unknown
        );
        let empty = ClientRegistry::from_json(r#"{"clients":[]}"#).unwrap();
        assert_eq!(
            empty.authenticate("krk_ci").unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn ip_allowlists() {
        let registry = registry();
        let ci = registry.get(&ClientId::new("ci").unwrap()).unwrap();
        let ops = registry.get(&ClientId::new("ops").unwrap()).unwrap();
        let batch = registry.get(&ClientId::new("batch").unwrap()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ci.allows_ip(ip("10.1.2.3")));
        assert!(ci.allows_ip(ip("::ffff:10.0.0.1")));
        assert!(ci.allows_ip(ip("::1")));
        assert!(!ci.allows_ip(ip("11.0.0.1")));
        assert!(!ci.allows_ip(ip("::ffff:11.0.0.1")));
        assert!(!ci.allows_ip(ip("::2")));
        assert!(!ci.allows_ip(ip("127.0.0.1")));
        assert!(ops.allows_ip(ip("2001:db8:1::5")));
        assert!(!ops.allows_ip(ip("2001:db9::1")));
        assert!(!ops.allows_ip(ip("10.0.0.1")));
        assert!(batch.allows_ip(ip("192.168.1.7")));
        assert!(batch.allows_ip(ip("::ffff:192.168.1.7")));
        assert!(!batch.allows_ip(ip("192.168.1.8")));
    }

    #[test]
    fn registry_validation_errors_name_client_and_fix() {
        let ok_cidrs = r#"["10.0.0.0/8"]"#;
        let err = |clients: &[String]| {
            ClientRegistry::from_json(&registry_json(&clients.join(",")))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[client_json("Bad Id", "k", r#"["a"]"#, ok_cidrs)]);
        assert!(e.contains("clients[0]") && e.contains("\"Bad Id\""), "{e}");

        let e = err(&[
            client_json("ci", "k1", r#"["a"]"#, ok_cidrs),
            client_json("ci", "k2", r#"["a"]"#, ok_cidrs),
        ]);
        assert!(
            e.contains("clients[1]") && e.contains("already used"),
            "{e}"
        );

        let e = err(&[
            client_json("ci", "same", r#"["a"]"#, ok_cidrs),
            client_json("cd", "same", r#"["a"]"#, ok_cidrs),
        ]);
        assert!(e.contains("(cd)") && e.contains("same as client ci"), "{e}");

        let bad_hex =
            r#"{"id":"ci","api_key_sha256":"zz","scope":["a"],"allowed_cidrs":["10.0.0.0/8"]}"#;
        let e = err(&[bad_hex.to_owned()]);
        assert!(e.contains("(ci)") && e.contains("64 hex digits"), "{e}");

        let e = err(&[client_json("ci", "k", "[]", ok_cidrs)]);
        assert!(e.contains("(ci)") && e.contains("scope"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["*","a"]"#, ok_cidrs)]);
        assert!(e.contains("scope"), "{e}");

        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.300/8"]"#)]);
        assert!(
            e.contains("\"10.0.0.300/8\"") && e.contains("not a CIDR"),
            "{e}"
        );
        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.1"]"#)]);
        assert!(e.contains("10.0.0.1/32 for one address"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.1/8"]"#)]);
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["a"]"#, "[]")]);
        assert!(e.contains("allowed_cidrs is empty"), "{e}");

        let e = ClientRegistry::from_json(r#"{"clients":[{"id":"ci"}]}"#).unwrap_err();
        assert!(matches!(e, RegistryError::Json(_)));
        let e = ClientRegistry::from_json(r#"{"clients":[],"extra":1}"#).unwrap_err();
        assert!(matches!(e, RegistryError::Json(_)));

        // Typed errors keep the cause for the error chain.
        let e = ClientRegistry::from_json(&registry_json(&client_json(
            "ci",
            "k",
            r#"["../x"]"#,
            ok_cidrs,
        )))
        .unwrap_err();
        assert!(matches!(
            e,
            RegistryError::InvalidScope {
                index: 0,
                source: ScopeError::UserName { .. },
                ..
            }
        ));

        // serde gives the same validation.
        let json = registry_json(&client_json("ci", "k", r#"["a"]"#, "[]"));
        let e = serde_json::from_str::<ClientRegistry>(&json).unwrap_err();
        assert!(e.to_string().contains("allowed_cidrs is empty"), "{e}");
        let json = registry_json(&client_json("ci", "k", r#"["a"]"#, ok_cidrs));
        assert_eq!(
            serde_json::from_str::<ClientRegistry>(&json)
                .unwrap()
                .clients()
                .len(),
            1
        );
    }
}
