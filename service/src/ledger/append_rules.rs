//! The rules of an append that every store follows, as pure functions: one stream per call,
//! the expected-version check (made only by a call that writes, so a retried call that
//! already succeeded is not a conflict), where a retried call that stopped part-way resumes,
//! `recorded_at` at microsecond precision and strictly increasing per stream, and the identity
//! of a call. The adapters (`sqlite`, `dynamodb`) own only how they read and write; what an
//! append must do is decided here, once.

use chrono::{DateTime, TimeDelta, Utc};
use projections::{NewEvent, StreamId};
use sha2::{Digest, Sha256};

use super::{ExpectedVersion, LedgerError};

/// Every event of an append must be on the stream it names.
pub fn check_one_stream(stream: &StreamId, events: &[NewEvent]) -> Result<(), LedgerError> {
    match events.iter().find(|e| &e.stream_id != stream) {
        Some(other) => Err(LedgerError::MixedStreams {
            stream: stream.clone(),
            event_id: other.event_id,
            other: other.stream_id.clone(),
        }),
        None => Ok(()),
    }
}

/// Whether a stream whose last version is `actual` satisfies `expected`.
pub fn expected_matches(expected: ExpectedVersion, actual: u64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::Exact(v) => actual == v,
    }
}

/// The expected-version check of a call. Only a call that `writes` something can conflict:
/// duplicates are resolved first, so retrying a call that succeeded (every event already
/// recorded) reports `AlreadyRecorded` rather than `WrongExpectedVersion`.
pub fn check_expected(
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
    writes: bool,
) -> Result<(), LedgerError> {
    if !writes || expected_matches(expected, actual) {
        return Ok(());
    }
    Err(wrong_expected(stream, expected, actual))
}

/// The conflict a writing call at the wrong head reports.
pub fn wrong_expected(stream: &StreamId, expected: ExpectedVersion, actual: u64) -> LedgerError {
    LedgerError::WrongExpectedVersion {
        stream: stream.clone(),
        expected,
        actual,
    }
}

/// Where a retried call resumes when the stream's head (`actual`) is past what it expected.
/// `ours` are the versions, in call order, of this call's events that an earlier try of the
/// same call recorded. If exactly those fill the versions between the expected head and
/// `actual`, nobody else wrote: the earlier try stopped between two chunks, and the rest goes
/// on at `actual` (returned). Anything else is a real conflict (`None`). `Any` never needs it.
pub fn resume_after_partial(expected: ExpectedVersion, actual: u64, ours: &[u64]) -> Option<u64> {
    let base = match expected {
        ExpectedVersion::Any => return None,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => v,
    };
    if ours.is_empty() || base.checked_add(ours.len() as u64) != Some(actual) {
        return None;
    }
    ours.iter()
        .zip(base + 1..)
        .all(|(version, wanted)| *version == wanted)
        .then_some(actual)
}

