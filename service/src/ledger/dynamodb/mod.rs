//! DynamoDB adapter of the `EventLog` port, exactly per DESIGN §3: `<prefix>-events` with
//! idempotent, optimistic appends in TransactWriteItems, the `by-correlation` and `by-time`
//! indexes for audit and replay reads, and DynamoDB Streams as the change feed.
//! It holds no domain logic and never decides what an event means.

mod errors;
mod feed;
pub mod item;
pub mod migrate;

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use projections::envelope::format_timestamp;
use projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};

use super::{
    AppendOutcome, ChangeFeed, EventLog, ExistingEvent, ExpectedVersion, FeedStart, LedgerError,
};
use errors::{classify, with_retries, Backoff, Failure};
use item::{DedupeItem, MetaItem, GSI_BY_CORRELATION, GSI_BY_TIME, META_PK};

pub use migrate::{migrate_with, MigrationReport};

/// Each event takes two actions (event + dedupe marker); DynamoDB allows 100 per transaction.
pub const MAX_EVENTS_PER_TRANSACTION: usize = 50;

pub fn events_table(table_prefix: &str) -> String {
    format!("{table_prefix}-events")
}

pub fn views_table(table_prefix: &str) -> String {
    format!("{table_prefix}-views")
}

/// The ledger on DynamoDB. Cheap to share (`Arc`); clients are built once at start-up.
#[derive(Debug, Clone)]
pub struct DynamoDbLedger {
    db: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    events_table: String,
    stream_arn: String,
    first_hour: DateTime<Utc>,
    by_time_shards: u32,
}

/// The last event of a stream, as far as appends need it.
#[derive(Debug, Clone, Copy)]
struct Head {
    version: u64,
    recorded_at: Option<DateTime<Utc>>,
}

