//! Reading back the records a projector gave up on: DynamoDB Streams GetShardIterator at the
//! range's first sequence number, then GetRecords until past its last. A range holds at most
//! the mapping's batch size (100), so it is read whole; the stream keeps records 24 hours,
//! after which the range is reported as aged out for the consumer to record as such.

use super::message::{sequence_le, StreamBatchInfo};
use crate::ledger::dynamodb::item::decode_event;
use async_trait::async_trait;
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use projections::RecordedEvent;

/// Empty GetRecords pages tolerated before the range is taken as read to its end (an open
/// shard can answer empty while records exist further on).
const MAX_EMPTY_PAGES: usize = 5;

/// What the stream still holds of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeRead {
    /// The ledger events in the range, in stream order (markers and bookkeeping skipped),
    /// and the sequence numbers of event items this build could not decode.
    Events {
        events: Vec<RecordedEvent>,
        unreadable: Vec<String>,
    },
    /// Trimmed (older than the stream's 24 h retention) or the shard is gone.
    AgedOut { detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DynamoDB Streams {operation} failed: {detail}")]
pub struct RangeError {
    pub operation: &'static str,
    pub detail: String,
}

/// The port: reads one shard's sequence range.
#[async_trait]
pub trait StreamRange: Send + Sync {
    async fn read(&self, batch: &StreamBatchInfo) -> Result<RangeRead, RangeError>;
}

/// The DynamoDB Streams implementation.
pub struct DynamoStreamRange {
    client: aws_sdk_dynamodbstreams::Client,
}

impl DynamoStreamRange {
    pub fn new(client: aws_sdk_dynamodbstreams::Client) -> Self {
        Self { client }
    }

    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_dynamodbstreams::Client::new(config))
    }
}

fn aged_out(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TrimmedDataAccessException") | Some("ResourceNotFoundException")
    )
}

fn detail<E: ProvideErrorMetadata + std::fmt::Display>(e: &E) -> String {
    format!(
        "{}: {}",
        e.code().unwrap_or("error"),
        e.message()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string())
    )
}

#[async_trait]
impl StreamRange for DynamoStreamRange {
    async fn read(&self, batch: &StreamBatchInfo) -> Result<RangeRead, RangeError> {
        let iterator = match self
            .client
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&batch.start_sequence_number)
            .send()
            .await
        {
            Ok(out) => out.shard_iterator().map(str::to_string),
            Err(e) if aged_out(e.code()) => return Ok(RangeRead::AgedOut { detail: detail(&e) }),
            Err(e) => {
                return Err(RangeError {
                    operation: "GetShardIterator",
                    detail: detail(&e),
                })
            }
        };
        let mut events = Vec::new();
        let mut unreadable = Vec::new();
        let mut next = iterator;
        let mut empty_pages = 0;
        while let Some(it) = next.take() {
            let out = match self.client.get_records().shard_iterator(it).send().await {
                Ok(out) => out,
                Err(e) if aged_out(e.code()) => {
                    return Ok(RangeRead::AgedOut { detail: detail(&e) })
                }
                Err(e) => {
                    return Err(RangeError {
                        operation: "GetRecords",
                        detail: detail(&e),
                    })
                }
            };
            if out.records().is_empty() {
                empty_pages += 1;
                if empty_pages >= MAX_EMPTY_PAGES {
                    break;
                }
            }
            let mut past_end = false;
            for record in out.records() {
                let Some(change) = record.dynamodb() else {
                    continue;
                };
                let sequence = change.sequence_number().unwrap_or_default();
                if !sequence_le(sequence, &batch.end_sequence_number) {
                    past_end = true;
                    break;
                }
                if !sequence_le(&batch.start_sequence_number, sequence) {
                    continue;
                }
                let Some(image) = change.new_image() else {
                    continue; // a REMOVE: nothing the projector was given
                };
                match decode_event(image.clone()) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => {} // a dedupe marker or bookkeeping: filtered from the mapping
                    Err(e) => {
                        tracing::error!(sequence, error = %e, "a given-up record is not a readable event");
                        unreadable.push(sequence.to_string());
                    }
                }
                if sequence_le(&batch.end_sequence_number, sequence) {
                    past_end = true; // the last record of the range: no need to read on
                    break;
                }
            }
            if past_end {
                break;
            }
            next = out.next_shard_iterator().map(str::to_string);
        }
        Ok(RangeRead::Events { events, unreadable })
    }
}
