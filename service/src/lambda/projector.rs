//! The projector Lambda handler: a DynamoDB Streams batch of the event log in, batch item
//! failures out. It decodes each `NewImage` with the ledger's item codec and hands the
//! events to one projection's runner; ordering, calls and view writes happen there, never here.
//! Each batch is reported as one EMF line (`batch_metrics`), including the `SyncFailed`
//! outcomes of this projection that the batch carries.

mod config;

pub use config::{ProjectorConfig, PROJECTION_ENV};

use super::emf::Metrics;
use crate::ledger::dynamodb::item::decode_event;
use crate::projector::{BatchOutcome, EventStatus, Projector, PROJECTIONS};
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use projections::{EventType, RecordedEvent};
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
        let (response, metrics) = self.handle_measured(event).await;
        metrics.flush();
        response
    }

    /// `handle_stream_event` without printing: the response and the batch's EMF metrics.
    pub async fn handle_measured(&self, event: Event) -> (DynamoDbEventResponse, Metrics) {
        let records = event.records.len();
        let batch = self.run(event).await;
        let metrics = batch_metrics(
            self.projector.name(),
            records,
            &batch.outcome,
            batch.sync_failed,
        );
        (batch.response, metrics)
    }

    /// `handle_stream_event` with what happened to each decoded event (for the worker).
    pub async fn handle_batch(&self, event: Event) -> (DynamoDbEventResponse, BatchOutcome) {
        let batch = self.run(event).await;
        (batch.response, batch.outcome)
    }

    async fn run(&self, event: Event) -> Batch {
        let mut events = Vec::with_capacity(event.records.len());
        let mut record_of_event = Vec::with_capacity(event.records.len());
        let mut first_unreadable: Option<usize> = None;
        // Records holding a `SyncFailed` of this projection; counted once the resume point
        // is known.
        let mut sync_failed_records = Vec::new();
        for (i, record) in event.records.iter().enumerate() {
            match decode_record(record) {
                Decoded::Event(e) => {
                    if is_sync_failed_of(&e, self.projector.name()) {
                        sync_failed_records.push(i);
                    }
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
        // Records from the resume point on are delivered again, and counted then: a record
        // is counted in the batch that checkpoints it. A failure without a sequence number
        // checkpoints nothing (the whole batch comes again).
        let checkpointed = match resume_at {
            None => event.records.len(),
            Some(i) if event.records[i].change.sequence_number.is_some() => i,
            Some(_) => 0,
        };
        let sync_failed = sync_failed_records
            .iter()
            .filter(|&&i| i < checkpointed)
            .count();
        Batch {
            response,
            outcome,
            sync_failed,
        }
    }
}

/// What one batch did: the response for Lambda, the statuses for the worker, and the
/// `SyncFailed` records of this projection the batch checkpointed (for the metrics).
struct Batch {
    response: DynamoDbEventResponse,
    outcome: BatchOutcome,
    sync_failed: usize,
}

/// Whether `event` is a `SyncFailed` recorded for `projection` (the runner's `NAME`,
/// `account-sync`). Outcomes name it by the short name the runner's decisions use
/// (`account`), the worker's give-up path by the `NAME`; both count.
fn is_sync_failed_of(event: &RecordedEvent, projection: &str) -> bool {
    if event.event_type != EventType::SyncFailed.as_str() {
        return false;
    }
    let Some(named) = event.payload.get("projection").and_then(|p| p.as_str()) else {
        return false;
    };
    named == projection
        || PROJECTIONS
            .iter()
            .any(|(short, name)| *short == named && *name == projection)
}

/// The batch as CloudWatch metrics (EMF): what was applied, what was a redelivery and what
/// failed, split transient (retried, alarms on a trend) from permanent (needs a person).
/// Records that are not events (markers, bookkeeping) count as received only.
///
/// `SyncFailedAppended` counts the `SyncFailed` outcomes of this projection in the ledger,
/// whoever appended them (this runner, the worker's or a consumer's give-up path, a redrive
/// that failed again): every outcome comes back through the change feed, so it is counted
/// when the batch that carries it is checkpointed, one batch after its append. A call the
/// CRM/Billing API refused is an applied event, not a failed one; this is what alarms on it.
pub fn batch_metrics(
    projection: &str,
    records: usize,
    outcome: &BatchOutcome,
    sync_failed_appended: usize,
) -> Metrics {
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
    metrics.count("CatalogLookups", outcome.catalog_lookups);
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
    metrics.count("SyncFailedAppended", sync_failed_appended as u64);
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
    use crate::ledger::dynamodb::item::{event_item, DEFAULT_BY_TIME_SHARDS};
    use crate::ledger::sqlite::{migrate, SqliteLedger};
    use crate::ledger::{EventLog, ExpectedVersion};
    use crate::projector::{Effects, Runner, RunnerSettings, TransientCallFailure};
    use crate::views::sqlite::SqliteViewStore;
    use crate::views::ViewStore;
    use async_trait::async_trait;
    use chrono::Utc;
    use projections::account_sync::AccountSync;
    use projections::commands::{CallResult, Command};
    use projections::correlation_view::CorrelationView;
    use projections::{
        CorrelationId, EventId, NewEvent, Projection, Source, SourceEventId, StreamId,
    };
    use serde_json::json;

    /// The Lambda event the stream mapping delivers for `events`: one INSERT record each,
    /// `NewImage` as the ledger stores the item, sequence numbers in delivery order.
    fn stream_event(events: &[RecordedEvent]) -> Event {
        let records = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let new = NewEvent {
                    event_id: e.event_id,
                    stream_id: e.stream_id.clone(),
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    source: e.source,
                    source_event_id: e.source_event_id.clone(),
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    occurred_at: e.occurred_at,
                    payload: e.payload.clone(),
                };
                let item = event_item(&new, e.version, &e.recorded_at, DEFAULT_BY_TIME_SHARDS);
                let image: serde_dynamo::Item = serde_dynamo::to_item(item).unwrap();
                serde_json::from_value(json!({
                    "eventID": format!("{i}"), "eventName": "INSERT",
                    "eventSource": "aws:dynamodb", "eventVersion": "1.1", "awsRegion": "us-east-1",
                    "dynamodb": {
                        "ApproximateCreationDateTime": e.recorded_at.timestamp(),
                        "Keys": {"pk": {"S": e.stream_id.as_str()}, "sk": {"N": e.version.to_string()}},
                        "NewImage": serde_json::to_value(&image).unwrap(),
                        "SequenceNumber": format!("{:021}", 100 + i),
                        "SizeBytes": 100, "StreamViewType": "NEW_IMAGE"
                    }
                }))
                .unwrap()
            })
            .collect();
        let mut event = Event::default();
        event.records = records;
        event
    }

    /// Billing refuses every call for good (as a 400 would be classed).
    struct Refusing;

    #[async_trait]
    impl Effects for Refusing {
        async fn execute(&self, _: &Command) -> Result<CallResult, TransientCallFailure> {
            Ok(CallResult::Failed {
                reason: "billing: 400 'currency' must be a 3-letter currency code".into(),
                attempts: 1,
            })
        }
    }

    #[tokio::test]
    async fn a_sync_failed_the_runner_appends_is_counted_once_by_its_projection_when_it_comes_back()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        migrate(&path).unwrap();
        let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).unwrap());
        let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&path).unwrap());
        let runner = |settings| {
            Runner::<AccountSync>::new(log.clone(), views.clone(), Arc::new(Refusing), settings)
        };
        let account = ProjectorHandler::new(Arc::new(runner(RunnerSettings::default())));
        let correlation = ProjectorHandler::new(Arc::new(Runner::<CorrelationView>::new(
            log.clone(),
            views.clone(),
            Arc::new(Refusing),
            RunnerSettings::default(),
        )));

        let stream = StreamId::parse("crm-account-001EMF").unwrap();
        let upsert = NewEvent {
            event_id: EventId::new(),
            stream_id: stream.clone(),
            event_type: "CrmAccountUpserted".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse("001EMF-1").unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: json!({"account_id": "001EMF", "name": "Acme", "currency": "EURO"}),
        };
        log.append(&stream, ExpectedVersion::Any, vec![upsert])
            .await
            .unwrap();

        // The batch with the CRM change: the call is refused, `SyncFailed` is appended, and
        // the batch itself holds none yet.
        let first = stream_event(&log.read_stream(&stream, 1).await.unwrap());
        let (response, metrics) = account.handle_measured(first).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let doc = metrics.to_emf(0);
        assert_eq!(doc["EventsApplied"], 1, "{doc}");
        assert_eq!(doc["SyncFailedAppended"], 0, "{doc}");
        let recorded = log.read_stream(&stream, 1).await.unwrap();
        let types: Vec<&str> = recorded.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["CrmAccountUpserted", "SyncFailed"]);

        // The change feed brings the outcome back: the account projector counts it, in the
        // dimensions the template's alarm names; another projection does not.
        let (_, metrics) = account.handle_measured(stream_event(&recorded)).await;
        let doc = metrics.to_emf(0);
        assert_eq!(doc["SyncFailedAppended"], 1, "{doc}");
        assert_eq!(doc["Function"], "projector");
        assert_eq!(doc["Projection"], AccountSync::NAME);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "SyncLedger"
        );
        assert!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == "SyncFailedAppended" && m["Unit"] == "Count"),
            "{doc}"
        );
        let (_, metrics) = correlation.handle_measured(stream_event(&recorded)).await;
        assert_eq!(metrics.to_emf(0)["SyncFailedAppended"], 0);
    }

    /// Answers every batch with the same statuses, in delivery order.
    struct Answering(Vec<EventStatus>);

    #[async_trait]
    impl Projector for Answering {
        fn name(&self) -> &'static str {
            AccountSync::NAME
        }

        async fn process(&self, _: Vec<RecordedEvent>) -> BatchOutcome {
            BatchOutcome {
                statuses: self.0.clone(),
                ..BatchOutcome::default()
            }
        }
    }

    fn sync_failed(stream: &str, projection: &str) -> RecordedEvent {
        let new = NewEvent {
            event_id: EventId::new(),
            stream_id: StreamId::parse(stream).unwrap(),
            event_type: "SyncFailed".into(),
            schema_version: 1,
            source: Source::System,
            source_event_id: SourceEventId::parse(format!("{stream}:failed")).unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: json!({"projection": projection, "reason": "r", "attempts": 1}),
        };
        RecordedEvent::from_new(new, 2, Utc::now())
    }

    #[tokio::test]
    async fn sync_failed_records_from_the_resume_point_on_are_left_to_their_redelivery() {
        let transient = EventStatus::Failed {
            reason: "throttled".into(),
            transient: true,
        };
        let handler = ProjectorHandler::new(Arc::new(Answering(vec![
            EventStatus::Applied,
            EventStatus::Applied,
            EventStatus::Applied,
            transient.clone(),
            transient,
        ])));
        let batch = [
            // The runner names its projection short, the worker's give-up path in full.
            sync_failed("crm-account-A", "account"),
            sync_failed("crm-account-B", AccountSync::NAME),
            sync_failed("crm-order-C", "order"),
            sync_failed("crm-account-D", "account"),
            sync_failed("crm-account-E", "account"),
        ];
        let (response, metrics) = handler.handle_measured(stream_event(&batch)).await;
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some("000000000000000000103"),
            "the shard resumes at the fourth record"
        );
        let doc = metrics.to_emf(0);
        assert_eq!(
            doc["SyncFailedAppended"], 2,
            "A and B; C is the order projection's, D and E come again: {doc}"
        );
    }

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
            catalog_lookups: 3,
        };
        let doc = batch_metrics("account", 9, &outcome, 1).to_emf(0);
        assert_eq!(doc["Projection"], "account");
        assert_eq!(doc["RecordsReceived"], 9);
        assert_eq!(doc["EventsApplied"], 2);
        assert_eq!(doc["EventsAlreadyApplied"], 1);
        assert_eq!(doc["EventsGapFilled"], 2);
        assert_eq!(doc["CatalogLookups"], 3);
        assert_eq!(doc["EventsFailedTransient"], 1);
        assert_eq!(doc["EventsFailedPermanent"], 1);
        assert_eq!(doc["SyncFailedAppended"], 1);
    }
}
