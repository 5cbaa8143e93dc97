//! The `Effects` port: executes one domain command on the CRM or Billing system and reports
//! its result as the domain's `CallResult` (success or permanent failure) or a transient
//! failure to retry by redelivery. It decides nothing and records nothing in the ledger.

use async_trait::async_trait;
use projections::commands::{CallResult, Command};

/// A call that failed in a way that may pass (throttling, 5xx, timeouts), after the
/// connector's own retries. The reason names the system and status, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransientCallFailure {
    pub reason: String,
    pub attempts: u32,
}

#[async_trait]
pub trait Effects: Send + Sync {
    /// Makes the call with the command's idempotency key and correlation id.
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure>;
}
