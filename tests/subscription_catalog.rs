//! Subscriptions pick the right plan and currency without listing the catalog per call
//! (issue 15 item 6). Orders go CRM -> ledger -> order projector -> Billing over the sandbox's
//! real HTTP APIs: the `ledger` binary ingests and settles, and the order projection's runner
//! (the one `ledger worker` and the projector Lambda run) is driven in-process where a test
//! needs its per-batch `catalog_lookups` (the `CatalogLookups` EMF metric).

mod common;

use common::fault_world::{fields, World};
use sandbox::{Charge, Price, Product, RatePlan};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use sync_ledger::connectors::config::ConnectorsConfig;
use sync_ledger::ledger::{ChangeFeed, EventLog, FeedStart, SqliteLedger};
use sync_ledger::projections::order_sync::OrderSync;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{BatchOutcome, Projector, Runner, RunnerSettings};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;

const LIST: &str = "GET /v1/catalog/products";
const ONE: &str = "GET /v1/catalog/products/{key}";

fn plan(name: &str, currency: &str, price: f64) -> RatePlan {
    RatePlan {
        id: String::new(),
        name: name.into(),
        product_rate_plan_charges: vec![Charge {
            id: String::new(),
            name: "Seats".into(),
            pricing: vec![Price {
                currency: currency.into(),
                price,
            }],
        }],
    }
}

/// Gold, sold in USD by one rate plan and in EUR by another (the USD one first).
fn gold(usd_price: f64) -> Product {
    Product {
        id: String::new(),
        sku: "SKU-GOLD".into(),
        name: "Gold".into(),
        effective_end_date: None,
        product_rate_plans: vec![
            plan("Gold USD", "USD", usd_price),
            plan("Gold EUR", "EUR", 28.0),
        ],
    }
}

/// A CRM account in `currency`, synced to Billing; returns its CRM id.
async fn linked_account(w: &World, currency: &str) -> String {
    let id = w
        .sandbox
        .crm_user_create(
            "Account",
            fields(json!({"Name": format!("{currency} Buyer"), "CurrencyIsoCode": currency})),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    id
}

/// People activate `n` orders of Gold for `account` in `currency`; their events are ingested.
async fn orders(w: &World, account: &str, currency: &str, n: usize) {
    for i in 0..n {
        w.sandbox
            .crm_user_create(
                "Order",
                fields(json!({"AccountId": account, "Status": "Activated",
                    "EffectiveDate": "2026-12-01", "CurrencyIsoCode": currency,
                    "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": i + 1}]})),
            )
            .unwrap();
    }
    w.deliver_outbox().await;
}

/// The order projection's runner on `w`'s store and sandbox: one long-lived process, as a
/// warm Lambda container is.
fn order_runner(w: &World) -> Runner<OrderSync> {
    let env: BTreeMap<&str, String> = w.env().into_iter().collect();
    let config = ConnectorsConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let effects = Arc::new(ConnectorEffects::from_config(&config, None).unwrap());
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(w.db()).unwrap());
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&w.db()).unwrap());
    Runner::new(log, views, effects, RunnerSettings::default())
}

/// Delivers what `feed` holds since its last poll to `runner` as one batch, as the event
/// source mapping does.
async fn deliver(feed: &mut Box<dyn ChangeFeed>, runner: &Runner<OrderSync>) -> BatchOutcome {
    let batch = feed
        .poll(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.event)
        .collect();
    let outcome = runner.process(batch).await;
    assert!(outcome.first_failure().is_none(), "{outcome:?}");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_eur_subscribes_to_the_rate_plan_priced_in_eur() {
    let w = World::new().await;
    let product = w.sandbox.upsert_product(gold(30.0));
    w.deliver_outbox().await;
    let account = linked_account(&w, "EUR").await;
    orders(&w, &account, "EUR", 1).await;
    w.settle().await;

    let subs = w.sandbox.billing_subscriptions();
    assert_eq!(subs.len(), 1, "{subs:?}");
    let eur_plan = &product.product_rate_plans[1];
    assert_eq!(eur_plan.name, "Gold EUR");
    assert_eq!(
        subs[0].rate_plans[0].product_rate_plan_id, eur_plan.id,
        "the EUR rate plan, not the product's first: {subs:?}"
    );
    assert_eq!(subs[0].currency, "EUR");
    let create = w
        .sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.label() == "POST /v1/subscriptions")
        .count();
    assert_eq!(create, 1);
    assert!(w.events_of_type("SyncFailed").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_a_currency_no_rate_plan_prices_fails_naming_the_line_and_currency() {
    let w = World::new().await;
    w.sandbox.upsert_product(gold(30.0));
    w.deliver_outbox().await;
    let account = linked_account(&w, "GBP").await;
    orders(&w, &account, "GBP", 1).await;
    w.settle().await;

    assert!(w.sandbox.billing_subscriptions().is_empty());
    let failed = w.events_of_type("SyncFailed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let reason = failed[0].payload["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 0") && reason.contains("SKU-GOLD") && reason.contains("GBP"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_read_a_product_once_and_the_catalog_list_never() {
    let w = World::new().await;
    w.sandbox.upsert_product(gold(30.0));
    w.deliver_outbox().await;
    let account = linked_account(&w, "USD").await;
    let runner = order_runner(&w);
    let mut feed = SqliteLedger::open(w.db())
        .unwrap()
        .change_feed(FeedStart::Beginning)
        .await
        .unwrap();
    w.sandbox.reset_calls();

    orders(&w, &account, "USD", 3).await;
    let first = deliver(&mut feed, &runner).await;
    assert_eq!(w.sandbox.billing_subscriptions().len(), 3);
    assert_eq!(first.catalog_lookups, 1, "one read of Gold for 3 orders");

    orders(&w, &account, "USD", 3).await;
    let steady = deliver(&mut feed, &runner).await;
    assert_eq!(w.sandbox.billing_subscriptions().len(), 6);
    assert_eq!(steady.catalog_lookups, 0, "steady state: no catalog read");

    // A price change in Billing reaches the log: the next batch reads Gold again.
    w.sandbox.upsert_product(gold(35.0));
    w.deliver_outbox().await;
    orders(&w, &account, "USD", 1).await;
    let changed = deliver(&mut feed, &runner).await;
    assert_eq!(
        changed.catalog_lookups, 1,
        "a catalog event clears the cache"
    );

    let calls = w.sandbox.calls();
    assert_eq!(calls.count(LIST), 0, "the catalog is never listed");
    assert_eq!(calls.count(ONE), 2);
    assert_eq!(calls.count("POST /v1/subscriptions"), 7);
    eprintln!(
        "subscription_catalog: 7 subscriptions, {} product reads, {} catalog list calls; CatalogLookups per batch {} / {} / {}",
        calls.count(ONE),
        calls.count(LIST),
        first.catalog_lookups,
        steady.catalog_lookups,
        changed.catalog_lookups
    );
}
