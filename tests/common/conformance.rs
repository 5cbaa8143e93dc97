//! The `EventLog` conformance suite: store-agnostic test bodies every adapter must pass
//! (`conformance_sqlite.rs`, `conformance_dynamodb.rs`). Bodies use fresh uuid stream ids, so
//! they may share one store and run concurrently; they must never assume an empty store.
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use sync_ledger::ledger::{
    AppendFault, AppendOutcome, EventLog, ExistingEvent, ExpectedVersion, FeedStart, LedgerError,
    StreamAppend,
};

/// Every body, by name: `conformance_tests!(fresh_store)` runs each one as a `#[tokio::test]`
/// against the store `fresh_store().await` returns (anything that derefs to `dyn EventLog`
/// and has an `append_fault()` method returning the store's `AppendFault` test seam).
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            duplicate_append_records_once,
            duplicates_within_one_append_record_once,
            retried_exact_append_reports_already_recorded,
            concurrent_appenders_get_gapless_versions,
            exact_expected_version_conflict_names_stream_and_versions,
            no_stream_expected_version_conflicts_on_existing_stream,
            append_of_250_events_is_gapless,
            events_for_another_stream_are_refused,
            batched_append_is_atomic_per_stream_and_deduped,
            read_stream_from_a_version,
            recorded_at_is_monotonic_per_stream,
            read_all_order_is_deterministic_and_pages_cover_everything_once,
            correlation_query_returns_all_and_only_its_events_in_order,
            change_feed_delivers_every_event_in_stream_order,
            change_feed_resumes_after_a_position,
            unknown_event_types_and_fields_are_preserved_verbatim,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn a_retry_completes_an_append_that_failed_part_way() {
            let store = $fresh().await;
            $crate::common::conformance::a_retry_completes_an_append_that_failed_part_way(
                &*store,
                store.append_fault(),
            )
            .await;
        }
    };
    (@each $fresh:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store = $fresh().await;
                $crate::common::conformance::$name(&*store).await;
            }
        )*
    };
}

// ------------------------------------------------------------------------ helpers

/// A stream id no other test uses.
pub fn unique_stream(entity: &str) -> StreamId {
    StreamId::parse(format!("crm-{entity}-{}", uuid::Uuid::new_v4())).unwrap()
}

/// A source event id no other test uses.
pub fn unique_source_id(label: &str) -> SourceEventId {
    SourceEventId::parse(format!("{label}-{}", uuid::Uuid::new_v4())).unwrap()
}

/// An event of a type no build knows (the ledger must store it as given).
pub fn probe(stream: &StreamId, source_event_id: &SourceEventId) -> NewEvent {
    probe_with(stream, source_event_id, CorrelationId::new(), None)
}

pub fn probe_with(
    stream: &StreamId,
    source_event_id: &SourceEventId,
    correlation_id: CorrelationId,
    causation_id: Option<EventId>,
) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        stream_id: stream.clone(),
        event_type: "ConformanceProbe".to_string(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: source_event_id.clone(),
        correlation_id,
        causation_id,
        occurred_at: Utc::now(),
        payload: json!({ "source_event_id": source_event_id.as_str() }),
    }
}

/// `n` events with fresh source event ids.
pub fn probes(stream: &StreamId, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| probe(stream, &unique_source_id(&format!("probe{i}"))))
        .collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn appended_versions(outcomes: &[AppendOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Appended { version } => Some(*version),
            AppendOutcome::AlreadyRecorded { .. } => None,
        })
        .collect()
}

/// A lower bound for `recorded_at` of anything appended after this call.
fn just_before_now() -> DateTime<Utc> {
    Utc::now() - TimeDelta::milliseconds(5)
}

fn assert_wrong_expected(
    result: Result<Vec<AppendOutcome>, LedgerError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(LedgerError::WrongExpectedVersion {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(&s, stream);
            assert_eq!(e, expected);
            assert_eq!(a, actual);
        }
        other => panic!("expected WrongExpectedVersion {{ actual: {actual} }}, got {other:?}"),
    }
}

// ------------------------------------------------------------------------ append

