//! Fault family 2, crash points. The account projection's runner (the one `ledger worker` and
//! the projector Lambda run) is driven in-process over the embedded store and the sandbox's
//! real HTTP APIs, with a crash hook that stops it at one `CrashPoint` — after an external
//! call, before the outcome append, before the view update, mid-batch — and the `process`
//! future is dropped there, as a killed process would be. The restart is a real
//! `ledger worker --until-idle` that redelivers the batch (no checkpoint was saved). A second
//! test SIGKILLs real worker processes at points chosen by the calls they made. Asserted: 0
//! lost syncs, 0 duplicate Billing accounts (idempotency keys), 0 duplicate outcomes, and the
//! same Billing state and links as a run that never crashed.

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

/// The account projection's runner on `w`'s store and sandbox, stopping at `hook`.
fn crashing_runner(w: &World, hook: Arc<CrashAt>) -> Runner<AccountSync> {
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
    let runner = crashing_runner(&w, hook.clone());
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
