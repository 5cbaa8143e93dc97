//! The event envelope of DESIGN §3 — the wire contract that the ledger stores and ops tools
//! read. `NewEvent` is what a writer proposes; `RecordedEvent` is what the ledger assigned
//! (version, recorded_at). The payload stays raw JSON here so unknown event types and unknown
//! fields survive a round trip untouched; `RecordedEvent::decode` gives the typed view.

use crate::catalogue::{DecodeError, DomainEvent};
use crate::ids::{CorrelationId, EventId, IdError, Source, SourceEventId, StreamId};
use crate::upcast;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Current envelope schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

/// An event as proposed for appending. The ledger assigns `version` and `recorded_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub event_type: String,
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    pub source: Source,
    pub source_event_id: SourceEventId,
    pub correlation_id: CorrelationId,
    #[serde(default)]
    pub causation_id: Option<EventId>,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

fn default_schema_version() -> u32 {
    SCHEMA_VERSION
}

impl NewEvent {
    /// Build an event from a typed domain event, with a fresh event id from the clock: for
    /// the edge (ingest, the rotator, redrive's request), which records what it receives or
    /// does. `source_event_id` is the idempotency key: appending two events with the same
    /// `(source, source_event_id)` records only the first.
    pub fn from_domain(
        stream_id: StreamId,
        source: Source,
        source_event_id: SourceEventId,
        correlation_id: CorrelationId,
        causation_id: Option<EventId>,
        occurred_at: DateTime<Utc>,
        event: &DomainEvent,
    ) -> Self {
        Self::with_id(
            EventId::new(),
            stream_id,
            source,
            source_event_id,
            correlation_id,
            causation_id,
            occurred_at,
            event,
        )
    }

    /// Build an event the core derives (an outcome): like [`NewEvent::from_domain`], but the
    /// event id is [`EventId::derived`] from the dedupe key, so the same inputs always make
    /// the same envelope and a repeat of it is the event already recorded.
    pub fn derived(
        stream_id: StreamId,
        source: Source,
        source_event_id: SourceEventId,
        correlation_id: CorrelationId,
        causation_id: Option<EventId>,
        occurred_at: DateTime<Utc>,
        event: &DomainEvent,
    ) -> Self {
        Self::with_id(
            EventId::derived(source, &source_event_id),
            stream_id,
            source,
            source_event_id,
            correlation_id,
            causation_id,
            occurred_at,
            event,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with_id(
        event_id: EventId,
        stream_id: StreamId,
        source: Source,
        source_event_id: SourceEventId,
        correlation_id: CorrelationId,
        causation_id: Option<EventId>,
        occurred_at: DateTime<Utc>,
        event: &DomainEvent,
    ) -> Self {
        Self {
            event_id,
            stream_id,
            event_type: event.event_type().to_string(),
            schema_version: SCHEMA_VERSION,
            source,
            source_event_id,
            correlation_id,
            causation_id,
            occurred_at,
            payload: event.payload_json(),
        }
    }

    /// An event caused by `cause` (an outcome, a decision): same correlation id, causation
    /// pointing at the cause, and a source event id (and so an event id) derived from the
    /// cause so that re-running the same decision never records its outcome twice.
    pub fn caused_by(
        cause: &RecordedEvent,
        stream_id: StreamId,
        discriminator: &str,
        occurred_at: DateTime<Utc>,
        event: &DomainEvent,
    ) -> Self {
        let source_event_id = SourceEventId::parse(format!("{}:{}", cause.event_id, discriminator))
            .expect("a UUID followed by a non-empty discriminator is a valid source event id");
        Self::derived(
            stream_id,
            Source::System,
            source_event_id,
            cause.correlation_id,
            Some(cause.event_id),
            occurred_at,
            event,
        )
    }
}

/// An event as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub source: Source,
    pub source_event_id: SourceEventId,
    pub correlation_id: CorrelationId,
    #[serde(default)]
    pub causation_id: Option<EventId>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

impl RecordedEvent {
    pub fn from_new(event: NewEvent, version: u64, recorded_at: DateTime<Utc>) -> Self {
        Self {
            event_id: event.event_id,
            stream_id: event.stream_id,
            version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            source: event.source,
            source_event_id: event.source_event_id,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            occurred_at: event.occurred_at,
            recorded_at,
            payload: event.payload,
        }
    }

    /// The typed view of this event, after upcasting older schema versions. Unknown event
    /// types decode to `DomainEvent::Unknown` (kept, never an error).
    pub fn decode(&self) -> Result<DomainEvent, DecodeError> {
        if !upcast::needs_upcast(&self.event_type, self.schema_version) {
            return DomainEvent::decode_ref(&self.event_type, &self.payload);
        }
        let (event_type, payload) =
            upcast::upcast(&self.event_type, self.schema_version, self.payload.clone());
        DomainEvent::decode(&event_type, payload)
    }

    /// Sort key of the global order used by read-all and replay: `recorded_at` then
    /// `event_id`. `recorded_at` is monotonic per stream, so this order respects every
    /// stream's version order.
    pub fn global_order_key(&self) -> String {
        format!("{}#{}", format_timestamp(&self.recorded_at), self.event_id)
    }
}

/// RFC 3339 with fixed microsecond precision and `Z`, so timestamps sort as strings.
pub fn format_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        let json = serde_json::json!({
            "event_id": "01936f0e-7a4c-7b3e-9a55-3c1d2e4f5a6b",
            "stream_id": "crm-account-001",
            "version": 1,
            "event_type": "SomethingFromTheFuture",
            "schema_version": 7,
            "source": "crm",
            "source_event_id": "replay-1",
            "correlation_id": "01936f0e-7a4c-7b3e-9a55-3c1d2e4f5a6c",
            "causation_id": null,
            "occurred_at": "2026-11-26T10:00:00Z",
            "recorded_at": "2026-11-26T10:00:01.000001Z",
            "payload": {"a": 1, "nested": {"kept": true}}
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn unknown_event_types_and_fields_survive_a_round_trip() {
        let event = sample();
        let back: RecordedEvent =
            serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.payload["nested"]["kept"], serde_json::json!(true));
        assert!(matches!(
            event.decode().unwrap(),
            DomainEvent::Unknown { .. }
        ));
    }

    #[test]
    fn timestamps_sort_as_strings() {
        let a = format_timestamp(&"2026-11-26T10:00:00Z".parse().unwrap());
        let b = format_timestamp(&"2026-11-26T10:00:00.5Z".parse().unwrap());
        assert_eq!(a, "2026-11-26T10:00:00.000000Z");
        assert!(a < b);
    }
}
