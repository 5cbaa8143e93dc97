//! The worker over DynamoDB Streams, emulating the Lambda event source mapping: it walks
//! the shard tree (parents before children), reads with GetRecords, applies the mapping's
//! `kind = event` filter, builds the same `dynamodb::Event` Lambda would and calls the
//! projector handler, then honours its batch item failures and checkpoints per shard.
//! It must not decode or apply events itself: that is the handler's job.

use super::{
    on_failure, sleep_or_stop, Shutdown, StopWhen, WorkerError, WorkerReport, WorkerSettings,
};
use crate::lambda::projector::{decode_record, Decoded, ProjectorHandler};
use crate::ledger::EventLog;
use crate::views::ViewStore;
use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord};
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use chrono::{TimeZone, Utc};
use std::collections::HashSet;
use std::sync::Arc;

/// Everything one projection's mapping needs.
pub struct StreamsSource {
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub stream_arn: String,
    pub region: String,
}

impl StreamsSource {
    /// The stream of `<table_prefix>-events`, found with DescribeTable.
    pub async fn for_events_table(
        config: &aws_config::SdkConfig,
        events_table: &str,
    ) -> Result<Self, WorkerError> {
        let db = aws_sdk_dynamodb::Client::new(config);
        let out = db
            .describe_table()
            .table_name(events_table)
            .send()
            .await
            .map_err(|e| streams_error("DescribeTable", &e))?;
        let stream_arn = out
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                WorkerError::Config(format!(
                    "table {events_table} has no stream; run `ledger migrate`"
                ))
            })?
            .to_string();
        Ok(Self {
            streams: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn,
            region: config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_string()),
        })
    }
}

fn streams_error<E>(operation: &'static str, e: &E) -> WorkerError
where
    E: std::error::Error + ProvideErrorMetadata,
{
    WorkerError::Streams {
        operation,
        detail: format!(
            "{}: {}",
            e.code().unwrap_or("error"),
            e.message().unwrap_or(&e.to_string())
        ),
    }
}

/// The checkpoint of one projection on one shard.
pub fn checkpoint_name(projection: &str, shard_id: &str) -> String {
    format!("worker#{projection}#{shard_id}")
}

struct Shard {
    id: String,
    parent: Option<String>,
}

/// Runs one projection's mapping until `settings.stop` or a stop request.
pub async fn run(
    source: Arc<StreamsSource>,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    handler: Arc<ProjectorHandler>,
    settings: WorkerSettings,
    mut shutdown: Shutdown,
) -> Result<WorkerReport, WorkerError> {
    let mut report = WorkerReport::new(handler.projection());
    let mut finished: HashSet<String> = HashSet::new();
    loop {
        let shards = describe(&source).await?;
        let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        let mut delivered_any = false;
        for shard in &shards {
            if finished.contains(&shard.id) {
                continue;
            }
            // Streams guarantee: a child's records follow its parent's, so a child is read
            // only after its parent is read to the end (or trimmed away and no longer listed).
            let parent_done = shard
                .parent
                .as_ref()
                .is_none_or(|p| finished.contains(p) || !listed.contains(p.as_str()));
            if !parent_done {
                continue;
            }
            let end = read_shard(
                &source,
                log.as_ref(),
                views.as_ref(),
                &handler,
                &shard.id,
                &settings,
                &mut shutdown,
                &mut report,
            )
            .await?;
            delivered_any |= end.delivered;
            match end.state {
                ShardState::Closed => {
                    finished.insert(shard.id.clone());
                }
                ShardState::Open => {}
                ShardState::Stopped => return Ok(report),
            }
            if settings.stop == StopWhen::Once && end.delivered {
                return Ok(report);
            }
        }
        // A closed parent lets its children be read: look again at once.
        let more_to_read = shards.iter().any(|s| {
            !finished.contains(&s.id) && s.parent.as_ref().is_some_and(|p| finished.contains(p))
        });
        if more_to_read || delivered_any {
            continue;
        }
        if settings.stop != StopWhen::Never
            || sleep_or_stop(settings.idle_poll, &mut shutdown).await
        {
            return Ok(report);
        }
    }
}

async fn describe(source: &StreamsSource) -> Result<Vec<Shard>, WorkerError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = source
            .streams
            .describe_stream()
            .stream_arn(&source.stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|e| streams_error("DescribeStream", &e))?;
        let Some(description) = out.stream_description() else {
            break;
        };
        for shard in description.shards() {
            if let Some(id) = shard.shard_id() {
                shards.push(Shard {
                    id: id.to_string(),
                    parent: shard.parent_shard_id().map(str::to_string),
                });
            }
        }
        match description.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_string()),
            None => break,
        }
    }
    Ok(shards)
}

