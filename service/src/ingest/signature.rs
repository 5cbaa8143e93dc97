//! HMAC authentication of Billing callouts. Scheme: header
//! `X-Zuora-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` with the
//! shared secret; several `v1=` entries may be sent while the secret rotates. A timestamp
//! more than `TOLERANCE_SECS` away from now is refused, so a captured callout cannot be
//! replayed later. The comparison is constant-time; the secret never prints.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "x-zuora-signature";
pub const TOLERANCE_SECS: i64 = 300;

/// The shared callout secret. Debug is redacted and there is no Display, so it cannot end up
/// in a log line or an error by accident.
#[derive(Clone)]
pub struct CalloutSecret(Vec<u8>);

impl CalloutSecret {
    /// `None` for an empty secret: an empty HMAC key would accept anyone who guesses it.
    pub fn new(secret: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = secret.into();
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether two secrets are the same bytes (constant-time).
    pub fn same_as(&self, other: &CalloutSecret) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The header value a sender puts on `body` at `unix_time` (used by tests and by the
    /// operator tooling that replays callouts).
    pub fn sign(&self, body: &[u8], unix_time: i64) -> String {
        let t = unix_time.to_string();
        format!("t={t},v1={}", hex::encode(self.mac(&t, body)))
    }
}

impl fmt::Debug for CalloutSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CalloutSecret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Zuora-Signature header")]
    Missing,
    #[error("X-Zuora-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "X-Zuora-Signature timestamp is {age_secs} s away from now (tolerance {TOLERANCE_SECS} s)"
    )]
    Stale { age_secs: i64 },
    #[error("X-Zuora-Signature does not match the body")]
    Mismatch,
}

/// Checks `header` against `body` at `now_unix`. Staleness is checked before the MAC so a
/// replayed callout is reported as stale; a forged timestamp still fails the MAC.
pub fn verify(
    secret: &CalloutSecret,
    header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => candidates.push(sig),
            // Unknown schemes (a future v2) are ignored, as a sender may send several.
            Some(_) => {}
            None => {
                return Err(SignatureError::Malformed(
                    "expected comma-separated key=value",
                ))
            }
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    let sent_at: i64 = t
        .parse()
        .map_err(|_| SignatureError::Malformed("t= is not unix seconds"))?;
    let age_secs = now_unix.saturating_sub(sent_at);
    if age_secs.abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale { age_secs });
    }
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    let expected = secret.mac(t, body);
    let mut matched = subtle::Choice::from(0);
    for candidate in candidates {
        // A candidate that is not 32 bytes of hex cannot match; decoding leaks only the
        // shape the sender chose, never anything about the expected MAC.
        if let Ok(bytes) = hex::decode(candidate) {
            if bytes.len() == expected.len() {
                matched |= bytes.ct_eq(&expected);
            }
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> CalloutSecret {
        CalloutSecret::new("s3cret-value").unwrap()
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let h = secret().sign(b"{}", 1_000);
        assert_eq!(verify(&secret(), Some(&h), b"{}", 1_100), Ok(()));
    }

    #[test]
    fn a_changed_body_or_another_secret_is_a_mismatch() {
        let h = secret().sign(b"{}", 1_000);
        assert_eq!(
            verify(&secret(), Some(&h), b"{ }", 1_000),
            Err(SignatureError::Mismatch)
        );
        let other = CalloutSecret::new("other").unwrap();
        assert_eq!(
            verify(&other, Some(&h), b"{}", 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_stale() {
        let h = secret().sign(b"{}", 1_000);
        assert_eq!(
            verify(&secret(), Some(&h), b"{}", 1_301),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        assert!(matches!(
            verify(&secret(), Some(&h), b"{}", 600),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn rotation_accepts_any_matching_v1() {
        let good = secret().sign(b"x", 50);
        let sig = good.split("v1=").nth(1).unwrap();
        let h = format!("t=50,v1={},v1={sig}", "00".repeat(32));
        assert_eq!(verify(&secret(), Some(&h), b"x", 50), Ok(()));
    }

    #[test]
    fn malformed_headers_and_empty_secrets_are_refused() {
        assert_eq!(
            verify(&secret(), None, b"x", 0),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify(&secret(), Some("v1=abcd"), b"x", 0),
            Err(SignatureError::Malformed(_))
        ));
        assert!(CalloutSecret::new("").is_none());
        assert_eq!(format!("{:?}", secret()), "CalloutSecret(<redacted>)");
    }
}
