//! The DynamoDB item shapes of DESIGN §3 and their codecs: event items, dedupe markers and
//! the `meta#ledger` item, plus the derived index keys (`corr_sk`, `bucket`, `time_sk`).
//! Pure: no SDK calls here, so stream records (SDK or Lambda event) decode the same way.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::envelope::format_timestamp;
use projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ledger::LedgerError;

pub const KIND_EVENT: &str = "event";
pub const KIND_DEDUPE: &str = "dedupe";
pub const KIND_META: &str = "meta";

/// Key of the item that records the ledger's first hour and its `by-time` shard count.
pub const META_PK: &str = "meta#ledger";

/// `by-time` shards per hour written by new ledgers. Readers use the count stored in
/// `meta#ledger`, so changing this never hides events already written.
pub const DEFAULT_BY_TIME_SHARDS: u32 = 4;

pub const GSI_BY_CORRELATION: &str = "by-correlation";
pub const GSI_BY_TIME: &str = "by-time";

/// One event as stored. Every envelope field is its own attribute so ops tools can read the
/// table directly; `payload` is JSON text because a DynamoDB map would lose key order and
/// cannot hold every JSON number (the ledger keeps payloads verbatim).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventItem {
    pub pk: String,
    pub sk: u64,
    pub kind: String,
    pub event_id: String,
    pub stream_id: String,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub source: String,
    pub source_event_id: String,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub occurred_at: String,
    pub recorded_at: String,
    pub payload: String,
    pub corr_sk: String,
    pub bucket: String,
    pub time_sk: String,
}

/// The idempotency marker of one `(source, source_event_id)`; points at the original event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupeItem {
    pub pk: String,
    pub sk: u64,
    pub kind: String,
    pub stream_id: String,
    pub version: u64,
    pub event_id: String,
    pub recorded_at: String,
    /// The append call (`append_rules::call_id`) that recorded it, only when that call took
    /// more than one transaction: a retry of the call resumes after its own committed chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_call: Option<String>,
}

/// Ledger-wide facts the readers need: where `read_all` starts and how many shards it scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaItem {
    pub pk: String,
    pub sk: u64,
    pub kind: String,
    /// `YYYY-MM-DDTHH` of the migration: no event is older.
    pub first_hour: String,
    pub by_time_shards: u32,
}

impl MetaItem {
    pub fn new(first_hour: DateTime<Utc>, by_time_shards: u32) -> Self {
        Self {
            pk: META_PK.to_string(),
            sk: 0,
            kind: KIND_META.to_string(),
            first_hour: hour_of(&first_hour),
            by_time_shards,
        }
    }

    pub fn first_hour(&self) -> Result<DateTime<Utc>, LedgerError> {
        parse_hour(&self.first_hour).ok_or_else(|| LedgerError::Corrupt {
            key: META_PK.to_string(),
            reason: format!("first_hour {:?} is not YYYY-MM-DDTHH", self.first_hour),
        })
    }
}

pub fn dedupe_pk(source: Source, source_event_id: &SourceEventId) -> String {
    format!("dedupe#{}#{}", source.as_str(), source_event_id.as_str())
}

/// `YYYY-MM-DDTHH`, the hour part of a `by-time` bucket.
pub fn hour_of(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H").to_string()
}

pub fn parse_hour(hour: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|naive| naive.and_utc())
}

/// `YYYY-MM-DDTHH#<shard>`; the shard spreads one hour's writes over several partitions.
pub fn bucket(hour: &str, shard: u32) -> String {
    format!("{hour}#{shard}")
}

/// Stable across builds and platforms (unlike `std`'s hasher): a stream always lands in the
/// same shard, which keeps its events' order visible inside one bucket.
pub fn shard_of(stream: &StreamId, shards: u32) -> u32 {
    let digest = Sha256::digest(stream.as_str().as_bytes());
    let prefix = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    prefix % shards.max(1)
}