impl DynamoDbLedger {
    /// Opens `<table_prefix>-events` with the process's AWS configuration (`config::AwsConfig`,
    /// which honours `AWS_ENDPOINT_URL`). Refuses an unmigrated store with `NotMigrated`.
    pub async fn open_with(
        config: &aws_config::SdkConfig,
        table_prefix: &str,
    ) -> Result<Self, LedgerError> {
        let db = aws_sdk_dynamodb::Client::new(config);
        let streams = aws_sdk_dynamodbstreams::Client::new(config);
        let events_table = events_table(table_prefix);
        let described = with_retries(|| async {
            db.describe_table()
                .table_name(&events_table)
                .send()
                .await
                .map_err(|e| classify("DescribeTable", e))
        })
        .await
        .map_err(|e| match e {
            LedgerError::NotMigrated(_) => {
                LedgerError::NotMigrated(format!("table {events_table} does not exist"))
            }
            other => other,
        })?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                LedgerError::NotMigrated(format!("table {events_table} has no stream enabled"))
            })?
            .to_string();
        let meta = with_retries(|| async {
            db.get_item()
                .table_name(&events_table)
                .key("pk", AttributeValue::S(META_PK.to_string()))
                .key("sk", AttributeValue::N("0".to_string()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("GetItem meta#ledger", e))
        })
        .await?
        .item
        .ok_or_else(|| LedgerError::NotMigrated(format!("{events_table} has no {META_PK} item")))?;
        let meta: MetaItem = serde_dynamo::from_item(meta).map_err(|e| LedgerError::Corrupt {
            key: META_PK.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            db,
            streams,
            first_hour: meta.first_hour()?,
            by_time_shards: meta.by_time_shards.max(1),
            events_table,
            stream_arn,
        })
    }

    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Strongly consistent, so a writer never builds on a stale version.
    async fn head(&self, stream: &StreamId) -> Result<Option<Head>, LedgerError> {
        let out = with_retries(|| async {
            self.db
                .query()
                .table_name(&self.events_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(stream.to_string()))
                .projection_expression("sk, recorded_at")
                .scan_index_forward(false)
                .limit(1)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("Query head", e))
        })
        .await?;
        let Some(item) = out.items().first() else {
            return Ok(None);
        };
        let version = match item.get("sk") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| LedgerError::Corrupt {
            key: stream.to_string(),
            reason: "the last item has no numeric sk".to_string(),
        })?;
        let recorded_at = match item.get("recorded_at") {
            Some(AttributeValue::S(s)) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        };
        Ok(Some(Head {
            version,
            recorded_at,
        }))
    }

    /// The original event of a dedupe marker, read strongly consistent.
    async fn read_marker(
        &self,
        source: Source,
        source_event_id: &SourceEventId,
    ) -> Result<Option<ExistingEvent>, LedgerError> {
        let pk = item::dedupe_pk(source, source_event_id);
        let out = with_retries(|| async {
            self.db
                .get_item()
                .table_name(&self.events_table)
                .key("pk", AttributeValue::S(pk.clone()))
                .key("sk", AttributeValue::N("0".to_string()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("GetItem dedupe marker", e))
        })
        .await?;
        let Some(found) = out.item else {
            return Ok(None);
        };
        let marker: DedupeItem =
            serde_dynamo::from_item(found).map_err(|e| LedgerError::Corrupt {
                key: pk.clone(),
                reason: e.to_string(),
            })?;
        let corrupt = |reason: String| LedgerError::Corrupt {
            key: pk.clone(),
            reason,
        };
        Ok(Some(ExistingEvent {
            stream_id: StreamId::parse(marker.stream_id).map_err(|e| corrupt(e.to_string()))?,
            version: marker.version,
            event_id: EventId::parse(&marker.event_id).map_err(|e| corrupt(e.to_string()))?,
        }))
    }

    /// Drops from `pending` every event whose marker exists, recording `AlreadyRecorded`;
    /// returns how many it dropped.
    async fn settle_recorded(
        &self,
        events: &[NewEvent],
        pending: &mut VecDeque<usize>,
        outcomes: &mut [Option<AppendOutcome>],
        candidates: Vec<usize>,
    ) -> Result<usize, LedgerError> {
        let found: Vec<(usize, Option<ExistingEvent>)> = futures::stream::iter(candidates)
            .map(|idx| async move {
                let event = &events[idx];
                self.read_marker(event.source, &event.source_event_id)
                    .await
                    .map(|existing| (idx, existing))
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut settled = 0;
        for (idx, existing) in found {
            if let Some(existing) = existing {
                outcomes[idx] = Some(AppendOutcome::AlreadyRecorded { existing });
                pending.retain(|p| *p != idx);
                settled += 1;
            }
        }
        Ok(settled)
    }

    fn transaction(
        &self,
        events: &[NewEvent],
        chunk: &[usize],
        head: Option<Head>,
    ) -> Result<Vec<TransactWriteItem>, LedgerError> {
        let base = head.map_or(0, |h| h.version);
        let mut previous = head.and_then(|h| h.recorded_at);
        let now = now_micros();
        let mut actions = Vec::with_capacity(chunk.len() * 2);
        for (offset, idx) in chunk.iter().enumerate() {
            let event = &events[*idx];
            let version = base + 1 + offset as u64;
            let recorded_at = next_recorded_at(previous, now);
            previous = Some(recorded_at);
            let event_item = item::event_item(event, version, &recorded_at, self.by_time_shards);
            let marker = item::dedupe_item(event, version, &recorded_at);
            // attribute_not_exists on the event key is the optimistic-concurrency check: the
            // transaction is all-or-nothing, so a lost race writes neither item.
            actions.push(self.put_new(&event_item)?);
            actions.push(self.put_new(&marker)?);
        }
        Ok(actions)
    }

    fn put_new<T: serde::Serialize>(&self, value: &T) -> Result<TransactWriteItem, LedgerError> {
        let attrs: HashMap<String, AttributeValue> = serde_dynamo::to_item(value)
            .map_err(|e| LedgerError::Store(format!("cannot encode item: {e}")))?;
        let put = Put::builder()
            .table_name(&self.events_table)
            .set_item(Some(attrs))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| LedgerError::Store(format!("cannot build Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn query_events(
        &self,
        what: &'static str,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let mut events = Vec::new();
        let mut start_key: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = with_retries(|| {
                let request = build().set_exclusive_start_key(start_key.clone());
                async move { request.send().await.map_err(|e| classify(what, e)) }
            })
            .await?;
            for raw in page.items().iter().cloned() {
                if let Some(event) = item::decode_event(raw)? {
                    events.push(event);
                }
            }
            if limit.is_some_and(|l| events.len() >= l) {
                events.truncate(limit.unwrap_or(usize::MAX));
                return Ok(events);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start_key = Some(key.clone()),
                _ => return Ok(events),
            }
        }
    }

    /// One hour of the `by-time` index across every shard, merged into global order.
    async fn read_hour(
        &self,
        hour: &str,
        lower: &Lower,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let mut per_shard = Vec::with_capacity(self.by_time_shards as usize);
        for shard in 0..self.by_time_shards {
            let bucket = item::bucket(hour, shard);
            let (condition, bound) = match lower {
                Lower::From(key) => ("bucket = :b AND time_sk >= :k", key.clone()),
                Lower::After(key) => ("bucket = :b AND time_sk > :k", key.clone()),
            };
            let events = self
                .query_events(
                    "Query by-time",
                    || {
                        self.db
                            .query()
                            .table_name(&self.events_table)
                            .index_name(GSI_BY_TIME)
                            .key_condition_expression(condition)
                            .expression_attribute_values(":b", AttributeValue::S(bucket.clone()))
                            .expression_attribute_values(":k", AttributeValue::S(bound.clone()))
                            .scan_index_forward(true)
                    },
                    Some(limit),
                )
                .await?;
            per_shard.push(events);
        }
        Ok(merge_by_order_key(per_shard, limit))
    }

    /// Sends one transaction; `Ok(None)` on success, else the per-action cancellation codes
    /// (`None` for an action that did not fail) or a classified failure.
    async fn send_transaction(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<Option<String>>>, Failure> {
        match self
            .db
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let codes = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                        .collect();
                    return Ok(Some(codes));
                }
                if err.code() == Some("ValidationException") {
                    return Err(Failure::Fatal(LedgerError::Store(format!(
                        "TransactWriteItems rejected: {}",
                        err.message().unwrap_or("validation error")
                    ))));
                }
                Err(classify("TransactWriteItems", err))
            }
        }
    }
}

/// The lower bound of a `read_all`: inclusive `from`, or exclusive `after`.
#[derive(Debug, Clone)]
enum Lower {
    From(String),
    After(String),
}

/// `recorded_at` of the next event: now, but strictly after the stream's previous event so
/// the per-stream order is also the time order (microseconds: the stored precision).
fn next_recorded_at(previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    match previous {
        Some(prev) if prev >= now => prev + TimeDelta::microseconds(1),
        _ => now,
    }
}

fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn ceil_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    match DateTime::from_timestamp_micros(at.timestamp_micros()) {
        Some(floor) if floor < at => floor + TimeDelta::microseconds(1),
        Some(floor) => floor,
        None => at,
    }
}

