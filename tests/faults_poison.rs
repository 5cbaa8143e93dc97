//! Fault family 4, poison, on the embedded store through `ledger ingest` + `ledger worker`: a
//! CRM account Billing always refuses (a currency that is not a 3-letter code -> 400) sits in
//! the same batch as good accounts. Asserted: it is recorded as `SyncFailed` naming the
//! reason, every other account syncs, the worker goes idle (nothing retried forever), a later
//! run makes no further call for it, and a later fix on the same stream is applied.

mod common;

use common::fault_world::{fields, World};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_record_is_recorded_failed_and_the_rest_proceeds() {
    let w = World::new().await;
    // A person creates an account in the CRM; the sandbox emits its change event.
    let create = |name: &str, currency: &str| {
        w.sandbox
            .crm_user_create(
                "Account",
                fields(json!({"Name": name, "CurrencyIsoCode": currency})),
            )
            .unwrap()
    };
    let mut good: Vec<_> = (0..3)
        .map(|i| create(&format!("Good {i}"), "USD"))
        .collect();
    let poison = create("Poison", "EURO");
    good.extend((3..6).map(|i| create(&format!("Good {i}"), "USD")));
    w.deliver_outbox().await;
    w.settle().await;

    let state = w.billing_state().await;
    for id in &good {
        assert!(
            state.get(id).is_some_and(|(_, linked)| *linked),
            "{id} synced"
        );
    }
    assert!(
        !state.contains_key(&poison),
        "the poison account was not created"
    );
    let failed = w.events_of_type("SyncFailed").await;
    assert_eq!(failed.len(), 1, "one SyncFailed: {failed:?}");
    let reason = failed[0].payload["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("currency"),
        "the reason names the field: {reason}"
    );
    let creates_after_first_run = w.sandbox.calls().count("POST /v1/accounts");

    // Another worker run (our own write-back echoes are dropped here): the failure is final.
    w.sandbox.drain_outbox();
    w.settle().await;
    assert_eq!(
        w.sandbox.calls().count("POST /v1/accounts"),
        creates_after_first_run,
        "nothing is retried forever"
    );
    assert_eq!(w.events_of_type("SyncFailed").await.len(), 1);

    // A person fixes the record: the stream proceeds past its failed version.
    w.sandbox
        .crm_user_update(
            "Account",
            &poison,
            fields(json!({"CurrencyIsoCode": "EUR"})),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    let fixed = w.billing_state().await;
    assert!(
        fixed.get(&poison).is_some_and(|(_, linked)| *linked),
        "the fixed record syncs: {fixed:?}"
    );
    eprintln!(
        "faults_poison: 1 poison among {} accounts: SyncFailed ({reason}), {} Billing creates for {} accounts before the fix, 0 retries after, synced after the fix",
        good.len() + 1,
        creates_after_first_run,
        good.len()
    );
}