enum ShardState {
    /// Read to its end: DynamoDB will write no more records to it.
    Closed,
    /// Caught up with an open shard.
    Open,
    /// A stop was requested.
    Stopped,
}

struct ShardEnd {
    state: ShardState,
    delivered: bool,
}

async fn iterator(
    source: &StreamsSource,
    shard_id: &str,
    after: Option<&str>,
) -> Result<Option<String>, WorkerError> {
    let (kind, sequence) = match after {
        Some(seq) => (
            ShardIteratorType::AfterSequenceNumber,
            Some(seq.to_string()),
        ),
        None => (ShardIteratorType::TrimHorizon, None),
    };
    match source
        .streams
        .get_shard_iterator()
        .stream_arn(&source.stream_arn)
        .shard_id(shard_id)
        .shard_iterator_type(kind)
        .set_sequence_number(sequence)
        .send()
        .await
    {
        Ok(out) => Ok(out.shard_iterator().map(str::to_string)),
        // The checkpoint is older than the 24 h retention: resume at what is left.
        Err(e) if e.code() == Some("TrimmedDataAccessException") && after.is_some() => {
            Box::pin(iterator(source, shard_id, None)).await
        }
        Err(e) => Err(streams_error("GetShardIterator", &e)),
    }
}

/// Reads one shard from its checkpoint until it is caught up or closed, delivering batches.
#[allow(clippy::too_many_arguments)]
async fn read_shard(
    source: &StreamsSource,
    log: &dyn EventLog,
    views: &dyn ViewStore,
    handler: &ProjectorHandler,
    shard_id: &str,
    settings: &WorkerSettings,
    shutdown: &mut Shutdown,
    report: &mut WorkerReport,
) -> Result<ShardEnd, WorkerError> {
    let name = checkpoint_name(handler.projection(), shard_id);
    let after = views.checkpoint(&name).await?.map(|c| c.position);
    let mut next = iterator(source, shard_id, after.as_deref()).await?;
    let mut delivered = false;
    while let Some(current) = next.take() {
        if *shutdown.borrow() {
            return Ok(ShardEnd {
                state: ShardState::Stopped,
                delivered,
            });
        }
        let (mut records, mut following) =
            get_records(source, &current, settings.batch_size).await?;
        // MaximumBatchingWindowInSeconds: a short batch waits once for more records.
        if !records.is_empty()
            && records.len() < settings.batch_size
            && !settings.batch_window.is_zero()
        {
            if sleep_or_stop(settings.batch_window, shutdown).await {
                return Ok(ShardEnd {
                    state: ShardState::Stopped,
                    delivered,
                });
            }
            if let Some(it) = following.take() {
                let (more, after_more) =
                    get_records(source, &it, settings.batch_size - records.len()).await?;
                records.extend(more);
                following = after_more;
            }
        }
        if records.is_empty() {
            return Ok(ShardEnd {
                state: if following.is_none() {
                    ShardState::Closed
                } else {
                    ShardState::Open
                },
                delivered,
            });
        }
        let last_sequence = records
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
            .map(str::to_string);
        if !deliver(source, log, handler, &records, settings, shutdown, report).await? {
            return Ok(ShardEnd {
                state: ShardState::Stopped,
                delivered,
            });
        }
        delivered = true;
        if let Some(seq) = last_sequence {
            views.save_checkpoint(&name, &seq).await?;
        }
        if settings.stop == StopWhen::Once {
            return Ok(ShardEnd {
                state: ShardState::Open,
                delivered,
            });
        }
        next = following;
    }
    Ok(ShardEnd {
        state: ShardState::Closed,
        delivered,
    })
}

