//! Fault family 2, crash points. The account projection's runner (the one `ledger worker` and
//! the projector Lambda run) is driven in-process over the embedded store and the sandbox's
//! real HTTP APIs, with a crash hook that stops it at one `CrashPoint` — after an external
//! call, before the outcome append, before the view update, mid-batch — and the `process`
//! future is dropped there, as a killed process would be. The restart is a real
//! `ledger worker --until-idle` that redelivers the batch (no checkpoint was saved). A second
//! test SIGKILLs real worker processes at points chosen by the calls they made. Asserted: 0
//! lost syncs, 0 duplicate Billing accounts (idempotency keys), 0 duplicate outcomes, and the
//! same Billing state and links as a run that never crashed. The order projection's amend and
//! cancel go through the same crash points (and SIGKILL): 0 duplicate amendments (the
//! subscription's version counts them), 0 false `SyncFailed`.

mod common;

use async_trait::async_trait;
use common::fault_world::World;
use sandbox::{Faults, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use sync_ledger::connectors::config::ConnectorsConfig;
use sync_ledger::ledger::{EventLog, FeedStart, SqliteLedger};
use sync_ledger::projections::account_sync::AccountSync;
use sync_ledger::projections::order_sync::OrderSync;
use sync_ledger::projections::projection::Projection;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{CrashHook, CrashPoint, Projector, Runner, RunnerSettings};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;
use tokio::sync::Notify;

const ACCOUNTS: usize = 6;
/// Each account is created and renamed once: two events per stream, so a batch holds
/// creates, updates and several streams.
const EDITS: usize = 1;

/// Stops the runner for good the `on`-th (0-based) time it reaches `point`.
struct CrashAt {
    point: CrashPoint,
    on: usize,
    hits: AtomicUsize,
    crashed: Notify,
}

#[async_trait]
impl CrashHook for CrashAt {
    async fn reached(&self, point: CrashPoint) {
        if point == self.point && self.hits.fetch_add(1, Ordering::SeqCst) == self.on {
            self.crashed.notify_one();
            // The process is dead from here on: nothing after this point runs.
            std::future::pending::<()>().await;
        }
    }
}

/// A world with `ACCOUNTS` CRM accounts created and edited, their change events ingested.
async fn world_with_activity() -> (World, Vec<String>) {
    let w = World::new().await;
    let activity = w.crm_activity(ACCOUNTS, EDITS);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    (w, activity.into_iter().map(|(id, _)| id).collect())
}

/// A projection's runner on `w`'s store and sandbox, stopping at `hook`.
fn crashing_runner<P>(w: &World, hook: Arc<CrashAt>) -> Runner<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    let env: BTreeMap<&str, String> = w.env().into_iter().collect();
    let config = ConnectorsConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let effects = Arc::new(ConnectorEffects::from_config(&config, None).unwrap());
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(w.db()).unwrap());
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&w.db()).unwrap());
    Runner::new(log, views, effects, RunnerSettings::default()).with_crash_hook(hook)
}

