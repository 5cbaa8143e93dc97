//! Where the Billing callout secret comes from: a small port (`SecretSource`) and its SSM
//! Parameter Store adapter (SecureString, decrypted). Read once at init; errors name the
//! parameter, never its value.

use crate::ingest::signature::CalloutSecret;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("SSM parameter {name}: {reason}")]
    Unreadable { name: String, reason: String },
}

#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn callout_secret(&self) -> Result<CalloutSecret, SecretError>;
}

/// The secret in an SSM parameter (`/apiTokens/billing-callout` by default).
pub struct SsmSecret {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmSecret {
    pub fn new(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl SecretSource for SsmSecret {
    async fn callout_secret(&self) -> Result<CalloutSecret, SecretError> {
        let unreadable = |reason: String| SecretError::Unreadable {
            name: self.name.clone(),
            reason,
        };
        let output = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            // The SDK's error display names the service error (ParameterNotFound,
            // AccessDenied...), never a parameter value.
            .map_err(|e| {
                unreadable(aws_smithy_types::error::display::DisplayErrorContext(e).to_string())
            })?;
        let value = output
            .parameter()
            .and_then(|p| p.value())
            .ok_or_else(|| unreadable("has no value".to_string()))?;
        CalloutSecret::new(value.as_bytes().to_vec())
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
