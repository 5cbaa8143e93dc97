//! What a rotation run reports (per service, no secrets) and why it could not finish.

use crate::ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum RotatorError {
    #[error("fingerprint salt {parameter}: {reason}")]
    Salt { parameter: String, reason: String },
    /// Rotations happened but their audit events could not be recorded.
    #[error("could not record the audit event of {services}: {source}")]
    Audit {
        services: String,
        #[source]
        source: LedgerError,
    },
}

/// What one run did, per service (the Lambda's result; no secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunReport {
    pub correlation_id: String,
    pub rotated: Vec<RotatedService>,
    pub failed: Vec<FailedService>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RotatedService {
    pub service: String,
    pub parameter_version: i64,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedService {
    pub service: String,
    pub stage: &'static str,
    pub reason: String,
}
