//! The paths the binary tests do not reach: a record the worker gave up on is delivered
//! to its projector again; a dry run records and calls nothing. Embedded store, and a
//! scripted `Effects` (our own port) standing in for the connectors.
use super::{redrive, Pending, RedriveError, RedriveReport, RedriveRequest, RedriveResult};
use crate::ledger::sqlite::{migrate, SqliteLedger};
use crate::ledger::{EventLog, ExpectedVersion};
use crate::projector::{Effects, TransientCallFailure};
use crate::views::sqlite::SqliteViewStore;
use crate::views::{ViewKey, ViewStore};
use async_trait::async_trait;
use chrono::Utc;
use projections::account_sync::AccountSync;
use projections::catalogue::SyncFailed;
use projections::commands::{CallResult, Command};
use projections::{
    CorrelationId, DomainEvent, EventId, NewEvent, Projection, RecordedEvent, Source,
    SourceEventId, StreamId,
};
use std::sync::Arc;
use std::sync::Mutex;

#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<Command>>,
}

#[async_trait]
impl Effects for Scripted {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        self.calls.lock().unwrap().push(command.clone());
        Ok(CallResult::Succeeded {
            id: "2c92a0fd0000000000000000000000e1".into(),
            created: true,
        })
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    effects: Arc<Scripted>,
    cause: RecordedEvent,
}

/// A CRM account change the account projector gave up on (as `worker::on_failure`
/// records it), never applied to its view.
async fn given_up() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    migrate(&path).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).unwrap());
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&path).unwrap());
    let stream = StreamId::parse("crm-account-001GaveUpIAH").unwrap();
    let inbound = NewEvent {
        event_id: EventId::new(),
        stream_id: stream.clone(),
        event_type: "CrmAccountUpserted".into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse("AccountChangeEvent:77").unwrap(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
        payload: serde_json::json!({"account_id": "001GaveUpIAH", "name": "Gave Up Inc"}),
    };
    log.append(&stream, ExpectedVersion::Any, vec![inbound])
        .await
        .unwrap();
    let cause = log.read_stream(&stream, 1).await.unwrap().remove(0);
    let failed = DomainEvent::SyncFailed(SyncFailed {
        projection: AccountSync::NAME.to_string(),
        reason: "worker gave up after retries: views unavailable".into(),
        attempts: 0,
        extra: Default::default(),
    });
    let outcome = NewEvent::caused_by(
        &cause,
        stream.clone(),
        &format!("on-failure:{}", AccountSync::NAME),
        Utc::now(),
        &failed,
    );
    log.append(&stream, ExpectedVersion::Any, vec![outcome])
        .await
        .unwrap();
    World {
        _dir: dir,
        log,
        views,
        effects: Arc::new(Scripted::default()),
        cause,
    }
}

fn request(w: &World, dry_run: bool) -> RedriveRequest {
    RedriveRequest {
        correlation: w.cause.correlation_id,
        requested_by: "tester".into(),
        reason: None,
        dry_run,
        projection: None,
    }
}

async fn run(w: &World, dry_run: bool) -> RedriveReport {
    redrive(
        w.log.clone(),
        w.views.clone(),
        w.effects.clone(),
        &request(w, dry_run),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_given_up_record_is_delivered_to_its_projector_again() {
    let w = given_up().await;
    let report = run(&w, false).await;
    assert_eq!(report.items.len(), 1, "{report:?}");
    assert!(matches!(
        report.items[0].target.pending,
        Pending::GaveUp { .. }
    ));
    assert_eq!(
        report.items[0].result,
        RedriveResult::Synced { recorded: vec![] }
    );
    // The create, then the follow-up the projector decides on its outcome.
    let steps: Vec<String> = w
        .effects
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.meta.step.clone())
        .collect();
    assert_eq!(steps, ["billing-create-account", "crm-link-account"]);
    assert_eq!(report.calls, 2);
    assert!(!report.has_failures());
    let key = ViewKey::new(AccountSync::NAME, "crm#001GaveUpIAH").unwrap();
    let item = w.views.get(&key).await.unwrap().expect("the view item");
    assert!(item.applied(&w.cause.stream_id) >= w.cause.version);
    let types: Vec<String> = w
        .log
        .by_correlation(&w.cause.correlation_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(types.contains(&"RedriveRequested".to_string()), "{types:?}");
    assert!(types.contains(&"AccountSynced".to_string()), "{types:?}");

    let again = run(&w, false).await;
    assert!(again.items.is_empty(), "{again:?}");
    assert_eq!(again.calls, 0);
}

#[tokio::test]
async fn a_dry_run_records_and_calls_nothing() {
    let w = given_up().await;
    let before = w.log.by_correlation(&w.cause.correlation_id).await.unwrap();
    let report = run(&w, true).await;
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].result, RedriveResult::Planned);
    assert!(w.effects.calls.lock().unwrap().is_empty());
    let after = w.log.by_correlation(&w.cause.correlation_id).await.unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn an_unknown_correlation_id_is_an_error() {
    let w = given_up().await;
    let mut unknown = request(&w, false);
    unknown.correlation = CorrelationId::new();
    let err = redrive(w.log.clone(), w.views.clone(), w.effects.clone(), &unknown)
        .await
        .unwrap_err();
    assert!(matches!(err, RedriveError::UnknownCorrelation(_)), "{err}");
}
