//! Authenticating Billing callouts with a secret that can rotate: the HMAC secret of the
//! `X-Zuora-Signature` scheme, or the `user:password` of Basic auth (what a Zuora callout
//! template sends when it is set to Basic). The secret is read at init; when a request does
//! not match, the secret is re-read (at most once per `REFRESH_AFTER`, so forged requests
//! cannot hammer SSM) and the one it replaces stays accepted, so a rotation never turns the
//! sender's in-flight callouts into 401s. It never logs or returns a secret.

use super::secret::{SecretError, SecretSource};
use crate::ingest::basic_auth::{self, BasicAuthError};
use crate::ingest::signature::{self, CalloutSecret, SignatureError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Minimum time between two re-reads of the secret.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

struct Secrets {
    current: CalloutSecret,
    /// The secret `current` replaced: still accepted while the sender switches over.
    previous: Option<CalloutSecret>,
    read_at: Instant,
}

pub struct CalloutAuth {
    source: Option<Arc<dyn SecretSource>>,
    refresh_after: Duration,
    secrets: Mutex<Secrets>,
}

impl CalloutAuth {
    /// A fixed secret, never re-read.
    pub fn fixed(secret: CalloutSecret) -> Self {
        Self {
            source: None,
            refresh_after: REFRESH_AFTER,
            secrets: Mutex::new(Secrets {
                current: secret,
                previous: None,
                read_at: Instant::now(),
            }),
        }
    }

    /// Reads the secret from `source` now, and again on a mismatch at most every
    /// `refresh_after`.
    pub async fn load(
        source: Arc<dyn SecretSource>,
        refresh_after: Duration,
    ) -> Result<Self, SecretError> {
        let current = source.callout_secret().await?;
        Ok(Self {
            source: Some(source),
            refresh_after,
            secrets: Mutex::new(Secrets {
                current,
                previous: None,
                read_at: Instant::now(),
            }),
        })
    }

    /// Checks a callout's signature header against its body at `now_unix`.
    pub async fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), SignatureError> {
        self.check(
            |secret| signature::verify(secret, header, body, now_unix),
            |e| *e == SignatureError::Mismatch,
        )
        .await
    }

    /// Checks a callout's `Authorization: Basic ...` header against the `user:password`
    /// secret, in constant time.
    pub async fn verify_basic(&self, authorization: Option<&str>) -> Result<(), BasicAuthError> {
        self.check(
            |secret| basic_auth::verify(secret, authorization),
            |e| *e == BasicAuthError::Mismatch,
        )
        .await
    }

    /// `check` against the known secrets; on a mismatch, once more after a re-read.
    async fn check<E>(
        &self,
        check: impl Fn(&CalloutSecret) -> Result<(), E>,
        is_mismatch: impl Fn(&E) -> bool,
    ) -> Result<(), E> {
        match self.check_known(&check, &is_mismatch) {
            Err(e) if is_mismatch(&e) && self.refresh().await => {
                self.check_known(&check, &is_mismatch)
            }
            other => other,
        }
    }

    /// The current secret, then the one it replaced.
    fn check_known<E>(
        &self,
        check: &impl Fn(&CalloutSecret) -> Result<(), E>,
        is_mismatch: &impl Fn(&E) -> bool,
    ) -> Result<(), E> {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        match check(&secrets.current) {
            Err(e) if is_mismatch(&e) => match &secrets.previous {
                Some(previous) => check(previous),
                None => Err(e),
            },
            other => other,
        }
    }

    /// Re-reads the secret if allowed; true when it changed.
    async fn refresh(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        {
            let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
            if secrets.read_at.elapsed() < self.refresh_after {
                return false;
            }
            // Claimed before the read, so concurrent mismatches trigger one read, not many.
            secrets.read_at = Instant::now();
        }
        match source.callout_secret().await {
            Ok(fresh) => {
                let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
                if fresh.same_as(&secrets.current) {
                    return false;
                }
                tracing::info!("billing callout secret changed; the previous one stays accepted");
                let replaced = std::mem::replace(&mut secrets.current, fresh);
                secrets.previous = Some(replaced);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "billing callout secret could not be re-read");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    /// A source whose secret an operator "rotates" by replacing it.
    struct Rotating(Mutex<&'static str>);

    #[async_trait]
    impl SecretSource for Rotating {
        async fn callout_secret(&self) -> Result<CalloutSecret, SecretError> {
            Ok(CalloutSecret::new(*self.0.lock().unwrap()).unwrap())
        }
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        CalloutSecret::new(secret).unwrap().sign(body, 100)
    }

    #[tokio::test]
    async fn a_rotated_secret_is_picked_up_and_the_old_one_still_accepted() {
        let source = Arc::new(Rotating(Mutex::new("old")));
        let auth = CalloutAuth::load(source.clone(), Duration::ZERO)
            .await
            .unwrap();
        *source.0.lock().unwrap() = "new";
        let new = sign("new", b"x");
        assert_eq!(auth.verify(Some(&new), b"x", 100).await, Ok(()));
        let old = sign("old", b"x");
        assert_eq!(auth.verify(Some(&old), b"x", 100).await, Ok(()));
        let forged = sign("guess", b"x");
        assert_eq!(
            auth.verify(Some(&forged), b"x", 100).await,
            Err(SignatureError::Mismatch)
        );
    }

    #[tokio::test]
    async fn re_reads_are_rate_limited() {
        let source = Arc::new(Rotating(Mutex::new("old")));
        let auth = CalloutAuth::load(source.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        *source.0.lock().unwrap() = "new";
        let new = sign("new", b"x");
        assert_eq!(
            auth.verify(Some(&new), b"x", 100).await,
            Err(SignatureError::Mismatch),
            "no re-read within the interval"
        );
    }

    #[tokio::test]
    async fn rotated_basic_credentials_are_picked_up_and_the_old_ones_still_accepted() {
        use base64::Engine;
        let basic = |c: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        };
        let source = Arc::new(Rotating(Mutex::new("zuora:old")));
        let auth = CalloutAuth::load(source.clone(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(auth.verify_basic(Some(&basic("zuora:old"))).await, Ok(()));
        *source.0.lock().unwrap() = "zuora:new";
        assert_eq!(auth.verify_basic(Some(&basic("zuora:new"))).await, Ok(()));
        assert_eq!(auth.verify_basic(Some(&basic("zuora:old"))).await, Ok(()));
        assert_eq!(
            auth.verify_basic(Some(&basic("zuora:forged"))).await,
            Err(BasicAuthError::Mismatch)
        );
    }
}
