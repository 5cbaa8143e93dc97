//! The give-up consumer: reads the projectors' on-failure queue, where a DynamoDB Streams
//! event source mapping sends the shard/sequence range of a batch it discarded after its
//! retries, and records in the ledger what was given up, so audit shows it and
//! `ledger redrive` finds it.
//!
//! One consumer serves every projector: each message names the function that gave up
//! (`requestContext.functionArn`), and projector functions are named
//! `<PROJECTOR_FUNCTION_PREFIX><projection>`, so the projection is read from the message,
//! never configured per queue. For each event in the range it appends a `SyncFailed`
//! (reason `gave up after N deliveries`) caused by that event, deduplicated by
//! `<event id>:on-failure:<projection>:gave-up`: a message delivered twice records nothing
//! the second time, and redrive treats it as a given-up delivery (`on-failure:` outcomes).
//! A range the stream no longer holds (24 h retention) or whose records cannot be decoded
//! is recorded as one `SyncFailed` on `system-give-up-<projection>` naming the range, so
//! nothing vanishes silently; `ledger replay` rebuilds from the log.
//!
//! Give-up records are not given up on again: a projector that discards this consumer's own
//! `SyncFailed` (it is down, say) would otherwise make each give-up cause the next.

pub mod config;
pub mod message;
pub mod stream_range;

use crate::ledger::{EventLog, ExpectedVersion, LedgerError, StreamAppend};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::Utc;
use message::{GiveUpRecord, MessageError};
use projections::catalogue::SyncFailed;
use projections::{
    CorrelationId, DomainEvent, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use stream_range::{RangeError, RangeRead, StreamRange};

/// The discriminator of a give-up outcome (after `<event id>:`); redrive lists outcomes
/// starting with `on-failure:` as given-up deliveries.
pub fn gave_up_discriminator(projection: &str) -> String {
    format!("on-failure:{projection}:gave-up")
}

#[derive(Debug, thiserror::Error)]
pub enum GiveUpError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Stream(#[from] RangeError),
    #[error("could not record the give-up in the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("give-up record id: {0}")]
    Id(String),
}

/// What one message recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub projection: &'static str,
    /// `SyncFailed` appended now.
    pub appended: usize,
    /// Already recorded by an earlier delivery of the same give-up.
    pub already_recorded: usize,
    /// Give-up records found in the range (not given up on again).
    pub skipped_give_ups: usize,
    /// Whether the range was recorded as a whole (aged out or undecodable records).
    pub range_recorded: bool,
}

pub struct GiveUpHandler {
    log: Arc<dyn EventLog>,
    stream: Arc<dyn StreamRange>,
    function_prefix: String,
}

impl GiveUpHandler {
    /// `function_prefix`: what projector function names start with before the projection
    /// (`sync-ledger-projector-`).
    pub fn new(
        log: Arc<dyn EventLog>,
        stream: Arc<dyn StreamRange>,
        function_prefix: impl Into<String>,
    ) -> Self {
        Self {
            log,
            stream,
            function_prefix: function_prefix.into(),
        }
    }