/// The item of `event` recorded as `version` at `recorded_at`.
pub fn event_item(
    event: &NewEvent,
    version: u64,
    recorded_at: &DateTime<Utc>,
    by_time_shards: u32,
) -> EventItem {
    let recorded = format_timestamp(recorded_at);
    let order_key = format!("{recorded}#{}", event.event_id);
    EventItem {
        pk: event.stream_id.as_str().to_string(),
        sk: version,
        kind: KIND_EVENT.to_string(),
        event_id: event.event_id.to_string(),
        stream_id: event.stream_id.as_str().to_string(),
        version,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        source: event.source.as_str().to_string(),
        source_event_id: event.source_event_id.as_str().to_string(),
        correlation_id: event.correlation_id.to_string(),
        causation_id: event.causation_id.map(|id| id.to_string()),
        // Nanoseconds: a source's timestamp is kept exactly as given.
        occurred_at: event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        recorded_at: recorded,
        payload: event.payload.to_string(),
        corr_sk: order_key.clone(),
        bucket: bucket(
            &hour_of(recorded_at),
            shard_of(&event.stream_id, by_time_shards),
        ),
        time_sk: order_key,
    }
}

pub fn dedupe_item(event: &NewEvent, version: u64, recorded_at: &DateTime<Utc>) -> DedupeItem {
    DedupeItem {
        pk: dedupe_pk(event.source, &event.source_event_id),
        sk: 0,
        kind: KIND_DEDUPE.to_string(),
        stream_id: event.stream_id.as_str().to_string(),
        version,
        event_id: event.event_id.to_string(),
        recorded_at: format_timestamp(recorded_at),
        append_call: None,
    }
}

/// An upper bound of the size DynamoDB counts for an item (attribute names plus values)
/// holding only strings and numbers, as ledger items do. A number is counted as its text plus
/// one byte, which is at least DynamoDB's `ceil(significant digits / 2) + 1`.
pub fn item_size_bound(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len() + 1,
                    // Not written by the ledger; counted generously rather than refused.
                    other => format!("{other:?}").len(),
                }
        })
        .sum()
}

impl EventItem {
    pub fn into_event(self) -> Result<RecordedEvent, LedgerError> {
        let key = format!("{}/{}", self.pk, self.sk);
        let corrupt = |reason: String| LedgerError::Corrupt {
            key: key.clone(),
            reason,
        };
        if self.kind != KIND_EVENT {
            return Err(corrupt(format!("kind is {:?}, not \"event\"", self.kind)));
        }
        let time = |field: &str, value: &str| {
            DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(format!("{field} {value:?}: {e}")))
        };
        Ok(RecordedEvent {
            event_id: EventId::parse(&self.event_id).map_err(|e| corrupt(e.to_string()))?,
            stream_id: StreamId::parse(self.stream_id).map_err(|e| corrupt(e.to_string()))?,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            source: parse_source(&self.source).map_err(corrupt)?,
            source_event_id: SourceEventId::parse(self.source_event_id)
                .map_err(|e| corrupt(e.to_string()))?,
            correlation_id: CorrelationId::parse(&self.correlation_id)
                .map_err(|e| corrupt(e.to_string()))?,
            causation_id: self
                .causation_id
                .as_deref()
                .map(EventId::parse)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            occurred_at: time("occurred_at", &self.occurred_at)?,
            recorded_at: time("recorded_at", &self.recorded_at)?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?,
        })
    }
}

fn parse_source(value: &str) -> Result<Source, String> {
    Source::parse(value).map_err(|e| e.to_string())
}

/// Decodes an item of the events table (from the SDK, DynamoDB Streams or a Lambda stream
/// event). `Ok(None)` for items that are not events (dedupe markers, `meta#ledger`).
pub fn decode_event<I>(item: I) -> Result<Option<RecordedEvent>, LedgerError>
where
    I: Into<serde_dynamo::Item>,
{
    let item: serde_dynamo::Item = item.into();
    let kind = match item.get("kind") {
        Some(serde_dynamo::AttributeValue::S(kind)) => kind.clone(),
        _ => String::new(),
    };
    if kind != KIND_EVENT {
        return Ok(None);
    }
    let key = describe_key(&item);
    let event: EventItem = serde_dynamo::from_item(item).map_err(|e| LedgerError::Corrupt {
        key,
        reason: e.to_string(),
    })?;
    event.into_event().map(Some)
}

