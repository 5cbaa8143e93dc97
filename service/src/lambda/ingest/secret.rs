//! Where the Billing callout secret comes from: a small port (`SecretSource`) and its adapter
//! over the connectors' `TokenSource` (`/apiTokens/<service>` through the Parameters and
//! Secrets extension, else the SSM API). Read once at init; errors name the parameter, never
//! its value.

use crate::connectors::token::{ServiceName, TokenSource};
use crate::ingest::signature::CalloutSecret;
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("SSM parameter {name}: {reason}")]
    Unreadable { name: String, reason: String },
}

#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn callout_secret(&self) -> Result<CalloutSecret, SecretError>;
}

/// The callout secret stored as the token of `service` (`billing-callout` by default).
pub struct TokenSecret {
    tokens: Arc<dyn TokenSource>,
    service: ServiceName,
}

impl TokenSecret {
    pub fn new(tokens: Arc<dyn TokenSource>, service: ServiceName) -> Self {
        Self { tokens, service }
    }
}

#[async_trait]
impl SecretSource for TokenSecret {
    async fn callout_secret(&self) -> Result<CalloutSecret, SecretError> {
        let unreadable = |reason: String| SecretError::Unreadable {
            name: self.service.parameter_name(),
            reason,
        };
        // `TokenError` names the parameter and the failure (not found, denied, ...), never
        // the value.
        // Always the stored value, not a cached one: this is only called at init and when
        // a signature does not match (the secret may have been rotated).
        self.tokens.invalidate(&self.service);
        let token = self
            .tokens
            .token(&self.service)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        CalloutSecret::new(token.expose_secret().as_bytes().to_vec())
            .ok_or_else(|| unreadable("is empty".to_string()))
    }
}

/// A secret held in memory (tests and the local demo).
pub struct StaticSecret(pub CalloutSecret);

#[async_trait]
impl SecretSource for StaticSecret {
    async fn callout_secret(&self) -> Result<CalloutSecret, SecretError> {
        Ok(self.0.clone())
    }
}