pub async fn duplicate_append_records_once(log: &dyn EventLog) {
    let stream = unique_stream("dup");
    let sid = unique_source_id("replay");
    let first = probe(&stream, &sid);
    let first_id = first.event_id;
    let out = log
        .append(&stream, ExpectedVersion::Any, vec![first.clone()])
        .await
        .unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended { version: 1 }]);

    // A redelivery gets a new event id; a retried call resends the same event. Both are the
    // same source event and must not be recorded again.
    let redelivered = probe(&stream, &sid);
    for again in [redelivered, first] {
        let out = log
            .append(&stream, ExpectedVersion::Any, vec![again])
            .await
            .unwrap();
        match &out[..] {
            [AppendOutcome::AlreadyRecorded { existing }] => {
                assert_eq!(existing.stream_id, stream);
                assert_eq!(existing.version, 1);
                assert_eq!(existing.event_id, first_id);
            }
            other => panic!("expected AlreadyRecorded, got {other:?}"),
        }
    }

    // The same source event id under another source is a different event.
    let mut billing = probe(&stream, &sid);
    billing.source = Source::Billing;
    let out = log
        .append(&stream, ExpectedVersion::Any, vec![billing])
        .await
        .unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended { version: 2 }]);

    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(versions(&stored), vec![1, 2]);
    assert_eq!(stored[0].event_id, first_id);
}

pub async fn duplicates_within_one_append_record_once(log: &dyn EventLog) {
    let stream = unique_stream("dupcall");
    let a = unique_source_id("a");
    let b = unique_source_id("b");
    let events = vec![
        probe(&stream, &a),
        probe(&stream, &a),
        probe(&stream, &b),
        probe(&stream, &a),
    ];
    let first_a = events[0].event_id;
    let out = log
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    assert_eq!(out.len(), 4, "one outcome per event, in order: {out:?}");
    assert_eq!(out[0], AppendOutcome::Appended { version: 1 });
    assert_eq!(out[2], AppendOutcome::Appended { version: 2 });
    for dup in [&out[1], &out[3]] {
        match dup {
            AppendOutcome::AlreadyRecorded { existing } => {
                assert_eq!(existing.version, 1);
                assert_eq!(existing.event_id, first_a);
                assert_eq!(existing.stream_id, stream);
            }
            other => panic!("expected AlreadyRecorded, got {other:?}"),
        }
    }
    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(
        versions(&stored),
        vec![1, 2],
        "duplicates consume no version"
    );
    assert_eq!(stored[1].source_event_id, b);
}

pub async fn retried_exact_append_reports_already_recorded(log: &dyn EventLog) {
    let stream = unique_stream("retry");
    let events = probes(&stream, 3);
    log.append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    // The caller did not see the first response and retries with the same expectation:
    // every method is safe to retry, so this is "already recorded", not a conflict.
    let out = log
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert!(
        out.iter().all(|o| !o.is_appended()),
        "a retry records nothing: {out:?}"
    );
    // A retry that also carries a new event is a real conflict and records nothing.
    let mut with_new = events;
    with_new.push(probe(&stream, &unique_source_id("new")));
    assert_wrong_expected(
        log.append(&stream, ExpectedVersion::Exact(0), with_new)
            .await,
        &stream,
        ExpectedVersion::Exact(0),
        3,
    );
    assert_eq!(
        versions(&log.read_stream(&stream, 1).await.unwrap()),
        vec![1, 2, 3]
    );
}

pub async fn concurrent_appenders_get_gapless_versions(log: &dyn EventLog) {
    const WRITERS: usize = 8;
    const EACH: usize = 12;
    let stream = unique_stream("race");
    let writers = (0..WRITERS).map(|w| {
        let stream = stream.clone();
        async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let event = probe(&stream, &unique_source_id(&format!("w{w}-{i}")));
                let id = event.event_id;
                let out = log
                    .append(&stream, ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap();
                assert!(out[0].is_appended(), "writer {w} event {i}: {out:?}");
                mine.push(id);
            }
            mine
        }
    });
    let written: Vec<EventId> = join_all(writers).await.into_iter().flatten().collect();
    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(
        versions(&stored),
        (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>()
    );
    let stored_ids: HashSet<EventId> = stored.iter().map(|e| e.event_id).collect();
    let written_ids: HashSet<EventId> = written.into_iter().collect();
    assert_eq!(stored_ids, written_ids, "no event lost or invented");
}

