//! API keys and their digests: the secret a client presents, and the SHA-256 the registry
//! keeps instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Making API keys. An API key is a bearer secret: show it to its owner once and store only its
/// [`ApiKeyDigest`].
#[derive(Debug)]
pub enum ApiKey {}

impl ApiKey {
    /// The prefix of every generated key, so leaked keys are easy to recognise in scanners.
    pub const PREFIX: &'static str = "krk_";

    /// Formats 32 random bytes from the caller (a CSPRNG at the edge) as an API key:
    /// `krk_` followed by 64 lower-case hex digits.
    pub fn generate_from(random: [u8; 32]) -> String {
        format!("{}{}", Self::PREFIX, hex::encode(random))
    }
}

/// An input that is not a hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// A SHA-256 digest is 64 hex digits.
    #[error("expected 64 hex digits, got {0} characters")]
    Length(usize),
    /// Only `0-9 a-f A-F` are hex digits.
    #[error("{0:?} is not a hex digit")]
    Character(char),
}

/// The SHA-256 of an API key: what the registry stores instead of the key.
///
/// Comparisons (`==` included) take the same time whatever the contents. Serialised as 64
/// lower-case hex digits.
#[derive(Clone, Copy, Eq)]
pub struct ApiKeyDigest([u8; 32]);

impl ApiKeyDigest {
    /// The digest of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The digest as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl ConstantTimeEq for ApiKeyDigest {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for ApiKeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl FromStr for ApiKeyDigest {
    type Err = DigestParseError;
    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The first character that is not a hex digit is named, whatever the length, so a
        // wrongly pasted value says what is wrong with it.
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestParseError::Character(bad));
        }
        let mut out = [0u8; 32];
        // Every character is an ASCII hex digit now, so the only error left is the length.
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError::Length(s.len()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest of a 256-bit random key reveals nothing, but a prefix is enough to tell
        // digests apart in a log.
        write!(f, "ApiKeyDigest({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for ApiKeyDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ApiKeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_and_digests() {
        let key = ApiKey::generate_from([0xAB; 32]);
        assert_eq!(key, format!("krk_{}", "ab".repeat(32)));
        let digest = ApiKeyDigest::of(&key);
        assert_eq!(digest.to_hex().parse::<ApiKeyDigest>().unwrap(), digest);
        assert_eq!(
            digest
                .to_hex()
                .to_uppercase()
                .parse::<ApiKeyDigest>()
                .unwrap(),
            digest
        );
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            ApiKeyDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{}\"", digest.to_hex()));
        assert_eq!(serde_json::from_str::<ApiKeyDigest>(&json).unwrap(), digest);
        assert_eq!(
            "abc".parse::<ApiKeyDigest>(),
            Err(DigestParseError::Length(3))
        );
        assert_eq!(
            "g".repeat(64).parse::<ApiKeyDigest>(),
            Err(DigestParseError::Character('g'))
        );
        assert_ne!(ApiKeyDigest::of("a"), ApiKeyDigest::of("b"));
    }
}
