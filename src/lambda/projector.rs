//! The projector Lambda handler: a DynamoDB Streams batch of the event log in, batch item
//! failures out. It decodes each `NewImage` with the ledger's item codec and hands the
//! events to one projection's runner; ordering, calls and view writes happen there, never here.

mod config;

pub use config::{ProjectorConfig, PROJECTION_ENV};

use super::emf::Metrics;
use crate::ledger::dynamodb::item::decode_event;
use crate::projector::{BatchOutcome, EventStatus, Projector};
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use projections::RecordedEvent;
use std::sync::Arc;

/// What a stream record holds for a projector.
#[derive(Debug)]
pub enum Decoded {
    Event(Box<RecordedEvent>),
    /// Not an event (a dedupe marker or ledger bookkeeping), or a removal: nothing to apply.
    Skip,
    /// An event item this build cannot read: it fails like a transient error so the shard
    /// retries it and, after the bounded retries, sends it to the on-failure destination.
    Unreadable(String),
}

/// Decodes one stream record with the ledger's item codec.
pub fn decode_record(record: &aws_lambda_events::dynamodb::EventRecord) -> Decoded {
    // The event log is append-only; a REMOVE can only be an operator's manual delete.
    if record.event_name == "REMOVE" {
        return Decoded::Skip;
    }
    // The ESM filter already drops other kinds; the codec checks again, so a mapping without
    // the filter is harmless.
    match decode_event(record.change.new_image.clone()) {
        Ok(Some(event)) => Decoded::Event(Box::new(event)),
        Ok(None) => Decoded::Skip,
        Err(e) => Decoded::Unreadable(e.to_string()),
    }
}

/// The handler of one projection, built once per container and shared by invocations.
pub struct ProjectorHandler {
    projector: Arc<dyn Projector>,
}

impl ProjectorHandler {
    pub fn new(projector: Arc<dyn Projector>) -> Self {
        Self { projector }
    }

    pub fn projection(&self) -> &'static str {
        self.projector.name()
    }

    /// Applies a batch; with `ReportBatchItemFailures` the response names the first record
    /// not applied, so the shard resumes exactly there (later records are redelivered and
    /// are no-ops where already applied).
    pub async fn handle_stream_event(&self, event: Event) -> DynamoDbEventResponse {
        let records = event.records.len();
        let (response, outcome) = self.handle_batch(event).await;
        batch_metrics(self.projector.name(), records, &outcome).flush();
        response
    }

    /// `handle_stream_event` with what happened to each decoded event (for the worker).
    pub async fn handle_batch(&self, event: Event) -> (DynamoDbEventResponse, BatchOutcome) {
        let mut events = Vec::with_capacity(event.records.len());
        let mut record_of_event = Vec::with_capacity(event.records.len());
        let mut first_unreadable: Option<usize> = None;
        for (i, record) in event.records.iter().enumerate() {
            match decode_record(record) {
                Decoded::Event(e) => {
                    events.push(*e);
                    record_of_event.push(i);
                }
                Decoded::Skip => {}
                Decoded::Unreadable(reason) => {
                    tracing::error!(
                        projection = self.projector.name(),
                        sequence_number = record.change.sequence_number.as_deref().unwrap_or(""),
                        reason,
                        "stream record is not a readable event"
                    );
                    first_unreadable.get_or_insert(i);
                }
            }
        }
        let outcome = self.projector.process(events).await;
        tracing::info!(
            projection = self.projector.name(),
            records = event.records.len(),
            applied = outcome.count(|s| matches!(s, EventStatus::Applied)),
            gap_filled = outcome.gap_filled,
            failed = outcome.count(EventStatus::is_failed),
            "batch processed"
        );
        let first_failed = outcome.first_failure().map(|j| record_of_event[j]);
        let resume_at = match (first_failed, first_unreadable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut response = DynamoDbEventResponse::default();
        if let Some(i) = resume_at {
            let mut failure = DynamoDbBatchItemFailure::default();
            // Without a sequence number Lambda retries the whole batch, which is still safe.
            failure.item_identifier = event.records[i].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        (response, outcome)
    }
}

/// The batch as CloudWatch metrics (EMF): what was applied, what was a redelivery and what
/// failed, split transient (retried, alarms on a trend) from permanent (needs a person).
/// Records that are not events (markers, bookkeeping) count as received only.
pub fn batch_metrics(projection: &str, records: usize, outcome: &BatchOutcome) -> Metrics {
    let mut metrics = Metrics::new(&[("Function", "projector"), ("Projection", projection)]);
    metrics.count("RecordsReceived", records as u64);
    let count = |wanted: fn(&EventStatus) -> bool| outcome.count(wanted) as u64;
    metrics.count(
        "EventsApplied",
        count(|s| matches!(s, EventStatus::Applied)),
    );
    metrics.count(
        "EventsAlreadyApplied",
        count(|s| matches!(s, EventStatus::AlreadyApplied)),
    );
    metrics.count("EventsGapFilled", outcome.gap_filled as u64);
    metrics.count(
        "EventsFailedTransient",
        count(|s| {
            matches!(
                s,
                EventStatus::Failed {
                    transient: true,
                    ..
                }
            )
        }),
    );
    metrics.count(
        "EventsFailedPermanent",
        count(|s| {
            matches!(
                s,
                EventStatus::Failed {
                    transient: false,
                    ..
                }
            )
        }),
    );
    metrics
}

impl super::bootstrap::Handler for ProjectorHandler {
    type Event = Event;
    type Response = DynamoDbEventResponse;
    type Error = std::convert::Infallible;

    async fn handle(&self, event: Event) -> Result<DynamoDbEventResponse, Self::Error> {
        Ok(self.handle_stream_event(event).await)
    }
}

/// The connectors are built from configuration alone (no call is made at init).
impl From<crate::connectors::error::ConnectorError> for super::bootstrap::InitError {
    fn from(e: crate::connectors::error::ConnectorError) -> Self {
        Self::config(e)
    }
}

/// `PROJECTION` names no projection this build knows.
impl From<crate::projector::UnknownProjection> for super::bootstrap::InitError {
    fn from(e: crate::projector::UnknownProjection) -> Self {
        Self::config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_metrics_split_applied_redelivered_and_failed() {
        let failed = |transient| EventStatus::Failed {
            reason: "r".into(),
            transient,
        };
        let outcome = BatchOutcome {
            statuses: vec![
                EventStatus::Applied,
                EventStatus::Applied,
                EventStatus::AlreadyApplied,
                EventStatus::Ignored,
                failed(true),
                failed(false),
            ],
            gap_filled: 2,
        };
        let doc = batch_metrics("account", 9, &outcome).to_emf(0);
        assert_eq!(doc["Projection"], "account");
        assert_eq!(doc["RecordsReceived"], 9);
        assert_eq!(doc["EventsApplied"], 2);
        assert_eq!(doc["EventsAlreadyApplied"], 1);
        assert_eq!(doc["EventsGapFilled"], 2);
        assert_eq!(doc["EventsFailedTransient"], 1);
        assert_eq!(doc["EventsFailedPermanent"], 1);
    }
}