pub async fn exact_expected_version_conflict_names_stream_and_versions(log: &dyn EventLog) {
    let stream = unique_stream("exact");
    log.append(&stream, ExpectedVersion::Exact(0), probes(&stream, 2))
        .await
        .unwrap();
    let out = log
        .append(&stream, ExpectedVersion::Exact(2), probes(&stream, 1))
        .await
        .unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended { version: 3 }]);
    for stale in [1, 2, 7] {
        assert_wrong_expected(
            log.append(&stream, ExpectedVersion::Exact(stale), probes(&stream, 1))
                .await,
            &stream,
            ExpectedVersion::Exact(stale),
            3,
        );
    }
    assert_eq!(
        versions(&log.read_stream(&stream, 1).await.unwrap()),
        vec![1, 2, 3]
    );
}

pub async fn no_stream_expected_version_conflicts_on_existing_stream(log: &dyn EventLog) {
    let stream = unique_stream("nostream");
    let out = log
        .append(&stream, ExpectedVersion::NoStream, probes(&stream, 1))
        .await
        .unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended { version: 1 }]);
    assert_wrong_expected(
        log.append(&stream, ExpectedVersion::NoStream, probes(&stream, 2))
            .await,
        &stream,
        ExpectedVersion::NoStream,
        1,
    );
    assert_eq!(
        versions(&log.read_stream(&stream, 1).await.unwrap()),
        vec![1]
    );
}

pub async fn append_of_250_events_is_gapless(log: &dyn EventLog) {
    let stream = unique_stream("big");
    let events = probes(&stream, 250);
    let ids: Vec<EventId> = events.iter().map(|e| e.event_id).collect();
    let out = log
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    assert_eq!(appended_versions(&out), (1..=250).collect::<Vec<_>>());
    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(versions(&stored), (1..=250).collect::<Vec<_>>());
    assert_eq!(
        stored.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids,
        "stored in the order given"
    );
}

/// An append of more events than DynamoDB commits in one transaction fails after its first
/// chunk (the seam stops it; DynamoDB keeps that chunk, SQLite rolls the whole append back).
/// Every method is safe to retry: the same call again completes the append at the versions
/// the first call would have given, reporting what the failed call did record as such.
pub async fn a_retry_completes_an_append_that_failed_part_way(
    log: &dyn EventLog,
    fault: &AppendFault,
) {
    const EVENTS: usize = 120;
    let stream = unique_stream("partial");
    let events = probes(&stream, EVENTS);
    let ids: Vec<EventId> = events.iter().map(|e| e.event_id).collect();

    fault.fail_after_events(50);
    let failed = log
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await;
    match &failed {
        Err(e) => assert!(e.is_transient(), "an outage is transient: {e:?}"),
        Ok(out) => panic!("the armed fault must fail the append, got {out:?}"),
    }
    let partial = log.read_stream(&stream, 1).await.unwrap();
    let kept = partial.len();
    assert!(kept < EVENTS, "the failed call did not finish: {kept}");
    assert_eq!(versions(&partial), (1..=kept as u64).collect::<Vec<_>>());
    assert_eq!(
        partial.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids[..kept],
        "what the failed call kept is a prefix of it"
    );

    // The caller retries the very same call.
    let out = log
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect("retrying the same append completes it");
    assert_eq!(out.len(), EVENTS);
    for (i, outcome) in out.iter().enumerate() {
        let version = i as u64 + 1;
        if i < kept {
            assert_eq!(
                outcome,
                &AppendOutcome::AlreadyRecorded {
                    existing: ExistingEvent {
                        stream_id: stream.clone(),
                        version,
                        event_id: ids[i],
                    }
                },
                "event {i} was recorded by the failed call"
            );
        } else {
            assert_eq!(outcome, &AppendOutcome::Appended { version }, "event {i}");
        }
    }
    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(versions(&stored), (1..=EVENTS as u64).collect::<Vec<_>>());
    assert_eq!(
        stored.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids,
        "stored in the order given"
    );

    // Once complete, the same call again records nothing and is no conflict ...
    let again = log
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert!(again.iter().all(|o| !o.is_appended()), "{again:?}");
    // ... while a different call at the same expectation still is one, and records nothing.
    let mut with_new = events;
    with_new.push(probe(&stream, &unique_source_id("new")));
    assert_wrong_expected(
        log.append(&stream, ExpectedVersion::NoStream, with_new)
            .await,
        &stream,
        ExpectedVersion::NoStream,
        EVENTS as u64,
    );
    assert_eq!(log.read_stream(&stream, 1).await.unwrap().len(), EVENTS);
}

