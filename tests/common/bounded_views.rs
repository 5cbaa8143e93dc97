//! Scenario bodies of "no view item grows with history" (issue 15 item 1), run on both stores
//! by `tests/bounded_views_sqlite.rs` and `tests/bounded_views_dynamodb.rs`: an entity's
//! events are recorded in the ledger, projected by the deployed projector runner in
//! delivery-sized batches, and then every view item's stored size is measured.
#![allow(dead_code)]

use async_trait::async_trait;
use chrono::Utc;
use projections::commands::{CallResult, Command};
use projections::correlation_view::CorrelationView;
use projections::{
    CorrelationId, EventId, NewEvent, Projection, RecordedEvent, Source, SourceEventId, StreamId,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use sync_ledger::audit::{audit, AuditId, Resolved};
use sync_ledger::ledger::{EventLog, ExpectedVersion};
use sync_ledger::projector::{
    build, Effects, EventStatus, ProjectorDeps, RunnerSettings, TransientCallFailure,
};
use sync_ledger::replay::{replay, snapshot, ReplayRequest, Silent, ViewDigest};
use sync_ledger::views::{ViewNamespace, ViewStore};

/// The bound the issue asks for: far below DynamoDB's 400 KB, whatever the entity's age.
pub const ITEM_BOUND: usize = 64 * 1024;

/// Counts calls: the correlation view decides none, so any call is a failure.
#[derive(Default)]
pub struct NoCalls(AtomicUsize);

#[async_trait]
impl Effects for NoCalls {
    async fn execute(&self, _: &Command) -> Result<CallResult, TransientCallFailure> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(TransientCallFailure {
            reason: "the correlation view makes no calls".into(),
            attempts: 1,
        })
    }
}

/// CRM account `id` changed `n` times, each change naming another Billing account (what a
/// user re-pointing `Billing_Account_Id__c` over the years records).
fn relinks(id: &str, n: usize) -> (StreamId, Vec<NewEvent>) {
    let stream = StreamId::parse(format!("crm-account-{id}")).unwrap();
    let events = (0..n)
        .map(|i| NewEvent {
            event_id: EventId::new(),
            stream_id: stream.clone(),
            event_type: "CrmAccountUpserted".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse(format!("{id}-relink-{i}")).unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: serde_json::json!({
                "account_id": id,
                "name": "Acme",
                "currency": "USD",
                "billing_account_id": format!("2c92a0f9{i:08}"),
            }),
        })
        .collect();
    (stream, events)
}

/// Stored size of every item of `projection`: key, state and last-version map, as the
/// adapters count it against `views::MAX_ITEM_BYTES`. Returns (largest, pk of it, items).
pub async fn largest_item(views: &dyn ViewStore, projection: &str) -> (usize, String, usize) {
    let items = views.list(projection).await.unwrap();
    let count = items.len();
    items
        .into_iter()
        .map(|item| {
            let bytes = item.key.pk().len()
                + serde_json::to_vec(&item.state).unwrap().len()
                + serde_json::to_vec(&item.last_version).unwrap().len();
            (bytes, item.key.pk(), count)
        })
        .max()
        .unwrap_or((0, String::new(), 0))
}

/// Records CRM account `id` relinked `n` times and projects the correlation view over it
/// with the deployed runner, in batches of 100 (the worker's and the event source mapping's
/// default batch size), asserting no event failed (a too-large item jammed the stream at
/// about 1,000 relinks before the items were bounded). Returns the recorded events.
pub async fn project_relinks(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    id: &str,
    n: usize,
) -> Vec<RecordedEvent> {
    let (stream, events) = relinks(id, n);
    for chunk in events.chunks(500) {
        log.append(&stream, ExpectedVersion::Any, chunk.to_vec())
            .await
            .unwrap();
    }
    let effects = Arc::new(NoCalls::default());
    let deps = ProjectorDeps {
        log: log.clone(),
        views,
        effects: effects.clone(),
        settings: RunnerSettings::default(),
    };
    let projector = build("correlation", &deps).unwrap();
    let recorded = log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(recorded.len(), n);
    for batch in recorded.chunks(100) {
        let outcome = projector.process(batch.to_vec()).await;
        let failed: Vec<&EventStatus> = outcome.statuses.iter().filter(|s| s.is_failed()).collect();
        assert!(
            failed.is_empty(),
            "stream jammed at v{}: {failed:?}",
            batch[0].version
        );
    }
    assert_eq!(effects.0.load(Ordering::SeqCst), 0);
    recorded
}

/// One CRM account relinked `n` times: every change is projected, no item is over
/// [`ITEM_BOUND`], the link is the last one, an audit from the entity id finds all `n` traces
/// by paging through the spilled items, and a wipe + replay rebuilds the same items.
pub async fn a_link_relinked_n_times_projects_into_bounded_items(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    n: usize,
) {
    let id = "001Dn00000RELINK";
    let recorded = project_relinks(log.clone(), views.clone(), id, n).await;

    let (bytes, pk, items) = largest_item(views.as_ref(), CorrelationView::NAME).await;
    assert!(
        bytes <= ITEM_BOUND,
        "{pk} is {bytes} bytes, over {ITEM_BOUND} ({items} items)"
    );
    assert!(
        items > 2,
        "the history was spilled into pages: {items} items"
    );

    let report = audit(log.as_ref(), views.as_ref(), &AuditId::Entity(id.into()))
        .await
        .unwrap();
    let Resolved::EntityId { matches } = &report.resolved else {
        panic!("{:?}", report.resolved)
    };
    assert_eq!(
        matches[0].linked_to,
        vec![format!("2c92a0f9{:08}", n - 1)],
        "the current link is the last one"
    );
    let traces: Vec<CorrelationId> = recorded.iter().map(|e| e.correlation_id).collect();
    assert_eq!(
        matches[0].correlation_ids, traces,
        "every trace, first seen first"
    );
    assert_eq!(report.chains.len(), n);

    // `ledger replay` rebuilds the same items, pages included: once with every page of the
    // run in one flush (more than one commit holds on the large N), once in 500-event flushes.
    let live = ViewDigest::of(
        &snapshot(views.as_ref(), CorrelationView::NAME)
            .await
            .unwrap(),
    );
    for checkpoint_every in [n as u64, 500] {
        let mut request = ReplayRequest::new(ViewNamespace::live());
        request.projections = vec![CorrelationView::NAME.to_string()];
        request.checkpoint_every = checkpoint_every;
        replay(log.clone(), views.clone(), &request, &mut Silent)
            .await
            .unwrap();
        let rebuilt = ViewDigest::of(
            &snapshot(views.as_ref(), CorrelationView::NAME)
                .await
                .unwrap(),
        );
        assert_eq!(
            rebuilt, live,
            "wipe + replay, flushing every {checkpoint_every}"
        );
    }
}
