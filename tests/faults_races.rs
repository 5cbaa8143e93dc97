//! Fault family 5, races: 8 appenders writing to one stream at once, each also re-sending
//! some of the others' source events (redelivery racing the first delivery). Asserted on the
//! embedded store and on DynamoDB (moto): versions are gapless 1..=N, every source event is
//! recorded exactly once, and every append call reports each event appended or already
//! recorded — never an error. Each test prints its figures.

mod common;

use chrono::Utc;
use common::ingest_store::fresh_store;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use sync_ledger::ledger::{AppendOutcome, EventLog, ExpectedVersion, SqliteLedger};
use sync_ledger::projections::{CorrelationId, EventId, NewEvent, Source, SourceEventId, StreamId};

const APPENDERS: usize = 8;

fn event(stream: &StreamId, source_event_id: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        stream_id: stream.clone(),
        event_type: "CrmAccountChanged".into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse(source_event_id).unwrap(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
        payload: json!({"source_event_id": source_event_id}),
    }
}

/// Runs the race and checks the stream; returns (appended, already recorded) counts.
/// `logs[a]` is appender `a`'s handle on the store (one connection or client each).
async fn race(logs: Vec<Arc<dyn EventLog>>, per_appender: usize, batch: usize) -> (usize, usize) {
    let log = logs[0].clone();
    let stream = StreamId::parse(format!("crm-account-race{}", EventId::new())).unwrap();
    let mut tasks = Vec::new();
    for (a, log) in logs.into_iter().enumerate() {
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids: Vec<String> = (0..per_appender).map(|i| format!("a{a}-e{i}")).collect();
            // Every third event of the next appender is delivered here too.
            let next = (a + 1) % APPENDERS;
            ids.extend(
                (0..per_appender)
                    .step_by(3)
                    .map(|i| format!("a{next}-e{i}")),
            );
            let (mut appended, mut already) = (0, 0);
            for chunk in ids.chunks(batch) {
                let events = chunk.iter().map(|id| event(&stream, id)).collect();
                let outcomes = log
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .unwrap_or_else(|e| panic!("appender {a}: {e}"));
                assert_eq!(outcomes.len(), chunk.len());
                for o in outcomes {
                    match o {
                        AppendOutcome::Appended { .. } => appended += 1,
                        AppendOutcome::AlreadyRecorded { .. } => already += 1,
                    }
                }
            }
            (appended, already)
        }));
    }
    let (mut appended, mut already) = (0, 0);
    for t in tasks {
        let (a, r) = t.await.unwrap();
        appended += a;
        already += r;
    }

    let unique = APPENDERS * per_appender;
    let events = log.read_stream(&stream, 1).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    let expected: Vec<u64> = (1..=unique as u64).collect();
    assert_eq!(versions, expected, "versions are gapless 1..={unique}");
    let sources: BTreeSet<&str> = events.iter().map(|e| e.source_event_id.as_str()).collect();
    assert_eq!(sources.len(), unique, "each source event recorded once");
    assert_eq!(appended, unique, "each source event reported appended once");
    assert_eq!(
        already,
        APPENDERS * per_appender.div_ceil(3),
        "every redelivery is reported already recorded"
    );
    (appended, already)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_appenders_on_one_stream_give_gapless_versions_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    sync_ledger::ledger::sqlite::migrate(&path).unwrap();
    // Each appender opens its own connection, as separate processes would.
    let logs = (0..APPENDERS)
        .map(|_| Arc::new(SqliteLedger::open(&path).unwrap()) as Arc<dyn EventLog>)
        .collect();
    let (appended, already) = race(logs, 250, 7).await;
    println!(
        "faults_races: embedded store: {APPENDERS} appenders, {appended} appended, {already} already recorded, versions gapless"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_appenders_on_one_stream_give_gapless_versions_dynamodb() {
    let store = fresh_store().await;
    let (appended, already) = race(vec![store.log(); APPENDERS], 12, 4).await;
    println!(
        "faults_races: DynamoDB (moto): {APPENDERS} appenders, {appended} appended, {already} already recorded, versions gapless"
    );
}
