//! The runner on the embedded ledger and views, with a scripted `Effects` (our own port,
//! standing in for the CRM/Billing connectors that the end-to-end tests exercise).
use super::*;
use crate::ledger::sqlite::{migrate, SqliteLedger};
use crate::ledger::ExpectedVersion;
use crate::projector::effects::TransientCallFailure;
use crate::views::sqlite::SqliteViewStore;
use projections::account_sync::AccountSync;
use projections::commands::{Call, Command};
use projections::{CorrelationId, EventId, Source, SourceEventId};
use std::sync::Mutex;

/// Answers every call with the next scripted result (success when the script is empty).
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<Call>>,
    script: Mutex<Vec<Result<CallResult, TransientCallFailure>>>,
}

#[async_trait]
impl Effects for Scripted {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        self.calls.lock().unwrap().push(command.call.clone());
        let mut script = self.script.lock().unwrap();
        if script.is_empty() {
            Ok(CallResult::Succeeded {
                id: "2c92a0fd0000000000000000000000b1".into(),
                created: true,
            })
        } else {
            script.remove(0)
        }
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    effects: Arc<Scripted>,
    runner: Runner<AccountSync>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    migrate(&path).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).unwrap());
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&path).unwrap());
    let effects = Arc::new(Scripted::default());
    let runner = Runner::new(
        log.clone(),
        views.clone(),
        effects.clone(),
        RunnerSettings::default(),
    );
    World {
        _dir: dir,
        log,
        views,
        effects,
        runner,
    }
}

/// Records CRM account changes `names` on one stream; returns them as recorded.
async fn crm_changes(log: &dyn EventLog, id: &str, names: &[&str]) -> Vec<RecordedEvent> {
    let stream = StreamId::parse(format!("crm-account-{id}")).unwrap();
    let events = names
        .iter()
        .enumerate()
        .map(|(i, name)| NewEvent {
            event_id: EventId::new(),
            stream_id: stream.clone(),
            event_type: "CrmAccountUpserted".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse(format!("{id}-{i}")).unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: serde_json::json!({"account_id": id, "name": name, "currency": "USD"}),
        })
        .collect();
    log.append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
    log.read_stream(&stream, 1).await.unwrap()
}

fn calls(w: &World) -> usize {
    w.effects.calls.lock().unwrap().len()
}

async fn stream_types(log: &dyn EventLog, id: &str) -> Vec<String> {
    let stream = StreamId::parse(format!("crm-account-{id}")).unwrap();
    let events = log.read_stream(&stream, 1).await.unwrap();
    events.into_iter().map(|e| e.event_type).collect()
}

#[tokio::test]
async fn duplicate_and_out_of_order_delivery_applies_each_version_once() {
    let w = world();
    let recorded = crm_changes(w.log.as_ref(), "001A", &["Acme", "Acme Ltd"]).await;
    let (v1, v2) = (recorded[0].clone(), recorded[1].clone());

    let outcome = w
        .runner
        .process(vec![v2.clone(), v1.clone(), v2.clone()])
        .await;
    assert_eq!(outcome.first_failure(), None, "{outcome:?}");
    assert_eq!(
        outcome.statuses,
        vec![
            EventStatus::Applied,
            EventStatus::Applied,
            EventStatus::AlreadyApplied
        ]
    );
    assert_eq!(
        calls(&w),
        1,
        "one Billing account create for the first change"
    );

    let again = w.runner.process(vec![v1, v2]).await;
    assert_eq!(
        again.statuses,
        vec![EventStatus::AlreadyApplied, EventStatus::AlreadyApplied]
    );
    assert_eq!(calls(&w), 1, "a redelivery makes no call");
    let item = w
        .views
        .get(&ViewKey::new(AccountSync::NAME, "crm#001A").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.applied(&recorded[0].stream_id), 2);
}

#[tokio::test]
async fn a_gap_is_filled_from_the_log_before_the_delivered_version() {
    let w = world();
    let recorded = crm_changes(w.log.as_ref(), "001B", &["Beta", "Beta Inc"]).await;
    let outcome = w.runner.process(vec![recorded[1].clone()]).await;
    assert_eq!(outcome.statuses, vec![EventStatus::Applied]);
    assert_eq!(outcome.gap_filled, 1);
    // v1 was applied from the log: its create call happened and its outcome is recorded.
    assert!(matches!(
        w.effects.calls.lock().unwrap()[0],
        Call::Billing(projections::commands::BillingCommand::CreateAccount { .. })
    ));
    assert!(stream_types(w.log.as_ref(), "001B")
        .await
        .contains(&"AccountSynced".to_string()));
}

#[tokio::test]
async fn a_transient_failure_stops_its_stream_then_gives_up_as_sync_failed() {
    let w = world();
    let recorded = crm_changes(w.log.as_ref(), "001C", &["Gamma"]).await;
    let other = crm_changes(w.log.as_ref(), "001D", &["Delta"]).await;
    let busy = || {
        Err(TransientCallFailure {
            reason: "billing create_account: HTTP 503 after 3 attempt(s): busy".into(),
            attempts: 3,
        })
    };
    *w.effects.script.lock().unwrap() = vec![
        busy(),
        Ok(CallResult::Succeeded {
            id: "2c92a0fd0000000000000000000000d1".into(),
            created: true,
        }),
        busy(),
        busy(),
    ];

    let first = w
        .runner
        .process(vec![recorded[0].clone(), other[0].clone()])
        .await;
    assert_eq!(first.first_failure(), Some(0));
    assert!(
        matches!(&first.statuses[0], EventStatus::Failed { transient: true, reason } if reason.contains("503"))
    );
    assert_eq!(
        first.statuses[1],
        EventStatus::Applied,
        "other streams go on"
    );
    assert!(!stream_types(w.log.as_ref(), "001C")
        .await
        .contains(&"SyncFailed".to_string()));

    // Second and third delivery: the third reaches max_deliveries and is given up.
    let second = w.runner.process(vec![recorded[0].clone()]).await;
    assert_eq!(second.first_failure(), Some(0));
    let third = w.runner.process(vec![recorded[0].clone()]).await;
    assert_eq!(third.statuses, vec![EventStatus::Applied]);
    let types = stream_types(w.log.as_ref(), "001C").await;
    assert_eq!(types, vec!["CrmAccountUpserted", "SyncFailed"]);
    let failed = &w.log.read_stream(&recorded[0].stream_id, 2).await.unwrap()[0];
    assert_eq!(failed.causation_id, Some(recorded[0].event_id));
    assert_eq!(failed.correlation_id, recorded[0].correlation_id);
    assert!(failed.payload["reason"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 deliveries"));
}
