//! The HTTP mapping of the audit query: `GET /audit/{id}` as a status + JSON body, shared by
//! the `audit_api` Lambda and `ledger serve` so both answer alike: 200 report, 400 bad id,
//! 404 unknown, 503/500 on store trouble. Error bodies name the reason, never store
//! internals beyond it.

use super::{audit, AuditError, AuditId};
use crate::ledger::EventLog;
use crate::views::ViewStore;
use serde_json::{json, Value};

/// An HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
        }
    }
}

/// Answers `GET /audit/{raw_id}`.
pub async fn answer(log: &dyn EventLog, views: &dyn ViewStore, raw_id: &str) -> Answer {
    let id = match AuditId::parse(raw_id) {
        Ok(id) => id,
        Err(e) => return Answer::error(400, e.to_string()),
    };
    match audit(log, views, &id).await {
        Ok(report) => Answer {
            status: 200,
            body: serde_json::to_value(&report).expect("audit reports serialize"),
        },
        Err(e @ AuditError::NotFound { .. }) => Answer::error(404, e.to_string()),
        Err(AuditError::BadId { reason }) => Answer::error(400, format!("id: {reason}")),
        Err(e) => {
            let transient = match &e {
                AuditError::Ledger(l) => l.is_transient(),
                AuditError::View(v) => v.is_transient(),
                _ => false,
            };
            tracing::error!(error = %e, transient, "audit query failed");
            if transient {
                Answer::error(503, "the store is busy; retry shortly")
            } else {
                Answer::error(500, "the audit query failed; see the function logs")
            }
        }
    }
}
