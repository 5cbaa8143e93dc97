//! Gap fill on DynamoDB (moto): DynamoDB Streams delivers in order per item, not per ledger
//! stream across shards and retries, so a projector can receive version 3 of a stream before
//! versions 1-2. The runner must then read 1-2 from the log with a consistent read and apply
//! them first (DESIGN §4). The embedded store proves the same in `projector::runner`'s unit
//! tests; this proves it on the production store, with the events as Streams delivered them.
//! External calls go through a scripted `Effects` (our port, not an AWS mock).

mod common;

use async_trait::async_trait;
use chrono::Utc;
use common::moto::{moto, unique_name};
use projections::account_sync::AccountSync;
use projections::commands::{BillingCommand, Call, CallResult, Command};
use projections::projection::Projection;
use projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_ledger::ledger::dynamodb::{migrate_with, views_table, DynamoDbLedger};
use sync_ledger::ledger::{EventLog, ExpectedVersion, FeedStart};
use sync_ledger::projector::{
    Effects, EventStatus, Projector, Runner, RunnerSettings, TransientCallFailure,
};
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::{ViewKey, ViewStore};

/// Records every call and answers each with success.
#[derive(Default)]
struct Recorded {
    calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl Effects for Recorded {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        self.calls.lock().unwrap().push(command.call.clone());
        Ok(CallResult::Succeeded {
            id: "2c92a0fd0000000000000000000000f1".into(),
            created: true,
        })
    }
}

fn account_change(stream: &StreamId, account_id: &str, i: usize, name: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        stream_id: stream.clone(),
        event_type: "CrmAccountUpserted".into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse(format!("{account_id}-change-{i}")).unwrap(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
        payload: serde_json::json!({"account_id": account_id, "name": name, "currency": "USD"}),
    }
}

/// Polls the change feed until `stream`'s first `n` versions have been delivered.
async fn delivered_by_streams(
    log: &DynamoDbLedger,
    stream: &StreamId,
    n: usize,
) -> Vec<RecordedEvent> {
    let mut feed = log.change_feed(FeedStart::Beginning).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<RecordedEvent> = Vec::new();
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "Streams delivered {} of {n} events",
            seen.len()
        );
        let batch = feed.poll(100).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen.extend(
            batch
                .into_iter()
                .map(|item| item.event)
                .filter(|e| &e.stream_id == stream),
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_3_delivered_first_is_applied_after_versions_1_and_2_read_from_the_log() {
    let config = moto().sdk_config().await;
    let prefix = unique_name("gap");
    migrate_with(&config, &prefix).await.unwrap();
    let ledger = DynamoDbLedger::open_with(&config, &prefix).await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(ledger.clone());
    let views: Arc<dyn ViewStore> = Arc::new(DynamoViewStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        views_table(&prefix),
    ));
    let effects = Arc::new(Recorded::default());
    let runner = Runner::<AccountSync>::new(
        log.clone(),
        views.clone(),
        effects.clone(),
        RunnerSettings::default(),
    );

    let account_id = "001GAP";
    let stream = StreamId::parse(format!("crm-account-{account_id}")).unwrap();
    let changes = ["Gapco", "Gapco Ltd", "Gapco Holdings"]
        .iter()
        .enumerate()
        .map(|(i, name)| account_change(&stream, account_id, i, name))
        .collect();
    log.append(&stream, ExpectedVersion::NoStream, changes)
        .await
        .unwrap();

    let delivered = delivered_by_streams(&ledger, &stream, 3).await;
    let versions: Vec<u64> = delivered.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3], "Streams itself keeps one item's order");
    let (v1, v2, v3) = (
        delivered[0].clone(),
        delivered[1].clone(),
        delivered[2].clone(),
    );

    // Version 3 arrives alone, first.
    let outcome = runner.process(vec![v3.clone()]).await;
    assert_eq!(outcome.statuses, [EventStatus::Applied], "{outcome:?}");
    assert_eq!(
        outcome.gap_filled, 2,
        "versions 1 and 2 were read from the log"
    );
    let calls = effects.calls.lock().unwrap().clone();
    assert!(
        matches!(
            calls.first(),
            Some(Call::Billing(BillingCommand::CreateAccount { .. }))
        ),
        "version 1 (the create) was applied first: {calls:?}"
    );
    let calls_after_v3 = calls.len();
    let key = ViewKey::new(AccountSync::NAME, &format!("crm#{account_id}")).unwrap();
    let item = views
        .get(&key)
        .await
        .unwrap()
        .expect("the account's view item");
    assert_eq!(item.applied(&stream), 3);
    let types: Vec<String> = log
        .read_stream(&stream, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        types.iter().any(|t| t == "AccountSynced"),
        "the filled create's outcome is recorded: {types:?}"
    );

    // The late versions 1-2 (and a redelivered 3) then change nothing and call nobody.
    let late = runner.process(vec![v1, v2, v3]).await;
    assert_eq!(
        late.statuses,
        [
            EventStatus::AlreadyApplied,
            EventStatus::AlreadyApplied,
            EventStatus::AlreadyApplied
        ]
    );
    assert_eq!(late.gap_filled, 0);
    assert_eq!(effects.calls.lock().unwrap().len(), calls_after_v3);
}
