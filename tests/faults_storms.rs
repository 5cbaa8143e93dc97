//! Fault family 3, storms, on the embedded store through `ledger ingest` + `ledger worker`:
//! both sandbox systems answer 30% of calls 429 with `Retry-After: 1` and 10% of calls 5xx
//! while CRM accounts are synced. Asserted: every sync completes (Billing account + links),
//! no `SyncFailed` is recorded, no Billing account is duplicated, and the retries per
//! external call are bounded (attempts per idempotency key <= connector attempts x deliveries).

mod common;

use common::fault_world::World;
use sandbox::{Faults, System};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_and_5xx_storm_delays_but_never_fails_or_duplicates_a_sync() {
    const ACCOUNTS: usize = 20;
    let w = World::new().await;
    let activity = w.crm_activity(ACCOUNTS, 0);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    for system in [System::Crm, System::Billing] {
        w.sandbox.set_faults(
            system,
            Faults {
                throttle_rate: 0.30,
                retry_after_secs: 1,
                // 500s are drawn from the calls that were not throttled: 0.143 x 0.7 = 10%.
                error_rate: 0.143,
                // One sure 429 and one sure 503 first, so a run whose dice spared it still
                // proves both kinds are survived (~30 calls at 10% miss every 5xx 4% of runs).
                throttle_next: 1,
                fail_next: 1,
                ..Faults::default()
            },
        );
    }
    w.settle().await;

    let state = w.billing_state().await;
    assert_eq!(
        state.len(),
        ACCOUNTS,
        "no Billing account lost or duplicated"
    );
    assert!(
        state.values().all(|(_, linked)| *linked),
        "every account linked both ways"
    );
    let failed = w.events_of_type("SyncFailed").await;
    assert!(
        failed.is_empty(),
        "no sync failed under the storm: {failed:?}"
    );

    let log = w.sandbox.call_log();
    let throttled = log.iter().filter(|c| c.status == 429).count();
    let errors = log.iter().filter(|c| c.status >= 500).count();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for call in &log {
        if let Some(key) = call.idempotency_key.as_deref() {
            *per_key.entry(key).or_default() += 1;
        }
    }
    let most = per_key.values().copied().max().unwrap_or(0);
    // Connector attempts (4) x runner deliveries (3): the most a call can ever be tried.
    assert!(most <= 12, "a call was tried {most} times");
    assert!(throttled > 0 && errors > 0, "the storm happened");
    eprintln!(
        "faults_storms: {ACCOUNTS} accounts, {} calls: {throttled} x 429 ({:.0}%), {errors} x 5xx ({:.0}%), max {most} attempts per idempotency key, 0 SyncFailed, all synced",
        log.len(),
        100.0 * throttled as f64 / log.len() as f64,
        100.0 * errors as f64 / log.len() as f64
    );
}
