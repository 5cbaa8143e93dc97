//! The `EventLog` port: the append-only ledger every other part writes to and reads from.
//! Adapters live beside it (`sqlite` — the embedded default, `dynamodb`), and both follow the
//! pure `append_rules`; `fault` is the test seam that stops an append part-way. This module
//! holds the contract only: no storage code.

pub mod dynamodb;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::{CorrelationId, EventId, NewEvent, RecordedEvent, StreamId};

pub mod append_rules;
pub mod fault;
pub mod migrate;
pub mod open;
pub mod sqlite;

pub use fault::AppendFault;
pub use open::{open_store, StoreError};
pub use sqlite::SqliteLedger;

/// What a writer expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append after whatever is there (retrying internally on a concurrent writer).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this.
    Exact(u64),
}

/// Where an already-recorded event lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    pub stream_id: StreamId,
    pub version: u64,
    pub event_id: EventId,
}

/// Per-event result of an append, in the order the events were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended {
        version: u64,
    },
    /// The `(source, source_event_id)` was recorded before: nothing was written.
    AlreadyRecorded {
        existing: ExistingEvent,
    },
}

impl AppendOutcome {
    pub fn is_appended(&self) -> bool {
        matches!(self, AppendOutcome::Appended { .. })
    }
}

/// One stream's part of a batched append: the arguments of one `EventLog::append` call.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// `events` split per stream (streams in order of first appearance, each stream's events
    /// in the given order), each appended at whatever the stream's head is: for outcome events,
    /// whose position does not matter and whose repeats are deduped by derived source ids.
    pub fn per_stream_at_any_version(events: Vec<NewEvent>) -> Vec<StreamAppend> {
        let mut appends: Vec<StreamAppend> = Vec::new();
        for event in events {
            match appends.iter_mut().find(|a| a.stream == event.stream_id) {
                Some(append) => append.events.push(event),
                None => appends.push(StreamAppend {
                    stream: event.stream_id.clone(),
                    expected: ExpectedVersion::Any,
                    events: vec![event],
                }),
            }
        }
        appends
    }
}

/// The per-stream results of `EventLog::append_batch`, in the order the appends were given.
pub type BatchOutcomes = Vec<Result<Vec<AppendOutcome>, LedgerError>>;

/// A position in the change feed; opaque to callers (SQLite: the rowid; DynamoDB Streams:
/// `<shard id>/<sequence number>`).
pub type FeedPosition = String;

/// Where a change feed starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedStart {
    /// Everything still retained (SQLite: all; DynamoDB Streams: TRIM_HORIZON, 24 h).
    Beginning,
    /// Only what is recorded after the feed is opened.
    Latest,
    /// Resume after a position returned earlier.
    After(FeedPosition),
}

/// One change: an event as the stream delivered it, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    pub position: FeedPosition,
    pub event: RecordedEvent,
}

/// The change feed: what DynamoDB Streams is in production. Delivery is at least once and
/// ordered per stream id only — consumers must not assume a global order.
#[async_trait]
pub trait ChangeFeed: Send {
    /// Up to `max` changes after the feed's current position (empty when caught up). Only
    /// `kind = event` items are delivered; dedupe markers and bookkeeping never are.
    async fn poll(&mut self, max: usize) -> Result<Vec<FeedItem>, LedgerError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("stream {stream}: expected version {expected:?}, but the stream is at {actual}")]
    WrongExpectedVersion {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("all events of one append must belong to stream {stream}; {event_id} is for {other}")]
    MixedStreams {
        stream: StreamId,
        event_id: EventId,
        other: StreamId,
    },
    #[error("the store is throttling requests (gave up after {attempts} attempts): {detail}")]
    Throttled { attempts: u32, detail: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is corrupt ({key}): {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the store is not migrated: {0} (run `ledger migrate`)")]
    NotMigrated(String),
    #[error("store error: {0}")]
    Store(String),
}

impl LedgerError {
    /// Whether retrying the same call later can succeed (drives batch item failures).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LedgerError::Throttled { .. } | LedgerError::Unavailable(_)
        )
    }
}

/// The ledger port. Every method is safe to retry.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Append events to one stream. Versions are gapless and 1-based. Each event is deduped
    /// by `(source, source_event_id)`: a duplicate is reported as `AlreadyRecorded`, not an
    /// error, and does not consume a version. A store may commit a large call in chunks, each
    /// atomic: DynamoDB commits at most 50 events per transaction (each event is two of
    /// TransactWriteItems' 100 actions: the event and its dedupe marker) and at most ~4 MB
    /// (its transaction size limit); the embedded store commits the whole call at once. A call
    /// that fails after some chunks committed leaves those recorded, and retrying the same
    /// call completes it at the versions the first try would have given, reporting the events
    /// the failed try recorded as `AlreadyRecorded`.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AppendOutcome>, LedgerError>;

    /// Several appends in one call, each with exactly `append`'s semantics (atomic per stream,
    /// its own expected version, deduped); one stream's refusal does not stop the others.
    /// The outer error means none of them is known to be recorded (retrying is safe: dedupe).
    /// A store may commit them together — the embedded store does, in one transaction, which
    /// is what makes a batch of small appends cheap there; the default appends one by one.
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<BatchOutcomes, LedgerError> {
        let mut results = Vec::with_capacity(appends.len());
        for a in appends {
            results.push(self.append(&a.stream, a.expected, a.events).await);
        }
        Ok(results)
    }

    /// Events of one stream with `version >= from_version`, in version order (strongly
    /// consistent: used to fill gaps).
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, LedgerError>;

    /// Events recorded at or after `from` (all when `None`), in the deterministic global
    /// order `(recorded_at, event_id)`, at most `limit` after `after` (an event's
    /// `global_order_key`, exclusive) — the replay read.
    async fn read_all(
        &self,
        from: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LedgerError>;

    /// Every event carrying this correlation id, in recorded order.
    async fn by_correlation(
        &self,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<RecordedEvent>, LedgerError>;

    /// Open the change feed of this ledger.
    async fn change_feed(&self, start: FeedStart) -> Result<Box<dyn ChangeFeed>, LedgerError>;
}
