//! Decoding one `ledger ingest` input line: a ledger envelope (DESIGN §3, read field by field
//! so a rejection names the field), or a raw source record handed to the source mappers
//! (EventBridge / Zuora callout, or an SQS dump of those). Pure: no I/O, nothing appended.

use super::fields::{self, Obj};
use super::{self as sources, split_raw, Mapped, Rejection};
use chrono::{DateTime, Utc};
use projections::{
    CorrelationId, DomainEvent, EventId, EventType, NewEvent, Source, SourceEventId, StreamId,
};
use serde_json::Value;

/// One record of an input line, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    pub id: Option<String>,
    /// The record's raw text, kept in the rejection event if it cannot be ingested.
    pub raw: String,
    pub mapped: Mapped,
}

/// Decodes one input line. A line is usually one record; an SQS event or receive-message
/// dump is one record per message. Decoders are tried in order; add new source formats to
/// `decode_record`.
pub fn decode_line(line: &str, now: DateTime<Utc>) -> Vec<DecodedRecord> {
    split_raw(line)
        .into_iter()
        .map(|record| DecodedRecord {
            mapped: decode_record(&record.body, now),
            id: record.id,
            raw: record.body,
        })
        .collect()
}

fn decode_record(body: &str, now: DateTime<Utc>) -> Mapped {
    let value: Value =
        serde_json::from_str(body).map_err(|e| Rejection::whole(format!("not JSON: {e}")))?;
    if looks_like_envelope(&value) {
        decode_envelope(&value).map(|e| vec![e])
    } else if sources::eventbridge::looks_like(&value) || sources::zuora::looks_like(&value) {
        sources::map_body(body, now)
    } else {
        Err(Rejection::whole(
            "unknown shape: expected a ledger event envelope (stream_id, source, \
             source_event_id, event_type, occurred_at, payload), an EventBridge event or a \
             Zuora callout",
        ))
    }
}

/// A ledger envelope names its stream and idempotency key; raw source records never do.
fn looks_like_envelope(value: &Value) -> bool {
    value.get("stream_id").is_some() || value.get("source_event_id").is_some()
}

/// A `NewEvent` envelope (DESIGN §3), read field by field so a rejection names the field.
/// `event_id` is generated when absent (idempotency rests on `source_event_id`), and a
/// missing `correlation_id` starts a new trace. Payloads of known event types must decode;
/// unknown types are kept as given.
pub fn decode_envelope(value: &Value) -> Result<NewEvent, Rejection> {
    let obj = Obj::at(value, "")?;
    let id_err = |field: &str, e: projections::IdError| Rejection::new(field, id_reason(e));
    let event_id = match obj.str_opt("event_id")? {
        Some(text) => EventId::parse(text).map_err(|e| id_err("event_id", e))?,
        None => EventId::new(),
    };
    let stream_id =
        StreamId::parse(obj.str_req("stream_id")?).map_err(|e| id_err("stream_id", e))?;
    let event_type = obj.str_req("event_type")?.to_string();
    let schema_version = match obj.get("schema_version") {
        None => projections::envelope::SCHEMA_VERSION,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Rejection::new(
                    "schema_version",
                    format!("must be a non-negative integer, got {v}"),
                )
            })?,
    };
    let source = Source::parse(obj.str_req("source")?).map_err(|e| id_err("source", e))?;
    let source_event_id = SourceEventId::parse(obj.str_req("source_event_id")?)
        .map_err(|e| id_err("source_event_id", e))?;
    let correlation_id = match obj.str_opt("correlation_id")? {
        Some(text) => {
            CorrelationId::from_source_text(text).map_err(|e| id_err("correlation_id", e))?
        }
        None => CorrelationId::new(),
    };
    let causation_id = obj
        .str_opt("causation_id")?
        .map(EventId::parse)
        .transpose()
        .map_err(|e| id_err("causation_id", e))?;
    let occurred_at = fields::timestamp(
        obj.get("occurred_at")
            .ok_or_else(|| Rejection::missing("occurred_at"))?,
        "occurred_at",
    )?;
    let payload = obj
        .get("payload")
        .ok_or_else(|| Rejection::missing("payload"))?
        .clone();
    if EventType::parse(&event_type).is_some() {
        let (current_type, current) =
            projections::upcast::upcast(&event_type, schema_version, payload.clone());
        DomainEvent::decode(&current_type, current).map_err(|e| payload_rejection(&e.reason))?;
    }
    Ok(NewEvent {
        event_id,
        stream_id,
        event_type,
        schema_version,
        source,
        source_event_id,
        correlation_id,
        causation_id,
        occurred_at,
        payload,
    })
}

