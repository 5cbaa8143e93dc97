//! `ledger worker`: the local event source mapping. It reads the change feed (SQLite) or
//! DynamoDB Streams, batches like the Lambda ESM, hands batches to the projector handlers,
//! honours batch item failures with bounded retries, checkpoints, and stops cleanly.
//! It holds no projection logic: everything it applies goes through `projector`.

pub mod feed;
pub mod streams;

use crate::ledger::{EventLog, ExpectedVersion, LedgerError};
use crate::projector::{BatchOutcome, EventStatus};
use crate::views::ViewError;
use chrono::Utc;
use projections::catalogue::SyncFailed;
use projections::{DomainEvent, NewEvent, RecordedEvent};
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;

/// When a worker stops on its own (besides Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhen {
    /// Keep polling until told to stop.
    Never,
    /// Stop once the feed has nothing more (for tests, demos and catch-up runs).
    Idle,
    /// Deliver at most one batch per projection/shard, then stop.
    Once,
}

/// The ESM knobs the worker emulates (template: `BatchSize`, `MaximumBatchingWindowInSeconds`,
/// `MaximumRetryAttempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    pub batch_size: usize,
    pub batch_window: Duration,
    /// Retries of a failing record before it goes to the on-failure path.
    pub max_retries: u32,
    /// First retry delay; doubles per retry up to `max_backoff`.
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
    /// Wait between polls of a caught-up feed.
    pub idle_poll: Duration,
    pub stop: StopWhen,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_window: Duration::from_secs(1),
            max_retries: 10,
            retry_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            idle_poll: Duration::from_millis(500),
            stop: StopWhen::Never,
        }
    }
}

impl WorkerSettings {
    fn backoff(&self, retry: u32) -> Duration {
        self.retry_backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("DynamoDB Streams {operation}: {detail}")]
    Streams {
        operation: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Config(String),
}

/// What a worker did for one projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub projection: String,
    pub batches: usize,
    pub applied: usize,
    pub already_applied: usize,
    pub ignored: usize,
    pub gap_filled: usize,
    /// Deliveries that failed and were retried.
    pub retried: usize,
    /// Records given up after the retries (sent to the on-failure path).
    pub gave_up: usize,
}

impl WorkerReport {
    pub fn new(projection: &str) -> Self {
        Self {
            projection: projection.to_string(),
            ..Self::default()
        }
    }

    fn add(&mut self, outcome: &BatchOutcome) {
        self.batches += 1;
        self.gap_filled += outcome.gap_filled;
        for status in &outcome.statuses {
            match status {
                EventStatus::Applied => self.applied += 1,
                EventStatus::AlreadyApplied => self.already_applied += 1,
                EventStatus::Ignored => self.ignored += 1,
                EventStatus::Failed { .. } => {}
            }
        }
    }

    pub fn merge(&mut self, other: &WorkerReport) {
        self.batches += other.batches;
        self.applied += other.applied;
        self.already_applied += other.already_applied;
        self.ignored += other.ignored;
        self.gap_filled += other.gap_filled;
        self.retried += other.retried;
        self.gave_up += other.gave_up;
    }
}

impl fmt::Display for WorkerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} batches, applied {}, already applied {}, ignored {}, gap-filled {}, retried {}, gave up {}",
            self.projection,
            self.batches,
            self.applied,
            self.already_applied,
            self.ignored,
            self.gap_filled,
            self.retried,
            self.gave_up
        )
    }
}

/// A stop signal every loop watches; `true` means finish the current batch and return.
pub type Shutdown = watch::Receiver<bool>;

/// A shutdown pair whose sender fires on Ctrl-C (SIGINT) and SIGTERM.
pub fn shutdown_on_signals() -> Shutdown {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stop requested: finishing the current batch");
        let _ = tx.send(true);
    });
    rx
}

/// Sleeps `duration` unless a stop is requested first; returns whether to stop.
async fn sleep_or_stop(duration: Duration, shutdown: &mut Shutdown) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

/// The on-failure destination of the worker: the record is logged and a `SyncFailed`
/// naming the reason is recorded on its stream (the ESM sends the same facts to SQS).
async fn on_failure(log: &dyn EventLog, projection: &str, event: &RecordedEvent, reason: &str) {
    tracing::error!(
        projection,
        correlation_id = %event.correlation_id,
        event_id = %event.event_id,
        stream_id = %event.stream_id,
        version = event.version,
        reason,
        "giving up on a record after bounded retries"
    );
    let failed = DomainEvent::SyncFailed(SyncFailed {
        projection: projection.to_string(),
        reason: format!("worker gave up after retries: {reason}"),
        attempts: 0,
        extra: Default::default(),
    });
    let outcome = NewEvent::caused_by(
        event,
        event.stream_id.clone(),
        &format!("on-failure:{projection}"),
        Utc::now(),
        &failed,
    );
    if let Err(e) = log
        .append(&event.stream_id, ExpectedVersion::Any, vec![outcome])
        .await
    {
        tracing::error!(error = %e, "could not record the failure in the ledger either");
    }
}
