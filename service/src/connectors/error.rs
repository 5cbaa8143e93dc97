//! `ConnectorError`: why a CRM/Billing call failed, classified as transient (retry later) or
//! permanent (record `SyncFailed`). It carries status, the API's own error code and message
//! and the attempt count — never a token or an Authorization header.

use super::token::TokenError;
use std::time::Duration;

/// How a request failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Timeout,
    Connect,
    Other,
}

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportFailure::Timeout => "timed out",
            TransportFailure::Connect => "could not connect",
            TransportFailure::Other => "transport error",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The API answered with an error status (or a Zuora `success: false` body).
    #[error("{service} {operation}: HTTP {status}{} after {attempts} attempt(s): {message}",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        service: String,
        operation: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
        attempts: u32,
        /// The server's `Retry-After`, when it asked for longer than we are willing to wait.
        retry_after: Option<Duration>,
    },
    #[error("{service} {operation}: {failure} after {attempts} attempt(s): {detail}")]
    Transport {
        service: String,
        operation: &'static str,
        failure: TransportFailure,
        detail: String,
        attempts: u32,
    },
    /// 401 even after re-reading the token once.
    #[error(
        "{service} {operation}: token rejected (HTTP 401) after one refresh, {attempts} attempt(s)"
    )]
    Unauthorized {
        service: String,
        operation: &'static str,
        attempts: u32,
    },
    #[error("{service} {operation}: could not obtain an API token: {source}")]
    Token {
        service: String,
        operation: &'static str,
        #[source]
        source: TokenError,
    },
    /// The call succeeded but the answer does not have the documented shape.
    #[error("{service} {operation}: unexpected response (HTTP {status}): {reason}")]
    Decode {
        service: String,
        operation: &'static str,
        status: u16,
        reason: String,
    },
    /// Refused before sending: the request itself is invalid.
    #[error("{operation}: {field}: {reason}")]
    InvalidRequest {
        operation: &'static str,
        field: &'static str,
        reason: String,
    },
}

impl ConnectorError {
    /// Whether the same call may succeed later (projectors retry the batch) or not (they
    /// record `SyncFailed` and move on).
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::Api {
                status,
                code,
                message,
                ..
            } => {
                is_transient_status(*status)
                    || code.as_deref().is_some_and(is_transient_zuora_code)
                    || is_missing_parent(code.as_deref(), message)
            }
            ConnectorError::Transport { .. } => true,
            // A token refused right after a fresh read means rotation lag or a token-store
            // outage; the next rotation fixes it, so dropping the sync would be wrong.
            ConnectorError::Unauthorized { .. } => true,
            ConnectorError::Token { source, .. } => source.is_transient(),
            ConnectorError::Decode { .. } | ConnectorError::InvalidRequest { .. } => false,
        }
    }

    /// HTTP status of the final answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectorError::Api { status, .. } | ConnectorError::Decode { status, .. } => {
                Some(*status)
            }
            ConnectorError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// How many HTTP attempts were made.
    pub fn attempts(&self) -> u32 {
        match self {
            ConnectorError::Api { attempts, .. }
            | ConnectorError::Transport { attempts, .. }
            | ConnectorError::Unauthorized { attempts, .. } => *attempts,
            _ => 0,
        }
    }
}

/// 408, 429 and 5xx are worth retrying; 409 is Zuora's "same idempotency key still in
/// progress", which resolves itself.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..=599).contains(&status)
}

/// Zuora error codes end in a two-digit category: 50 locking contention, 60 internal error,
/// 61 temporary error, 70 request limit exceeded are transient.
/// Source: Zuora developer docs, "Error handling" (error code categories).
pub(crate) fn is_transient_zuora_code(code: &str) -> bool {
    code.len() >= 2
        && code.chars().all(|c| c.is_ascii_digit())
        && matches!(&code[code.len() - 2..], "50" | "60" | "61" | "70")
}

/// Salesforce refuses a child whose parent, referenced by external id, does not exist yet:
/// `INVALID_FIELD` "Foreign key external ID: <v> not found for field <f> in entity <e>". Here
/// that means the parent's own sync (another stream, so in no fixed order) has not landed
/// yet — e.g. a PricebookEntry projected before its Product2. Redelivery resolves it, and the
/// projector's delivery cap still bounds it if the parent never comes.
fn is_missing_parent(code: Option<&str>, message: &str) -> bool {
    code == Some("INVALID_FIELD") && message.contains("Foreign key external ID")
}

/// Refuses a blank required field before any call is made, naming the operation and field
/// (both clients validate their inputs this way).
pub(crate) fn require(
    operation: &'static str,
    field: &'static str,
    value: &str,
) -> Result<(), ConnectorError> {
    if value.trim().is_empty() {
        return Err(ConnectorError::InvalidRequest {
            operation,
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> ConnectorError {
        ConnectorError::Api {
            service: "billing".into(),
            operation: "create_account",
            status,
            code: code.map(str::to_string),
            message: "m".into(),
            attempts: 1,
            retry_after: None,
        }
    }

    #[test]
    fn throttling_and_server_errors_are_transient_client_errors_are_not() {
        assert!(api(429, None).is_transient());
        assert!(api(503, None).is_transient());
        assert!(!api(400, Some("INVALID_FIELD")).is_transient());
        assert!(!api(404, None).is_transient());
        assert!(api(200, Some("50000060")).is_transient());
        assert!(!api(200, Some("53100020")).is_transient());
    }

    #[test]
    fn a_child_whose_parent_is_not_synced_yet_is_transient() {
        let invalid_field = |message: &str| ConnectorError::Api {
            service: "crm".into(),
            operation: "upsert_price",
            status: 400,
            code: Some("INVALID_FIELD".into()),
            message: message.into(),
            attempts: 1,
            retry_after: None,
        };
        assert!(invalid_field(
            "Foreign key external ID: P-1 not found for field Billing_Product_Id__c in entity Product2"
        )
        .is_transient());
        assert!(
            !invalid_field("No such column 'Foo__c' on sobject of type Account").is_transient()
        );
    }

    #[test]
    fn the_message_names_service_operation_status_and_code() {
        let text = api(400, Some("INVALID_FIELD")).to_string();
        assert!(
            text.contains("billing create_account: HTTP 400 INVALID_FIELD"),
            "{text}"
        );
    }
}
