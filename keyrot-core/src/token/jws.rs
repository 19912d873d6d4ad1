//! The strict look at a token's JWS header that [`TokenPolicy::verify`](super::TokenPolicy::verify)
//! takes before it lets jsonwebtoken near the token.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::TokenRejection;

/// Unpadded base64url (RFC 4648 §5), as JWS (RFC 7515 §2) writes every part of a token:
/// decoding refuses padding, the standard alphabet's `+` and `/`, and stray bits in the last
/// character, so each header has exactly one spelling.
pub(super) const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// The header fields `verify` looks at before it lets jsonwebtoken near the token. Parsed here
/// because jsonwebtoken cannot represent `alg: none` and would only say "malformed".
#[derive(Deserialize)]
pub(super) struct RawHeader {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) typ: Option<String>,
    #[serde(default)]
    pub(super) crit: Option<serde_json::Value>,
}

impl RawHeader {
    /// Decodes the first, base64url part of a compact JWS.
    pub(super) fn decode(b64: &str) -> Result<Self, TokenRejection> {
        let json = base64url_decode(b64).ok_or(TokenRejection::Malformed {
            reason: "header is not base64url",
        })?;
        serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed {
            reason: "header is not a JSON object with an alg",
        })
    }
}

/// Strict unpadded base64url decoding ([`BASE64URL`]); `None` for anything else.
pub(super) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    BASE64URL.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::token::{ClientId, Scope, SigningKey, TokenConfig, TokenPolicy};

    #[test]
    fn base64url_decoder_is_strict() {
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("YQ").unwrap(), b"a");
        assert_eq!(base64url_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64url_decode("YWJj").unwrap(), b"abc");
        assert_eq!(
            base64url_decode(&BASE64URL.encode([0xfb, 0xff])).unwrap(),
            [0xfb, 0xff]
        );
        assert_eq!(BASE64URL.encode([0xfb, 0xff]), "-_8");
        assert!(base64url_decode("YR").is_none()); // stray low bits
        assert!(base64url_decode("YWJ").is_none()); // stray low bits after two bytes
        assert!(base64url_decode("YQ==").is_none()); // padding
        assert!(base64url_decode("YWI=").is_none()); // padding
        assert!(base64url_decode("YQ=").is_none()); // partial padding
        assert!(base64url_decode("Y").is_none());
        assert!(base64url_decode("YWJjZ").is_none());
        assert!(base64url_decode("+/8A").is_none()); // standard alphabet
        assert!(base64url_decode("YW Jj").is_none());
        assert!(base64url_decode("YWJj\n").is_none());
    }

    /// The header of a token the policy issued, re-spelt with padding or with stray bits set,
    /// still decodes to the same bytes in a lenient decoder; the policy refuses both spellings
    /// at the header check, before the signature is looked at.
    #[test]
    fn a_padded_or_trailing_bits_header_is_refused() {
        let policy = TokenPolicy::new(TokenConfig::new(
            "keyrot",
            "keyrot-api",
            SigningKey::new("k1", vec![0xA1; 32]).unwrap(),
        ))
        .unwrap();
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let scope: Scope = "deployer".parse().unwrap();
        let client = ClientId::new("ci").unwrap();
        let refused = TokenRejection::Malformed {
            reason: "header is not base64url",
        };

        // Headers of each length modulo 3, so that the base64url form ends with 0, 4 or 2
        // unused bits.
        for header in [
            r#"{"alg":"HS256","kid":"k1"}"#,
            r#"{"alg":"HS256","kid":"k1" }"#,
            r#"{"alg":"HS256","kid":"k1"  }"#,
        ] {
            let token = policy.issue(&client, &scope, now, "jti-1").unwrap();
            let (_, rest) = token.expose_token().split_once('.').unwrap();
            let b64 = BASE64URL.encode(header);
            // The header as it is: not base64url-refused (the signature no longer matches).
            let plain = format!("{b64}.{rest}");
            assert_eq!(
                policy.verify(&plain, now),
                Err(TokenRejection::BadSignature),
                "{header}"
            );

            let unused_bits = match header.len() % 3 {
                0 => 0,
                1 => 4,
                _ => 2,
            };
            if unused_bits == 0 {
                // Nothing to pad and no stray bits: a trailing `=` is still refused.
                let padded = format!("{b64}=.{rest}");
                assert_eq!(policy.verify(&padded, now), Err(refused.clone()));
                continue;
            }
            let padding = "=".repeat(unused_bits / 2);
            let padded = format!("{b64}{padding}.{rest}");
            assert_eq!(
                policy.verify(&padded, now),
                Err(refused.clone()),
                "{padded}"
            );

            // Set the lowest unused bit of the last character.
            let mut bytes = b64.into_bytes();
            let last = bytes.last_mut().unwrap();
            let alphabet = alphabet::URL_SAFE.as_str().as_bytes();
            let value = alphabet.iter().position(|c| c == last).unwrap();
            assert_eq!(value % (1 << unused_bits), 0);
            *last = alphabet[value | 1];
            let stray = format!("{}.{rest}", String::from_utf8(bytes).unwrap());
            assert_eq!(policy.verify(&stray, now), Err(refused.clone()), "{stray}");
        }
    }
}