/// Identifies one append call by its stream and the source identity of its events, in order
/// (not by event ids, which a caller may regenerate on retry): a store that commits a call in
/// several steps records it beside each step, so a retry can tell its own earlier steps from
/// another writer's events. Hex, 32 characters (128 bits of sha256).
pub fn call_id(stream: &StreamId, events: &[NewEvent]) -> String {
    let mut hash = Sha256::new();
    hash.update(stream.as_str().as_bytes());
    for event in events {
        // Control characters as separators: ids never contain them (`SourceEventId::parse`),
        // so the encoding is unambiguous.
        hash.update(b"\n");
        hash.update(event.source.as_str().as_bytes());
        hash.update(b"\t");
        hash.update(event.source_event_id.as_str().as_bytes());
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `at` truncated to microseconds, the precision `recorded_at` is stored with
/// (`projections::envelope::format_timestamp`): the value an append returns or compares is
/// then exactly the stored one.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A `read_all` start between two microseconds begins at the later one: the stored times have
/// microseconds, so the earlier microsecond is before `at` and must not be included.
pub fn ceil_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = truncate_to_micros(at);
    if floor < at {
        floor + TimeDelta::microseconds(1)
    } else {
        floor
    }
}

/// `recorded_at` of the next event of a stream: `now` (already at microseconds), but strictly
/// after the stream's previous event even if the clock stepped back or another writer's clock
/// runs ahead, so the global order `(recorded_at, event_id)` always respects version order.
pub fn next_recorded_at(previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    match previous {
        Some(prev) if prev >= now => prev + TimeDelta::microseconds(1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::{CorrelationId, EventId, Source, SourceEventId};

    fn stream(name: &str) -> StreamId {
        StreamId::parse(format!("crm-account-{name}")).unwrap()
    }

    fn event(on: &StreamId, source_event_id: &str) -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            stream_id: on.clone(),
            event_type: "Probe".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse(source_event_id).unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: serde_json::json!({}),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn an_event_for_another_stream_is_named() {
        let (a, b) = (stream("a"), stream("b"));
        assert!(check_one_stream(&a, &[event(&a, "1"), event(&a, "2")]).is_ok());
        assert!(check_one_stream(&a, &[]).is_ok());
        let stray = event(&b, "3");
        let stray_id = stray.event_id;
        match check_one_stream(&a, &[event(&a, "1"), stray]) {
            Err(LedgerError::MixedStreams {
                stream,
                event_id,
                other,
            }) => {
                assert_eq!((stream, event_id, other), (a, stray_id, b));
            }
            other => panic!("expected MixedStreams, got {other:?}"),
        }
    }

    #[test]
    fn expected_versions_match_as_documented() {
        assert!(expected_matches(ExpectedVersion::Any, 0));
        assert!(expected_matches(ExpectedVersion::Any, 7));
        assert!(expected_matches(ExpectedVersion::NoStream, 0));
        assert!(!expected_matches(ExpectedVersion::NoStream, 1));
        assert!(expected_matches(ExpectedVersion::Exact(3), 3));
        assert!(!expected_matches(ExpectedVersion::Exact(3), 4));
        assert!(!expected_matches(ExpectedVersion::Exact(3), 2));
    }

    #[test]
    fn only_a_call_that_writes_can_conflict() {
        let s = stream("c");
        assert!(check_expected(&s, ExpectedVersion::NoStream, 3, false).is_ok());
        assert!(check_expected(&s, ExpectedVersion::Exact(3), 3, true).is_ok());
        match check_expected(&s, ExpectedVersion::NoStream, 3, true) {
            Err(LedgerError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            }) => assert_eq!(
                (stream, expected, actual),
                (s, ExpectedVersion::NoStream, 3)
            ),
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        }
    }

    #[test]
    fn a_retry_resumes_only_where_its_own_earlier_try_stopped() {
        use ExpectedVersion::{Any, Exact, NoStream};
        let first_chunk: Vec<u64> = (1..=50).collect();
        assert_eq!(resume_after_partial(NoStream, 50, &first_chunk), Some(50));
        let after_ten: Vec<u64> = (11..=60).collect();
        assert_eq!(resume_after_partial(Exact(10), 60, &after_ten), Some(60));
        // Another writer appended after the earlier try: a conflict.
        assert_eq!(resume_after_partial(NoStream, 51, &first_chunk), None);
        // Our events are not where this call expected them (recorded by another call).
        assert_eq!(resume_after_partial(Exact(10), 50, &first_chunk), None);
        assert_eq!(resume_after_partial(NoStream, 2, &[2, 1]), None);
        // Nothing of ours is recorded: someone else moved the stream.
        assert_eq!(resume_after_partial(NoStream, 3, &[]), None);
        assert_eq!(resume_after_partial(Any, 50, &first_chunk), None);
    }

    #[test]
    fn a_call_is_identified_by_its_stream_and_source_events_in_order() {
        let s = stream("d");
        let (e1, e2) = (event(&s, "1"), event(&s, "2"));
        let id = call_id(&s, &[e1.clone(), e2.clone()]);
        assert_eq!(id.len(), 32);
        // Same source events with new event ids (a caller that rebuilt its events): same call.
        assert_eq!(id, call_id(&s, &[event(&s, "1"), event(&s, "2")]));
        assert_ne!(id, call_id(&s, &[e2.clone(), e1.clone()]));
        assert_ne!(id, call_id(&s, std::slice::from_ref(&e1)));
        assert_ne!(id, call_id(&s, &[e1, e2, event(&s, "3")]));
        assert_ne!(
            call_id(&s, &[event(&s, "12")]),
            call_id(&s, &[event(&s, "1")])
        );
    }

    #[test]
    fn times_round_to_the_stored_microsecond() {
        let exact = at("2026-11-26T10:00:00.000001Z");
        let between = at("2026-11-26T10:00:00.0000005Z");
        assert_eq!(truncate_to_micros(exact), exact);
        assert_eq!(truncate_to_micros(between), at("2026-11-26T10:00:00Z"));
        assert_eq!(ceil_to_micros(exact), exact);
        assert_eq!(ceil_to_micros(between), exact);
    }

    #[test]
    fn recorded_at_moves_forward_even_when_the_clock_does_not() {
        let now = at("2026-11-26T10:00:00.000001Z");
        assert_eq!(next_recorded_at(None, now), now);
        let earlier = at("2026-11-26T09:59:59Z");
        assert_eq!(next_recorded_at(Some(earlier), now), now);
        let ahead = at("2026-11-26T10:00:05Z");
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
