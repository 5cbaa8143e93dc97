//! End-to-end sync on the embedded store, through the real entry points: the sandbox's CRM
//! and Billing emit what a person or our own writes cause (its outbox plays the event relay),
//! `ledger ingest` records it, `ledger worker` projects it over the change feed and calls the
//! sandbox. The scenarios (shared with DynamoDB) live in `tests/common/sync_world.rs`.

mod common;

use common::sync_world;

use sync_world::World;

async fn world() -> World {
    sync_world::sqlite_world().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_account_becomes_a_billing_account_linked_both_ways() {
    sync_world::crm_account_becomes_a_billing_account_linked_both_ways(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_before_its_account_is_deferred_then_synced() {
    sync_world::an_order_arriving_before_its_account_is_deferred_then_synced(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_catalog_change_lands_in_the_crm() {
    sync_world::a_billing_catalog_change_lands_in_the_crm(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_billing_update_echoes_back_and_is_suppressed() {
    sync_world::our_billing_update_echoes_back_and_is_suppressed(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_records_change_nothing() {
    let checkpoints: Vec<String> = sync_ledger::projector::PROJECTIONS
        .iter()
        .map(|(_, view)| sync_ledger::worker::feed::checkpoint_name(view))
        .collect();
    sync_world::redelivered_records_change_nothing(&world().await, &checkpoints).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_outage_is_retried_by_redelivery_until_the_account_is_created() {
    use sandbox::{Faults, System};
    let w = world().await;
    // More 503s than one call's own retries absorb: the first delivery fails transiently.
    w.sandbox.set_faults(
        System::Billing,
        Faults {
            fail_next: 5,
            ..Faults::default()
        },
    );
    let crm_id = w.crm_account("Outage Ltd");
    w.deliver_outbox().await;
    let report = w.work().await;
    assert!(report.contains("retried 1"), "{report}");
    assert_eq!(w.sandbox.billing_accounts().len(), 1);
    let types = w.types(&format!("crm-account-{crm_id}")).await;
    assert!(types.contains(&"AccountSynced".to_string()), "{types:?}");
    assert!(!types.contains(&"SyncFailed".to_string()), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_keeps_failing_is_recorded_as_sync_failed_and_the_stream_moves_on() {
    use sandbox::{Faults, System};
    let w = world().await;
    w.sandbox.set_faults(
        System::Billing,
        Faults {
            fail_next: 1000,
            ..Faults::default()
        },
    );
    let crm_id = w.crm_account("Poison Pty");
    w.deliver_outbox().await;
    w.work().await;
    let events = w.events(&format!("crm-account-{crm_id}")).await;
    let failed = events
        .iter()
        .find(|e| e.event_type == "SyncFailed")
        .expect("the give-up is recorded");
    assert!(
        failed.payload["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gave up after 3 deliveries") && r.contains("503")),
        "{}",
        failed.payload
    );
    assert_eq!(failed.causation_id, Some(events[0].event_id));
    assert!(w.sandbox.billing_accounts().is_empty());

    // The stream is not blocked: once Billing is back, the next change of the account syncs.
    w.sandbox.set_faults(System::Billing, Faults::default());
    w.sandbox
        .crm_user_update(
            "Account",
            &crm_id,
            sync_world::fields(serde_json::json!({"Name": "Poison Pty Ltd"})),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    assert_eq!(w.sandbox.billing_accounts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_stops_cleanly_on_ctrl_c_and_resumes_from_its_checkpoint() {
    let w = world().await;
    w.crm_account("Signal SA");
    w.deliver_outbox().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "--store",
            &w.store().url,
            "worker",
            "--batch-window-ms",
            "0",
        ])
        .envs(w.store().env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded wait for the sync to happen while the worker keeps polling.
    for _ in 0..200 {
        if !w.sandbox.billing_accounts().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(w.sandbox.billing_accounts().len(), 1);
    let pid = child.id().unwrap().to_string();
    let signalled = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the worker exits after Ctrl-C")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("account-sync:"), "{report}");
    // Everything it applied is checkpointed: a new run redelivers none of it (it only gets
    // what was recorded after the stop, such as outcomes not yet projected).
    let again = w.work().await;
    assert_eq!(again.lines().count(), 4, "{again}");
    assert!(
        again.lines().all(|l| l.contains("already applied 0")),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_projected_before_its_product_waits_for_the_product_then_lands() {
    let w = world().await;
    let product = w.sandbox.upsert_product(sync_world::gold());
    // The relay delivers the catalog backwards: charge, rate plan, then the product.
    let mut bodies: Vec<serde_json::Value> = w
        .sandbox
        .drain_outbox()
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert!(bodies.len() >= 3, "{bodies:?}");
    bodies.reverse();
    w.ingest(&bodies).await;
    w.settle().await;

    let prices = w.sandbox.crm_records("PricebookEntry");
    assert_eq!(prices.len(), 1, "{prices:?}");
    assert_eq!(prices[0]["UnitPrice"], serde_json::json!(30.0));
    let plan = &product.product_rate_plans[0].id;
    let types = w.types(&format!("billing-rateplan-{plan}")).await;
    assert!(types.contains(&"ProductSynced".to_string()), "{types:?}");
    assert!(!types.contains(&"SyncFailed".to_string()), "{types:?}");
}