    /// Handles a batch of the on-failure queue. A message whose give-up could not be recorded
    /// is listed as a batch item failure (ReportBatchItemFailures) and comes again; after the
    /// queue's maxReceiveCount it moves to the consumer's own DLQ, which alarms.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.as_deref().unwrap_or_default();
            match self.handle_message(body).await {
                Ok(recorded) => tracing::info!(
                    message_id = id,
                    projection = recorded.projection,
                    appended = recorded.appended,
                    already_recorded = recorded.already_recorded,
                    skipped_give_ups = recorded.skipped_give_ups,
                    range_recorded = recorded.range_recorded,
                    "given-up records recorded in the ledger"
                ),
                Err(e) => {
                    tracing::error!(message_id = id, error = %e, "give-up not recorded; the message stays on the queue");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
            }
        }
        response
    }

    /// Records one on-failure message's give-up. Safe to repeat: every append is deduplicated.
    pub async fn handle_message(&self, body: &str) -> Result<Recorded, GiveUpError> {
        let record = GiveUpRecord::parse(body)?;
        let projection = record.projection(&self.function_prefix)?;
        let mut recorded = Recorded {
            projection,
            ..Recorded::default()
        };
        let (events, range_problem) = match self.stream.read(&record.batch).await? {
            RangeRead::Events { events, unreadable } if unreadable.is_empty() => (events, None),
            RangeRead::Events { events, unreadable } => (
                events,
                Some(format!(
                    "{} record(s) in the range are not readable events (sequence numbers {})",
                    unreadable.len(),
                    unreadable.join(", ")
                )),
            ),
            RangeRead::AgedOut { detail } => (
                Vec::new(),
                Some(format!(
                    "the records are no longer in the stream ({detail}); replay the projection from the log"
                )),
            ),
        };
        let reason = format!(
            "gave up after {} deliveries",
            record.request_context.approximate_invoke_count
        );
        let mut per_stream: BTreeMap<StreamId, Vec<NewEvent>> = BTreeMap::new();
        for event in &events {
            if is_give_up(event) {
                recorded.skipped_give_ups += 1;
                tracing::warn!(event_id = %event.event_id, projection, "a give-up record was itself given up; not recorded again");
                continue;
            }
            let failed = DomainEvent::SyncFailed(SyncFailed {
                projection: projection.to_string(),
                reason: reason.clone(),
                attempts: record.request_context.approximate_invoke_count,
                extra: range_extra(&record),
            });
            per_stream
                .entry(event.stream_id.clone())
                .or_default()
                .push(NewEvent::caused_by(
                    event,
                    event.stream_id.clone(),
                    &gave_up_discriminator(projection),
                    Utc::now(),
                    &failed,
                ));
        }
        if let Some(problem) = range_problem {
            let stream = range_stream(projection)?;
            per_stream
                .entry(stream.clone())
                .or_default()
                .push(range_event(&record, projection, stream, &reason, &problem)?);
            recorded.range_recorded = true;
        }
        let appends = per_stream
            .into_iter()
            .map(|(stream, events)| StreamAppend {
                stream,
                expected: ExpectedVersion::Any,
                events,
            })
            .collect();
        for result in self.log.append_batch(appends).await? {
            for outcome in result? {
                match outcome {
                    crate::ledger::AppendOutcome::Appended { .. } => recorded.appended += 1,
                    crate::ledger::AppendOutcome::AlreadyRecorded { .. } => {
                        recorded.already_recorded += 1
                    }
                }
            }
        }
        Ok(recorded)
    }
}

/// Whether `event` is a give-up outcome this consumer (or the worker's on-failure path)
/// recorded.
fn is_give_up(event: &RecordedEvent) -> bool {
    event.event_type == "SyncFailed"
        && event
            .source_event_id
            .as_str()
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with("on-failure:"))
}

/// Where the range of a give-up is kept in the `SyncFailed` (for audit and the operator).
fn range_extra(record: &GiveUpRecord) -> projections::catalogue::Extra {
    let b = &record.batch;
    let mut extra = projections::catalogue::Extra::new();
    for (key, value) in [
        ("function", record.function_name().unwrap_or_default()),
        ("condition", record.request_context.condition.as_str()),
        ("shard_id", b.shard_id.as_str()),
        ("start_sequence_number", b.start_sequence_number.as_str()),
        ("end_sequence_number", b.end_sequence_number.as_str()),
    ] {
        extra.insert(
            key.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    extra
}

/// The stream that keeps give-ups not tied to a readable event: `system-give-up-<projection>`.
pub fn range_stream(projection: &str) -> Result<StreamId, GiveUpError> {
    StreamId::for_entity(Source::System, "give-up", projection)
        .map_err(|e| GiveUpError::Id(e.to_string()))
}

/// A `SyncFailed` naming the whole range, deduplicated by projection + shard + range.
fn range_event(
    record: &GiveUpRecord,
    projection: &str,
    stream: StreamId,
    reason: &str,
    problem: &str,
) -> Result<NewEvent, GiveUpError> {
    let b = &record.batch;
    let key = format!(
        "gave-up:{projection}:{}:{}-{}",
        b.shard_id, b.start_sequence_number, b.end_sequence_number
    );
    let source_event_id = SourceEventId::parse(key).map_err(|e| GiveUpError::Id(e.to_string()))?;
    let failed = DomainEvent::SyncFailed(SyncFailed {
        projection: projection.to_string(),
        reason: format!("{reason}: {problem}"),
        attempts: record.request_context.approximate_invoke_count,
        extra: range_extra(record),
    });
    Ok(NewEvent::from_domain(
        stream,
        Source::System,
        source_event_id,
        CorrelationId::new(),
        None,
        Utc::now(),
        &failed,
    ))
}

impl super::bootstrap::Handler for GiveUpHandler {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    type Error = std::convert::Infallible;

    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, Self::Error> {
        Ok(self.handle_sqs(event).await)
    }
}