/// K-way merge of lists already in `(recorded_at, event_id)` order.
fn merge_by_order_key(lists: Vec<Vec<RecordedEvent>>, limit: usize) -> Vec<RecordedEvent> {
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<RecordedEvent>>> = lists
        .into_iter()
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut merged = Vec::new();
    while merged.len() < limit {
        let next = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, it)| it.peek().map(|e| (e.global_order_key(), i)))
            .min();
        match next {
            Some((_, i)) => merged.extend(heads[i].next()),
            None => break,
        }
    }
    merged
}

#[async_trait]
impl EventLog for DynamoDbLedger {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AppendOutcome>, LedgerError> {
        if let Some(stray) = events.iter().find(|e| &e.stream_id != stream) {
            return Err(LedgerError::MixedStreams {
                stream: stream.clone(),
                event_id: stray.event_id,
                other: stray.stream_id.clone(),
            });
        }
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; events.len()];
        // Copies of one source event inside this call follow the first copy's outcome (a
        // transaction may not touch one marker twice anyway).
        let mut first_copy: HashMap<(Source, &SourceEventId), usize> = HashMap::new();
        let mut copies = Vec::new();
        let mut pending = VecDeque::new();
        for (idx, event) in events.iter().enumerate() {
            match first_copy.get(&(event.source, &event.source_event_id)) {
                Some(first) => copies.push((idx, *first)),
                None => {
                    first_copy.insert((event.source, &event.source_event_id), idx);
                    pending.push_back(idx);
                }
            }
        }

