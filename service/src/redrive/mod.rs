//! Redrive: re-runs, on purpose, the syncs of one trace that ended `SyncFailed` or are still
//! `SyncDeferred` — the only path besides live projection that calls external systems (which
//! is why it is not part of `replay`, which only folds). It records the operator's request
//! first, re-derives each failed call from the state its decision saw (so it goes out with the
//! SAME idempotency key), appends the outcomes and hands every new event of the trace to the
//! projectors, which update the views. It never invents a call: what it cannot re-derive it
//! reports.
//!
//! `plan` finds what is not done, `run` records the request, re-runs and updates the views,
//! `rederive` rebuilds a failed call from the state its decision saw.

pub mod failed;
mod plan;
mod rederive;
mod run;

pub use plan::plan;
pub use run::redrive;

use crate::ledger::LedgerError;
use crate::views::ViewError;
use projections::{CorrelationId, EventId, RecordedEvent};

/// Why a redrive could not run (a re-run that fails again is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("projection: unknown projection {name:?} (known: {known})")]
    UnknownProjection { name: String, known: String },
    #[error("unknown correlation id {0}: no event in the ledger carries it")]
    UnknownCorrelation(CorrelationId),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveRequest {
    pub correlation: CorrelationId,
    /// Recorded in the ledger with the request (a name, never a credential).
    pub requested_by: String,
    pub reason: Option<String>,
    /// List what would be re-run; record nothing, call nothing.
    pub dry_run: bool,
    /// Only this projection's syncs (view name); `None`: every projection's.
    pub projection: Option<&'static str>,
}

/// Why one event's sync is not done.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// A call failed (a permanent error, or transient ones until given up). The call is
    /// re-derived from the event that decided it (`decided_by`: the cause itself, or the
    /// event that released a waiting cause) and repeated.
    FailedCall {
        step: String,
        decided_by: EventId,
        last_reason: String,
    },
    /// The projector gave up delivering the event: it is delivered to it again.
    GaveUp { last_reason: String },
    /// Deferred, and what it waits for has not been recorded: nothing to call yet.
    Waiting { waiting_for: String },
    /// The event itself cannot be synced (it does not decode): fix the data, re-ingest.
    NotRedrivable { reason: String },
}

/// One sync of the trace that is not done.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub cause: RecordedEvent,
    /// View name of the projection whose sync it is (`account-sync`, ...).
    pub projection: &'static str,
    pub pending: Pending,
}

impl Target {
    /// `billing-create-account`, or what kind of re-run it is.
    pub fn what(&self) -> String {
        match &self.pending {
            Pending::FailedCall { step, .. } => step.clone(),
            Pending::GaveUp { .. } => "delivery".to_string(),
            Pending::Waiting { .. } => "deferred".to_string(),
            Pending::NotRedrivable { .. } => "undecodable".to_string(),
        }
    }
}

/// What the redrive did with one target.
#[derive(Debug, Clone, PartialEq)]
pub enum RedriveResult {
    /// `--dry-run`: would be re-run.
    Planned,
    /// Re-run and succeeded; the event types it newly recorded.
    Synced { recorded: Vec<String> },
    /// Re-run and failed again (recorded as a `SyncFailed` of this redrive).
    FailedAgain { reason: String },
    /// Still deferred: nothing was called.
    StillWaiting { waiting_for: String },
    /// Not re-run, with the reason.
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redriven {
    pub target: Target,
    pub result: RedriveResult,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct RedriveReport {
    pub correlation: CorrelationId,
    pub dry_run: bool,
    pub items: Vec<Redriven>,
    /// External calls made (re-runs and the follow-ups the projectors made on their outcomes).
    pub calls: usize,
    /// Events the projectors applied to the views after the re-runs.
    pub view_updates: usize,
    /// Events a projector could not apply now (the live projector retries them).
    pub view_failures: Vec<String>,
}

impl RedriveReport {
    /// Whether anything re-run failed again or was left unapplied.
    pub fn has_failures(&self) -> bool {
        !self.view_failures.is_empty()
            || self.items.iter().any(|i| {
                matches!(
                    i.result,
                    RedriveResult::FailedAgain { .. } | RedriveResult::Skipped { .. }
                )
            })
    }
}

fn invalid(field: &'static str, e: impl std::fmt::Display) -> RedriveError {
    RedriveError::Invalid {
        field,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
