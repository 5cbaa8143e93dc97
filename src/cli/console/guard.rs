//! Who may use the console, and proof that a state-changing POST came from a page this
//! process served. Bearer tokens: required when `ledger serve` binds a non-loopback address
//! (`LEDGER_CONSOLE_TOKEN`), accepted as `Authorization: Bearer` or as the cookie the login
//! form sets (browsers cannot add a header to a link). CSRF tokens: `<issued unix secs>.<nonce>.<hex
//! HMAC-SHA256(secret, issued.nonce)>` with a per-process random secret, so a restart voids
//! every form and nothing is stored per session.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The environment variable holding the bearer token of a console bound beyond loopback.
pub const TOKEN_VARIABLE: &str = "LEDGER_CONSOLE_TOKEN";
/// The cookie the login form sets (HttpOnly, SameSite=Strict).
pub const TOKEN_COOKIE: &str = "ledger_console_token";
/// How long a served form may be posted back.
const CSRF_LIFETIME_SECS: i64 = 12 * 3600;
/// Shortest bearer token accepted: a guessable token is no protection.
const MIN_TOKEN_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The bearer token a non-loopback console requires. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct BearerToken {
    /// sha256 of the token: requests are compared against the digest, in constant time.
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GuardError {
    #[error("{TOKEN_VARIABLE} is not set: a console bound to {addr} (not a loopback address) requires a bearer token; set {TOKEN_VARIABLE} (at least {MIN_TOKEN_LEN} characters) or bind 127.0.0.1")]
    TokenRequired { addr: String },
    #[error("{TOKEN_VARIABLE}: must be at least {MIN_TOKEN_LEN} characters without spaces")]
    WeakToken,
}

impl BearerToken {
    /// The token in `value` (the variable's content), refused when too short to protect.
    pub fn new(value: &str) -> Result<Self, GuardError> {
        let value = value.trim();
        if value.len() < MIN_TOKEN_LEN || value.chars().any(char::is_whitespace) {
            return Err(GuardError::WeakToken);
        }
        Ok(Self {
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// The token a server bound to `ip` requires: none on loopback (unless one is set),
    /// else the variable's value or an error naming it.
    pub fn for_bind(
        ip: std::net::IpAddr,
        variable: Option<String>,
    ) -> Result<Option<Self>, GuardError> {
        match variable.filter(|v| !v.trim().is_empty()) {
            Some(value) => Self::new(&value).map(Some),
            None if ip.is_loopback() => Ok(None),
            None => Err(GuardError::TokenRequired {
                addr: ip.to_string(),
            }),
        }
    }

    /// Whether `candidate` is the token (constant time over the digests).
    pub fn matches(&self, candidate: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(candidate.trim().as_bytes()).into();
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether a request carries the token, as a bearer header or the login cookie.
    pub fn admits(&self, headers: &axum::http::HeaderMap) -> bool {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.matches(t)) {
            return true;
        }
        cookie(headers, TOKEN_COOKIE).is_some_and(|t| self.matches(&t))
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Issues and checks CSRF tokens with this process's secret.
#[derive(Clone)]
pub struct Csrf {
    secret: [u8; 32],
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(<secret>)")
    }
}

impl Default for Csrf {
    fn default() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self { secret }
    }
}

impl Csrf {
    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac
    }

    /// A fresh token for one served form.
    pub fn issue(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let message = format!("{}.{}", now.timestamp(), hex::encode(nonce));
        let tag = hex::encode(self.mac(&message).finalize().into_bytes());
        format!("{message}.{tag}")
    }

    /// Whether `token` was issued by this process within its lifetime.
    pub fn verify(&self, token: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        let Some((message, tag)) = token.rsplit_once('.') else {
            return false;
        };
        let Some(issued) = message
            .split_once('.')
            .and_then(|(t, _)| t.parse::<i64>().ok())
        else {
            return false;
        };
        let age = now.timestamp() - issued;
        if !(0..=CSRF_LIFETIME_SECS).contains(&age) {
            return false;
        }
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        self.mac(message).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn a_token_issued_here_verifies_and_a_forged_or_stale_one_does_not() {
        let csrf = Csrf::default();
        let now = Utc::now();
        let token = csrf.issue(now);
        assert!(csrf.verify(&token, now));
        assert!(
            !Csrf::default().verify(&token, now),
            "another process's secret"
        );
        let mut forged = token.clone();
        forged.replace_range(0..1, if token.starts_with('1') { "2" } else { "1" });
        assert!(!csrf.verify(&forged, now));
        assert!(!csrf.verify(&token, now + Duration::hours(13)));
        assert!(!csrf.verify("", now));
        assert!(!csrf.verify("1.2", now));
    }

    #[test]
    fn a_non_loopback_bind_requires_a_strong_token() {
        let any: std::net::IpAddr = "0.0.0.0".parse().unwrap();
        let err = BearerToken::for_bind(any, None).unwrap_err();
        assert!(err.to_string().contains(TOKEN_VARIABLE), "{err}");
        assert_eq!(
            BearerToken::for_bind(any, Some("short".into())).unwrap_err(),
            GuardError::WeakToken
        );
        let token = BearerToken::for_bind(any, Some("0123456789abcdef-x".into()))
            .unwrap()
            .unwrap();
        assert!(token.matches("0123456789abcdef-x"));
        assert!(!token.matches("0123456789abcdef-y"));
        assert!(!format!("{token:?}").contains("0123"));
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!(BearerToken::for_bind(loopback, None).unwrap().is_none());
    }
}
