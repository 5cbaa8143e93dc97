//! `ledger redrive --failed` through the `ledger` binary against the in-process sandbox on the
//! embedded store: two orders in two traces fail their subscription create (the product is
//! not in the Billing catalog yet); one command lists both with a summary by projection and
//! reason, filters by projection and time, and, once the catalog sells the product, redrives
//! both traces with the same idempotency keys; a second run finds nothing.

mod common;

use common::sync_world;

use serde_json::json;
use sync_world::{fields, gold, sqlite_world, World};

fn activate_order(w: &World, account: &str) -> String {
    w.sandbox
        .crm_user_create(
            "Order",
            fields(json!({"AccountId": account, "Status": "Activated",
                "EffectiveDate": "2026-12-01", "CurrencyIsoCode": "USD",
                "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": 3}]})),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_failed_summarises_then_redrives_every_unfinished_trace() {
    let w = sqlite_world().await;
    let first = w.crm_account("Failed One Ltd");
    let second = w.crm_account("Failed Two Ltd");
    w.deliver_outbox().await;
    w.settle().await;
    let before_failures = chrono::Utc::now().to_rfc3339();
    activate_order(&w, &first);
    activate_order(&w, &second);
    w.deliver_outbox().await;
    w.settle().await;
    assert!(w.sandbox.billing_subscriptions().is_empty());

    // The summary, then each trace's plan; nothing called.
    let calls_before = w.sandbox.calls().total;
    let dry = w.ledger(&["redrive", "--failed", "--dry-run"]).await;
    assert!(
        dry.starts_with("redrive --failed (dry run): 2 unfinished sync(s) in 2 trace(s)\n  by projection: order-sync 2\n  by reason:\n    2 x billing-create-subscription: "),
        "{dry}"
    );
    assert!(
        dry.contains("SKU-GOLD"),
        "the reason is the recorded one: {dry}"
    );
    assert_eq!(
        dry.matches("[order-sync billing-create-subscription]: would re-run")
            .count(),
        2,
        "{dry}"
    );
    assert_eq!(w.sandbox.calls().total, calls_before);

    // Filters: another projection, or only failures after now, select nothing.
    let other = w
        .ledger(&[
            "redrive",
            "--failed",
            "--projection",
            "account",
            "--dry-run",
        ])
        .await;
    assert!(other.contains("nothing to redrive"), "{other}");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = w
        .ledger(&[
            "redrive",
            "--failed",
            "--since",
            &later.to_rfc3339(),
            "--dry-run",
        ])
        .await;
    assert!(none.contains("nothing to redrive"), "{none}");
    let since = w
        .ledger(&[
            "redrive",
            "--failed",
            "--since",
            &before_failures,
            "--projection",
            "order",
            "--dry-run",
        ])
        .await;
    assert!(
        since.contains("2 unfinished sync(s) in 2 trace(s)"),
        "{since}"
    );

    // The catalog sells it now: one command redrives both traces.
    w.sandbox.upsert_product(gold());
    let out = w.ledger(&["redrive", "--failed", "--by", "bob"]).await;
    assert!(
        out.starts_with("redrive --failed: 2 unfinished sync(s) in 2 trace(s)"),
        "{out}"
    );
    assert_eq!(
        out.matches("[order-sync billing-create-subscription]: re-run: succeeded")
            .count(),
        2,
        "{out}"
    );
    assert_eq!(w.sandbox.billing_subscriptions().len(), 2);
    assert_eq!(w.sandbox.calls().count("POST /v1/subscriptions"), 2);

    // Done is done.
    let calls_after = w.sandbox.calls().total;
    let again = w.ledger(&["redrive", "--failed"]).await;
    assert!(again.contains("nothing to redrive"), "{again}");
    assert_eq!(w.sandbox.calls().total, calls_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_failed_refuses_bad_filters_naming_the_flag() {
    let w = sqlite_world().await;
    for (args, flag) in [
        (
            vec!["redrive", "--failed", "--since", "yesterday"],
            "--since",
        ),
        (
            vec!["redrive", "--failed", "--projection", "invoices"],
            "--projection",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["--store", &w.store().url])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