pub async fn events_for_another_stream_are_refused(log: &dyn EventLog) {
    let stream = unique_stream("mixed");
    let other = unique_stream("other");
    let stray = probe(&other, &unique_source_id("stray"));
    let stray_id = stray.event_id;
    let result = log
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![probe(&stream, &unique_source_id("ok")), stray],
        )
        .await;
    match result {
        Err(LedgerError::MixedStreams {
            stream: s,
            event_id,
            other: o,
        }) => {
            assert_eq!(s, stream);
            assert_eq!(event_id, stray_id);
            assert_eq!(o, other);
        }
        other => panic!("expected MixedStreams, got {other:?}"),
    }
    assert!(log.read_stream(&stream, 1).await.unwrap().is_empty());
    assert!(log.read_stream(&other, 1).await.unwrap().is_empty());
}

pub async fn batched_append_is_atomic_per_stream_and_deduped(log: &dyn EventLog) {
    let (a, b, c, d) = (
        unique_stream("batch-a"),
        unique_stream("batch-b"),
        unique_stream("batch-c"),
        unique_stream("batch-d"),
    );
    let earlier = probes(&a, 2);
    let first_a = earlier[0].event_id;
    log.append(&a, ExpectedVersion::Any, earlier.clone())
        .await
        .unwrap();
    let fresh = unique_source_id("fresh");
    let c_events = probes(&c, 3);
    let stray = probe(&c, &unique_source_id("stray"));
    let append = |stream: &StreamId, expected, events| StreamAppend {
        stream: stream.clone(),
        expected,
        events,
    };
    let batch = vec![
        // A redelivered source event, a new one, and the new one again within the call.
        append(
            &a,
            ExpectedVersion::Exact(2),
            vec![
                probe(&a, &earlier[0].source_event_id),
                probe(&a, &fresh),
                probe(&a, &fresh),
            ],
        ),
        append(&b, ExpectedVersion::Exact(5), probes(&b, 2)),
        append(&c, ExpectedVersion::NoStream, c_events.clone()),
        append(&d, ExpectedVersion::Any, vec![stray]),
    ];
    let results = log.append_batch(batch).await.unwrap();
    let [a_out, b_out, c_out, d_out]: [_; 4] = results
        .try_into()
        .expect("one result per stream append, in order");

    let a_out = a_out.unwrap();
    assert_eq!(a_out[1], AppendOutcome::Appended { version: 3 });
    for (dup, version) in [(&a_out[0], 1), (&a_out[2], 3)] {
        match dup {
            AppendOutcome::AlreadyRecorded { existing } => {
                assert_eq!(existing.stream_id, a);
                assert_eq!(existing.version, version);
                if version == 1 {
                    assert_eq!(existing.event_id, first_a);
                }
            }
            other => panic!("expected AlreadyRecorded, got {other:?}"),
        }
    }
    assert_wrong_expected(b_out, &b, ExpectedVersion::Exact(5), 0);
    assert_eq!(appended_versions(&c_out.unwrap()), vec![1, 2, 3]);
    assert!(
        matches!(&d_out, Err(LedgerError::MixedStreams { stream, .. }) if stream == &d),
        "a stray event is refused for its append only: {d_out:?}"
    );

    assert_eq!(versions(&log.read_stream(&a, 1).await.unwrap()), [1, 2, 3]);
    assert!(
        log.read_stream(&b, 1).await.unwrap().is_empty(),
        "the refused stream's events are rolled back"
    );
    assert_eq!(versions(&log.read_stream(&c, 1).await.unwrap()), [1, 2, 3]);
    assert!(log.read_stream(&d, 1).await.unwrap().is_empty());

    // Retrying the whole call records nothing again and reports no conflict.
    let retry = log
        .append_batch(vec![append(&c, ExpectedVersion::NoStream, c_events)])
        .await
        .unwrap();
    let retried = retry[0].as_ref().unwrap();
    assert_eq!(retried.len(), 3);
    assert!(retried.iter().all(|o| !o.is_appended()), "{retried:?}");
    assert!(log.append_batch(Vec::new()).await.unwrap().is_empty());
}

