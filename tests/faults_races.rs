//! Fault family 5, races: 8 appenders writing to one stream at once, each also re-sending
//! some of the others' source events (redelivery racing the first delivery). Asserted on the
//! embedded store and on DynamoDB (moto): versions are gapless 1..=N, every source event is
//! recorded exactly once, and every append call reports each event appended or already
//! recorded — never an error. Then 8 `ledger worker` processes at once on one feed (the same
//! checkpoints, like overlapping invocations on one shard set): each event is projected once —
//! one outcome per event, one Billing account per entity, the state of a single worker's run;
//! on the embedded store's feed and, scaled down, on DynamoDB Streams (moto).
//! Each test prints its figures.

mod common;

use common::sync_world_dynamodb;

use chrono::Utc;
use common::fault_world::{count_outcomes, crm_activity, World};
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
    eprintln!(
        "faults_races: embedded store: {APPENDERS} appenders, {appended} appended, {already} already recorded, versions gapless"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_appenders_on_one_stream_give_gapless_versions_dynamodb() {
    let store = fresh_store().await;
    let (appended, already) = race(vec![store.log(); APPENDERS], 12, 4).await;
    eprintln!(
        "faults_races: DynamoDB (moto): {APPENDERS} appenders, {appended} appended, {already} already recorded, versions gapless"
    );
}

/// Sums `<field> N` over the `ledger worker` summaries in `reports`.
fn reported(reports: &[String], field: &str) -> usize {
    reports
        .iter()
        .flat_map(|r| r.lines())
        .filter(|line| line.starts_with("account-sync:"))
        .filter_map(|line| {
            let at = line.find(field)? + field.len();
            line[at..]
                .trim_start()
                .split(',')
                .next()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_on_one_feed_project_each_event_once() {
    const ACCOUNTS: usize = 16;
    let clean = World::new().await;
    let clean_activity = clean.crm_activity(ACCOUNTS, 1);
    clean
        .ingest(
            &clean_activity
                .iter()
                .flat_map(|(_, e)| e.clone())
                .collect::<Vec<_>>(),
        )
        .await;
    let one_worker = [clean.work().await];
    let clean_applied = reported(&one_worker, "applied");
    clean.settle().await;
    let (clean_state, clean_synced) = clean.sync_outcome().await;

    let w = World::new().await;
    let activity = w.crm_activity(ACCOUNTS, 1);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    let runs = (0..APPENDERS).map(|_| w.command(World::WORKER).output());
    let mut reports = Vec::new();
    for out in futures::future::join_all(runs).await {
        let out = out.unwrap();
        w.capture(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "a worker failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        reports.push(stdout);
    }
    let applied = reported(&reports, "applied");
    let already = reported(&reports, "already applied");
    let gap_filled = reported(&reports, "gap-filled");
    // An event applied by one worker is `already applied` for the others: the conditional
    // view write lets exactly one of them apply it (a gap fill applies without counting).
    assert!(
        applied <= clean_applied && applied + gap_filled >= clean_applied,
        "applied {applied} (+{gap_filled} gap-filled) across workers, {clean_applied} by one worker"
    );
    w.settle().await;

    let (state, synced) = w.sync_outcome().await;
    assert_eq!(state.len(), ACCOUNTS, "one Billing account per CRM account");
    assert!(
        state.values().all(|(_, linked)| *linked),
        "every account linked both ways"
    );
    assert_eq!(state, clean_state, "same Billing state as one worker's run");
    assert_eq!(synced, clean_synced, "each event's outcome recorded once");
    let (posts, keys) = w.billing_creates();
    assert_eq!(keys, ACCOUNTS, "one idempotency key per entity");
    eprintln!(
        "faults_races: {APPENDERS} workers on one feed: {} events, account-sync applied {applied} (+{gap_filled} gap-filled; one worker applies {clean_applied}) and skipped {already} as already applied across workers, {posts} Billing create calls for {keys} keys ({} raced, absorbed by the key), {synced} AccountSynced (one worker: {clean_synced}), state equal",
        deliveries.len(),
        posts - keys
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_on_one_dynamodb_stream_project_each_event_once() {
    const ACCOUNTS: usize = 4;
    let clean = World::new().await;
    let clean_activity = clean.crm_activity(ACCOUNTS, 1);
    clean
        .ingest(
            &clean_activity
                .iter()
                .flat_map(|(_, e)| e.clone())
                .collect::<Vec<_>>(),
        )
        .await;
    let clean_applied = reported(&[clean.work().await], "applied");
    clean.settle().await;
    let (clean_state, clean_synced) = clean.sync_outcome().await;

    let w = sync_world_dynamodb::dynamodb_world().await;
    let activity = crm_activity(&w.sandbox, ACCOUNTS, 1);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    // The same shards and checkpoints for all 8, as overlapping pollers of one mapping.
    let runs = (0..APPENDERS).map(|_| w.ledger(World::WORKER));
    let reports = futures::future::join_all(runs).await;
    let applied = reported(&reports, "applied");
    let gap_filled = reported(&reports, "gap-filled");
    assert!(
        applied <= clean_applied && applied + gap_filled >= clean_applied,
        "applied {applied} (+{gap_filled} gap-filled) across workers, {clean_applied} by one worker"
    );
    w.settle().await;

    let state = sync_world_dynamodb::billing_state(&w).await;
    assert_eq!(
        state, clean_state,
        "same Billing state and links as one worker's run"
    );
    let events = w.store().log.read_all(None, None, 100_000).await.unwrap();
    let synced = count_outcomes(&events);
    assert_eq!(synced, clean_synced, "each event's outcome recorded once");
    assert_eq!(w.sandbox.billing_accounts().len(), ACCOUNTS);
    let posts = w.sandbox.calls().count("POST /v1/accounts");
    eprintln!(
        "faults_races: {APPENDERS} workers on one DynamoDB stream (moto): {} events, account-sync applied {applied} (+{gap_filled} gap-filled; one worker applies {clean_applied}), {posts} Billing create calls -> {ACCOUNTS} accounts, {synced} AccountSynced (one worker: {clean_synced}), state equal",
        deliveries.len()
    );
}
