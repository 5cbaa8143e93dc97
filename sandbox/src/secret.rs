//! The sandbox's own secrets: a redacted string (OAuth client secrets, issued tokens) and
//! the callout signer. The sandbox stands in for Salesforce and Zuora, so it signs callouts
//! by the documented scheme itself rather than borrowing the service's verifier: a test then
//! proves the two sides agree instead of assuming it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// A secret string whose `Debug` is redacted and which has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// `None` for an empty value: an empty secret or token is never valid.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        (!value.is_empty()).then_some(Self(value))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Signs Billing callouts as the callout template does:
/// `X-Zuora-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
#[derive(Clone)]
pub struct CalloutSigner(Vec<u8>);

impl CalloutSigner {
    /// `None` for an empty key.
    pub fn new(secret: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = secret.into();
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    /// The header value for `body` sent at `unix_time`.
    pub fn sign(&self, body: &[u8], unix_time: i64) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(format!("{unix_time}.").as_bytes());
        mac.update(body);
        format!(
            "t={unix_time},v1={}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

impl fmt::Debug for CalloutSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CalloutSigner(<redacted>)")
    }
}
