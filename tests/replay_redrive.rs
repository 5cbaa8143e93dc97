//! `ledger redrive --correlation <id>` end to end, through the `ledger` binary against the
//! in-process sandbox, on the embedded store and on DynamoDB (moto): an order's subscription
//! create fails permanently (its product is not in the Billing catalog); once the catalog has
//! it, redrive re-runs that call with the same idempotency key, the subscription exists, the
//! correlation view links it and the audit shows who redrove it. A second redrive calls
//! nothing; a dry run lists without calling; an unknown id fails with a clear message.

mod common;

use common::sync_world;
use common::sync_world_dynamodb;

use serde_json::json;
use std::process::Output;
use sync_world::{counterpart, fields, gold, sqlite_world, World};
use sync_world_dynamodb::dynamodb_world;

/// `ledger <args>` whatever its exit status.
async fn ledger_output(w: &World, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["--store", &w.store().url])
        .args(args)
        .envs(w.store().env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .expect("the ledger binary runs")
}

/// A person activates an order for `account` in the CRM; returns the order id.
fn activate_order(w: &World, account: &str, seats: u32) -> String {
    w.sandbox
        .crm_user_create(
            "Order",
            fields(json!({"AccountId": account, "Status": "Activated",
                "EffectiveDate": "2026-12-01", "CurrencyIsoCode": "USD",
                "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": seats}]})),
        )
        .unwrap()
}

