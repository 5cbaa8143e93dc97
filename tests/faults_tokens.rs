//! Fault family 6, tokens, through `ledger worker` against the sandbox's OAuth servers: the
//! Billing token expires in the middle of a batch -> exactly one refresh and the batch
//! succeeds; tokens of both systems are revoked over and over while the worker projects (what
//! a rotation that invalidates the old token looks like to a client) -> no failed sync.

mod common;

use common::fault_world::World;
use std::time::Duration;
use sync_ledger::sandbox::{Faults, System};

const BILLING_TOKEN: &str = "POST /oauth/token";
const CRM_TOKEN: &str = "POST /services/oauth2/token";

async fn world_with_accounts(accounts: usize) -> World {
    let w = World::new().await;
    let activity = w.crm_activity(accounts, 0);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    w.sandbox.set_faults(
        System::Billing,
        Faults {
            latency_ms: 10,
            ..Faults::default()
        },
    );
    w
}

fn billing_api_calls(w: &World) -> u64 {
    let calls = w.sandbox.calls();
    calls.billing - calls.count(BILLING_TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_mid_batch_is_refreshed_exactly_once_and_the_batch_succeeds() {
    const ACCOUNTS: usize = 12;
    let w = world_with_accounts(ACCOUNTS).await;
    let worker = w.command(World::WORKER).output();
    let expire = async {
        // Half-way through the batch's Billing calls.
        while billing_api_calls(&w) < ACCOUNTS as u64 / 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        w.sandbox.expire_tokens(Some(System::Billing));
        billing_api_calls(&w)
    };
    let (out, expired_at) = tokio::join!(worker, expire);
    let out = out.unwrap();
    w.capture(&out);
    assert!(out.status.success(), "the worker run failed");
    assert!(
        billing_api_calls(&w) > expired_at,
        "the expiry happened before the batch ended"
    );
    let fetches = w.sandbox.calls().count(BILLING_TOKEN);
    assert_eq!(fetches, 2, "the first token and exactly one refresh");
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    w.settle().await;
    let state = w.billing_state().await;
    assert_eq!(state.len(), ACCOUNTS);
    assert!(state.values().all(|(_, linked)| *linked));
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    let rejected = w
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.status == 401)
        .count();
    eprintln!(
        "faults_tokens: expiry after {expired_at} of {} Billing calls: {rejected} x 401, {fetches} token fetches (1 refresh), {ACCOUNTS} accounts synced",
        billing_api_calls(&w)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revoked_repeatedly_while_the_worker_runs_fail_no_sync() {
    const ACCOUNTS: usize = 12;
    let w = world_with_accounts(ACCOUNTS).await;
    let mut child = w.command(World::WORKER).spawn().unwrap();
    let mut rotations = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(60)) => {
                w.sandbox.expire_tokens(None);
                rotations += 1;
            }
        }
    };
    assert!(status.success(), "the worker run failed");
    assert!(rotations > 0, "no rotation happened while the worker ran");
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    w.settle().await;
    let state = w.billing_state().await;
    assert_eq!(state.len(), ACCOUNTS);
    assert!(state.values().all(|(_, linked)| *linked));
    let failed = w.events_of_type("SyncFailed").await;
    assert!(failed.is_empty(), "no sync failed: {failed:?}");
    let calls = w.sandbox.calls();
    eprintln!(
        "faults_tokens: {rotations} revocations during the run, {} + {} token fetches, 0 SyncFailed, {ACCOUNTS} accounts synced",
        calls.count(BILLING_TOKEN),
        calls.count(CRM_TOKEN)
    );
}
