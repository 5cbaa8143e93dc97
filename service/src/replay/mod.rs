//! Replay for recovery: rebuilds projections from the recorded log in the deterministic global
//! order, with `evolve` only — it never decides, so it never calls an external system.
//! Checkpoints make an interrupted run resume; digests and diffs prove a rebuild is exact.
//! Re-running failed syncs against the external systems is `crate::redrive`, not replay.

pub mod digest;
pub mod fold;
mod key_filter;
mod pages;
pub mod registry;
pub mod run;

pub use digest::{
    canonical_json, diff, snapshot, stream_digest, Difference, DifferenceKind, DigestSum,
    ViewDigest,
};
pub use fold::{Offered, Rebuilder, Replayer};
pub use registry::{rebuilder, PROJECTIONS};
pub use run::{
    count_events, replay, switch, verify, Progress, ProjectionReport, ReplayRequest, Silent,
    VerifyReport,
};

use crate::ledger::LedgerError;
use crate::views::ViewError;
use projections::StreamId;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("projection: unknown projection {name:?} (known: {known})")]
    UnknownProjection { name: String, known: String },
    #[error("view item {pk} holds a state this build cannot read: {reason}")]
    UnreadableState { pk: String, reason: String },
    #[error("stream {stream}: version {missing} is not in the log although {got} is")]
    Unfillable {
        stream: StreamId,
        missing: u64,
        got: u64,
    },
    #[error("view item {pk} was written by someone else during the replay: stop the projectors for an in-place replay, or use --into")]
    Concurrent { pk: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}
