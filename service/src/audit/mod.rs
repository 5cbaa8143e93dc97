//! Audit queries: everything that happened because of one inbound event, in causal order.
//! An id is a correlation id (read with `by_correlation`) or a CRM/Billing entity id (resolved
//! through the correlation view to every correlation id that touched it). Read-only.

pub mod chain;
pub mod http;
pub mod query;
pub mod render;

pub use chain::{build_chain, Chain, Node};
pub use http::{answer, Answer};
pub use query::{audit, traces_of, AuditId, AuditReport, EntityMatch, Resolved};
pub use render::render_text;

use crate::ledger::LedgerError;
use crate::views::ViewError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The id cannot name anything (HTTP 400).
    #[error("id: {reason}")]
    BadId { reason: String },
    /// Nothing in the ledger or the correlation view carries this id (HTTP 404).
    #[error("no events and no correlation view entry for {id:?}")]
    NotFound { id: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("correlation view item {pk} cannot be read: {reason}")]
    UnreadableView { pk: String, reason: String },
}