        let mut expected = expected;
        let mut contention = Backoff::contention();
        let mut throttling = Backoff::throttling();
        while !pending.is_empty() {
            let head = self.head(stream).await?;
            let actual = head.map_or(0, |h| h.version);
            let matches = match expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => actual == 0,
                ExpectedVersion::Exact(v) => actual == v,
            };
            if !matches {
                // A retried call whose events are all recorded already is not a conflict.
                let candidates = pending.iter().copied().collect();
                self.settle_recorded(&events, &mut pending, &mut outcomes, candidates)
                    .await?;
                if pending.is_empty() {
                    break;
                }
                return Err(LedgerError::WrongExpectedVersion {
                    stream: stream.clone(),
                    expected,
                    actual,
                });
            }

            let chunk: Vec<usize> = pending
                .iter()
                .take(MAX_EVENTS_PER_TRANSACTION)
                .copied()
                .collect();
            let actions = self.transaction(&events, &chunk, head)?;
            match self.send_transaction(actions).await {
                Ok(None) => {
                    for (offset, idx) in chunk.iter().enumerate() {
                        outcomes[*idx] = Some(AppendOutcome::Appended {
                            version: actual + 1 + offset as u64,
                        });
                    }
                    pending.drain(..chunk.len());
                    if expected != ExpectedVersion::Any {
                        // The next chunk continues exactly where this one ended.
                        expected = ExpectedVersion::Exact(actual + chunk.len() as u64);
                    }
                }
                Ok(Some(codes)) => {
                    // Cancellation reasons come one per action, in request order:
                    // 2i = event i, 2i+1 = its dedupe marker.
                    let failed = |action: usize| codes.get(action).cloned().flatten();
                    let duplicates: Vec<usize> = chunk
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            failed(2 * i + 1).as_deref() == Some("ConditionalCheckFailed")
                        })
                        .map(|(_, idx)| *idx)
                        .collect();
                    if !duplicates.is_empty() {
                        let settled = self
                            .settle_recorded(&events, &mut pending, &mut outcomes, duplicates)
                            .await?;
                        if settled == 0 {
                            // A marker we could not read back yet: wait rather than spin.
                            contention
                                .wait_or_throttled(format!(
                                    "dedupe markers of stream {stream} not readable"
                                ))
                                .await?;
                        }
                        continue;
                    }
                    let lost_race = (0..chunk.len())
                        .any(|i| failed(2 * i).as_deref() == Some("ConditionalCheckFailed"));
                    if lost_race {
                        // Exact/NoStream: the next turn re-reads the head and reports it.
                        contention
                            .wait_or_throttled(format!(
                                "stream {stream} kept moving under concurrent writers"
                            ))
                            .await?;
                        continue;
                    }
                    let reasons: Vec<String> = codes.iter().flatten().cloned().collect();
                    if reasons.iter().all(|c| errors::is_retryable_code(c)) {
                        throttling
                            .wait_or_throttled(format!(
                                "TransactWriteItems cancelled: {}",
                                reasons.join(", ")
                            ))
                            .await?;
                        continue;
                    }
                    return Err(LedgerError::Store(format!(
                        "TransactWriteItems cancelled: {}",
                        reasons.join(", ")
                    )));
                }
                Err(Failure::Retry(detail)) => throttling.wait_or_throttled(detail).await?,
                Err(Failure::Fatal(err)) => return Err(err),
            }
        }

        for (copy, first) in copies {
            let existing = match &outcomes[first] {
                Some(AppendOutcome::Appended { version }) => ExistingEvent {
                    stream_id: stream.clone(),
                    version: *version,
                    event_id: events[first].event_id,
                },
                Some(AppendOutcome::AlreadyRecorded { existing }) => existing.clone(),
                None => unreachable!("every first copy is settled before the loop ends"),
            };
            outcomes[copy] = Some(AppendOutcome::AlreadyRecorded { existing });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every event has an outcome"))
            .collect())
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        self.query_events(
            "Query stream",
            || {
                self.db
                    .query()
                    .table_name(&self.events_table)
                    .key_condition_expression("pk = :pk AND sk >= :from")
                    .expression_attribute_values(":pk", AttributeValue::S(stream.to_string()))
                    .expression_attribute_values(
                        ":from",
                        AttributeValue::N(from_version.to_string()),
                    )
                    .consistent_read(true)
            },
            None,
        )
        .await
    }

    async fn read_all(
        &self,
        from: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Stored times have microseconds: a `from` between two microseconds starts at the next.
        let from = from.map(ceil_to_micros);
        let from_key = from.map(|f| format_timestamp(&f));
        let after_time = match after {
            Some(key) => Some(parse_order_key_time(key)?),
            None => None,
        };
        let lower = match (after, &from_key) {
            (Some(after), Some(from_key)) if from_key.as_str() > after => {
                Lower::From(from_key.clone())
            }
            (Some(after), _) => Lower::After(after.to_string()),
            (None, Some(from_key)) => Lower::From(from_key.clone()),
            // Nothing is older than the ledger's first hour.
            (None, None) => Lower::From(format_timestamp(&self.first_hour)),
        };
        let start = [Some(self.first_hour), from, after_time]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.first_hour);
        // Up to the next hour: another writer's clock may run slightly ahead of ours.
        let end = Utc::now() + TimeDelta::hours(1);
        let mut hour = item::parse_hour(&item::hour_of(&start)).unwrap_or(start);
        let mut events = Vec::new();
        // The by-time index is eventually consistent (GSIs always are): a replay reads what
        // the index holds now; the change feed carries anything that lands later.
        while hour <= end && events.len() < limit {
            let found = self
                .read_hour(&item::hour_of(&hour), &lower, limit - events.len())
                .await?;
            events.extend(found);
            hour += TimeDelta::hours(1);
        }
        Ok(events)
    }

    async fn by_correlation(
        &self,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        self.query_events(
            "Query by-correlation",
            || {
                self.db
                    .query()
                    .table_name(&self.events_table)
                    .index_name(GSI_BY_CORRELATION)
                    .key_condition_expression("correlation_id = :c")
                    .expression_attribute_values(
                        ":c",
                        AttributeValue::S(correlation_id.to_string()),
                    )
                    .scan_index_forward(true)
            },
            None,
        )
        .await
    }

    async fn change_feed(&self, start: FeedStart) -> Result<Box<dyn ChangeFeed>, LedgerError> {
        let feed =
            feed::StreamsFeed::open(self.streams.clone(), self.stream_arn.clone(), start).await?;
        Ok(Box::new(feed))
    }
}

