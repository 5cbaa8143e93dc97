//! DynamoDB adapter of the `EventLog` port, exactly per DESIGN §3: `<prefix>-events` with
//! idempotent, optimistic appends in TransactWriteItems (`append`, cut into transactions by
//! `chunk`), the `by-correlation` and `by-time` indexes for audit and replay reads (here),
//! DynamoDB Streams as the change feed (`feed`), item shapes (`item`), table definitions
//! (`migrate`) and SDK error mapping (`errors`). It holds no domain logic and never decides
//! what an event means; the append rules both stores follow are `ledger::append_rules`.

mod append;
mod chunk;
mod errors;
mod feed;
pub mod item;
pub mod migrate;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use projections::envelope::format_timestamp;
use projections::{CorrelationId, NewEvent, RecordedEvent, StreamId};

use super::{
    append_rules, AppendFault, AppendOutcome, ChangeFeed, EventLog, ExpectedVersion, FeedStart,
    LedgerError,
};
use errors::{classify, with_retries};
use item::{MetaItem, GSI_BY_CORRELATION, GSI_BY_TIME, META_PK};

pub use migrate::{migrate_with, MigrationReport};

pub use chunk::{MAX_EVENTS_PER_TRANSACTION, MAX_TRANSACTION_BYTES};

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
    append_fault: AppendFault,
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
            append_fault: AppendFault::default(),
        })
    }

    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// The test seam that stops an append between two chunks (see `ledger::fault`).
    pub fn append_fault(&self) -> &AppendFault {
        &self.append_fault
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
}

/// The lower bound of a `read_all`: inclusive `from`, or exclusive `after`.
#[derive(Debug, Clone)]
enum Lower {
    From(String),
    After(String),
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
        self.append_events(stream, expected, events).await
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
        let from = from.map(append_rules::ceil_to_micros);
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