async fn get_records(
    source: &StreamsSource,
    iterator: &str,
    limit: usize,
) -> Result<(Vec<Record>, Option<String>), WorkerError> {
    let out = source
        .streams
        .get_records()
        .shard_iterator(iterator)
        .limit(limit.clamp(1, 1000) as i32)
        .send()
        .await
        .map_err(|e| streams_error("GetRecords", &e))?;
    Ok((
        out.records().to_vec(),
        out.next_shard_iterator().map(str::to_string),
    ))
}

/// The mapping's FilterCriteria (`NewImage.kind = "event"`): other records are consumed
/// without invoking the function, exactly as Lambda drops them.
fn passes_filter(record: &Record) -> bool {
    record
        .dynamodb()
        .and_then(|d| d.new_image())
        .and_then(|image| image.get("kind"))
        .and_then(|kind| kind.as_s().ok())
        .is_some_and(|kind| kind == crate::ledger::dynamodb::item::KIND_EVENT)
}

/// The record as Lambda hands it to the function.
fn lambda_record(source: &StreamsSource, record: &Record) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = record.dynamodb() {
        if let Some(at) = d.approximate_creation_date_time() {
            change.approximate_creation_date_time = Utc
                .timestamp_opt(at.secs(), at.subsec_nanos())
                .single()
                .unwrap_or_default();
        }
        change.keys = d.keys().cloned().unwrap_or_default().into();
        change.new_image = d.new_image().cloned().unwrap_or_default().into();
        change.old_image = d.old_image().cloned().unwrap_or_default().into();
        change.sequence_number = d.sequence_number().map(str::to_string);
        change.size_bytes = d.size_bytes().unwrap_or_default();
        change.stream_view_type = d
            .stream_view_type()
            .and_then(|t| serde_json::from_value(serde_json::json!(t.as_str())).ok());
    }
    let mut out = EventRecord::default();
    out.aws_region = record.aws_region().unwrap_or(&source.region).to_string();
    out.change = change;
    out.event_id = record.event_id().unwrap_or_default().to_string();
    out.event_name = record
        .event_name()
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    out.event_source = record.event_source().map(str::to_string);
    out.event_version = record.event_version().map(str::to_string);
    out.event_source_arn = Some(source.stream_arn.clone());
    out
}

/// Delivers one batch until every record is applied or given up; `false` when a stop
/// request interrupted the retries.
async fn deliver(
    source: &StreamsSource,
    log: &dyn EventLog,
    handler: &ProjectorHandler,
    records: &[Record],
    settings: &WorkerSettings,
    shutdown: &mut Shutdown,
    report: &mut WorkerReport,
) -> Result<bool, WorkerError> {
    let mut pending: Vec<EventRecord> = records
        .iter()
        .filter(|r| passes_filter(r))
        .map(|r| lambda_record(source, r))
        .collect();
    let mut retries = 0;
    while !pending.is_empty() {
        let mut event = Event::default();
        event.records = pending.clone();
        let (response, outcome) = handler.handle_batch(event).await;
        report.add(&outcome);
        let Some(failure) = response.batch_item_failures.first() else {
            return Ok(true);
        };
        // ReportBatchItemFailures: resume at the named record; an unknown or missing
        // identifier means the whole batch failed.
        let failed = failure
            .item_identifier
            .as_ref()
            .and_then(|id| {
                pending
                    .iter()
                    .position(|r| r.change.sequence_number.as_ref() == Some(id))
            })
            .unwrap_or(0);
        if failed > 0 {
            pending.drain(..failed);
            retries = 0;
        }
        retries += 1;
        report.retried += 1;
        if retries > settings.max_retries {
            let reason = outcome
                .statuses
                .iter()
                .find_map(|s| match s {
                    crate::projector::EventStatus::Failed { reason, .. } => Some(reason.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "the record could not be decoded".to_string());
            if let Decoded::Event(event) = decode_record(&pending[0]) {
                on_failure(log, handler.projection(), &event, &reason).await;
            } else {
                tracing::error!(
                    projection = handler.projection(),
                    sequence_number = pending[0].change.sequence_number.as_deref().unwrap_or(""),
                    reason,
                    "giving up on an unreadable record after bounded retries"
                );
            }
            report.gave_up += 1;
            pending.remove(0);
            retries = 0;
            continue;
        }
        if sleep_or_stop(settings.backoff(retries), shutdown).await {
            return Ok(false);
        }
    }
    Ok(true)
}