// ------------------------------------------------------------------------ reads

pub async fn read_stream_from_a_version(log: &dyn EventLog) {
    let stream = unique_stream("from");
    log.append(&stream, ExpectedVersion::Any, probes(&stream, 5))
        .await
        .unwrap();
    assert_eq!(
        versions(&log.read_stream(&stream, 0).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        versions(&log.read_stream(&stream, 3).await.unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(
        versions(&log.read_stream(&stream, 5).await.unwrap()),
        vec![5]
    );
    assert!(log.read_stream(&stream, 6).await.unwrap().is_empty());
    assert!(log
        .read_stream(&unique_stream("never-written"), 1)
        .await
        .unwrap()
        .is_empty());
}

pub async fn recorded_at_is_monotonic_per_stream(log: &dyn EventLog) {
    let stream = unique_stream("mono");
    // One call of many events (all "now") and several calls in quick succession.
    log.append(&stream, ExpectedVersion::Any, probes(&stream, 20))
        .await
        .unwrap();
    for _ in 0..5 {
        log.append(&stream, ExpectedVersion::Any, probes(&stream, 1))
            .await
            .unwrap();
    }
    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(stored.len(), 25);
    for pair in stored.windows(2) {
        assert!(
            pair[0].recorded_at < pair[1].recorded_at,
            "v{} at {} is not before v{} at {}",
            pair[0].version,
            pair[0].recorded_at,
            pair[1].version,
            pair[1].recorded_at
        );
        assert!(pair[0].global_order_key() < pair[1].global_order_key());
    }
}

pub async fn read_all_order_is_deterministic_and_pages_cover_everything_once(log: &dyn EventLog) {
    let from = just_before_now();
    let streams: Vec<StreamId> = (0..3).map(|_| unique_stream("all")).collect();
    // Interleave appends across streams so the global order mixes them.
    for round in 0..6 {
        for (i, stream) in streams.iter().enumerate() {
            let n = 1 + (round + i) % 3;
            log.append(stream, ExpectedVersion::Any, probes(stream, n))
                .await
                .unwrap();
        }
    }
    let ours: HashSet<&StreamId> = streams.iter().collect();
    let mut expected_ids = HashSet::new();
    for stream in &streams {
        for e in log.read_stream(stream, 1).await.unwrap() {
            expected_ids.insert(e.event_id);
        }
    }
    let last_key = {
        let mut keys = Vec::new();
        for stream in &streams {
            keys.extend(
                log.read_stream(stream, 1)
                    .await
                    .unwrap()
                    .iter()
                    .map(RecordedEvent::global_order_key),
            );
        }
        keys.into_iter().max().unwrap()
    };

    // The full read is in (recorded_at, event_id) order, starts at `from`, and is stable.
    let all_once = log.read_all(Some(from), None, 100_000).await.unwrap();
    let keys: Vec<String> = all_once.iter().map(|e| e.global_order_key()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "read_all is in (recorded_at, event_id) order");
    assert!(all_once.iter().all(|e| e.recorded_at >= from));
    let mine = |events: &[RecordedEvent]| -> Vec<RecordedEvent> {
        events
            .iter()
            .filter(|e| ours.contains(&e.stream_id))
            .cloned()
            .collect()
    };
    let first = mine(&all_once);
    let again = mine(&log.read_all(Some(from), None, 100_000).await.unwrap());
    assert_eq!(first, again, "two reads give the same order");
    assert_eq!(
        first.iter().map(|e| e.event_id).collect::<HashSet<_>>(),
        expected_ids
    );
    let mut last_version: HashMap<&StreamId, u64> = HashMap::new();
    for e in &first {
        let prev = last_version.insert(&e.stream_id, e.version).unwrap_or(0);
        assert_eq!(
            e.version,
            prev + 1,
            "{} versions ascend gaplessly",
            e.stream_id
        );
    }

    // Paging with `after`/`limit` from `from` visits each of our events exactly once, in
    // the same order as the full read.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = log.read_all(Some(from), after.as_deref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        let last = last.global_order_key();
        if let Some(prev) = &after {
            assert!(page.iter().all(|e| &e.global_order_key() > prev));
        }
        paged.extend(mine(&page));
        if last >= last_key {
            break;
        }
        after = Some(last);
    }
    assert_eq!(
        paged, first,
        "pages cover everything exactly once, in order"
    );

    // `from` excludes what was recorded before it.
    let cut = first[first.len() / 2].recorded_at;
    let later = mine(&log.read_all(Some(cut), None, 100_000).await.unwrap());
    let expected_later: Vec<RecordedEvent> = first
        .iter()
        .filter(|e| e.recorded_at >= cut)
        .cloned()
        .collect();
    assert_eq!(later, expected_later);
}

pub async fn correlation_query_returns_all_and_only_its_events_in_order(log: &dyn EventLog) {
    let traced = CorrelationId::new();
    let unrelated = CorrelationId::new();
    let account = unique_stream("acct");
    let order = unique_stream("order");

    // An inbound event, then what it caused on other streams, with noise in between.
    let inbound = probe_with(&account, &unique_source_id("in"), traced, None);
    let inbound_id = inbound.event_id;
    log.append(&account, ExpectedVersion::Any, vec![inbound])
        .await
        .unwrap();
    log.append(
        &order,
        ExpectedVersion::Any,
        vec![probe_with(
            &order,
            &unique_source_id("noise"),
            unrelated,
            None,
        )],
    )
    .await
    .unwrap();
    let effect = probe_with(&order, &unique_source_id("fx"), traced, Some(inbound_id));
    let effect_id = effect.event_id;
    log.append(&order, ExpectedVersion::Any, vec![effect])
        .await
        .unwrap();
    let outcome = probe_with(&account, &unique_source_id("out"), traced, Some(effect_id));
    let outcome_id = outcome.event_id;
    log.append(&account, ExpectedVersion::Any, vec![outcome])
        .await
        .unwrap();

    let found = log.by_correlation(&traced).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![inbound_id, effect_id, outcome_id],
        "all and only the traced events, in recorded order"
    );
    assert!(found.iter().all(|e| e.correlation_id == traced));
    assert_eq!(found[1].causation_id, Some(inbound_id));
    assert_eq!(log.by_correlation(&unrelated).await.unwrap().len(), 1);
    assert!(log
        .by_correlation(&CorrelationId::new())
        .await
        .unwrap()
        .is_empty());
}

// ------------------------------------------------------------------------ change feed

/// Polls until every id in `wanted` was delivered (bounded: feeds like DynamoDB Streams lag).
/// Returns the deliveries in arrival order, duplicates included, and the last position.
async fn drain_until_seen(
    feed: &mut dyn sync_ledger::ledger::ChangeFeed,
    wanted: &HashSet<EventId>,
) -> Vec<sync_ledger::ledger::FeedItem> {
    let mut delivered = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..600 {
        let batch = feed.poll(100).await.unwrap();
        let empty = batch.is_empty();
        for item in batch {
            seen.insert(item.event.event_id);
            delivered.push(item);
        }
        if wanted.is_subset(&seen) {
            return delivered;
        }
        if empty {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let missing = wanted.difference(&seen).count();
    panic!(
        "change feed never delivered {missing} of {} events",
        wanted.len()
    );
}

fn assert_per_stream_order(delivered: &[sync_ledger::ledger::FeedItem], ours: &HashSet<&StreamId>) {
    // At-least-once feeds may redeliver: judge the first delivery of each event.
    let mut first_seen = HashSet::new();
    let mut last_version: HashMap<StreamId, u64> = HashMap::new();
    for item in delivered {
        let e = &item.event;
        if !ours.contains(&e.stream_id) || !first_seen.insert(e.event_id) {
            continue;
        }
        let prev = last_version
            .insert(e.stream_id.clone(), e.version)
            .unwrap_or(0);
        assert_eq!(
            e.version,
            prev + 1,
            "{} delivered out of order (v{} after v{prev})",
            e.stream_id,
            e.version
        );
    }
}

pub async fn change_feed_delivers_every_event_in_stream_order(log: &dyn EventLog) {
    let streams: Vec<StreamId> = (0..3).map(|_| unique_stream("feed")).collect();
    let mut feed = log.change_feed(FeedStart::Beginning).await.unwrap();
    let mut wanted = HashSet::new();
    for round in 0..4 {
        for stream in &streams {
            let events = probes(stream, 1 + round % 2);
            wanted.extend(events.iter().map(|e| e.event_id));
            log.append(stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
    }
    let delivered = drain_until_seen(feed.as_mut(), &wanted).await;
    assert_per_stream_order(&delivered, &streams.iter().collect());
    for item in &delivered {
        if wanted.contains(&item.event.event_id) {
            let stored = log
                .read_stream(&item.event.stream_id, item.event.version)
                .await
                .unwrap();
            assert_eq!(
                stored.first(),
                Some(&item.event),
                "feed carries the recorded event"
            );
        }
    }
}

pub async fn change_feed_resumes_after_a_position(log: &dyn EventLog) {
    let stream = unique_stream("resume");
    let first = probes(&stream, 3);
    let first_ids: HashSet<EventId> = first.iter().map(|e| e.event_id).collect();
    let mut feed = log.change_feed(FeedStart::Beginning).await.unwrap();
    log.append(&stream, ExpectedVersion::Any, first)
        .await
        .unwrap();
    let delivered = drain_until_seen(feed.as_mut(), &first_ids).await;
    let position = delivered
        .iter()
        .rev()
        .find(|i| i.event.stream_id == stream && i.event.version == 3)
        .map(|i| i.position.clone())
        .expect("version 3 was delivered");
    drop(feed);

    let second = probes(&stream, 2);
    let second_ids: HashSet<EventId> = second.iter().map(|e| e.event_id).collect();
    log.append(&stream, ExpectedVersion::Any, second)
        .await
        .unwrap();
    let mut resumed = log.change_feed(FeedStart::After(position)).await.unwrap();
    let delivered = drain_until_seen(resumed.as_mut(), &second_ids).await;
    let ours: Vec<u64> = delivered
        .iter()
        .filter(|i| i.event.stream_id == stream)
        .map(|i| i.event.version)
        .collect();
    assert!(
        ours.iter().all(|v| *v > 3),
        "resuming after v3's position does not deliver v1..v3 again: {ours:?}"
    );
}

pub async fn unknown_event_types_and_fields_are_preserved_verbatim(log: &dyn EventLog) {
    let stream = unique_stream("future");
    let mut future = probe(&stream, &unique_source_id("future"));
    future.event_type = "SomethingFromTheFuture".to_string();
    future.schema_version = 9;
    future.source = Source::Billing;
    future.causation_id = Some(EventId::new());
    future.occurred_at = "2026-11-26T10:00:00.123456789Z".parse().unwrap();
    future.payload = json!({
        "zeta": 1,
        "alpha": {"nested": [1, 2.5, "three", null, true], "ünïcode": "✓"},
        "big": 18446744073709551615u64,
        "neg": -42,
        "empty": {}
    });
    let mut known = probe(&stream, &unique_source_id("known"));
    known.event_type = "CrmAccountUpserted".to_string();
    known.payload = json!({"account_id": "001", "name": "Acme", "Industry__c": "Retail"});
    let given = vec![future, known];
    log.append(&stream, ExpectedVersion::Any, given.clone())
        .await
        .unwrap();

    let stored = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(stored.len(), 2);
    for (new, rec) in given.into_iter().zip(&stored) {
        let expected = RecordedEvent::from_new(new, rec.version, rec.recorded_at);
        assert_eq!(
            rec, &expected,
            "every envelope field and the payload come back as given"
        );
        assert_eq!(
            serde_json::to_string(&rec.payload).unwrap(),
            serde_json::to_string(&expected.payload).unwrap(),
            "payload key order is kept"
        );
    }
}