async fn crash_then_restart(point: CrashPoint, on: usize) {
    let (clean, _) = world_with_activity().await;
    clean.settle().await;
    let (clean_state, clean_synced) = clean.sync_outcome().await;

    let (w, crm_ids) = world_with_activity().await;
    let hook = Arc::new(CrashAt {
        point,
        on,
        hits: AtomicUsize::new(0),
        crashed: Notify::new(),
    });
    let runner = crashing_runner::<AccountSync>(&w, hook.clone());
    let mut feed = SqliteLedger::open(w.db())
        .unwrap()
        .change_feed(FeedStart::Beginning)
        .await
        .unwrap();
    let batch: Vec<_> = feed
        .poll(1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.event)
        .collect();
    assert_eq!(batch.len(), ACCOUNTS * (1 + EDITS));
    tokio::select! {
        done = runner.process(batch) => panic!("the runner never reached {point:?} #{on}: {done:?}"),
        _ = hook.crashed.notified() => {}
    }
    // The `process` future is dropped here: the crashed run does nothing more.
    let (calls_at_crash, _) = w.billing_creates();
    let synced_at_crash = w.events_of_type("AccountSynced").await.len();

    // Restart: the real worker redelivers the whole batch from the feed's start.
    w.settle().await;
    let (state, synced) = w.sync_outcome().await;
    let lost: Vec<_> = crm_ids
        .iter()
        .filter(|id| !state.get(*id).is_some_and(|(_, linked)| *linked))
        .collect();
    assert!(
        lost.is_empty(),
        "lost syncs after a crash at {point:?}: {lost:?}"
    );
    assert_eq!(
        w.sandbox.billing_accounts().len(),
        ACCOUNTS,
        "one Billing account per CRM account"
    );
    let (posts, keys) = w.billing_creates();
    assert_eq!(keys, ACCOUNTS, "one idempotency key per entity");
    assert_eq!(
        state, clean_state,
        "same Billing state and links as a clean run"
    );
    assert_eq!(synced, clean_synced, "same outcomes as a clean run");
    eprintln!(
        "faults_crash: {point:?} #{on}: crashed with {calls_at_crash} Billing creates made and {synced_at_crash} AccountSynced recorded; after restart {posts} create calls ({} repeated, deduped by key), {} Billing accounts, {synced} AccountSynced (clean run: {clean_synced}), 0 lost",
        posts - keys,
        ACCOUNTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_external_call_repeats_it_under_the_same_idempotency_key() {
    crash_then_restart(CrashPoint::AfterExternalCall, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_outcome_append_loses_and_duplicates_nothing() {
    crash_then_restart(CrashPoint::BeforeOutcomeAppend, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_view_update_records_each_outcome_once() {
    crash_then_restart(CrashPoint::BeforeViewUpdate, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_resumes_the_rest_of_the_batch() {
    crash_then_restart(CrashPoint::MidBatch, ACCOUNTS / 2 - 1).await;
}

/// The worker process SIGKILLed once it has made `n` more calls than at its start, then
/// restarted, until a run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_repeatedly_and_restarted_loses_and_duplicates_nothing() {
    let (clean, _) = world_with_activity().await;
    clean.settle().await;
    let (clean_state, clean_synced) = clean.sync_outcome().await;

    let (w, crm_ids) = world_with_activity().await;
    // Slow answers keep each worker run long enough to be killed inside it.
    for system in [System::Crm, System::Billing] {
        w.sandbox.set_faults(
            system,
            Faults {
                latency_ms: 20,
                ..Faults::default()
            },
        );
    }
    let mut kills = 0;
    let mut completed = false;
    for round in 0..30u64 {
        let mut child = w
            .command(World::WORKER)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill after 1, 2, 3, ... calls of this run: at a later step each round, until a
        // run gets through (each restart fetches its tokens again first).
        let target = w.sandbox.calls().total + 1 + round;
        let killed = loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "a worker run failed");
                break false;
            }
            if w.sandbox.calls().total >= target {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                break true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        if !killed {
            completed = true;
            break;
        }
        kills += 1;
    }
    assert!(completed, "no worker run completed after {kills} kills");
    assert!(
        kills > 0,
        "the worker was never killed: the test proved nothing"
    );
    w.settle().await;

    let (state, synced) = w.sync_outcome().await;
    let lost: Vec<_> = crm_ids
        .iter()
        .filter(|id| !state.get(*id).is_some_and(|(_, linked)| *linked))
        .collect();
    assert!(lost.is_empty(), "lost syncs: {lost:?}");
    assert_eq!(w.sandbox.billing_accounts().len(), ACCOUNTS);
    let (posts, keys) = w.billing_creates();
    assert_eq!(keys, ACCOUNTS, "one idempotency key per entity");
    assert_eq!(
        state, clean_state,
        "same Billing state and links as a clean run"
    );
    assert_eq!(synced, clean_synced, "same outcomes as a clean run");
    eprintln!(
        "faults_crash: SIGKILL: {kills} kills, {posts} Billing create calls ({} repeated, deduped by key), {ACCOUNTS} Billing accounts, {synced} AccountSynced (clean run: {clean_synced}), 0 lost",
        posts - keys
    );
}

/// What a person does to an activated order.
#[derive(Debug, Clone, Copy)]
enum OrderChange {
    Amend,
    Cancel,
}

/// A world where Gold is in the catalog, an account is linked and its activated order has
/// its subscription; then the order is changed and the change ingested. Returns the world
/// and the subscription number.
async fn world_with_order_change(change: OrderChange) -> (World, String) {
    let w = World::new().await;
    w.sandbox.upsert_product(sandbox::Product {
        id: String::new(),
        sku: "SKU-GOLD".into(),
        name: "Gold".into(),
        effective_end_date: None,
        product_rate_plans: vec![sandbox::RatePlan {
            id: String::new(),
            name: "Gold Monthly".into(),
            product_rate_plan_charges: vec![sandbox::Charge {
                id: String::new(),
                name: "Seats".into(),
                pricing: vec![sandbox::Price {
                    currency: "USD".into(),
                    price: 30.0,
                }],
            }],
        }],
    });
    let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
    let account = w
        .sandbox
        .crm_user_create(
            "Account",
            fields(serde_json::json!({"Name": "Crash Co", "CurrencyIsoCode": "USD"})),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    let order = w
        .sandbox
        .crm_user_create(
            "Order",
            fields(
                serde_json::json!({"AccountId": account, "Status": "Activated",
                "EffectiveDate": "2026-12-01", "CurrencyIsoCode": "USD",
                "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": 3}]}),
            ),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    let subs = w.sandbox.billing_subscriptions();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0].version, 1);
    let change = match change {
        OrderChange::Amend => serde_json::json!({
            "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": 7}]}),
        OrderChange::Cancel => serde_json::json!({"Status": "Cancelled"}),
    };
    w.sandbox
        .crm_user_update("Order", &order, fields(change))
        .unwrap();
    w.deliver_outbox().await;
    (w, subs[0].subscription_number.clone())
}

/// After the whole run: the subscription went through exactly one more version (one
/// amendment or one cancellation), in the state the order asks for, with its outcome
/// recorded once and no `SyncFailed`.
async fn assert_changed_once(w: &World, change: OrderChange, context: &str) {
    let subs = w.sandbox.billing_subscriptions();
    assert_eq!(subs.len(), 1, "{context}: one subscription: {subs:?}");
    let sub = &subs[0];
    assert_eq!(
        sub.version, 2,
        "{context}: created, then {change:?} exactly once: {sub:?}"
    );
    match change {
        OrderChange::Amend => {
            assert_eq!(sub.status, "Active");
            assert_eq!(sub.rate_plans.len(), 1, "{sub:?}");
            assert_eq!(sub.rate_plans[0].charges[0].quantity, 7.0);
        }
        OrderChange::Cancel => assert_eq!(sub.status, "Cancelled"),
    }
    let failed = w.events_of_type("SyncFailed").await;
    assert!(
        failed.is_empty(),
        "{context}: false SyncFailed: {:?}",
        failed.iter().map(|e| &e.payload).collect::<Vec<_>>()
    );
    let action = match change {
        OrderChange::Amend => "amended",
        OrderChange::Cancel => "cancelled",
    };
    let outcomes = w
        .events_of_type("OrderSynced")
        .await
        .into_iter()
        .filter(|e| e.payload["action"] == action && e.payload["mirror"] != true)
        .count();
    assert_eq!(outcomes, 1, "{context}: one {action} outcome");
}

async fn order_crash_then_restart(change: OrderChange, point: CrashPoint) {
    let (w, number) = world_with_order_change(change).await;
    let hook = Arc::new(CrashAt {
        point,
        on: 0,
        hits: AtomicUsize::new(0),
        crashed: Notify::new(),
    });
    let runner = crashing_runner::<OrderSync>(&w, hook.clone());
    let mut feed = SqliteLedger::open(w.db())
        .unwrap()
        .change_feed(FeedStart::Beginning)
        .await
        .unwrap();
    let batch: Vec<_> = feed
        .poll(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.event)
        .collect();
    tokio::select! {
        done = runner.process(batch) => panic!("the runner never reached {point:?}: {done:?}"),
        _ = hook.crashed.notified() => {}
    }
    let version_at_crash = w.sandbox.billing_subscriptions()[0].version;
    assert_eq!(
        version_at_crash, 2,
        "the crash came after the {change:?} call"
    );

    // Restart: the real worker redelivers the batch; the decision re-runs the same call.
    w.settle().await;
    assert_changed_once(&w, change, &format!("{change:?} crash at {point:?}")).await;
    eprintln!(
        "faults_crash: {change:?} of {number}, crash at {point:?}: version {version_at_crash} at the crash, {} after restart, 0 SyncFailed",
        w.sandbox.billing_subscriptions()[0].version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amend_repeated_after_a_crash_past_its_call_amends_once() {
    order_crash_then_restart(OrderChange::Amend, CrashPoint::AfterExternalCall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amend_repeated_after_a_crash_before_its_outcome_amends_once() {
    order_crash_then_restart(OrderChange::Amend, CrashPoint::BeforeOutcomeAppend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_repeated_after_a_crash_past_its_call_records_no_false_failure() {
    order_crash_then_restart(OrderChange::Cancel, CrashPoint::AfterExternalCall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_repeated_after_a_crash_before_its_outcome_records_no_false_failure() {
    order_crash_then_restart(OrderChange::Cancel, CrashPoint::BeforeOutcomeAppend).await;
}

/// The worker process SIGKILLed right after its amend or cancel call reached Billing, then
/// restarted: the re-run finds the change done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_its_amend_or_cancel_call_changes_the_subscription_once() {
    for change in [OrderChange::Amend, OrderChange::Cancel] {
        let (w, _) = world_with_order_change(change).await;
        // Billing acts at once, then keeps the request in progress: the kill lands after
        // Billing acted and before the worker saw the answer, and the restart's first try
        // with the same key may meet it still in progress (409).
        w.sandbox.set_faults(
            System::Billing,
            Faults {
                idempotency_hold_ms: 600,
                ..Faults::default()
            },
        );
        let route = match change {
            OrderChange::Amend => "PUT /v1/subscriptions/{key}",
            OrderChange::Cancel => "PUT /v1/subscriptions/{key}/cancel",
        };
        let mut child = w
            .command(World::WORKER)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let killed = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break false;
            }
            if w.sandbox.calls().count(route) > 0 {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                break true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        assert!(killed, "{change:?}: the worker finished before the kill");
        w.settle().await;
        assert_changed_once(&w, change, &format!("{change:?} SIGKILL")).await;
    }
}
