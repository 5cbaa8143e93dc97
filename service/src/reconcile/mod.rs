//! Reconciliation and backfill of accounts: read CRM and Billing page by page through the
//! connectors' query endpoints (SOQL / ZOQL, 2,000 records a call, retried and authorised
//! like every other call), compare both with the links the account-sync view holds
//! (`projections::reconcile`), record the run in the ledger, and — with `repair` — append one
//! observed-state event per difference on the account's own stream, which the account-sync
//! projector acts on like an inbound change (idempotent calls, echo suppression, outcome
//! events). Nothing here writes to CRM or Billing. A backfill is this run on an empty ledger.
//!
//! Memory: the Billing side is held as `projections::reconcile::BillingIndex` (about 250
//! bytes per Billing account); CRM pages are compared one at a time and dropped.

mod read;
mod record;
mod run;

pub use run::{reconcile, ReconcileOptions, ReconcileReport, RunStatus};

use crate::connectors::ConnectorError;
use crate::ledger::LedgerError;
use crate::views::ViewError;

/// Name of the checkpoint a stopped run resumes from (in the views store, like replay's).
pub const CHECKPOINT: &str = "reconcile-account";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Views(#[from] ViewError),
    #[error("{system} record {id}: {reason}")]
    Record {
        system: &'static str,
        id: String,
        reason: String,
    },
}
