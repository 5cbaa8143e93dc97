//! The projector Lambda handler: a DynamoDB Streams batch of the event log in, batch item
//! failures out. It decodes each `NewImage` with the ledger's item codec and hands the
//! events to one projection's runner; ordering, calls and view writes happen there, never here.

use crate::ledger::dynamodb::item::decode_event;
use crate::projector::{BatchOutcome, Projector};
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
        self.handle_batch(event).await.0
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
            applied = outcome.count(|s| matches!(s, crate::projector::EventStatus::Applied)),
            gap_filled = outcome.gap_filled,
            failed = outcome.count(crate::projector::EventStatus::is_failed),
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