fn describe_key(item: &serde_dynamo::Item) -> String {
    let text = |name: &str| match item.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
        Some(serde_dynamo::AttributeValue::N(n)) => n.clone(),
        _ => "?".to_string(),
    };
    format!("{}/{}", text("pk"), text("sk"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            stream_id: StreamId::parse("crm-account-001").unwrap(),
            event_type: "SomethingNew".into(),
            schema_version: 3,
            source: Source::Billing,
            source_event_id: SourceEventId::parse("evt-1").unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: Some(EventId::new()),
            occurred_at: "2026-11-26T10:00:00.123456789Z".parse().unwrap(),
            payload: json!({"z": 1, "a": {"n": [1, 2.5, null]}, "big": 18446744073709551615u64}),
        }
    }

    #[test]
    fn event_items_round_trip_through_attribute_values() {
        let event = sample();
        let at: DateTime<Utc> = "2026-11-26T11:22:33.444555Z".parse().unwrap();
        let item = event_item(&event, 7, &at, 4);
        assert_eq!(
            item.bucket,
            format!("2026-11-26T11#{}", shard_of(&event.stream_id, 4))
        );
        assert_eq!(
            item.time_sk,
            format!("2026-11-26T11:22:33.444555Z#{}", event.event_id)
        );
        let attrs: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&item).unwrap();
        let back = decode_event(attrs).unwrap().unwrap();
        assert_eq!(back, RecordedEvent::from_new(event, 7, at));
        assert_eq!(
            back.payload.to_string(),
            r#"{"z":1,"a":{"n":[1,2.5,null]},"big":18446744073709551615}"#
        );
    }

    #[test]
    fn lambda_stream_images_decode_like_sdk_items() {
        // A DynamoDB stream event handed to a Lambda carries `serde_dynamo::Item` images.
        let event = sample();
        let at: DateTime<Utc> = "2026-11-26T11:22:33.444555Z".parse().unwrap();
        let image: serde_dynamo::Item =
            serde_dynamo::to_item(event_item(&event, 3, &at, 4)).unwrap();
        let record: aws_lambda_events::dynamodb::EventRecord = serde_json::from_value(json!({
            "eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
            "eventVersion": "1.1", "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1764156153.0,
                "Keys": {"pk": {"S": "crm-account-001"}, "sk": {"N": "3"}},
                "NewImage": serde_json::to_value(&image).unwrap(),
                "SequenceNumber": "100", "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"
            }
        }))
        .unwrap();
        let back = decode_event(record.change.new_image).unwrap().unwrap();
        assert_eq!(back, RecordedEvent::from_new(event, 3, at));
    }

    #[test]
    fn markers_and_meta_items_are_not_events() {
        let event = sample();
        let at = Utc::now();
        let marker: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(dedupe_item(&event, 1, &at)).unwrap();
        assert_eq!(decode_event(marker).unwrap(), None);
        let meta: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(MetaItem::new(at, 4)).unwrap();
        assert_eq!(decode_event(meta).unwrap(), None);
    }

    #[test]
    fn a_broken_event_item_is_reported_as_corrupt_with_its_key() {
        let at = Utc::now();
        let mut item = event_item(&sample(), 2, &at, 4);
        item.payload = "{not json".into();
        let attrs: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&item).unwrap();
        match decode_event(attrs) {
            Err(LedgerError::Corrupt { key, reason }) => {
                assert_eq!(key, "crm-account-001/2");
                assert!(reason.contains("payload"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn shards_are_stable_across_builds() {
        // Pinned (SHA-256 prefix) so that a change of hash is a deliberate one: writers of
        // different builds must agree on where a stream's events of an hour live.
        let subscription = StreamId::parse("billing-subscription-A-S0001").unwrap();
        let account = StreamId::parse("crm-account-001Dn00000AcmeIAH").unwrap();
        assert_eq!(shard_of(&subscription, 4), 1);
        assert_eq!(shard_of(&account, 4), 3);
        assert_eq!(shard_of(&account, 16), 11);
        assert_eq!(
            hour_of(&parse_hour("2026-01-02T03").unwrap()),
            "2026-01-02T03"
        );
    }
}