async fn redrive_fixes_a_permanently_failed_order_sync(w: &World) {
    // An account, synced and linked both ways.
    let account = w.crm_account("Redrive Ltd");
    w.deliver_outbox().await;
    w.settle().await;
    assert_eq!(w.sandbox.billing_accounts().len(), 1);

    // Its order names a product the Billing catalog does not sell yet: a permanent failure.
    let order = activate_order(w, &account, 2);
    w.deliver_outbox().await;
    w.settle().await;
    let order_stream = format!("crm-order-{order}");
    let trace = w.events(&order_stream).await[0].correlation_id.to_string();
    let audit = w.ledger(&["audit", &trace]).await;
    assert!(
        audit.contains("SyncFailed") && audit.contains("SKU-GOLD"),
        "{audit}"
    );
    assert!(w.sandbox.billing_subscriptions().is_empty());

    // A dry run lists the failed call and calls nothing.
    let calls_before = w.sandbox.calls().total;
    let dry = w
        .ledger(&["redrive", "--correlation", &trace, "--dry-run"])
        .await;
    assert!(dry.contains("1 sync(s) would be re-run"), "{dry}");
    assert!(
        dry.contains(&format!(
            "CrmOrderActivated {order_stream} v1 [order-sync billing-create-subscription]: would re-run"
        )),
        "{dry}"
    );
    assert_eq!(w.sandbox.calls().total, calls_before);
    assert!(!w
        .ledger(&["audit", &trace])
        .await
        .contains("RedriveRequested"));

    // The catalog gets the product; the operator redrives the trace.
    w.sandbox.upsert_product(gold());
    let out = w
        .ledger(&[
            "redrive",
            "--correlation",
            &trace,
            "--by",
            "alice",
            "--reason",
            "SKU-GOLD is in the catalog now",
        ])
        .await;
    assert!(
        out.contains("[order-sync billing-create-subscription]: re-run: succeeded, recorded OrderSynced, OrderSynced"),
        "{out}"
    );
    let subscriptions = w.sandbox.billing_subscriptions();
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(w.sandbox.calls().count("POST /v1/subscriptions"), 1);
    // The same idempotency key the first decision used: `<order event id>:<step>`.
    let order_event = w.events(&order_stream).await[0].event_id;
    let synced = w
        .events(&order_stream)
        .await
        .into_iter()
        .find(|e| e.event_type == "OrderSynced")
        .expect("OrderSynced on the order's stream");
    assert_eq!(
        synced.source_event_id.as_str(),
        format!("{order_event}:billing-create-subscription")
    );
    assert_eq!(synced.causation_id, Some(order_event));

    // The redrive applied its outcomes: the correlation view links order and subscription.
    let link = w.link("crm", &order).await.expect("the order resolves");
    assert_eq!(
        counterpart(&link),
        Some(subscriptions[0].subscription_number.as_str())
    );
    let audit = w.ledger(&["audit", &trace]).await;
    assert!(
        audit.contains("RedriveRequested")
            && audit.contains(
                "order billing-create-subscription re-run by alice: SKU-GOLD is in the catalog now"
            ),
        "{audit}"
    );
    assert!(audit.contains("OrderSynced"), "{audit}");

    // Done is done: a second redrive finds nothing pending and calls nothing.
    let calls_after = w.sandbox.calls().total;
    let again = w.ledger(&["redrive", "--correlation", &trace]).await;
    assert!(
        again.contains(&format!(
            "nothing to redrive in {trace}: no failed or deferred sync is pending (0 calls)"
        )),
        "{again}"
    );
    assert_eq!(w.sandbox.calls().total, calls_after);
    assert_eq!(w.sandbox.billing_subscriptions().len(), 1);

    // The live projector later sees the redrive's events as already applied.
    let report = w.work().await;
    assert!(report.contains("gave up 0"), "{report}");
    assert_eq!(w.sandbox.billing_subscriptions().len(), 1);

    // An id no event carries: a clear error, non-zero exit.
    let unknown = "0193a0b4-1c00-7000-8000-00000000dead";
    let missing = ledger_output(w, &["redrive", "--correlation", unknown]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!(
            "unknown correlation id {unknown}: no event in the ledger carries it"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_fixes_a_permanently_failed_order_sync_on_the_embedded_store() {
    redrive_fixes_a_permanently_failed_order_sync(&sqlite_world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_fixes_a_permanently_failed_order_sync_on_dynamodb() {
    redrive_fixes_a_permanently_failed_order_sync(&dynamodb_world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_correlation_id_is_refused_naming_the_flag() {
    let w = sqlite_world().await;
    let out = ledger_output(&w, &["redrive", "--correlation", "not-a-uuid"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--correlation"), "{stderr}");
}

/// The subscription create of an order that waited for its account is decided by the event
/// that recorded the account's link (in the account's trace), keyed by the order event:
/// redrive finds that decider and repeats the call under the order's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_repeats_a_failed_create_that_a_late_account_link_released() {
    let w = sqlite_world().await;
    let account = w.crm_account("Late Link Ltd");
    let account_events = w.sandbox.drain_outbox();
    let order = activate_order(&w, &account, 4);
    // The order first: deferred. Then its account: linked, which releases the order, whose
    // create fails (the catalog does not sell SKU-GOLD yet).
    w.deliver_outbox().await;
    w.work().await;
    w.ingest(
        &account_events
            .into_iter()
            .map(|e| e.body)
            .collect::<Vec<_>>(),
    )
    .await;
    w.settle().await;
    let order_stream = format!("crm-order-{order}");
    let types = w.types(&order_stream).await;
    assert!(
        types.contains(&"SyncDeferred".to_string()) && types.contains(&"SyncFailed".to_string()),
        "{types:?}"
    );
    let failed = w
        .events(&order_stream)
        .await
        .into_iter()
        .find(|e| e.event_type == "SyncFailed")
        .unwrap();
    assert!(failed.payload["unblocked_by"].is_string(), "{failed:?}");
    let trace = failed.correlation_id.to_string();

    w.sandbox.upsert_product(gold());
    let out = w
        .ledger(&["redrive", "--correlation", &trace, "--by", "ops"])
        .await;
    assert!(
        out.contains(&format!(
            "CrmOrderActivated {order_stream} v1 [order-sync billing-create-subscription]: re-run: succeeded, recorded OrderSynced"
        )),
        "{out}"
    );
    let subscriptions = w.sandbox.billing_subscriptions();
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(subscriptions[0].rate_plans[0].charges[0].quantity, 4.0);
    let link = w.link("crm", &order).await.expect("the order resolves");
    assert_eq!(
        counterpart(&link),
        Some(subscriptions[0].subscription_number.as_str())
    );
    let again = w.ledger(&["redrive", "--correlation", &trace]).await;
    assert!(again.contains("nothing to redrive"), "{again}");
}

/// An order still waiting for its account's link has nothing to call: redrive says what it
/// waits for and where to look, calls nothing, and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_deferred_order_is_reported_not_forced() {
    let w = sqlite_world().await;
    let account = w.crm_account("Never Arrives Ltd");
    w.sandbox.drain_outbox(); // the account's change event is lost upstream
    let order = activate_order(&w, &account, 1);
    w.deliver_outbox().await;
    w.work().await;
    let order_stream = format!("crm-order-{order}");
    let trace = w.events(&order_stream).await[0].correlation_id.to_string();
    let before = w.events(&order_stream).await.len();
    let calls = w.sandbox.calls().total;

    let out = w.ledger(&["redrive", "--correlation", &trace]).await;
    assert!(
        out.contains(&format!(
            "[order-sync deferred]: still deferred, waiting for account-link:crm:{account}: nothing to call yet (redrive the account's trace first: `ledger audit {account}`)"
        )),
        "{out}"
    );
    assert!(out.contains("0 external call(s)"), "{out}");
    assert_eq!(w.sandbox.calls().total, calls);
    assert_eq!(w.events(&order_stream).await.len(), before);
}
