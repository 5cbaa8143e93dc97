//! Permanent ingest failures: the typed `Rejection` (field + reason) and the `IngestRejected`
//! ledger event that keeps the raw body, so a poison record is recorded once and never lost.
//! Nothing here decides whether a failure is permanent; callers only build rejections for
//! problems that retrying the same bytes cannot fix.

use super::Channel;
use chrono::{DateTime, Utc};
use projections::catalogue::{Extra, IngestRejected};
use projections::{CorrelationId, DomainEvent, NewEvent, Source, SourceEventId, StreamId};
use sha2::{Digest, Sha256};

/// How much of a raw body an `IngestRejected` event keeps. DynamoDB items are capped at
/// 400 KB, so the ledger keeps the head and the on-failure destination keeps the whole.
pub const RAW_CAP: usize = 64 * 1024;

/// Why a record cannot be ingested, naming the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct Rejection {
    pub field: Option<String>,
    pub reason: String,
}

impl Rejection {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            reason: reason.into(),
        }
    }

    /// A rejection of the record as a whole (not valid JSON, unknown shape).
    pub fn whole(reason: impl Into<String>) -> Self {
        Self {
            field: None,
            reason: reason.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::new(field, "is required but missing")
    }
}

/// Hex sha256 of the raw body: the rejection's idempotency key, so a redelivered poison
/// message is recorded once whatever channel or day it comes back on.
pub fn raw_digest(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Whether `raw` is longer than what an `IngestRejected` event keeps.
pub fn exceeds_cap(raw: &[u8]) -> bool {
    raw.len() > RAW_CAP
}

/// The `IngestRejected` event for a raw record, on the day's rejection stream
/// `system-ingest-rejected-<yyyy-mm-dd>`.
pub fn rejection_event(
    channel: Channel,
    raw: &[u8],
    rejection: &Rejection,
    now: DateTime<Utc>,
) -> NewEvent {
    let digest = raw_digest(raw);
    let text = String::from_utf8_lossy(raw);
    let kept = truncate_at_char_boundary(&text, RAW_CAP);
    let mut extra = Extra::new();
    extra.insert("raw_sha256".to_string(), digest.clone().into());
    let payload = IngestRejected {
        channel: channel.as_str().to_string(),
        field: rejection.field.clone(),
        reason: rejection.reason.clone(),
        raw: kept.to_string(),
        raw_len: raw.len(),
        raw_truncated: kept.len() < text.len(),
        extra,
    };
    let stream = StreamId::parse(format!("system-ingest-rejected-{}", now.format("%Y-%m-%d")))
        .expect("a fixed prefix and a date form a valid stream id");
    let source_event_id = SourceEventId::parse(format!("ingest-rejected:sha256:{digest}"))
        .expect("a fixed prefix and a hex digest form a valid source event id");
    NewEvent::from_domain(
        stream,
        Source::System,
        source_event_id,
        CorrelationId::new(),
        None,
        now,
        &DomainEvent::IngestRejected(payload),
    )
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_of_the_same_bytes_has_the_same_idempotency_key() {
        let now = Utc::now();
        let r = Rejection::missing("detail.payload");
        let a = rejection_event(Channel::Sqs, b"{oops", &r, now);
        let b = rejection_event(Channel::Cli, b"{oops", &r, now);
        assert_eq!(a.source_event_id, b.source_event_id);
        assert_ne!(a.event_id, b.event_id);
        assert!(a.stream_id.as_str().starts_with("system-ingest-rejected-"));
        assert_eq!(a.payload["field"], "detail.payload");
        assert_eq!(a.payload["raw"], "{oops");
        assert_eq!(a.payload["raw_truncated"], false);
    }

    #[test]
    fn oversized_raw_is_capped_on_a_char_boundary_and_says_so() {
        let raw = "é".repeat(RAW_CAP); // 2 bytes each
        let e = rejection_event(
            Channel::Sqs,
            raw.as_bytes(),
            &Rejection::whole("too big"),
            Utc::now(),
        );
        let kept = e.payload["raw"].as_str().unwrap();
        assert!(kept.len() <= RAW_CAP);
        assert_eq!(e.payload["raw_len"], raw.len());
        assert_eq!(e.payload["raw_truncated"], true);
        assert!(exceeds_cap(raw.as_bytes()));
    }

    #[test]
    fn rejection_message_names_the_field() {
        assert_eq!(
            Rejection::missing("eventId").to_string(),
            "eventId: is required but missing"
        );
        assert_eq!(Rejection::whole("not JSON").to_string(), "not JSON");
    }
}