/// The id types put the field name in their message; the rejection names it already.
fn id_reason(e: projections::IdError) -> String {
    match e {
        projections::IdError::Empty { .. } => "must not be empty".to_string(),
        projections::IdError::Invalid { reason, value, .. } => format!("{reason} (got {value:?})"),
    }
}

/// serde names a missing field in backticks (``missing field `account_id` ``); turn that
/// into the field's path. Other payload errors name the payload as a whole.
fn payload_rejection(reason: &str) -> Rejection {
    let named = |prefix: &str| {
        reason
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`'))
            .and_then(|rest| rest.split('`').next())
            .map(|field| format!("payload.{field}"))
    };
    if let Some(field) = named("missing field ") {
        Rejection::missing(&field)
    } else {
        Rejection::new("payload", reason.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({
            "stream_id": "crm-account-001",
            "event_type": "CrmAccountUpserted",
            "source": "crm",
            "source_event_id": "replay-1",
            "occurred_at": "2026-11-26T09:00:00Z",
            "payload": {"account_id": "001", "name": "Acme"}
        })
    }

    #[test]
    fn a_complete_envelope_decodes_with_generated_ids() {
        let event = decode_envelope(&envelope()).unwrap();
        assert_eq!(event.stream_id.as_str(), "crm-account-001");
        assert_eq!(event.schema_version, 1);
        assert_eq!(event.payload["name"], "Acme");
    }

    #[test]
    fn a_missing_payload_field_of_a_known_type_is_named() {
        let mut v = envelope();
        v["payload"].as_object_mut().unwrap().remove("account_id");
        let r = decode_envelope(&v).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("payload.account_id"));
    }

    #[test]
    fn bad_envelope_fields_are_named() {
        for (field, bad) in [
            ("source", json!("erp")),
            ("stream_id", json!("")),
            ("correlation_id", json!(5)),
            ("occurred_at", json!("yesterday")),
            ("event_id", json!("not-a-uuid")),
        ] {
            let mut v = envelope();
            v[field] = bad;
            let r = decode_envelope(&v).unwrap_err();
            assert_eq!(r.field.as_deref(), Some(field), "{r}");
        }
        let mut v = envelope();
        v.as_object_mut().unwrap().remove("source_event_id");
        assert_eq!(
            decode_envelope(&v).unwrap_err().to_string(),
            "source_event_id: is required but missing"
        );
    }

    #[test]
    fn unknown_event_types_are_kept_as_given() {
        let mut v = envelope();
        v["event_type"] = json!("FromTheFuture");
        v["payload"] = json!({"anything": [1, 2]});
        assert_eq!(
            decode_envelope(&v).unwrap().payload,
            json!({"anything": [1, 2]})
        );
    }

    #[test]
    fn lines_that_are_not_json_or_of_no_known_shape_are_rejected() {
        let now = Utc::now();
        let bad = decode_line("{oops", now);
        assert!(bad[0]
            .mapped
            .as_ref()
            .unwrap_err()
            .reason
            .contains("not JSON"));
        let odd = decode_line(r#"{"hello": 1}"#, now);
        assert!(odd[0]
            .mapped
            .as_ref()
            .unwrap_err()
            .reason
            .contains("unknown shape"));
    }
}