fn parse_order_key_time(key: &str) -> Result<DateTime<Utc>, LedgerError> {
    let time = key.split('#').next().unwrap_or_default();
    DateTime::parse_from_rfc3339(time)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            LedgerError::Store(format!(
                "after: {key:?} is not a global order key (<recorded_at>#<event_id>): {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_between_microseconds_rounds_up() {
        let exact: DateTime<Utc> = "2026-11-26T10:00:00.000001Z".parse().unwrap();
        assert_eq!(ceil_to_micros(exact), exact);
        let between: DateTime<Utc> = "2026-11-26T10:00:00.0000005Z".parse().unwrap();
        assert_eq!(ceil_to_micros(between), exact);
    }

    #[test]
    fn recorded_at_moves_forward_even_when_the_clock_does_not() {
        let now: DateTime<Utc> = "2026-11-26T10:00:00.000001Z".parse().unwrap();
        assert_eq!(next_recorded_at(None, now), now);
        let ahead: DateTime<Utc> = "2026-11-26T10:00:05Z".parse().unwrap();
        assert_eq!(
            next_recorded_at(Some(ahead), now),
            ahead + TimeDelta::microseconds(1)
        );
        assert_eq!(
            next_recorded_at(Some(now), now),
            now + TimeDelta::microseconds(1)
        );
    }
}
