//! End-to-end sync on the embedded store, through the real entry points: the sandbox's CRM
//! and Billing emit what a person or our own writes cause (its outbox plays the event relay),
//! `ledger ingest` records it, `ledger worker` projects it and calls the sandbox APIs.
//! Assertions read what a user would check: sandbox objects and call counts, the ledger's
//! outcome events, and the correlation view.

use serde_json::{json, Map, Value};
use std::path::PathBuf;
use sync_ledger::ledger::sqlite::SqliteLedger;
use sync_ledger::ledger::EventLog;
use sync_ledger::projections::{RecordedEvent, StreamId};
use sync_ledger::sandbox::{
    Charge, Price, Product, RatePlan, Sandbox, SandboxConfig, System, STANDARD_PRICEBOOK_ID,
};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::{ViewKey, ViewStore};
use tokio::process::Command;

struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sandbox: Sandbox,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let world = Self {
            _dir: dir,
            db,
            sandbox: Sandbox::start(SandboxConfig::default()).await.unwrap(),
        };
        world.ledger(&["migrate"]).await;
        world
    }

    fn store(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }

    /// Runs `ledger <args>` against this world's store and sandbox; panics on failure.
    async fn ledger(&self, args: &[&str]) -> String {
        let crm = self.sandbox.config().credentials(System::Crm).clone();
        let billing = self.sandbox.config().credentials(System::Billing).clone();
        let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["--store", &self.store()])
            .args(args)
            .env("RUST_LOG", "warn")
            .env("CRM_BASE_URL", self.sandbox.url().as_str())
            .env("BILLING_BASE_URL", self.sandbox.url().as_str())
            .env("CRM_CLIENT_ID", &crm.client_id)
            .env("CRM_CLIENT_SECRET", crm.client_secret.expose_secret())
            .env("BILLING_CLIENT_ID", &billing.client_id)
            .env(
                "BILLING_CLIENT_SECRET",
                billing.client_secret.expose_secret(),
            )
            .env("CRM_PRICEBOOK_ID", STANDARD_PRICEBOOK_ID)
            .output()
            .await
            .expect("the ledger binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "ledger {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Records outbox events (the event relay's deliveries) with `ledger ingest`.
    async fn ingest(&self, bodies: &[Value]) {
        let path = self
            ._dir
            .path()
            .join(format!("in-{}.jsonl", uuid::Uuid::now_v7()));
        let text: String = bodies.iter().map(|b| format!("{b}\n")).collect();
        std::fs::write(&path, text).unwrap();
        self.ledger(&["ingest", path.to_str().unwrap()]).await;
    }

    async fn deliver_outbox(&self) -> usize {
        let bodies: Vec<Value> = self
            .sandbox
            .drain_outbox()
            .into_iter()
            .map(|e| e.body)
            .collect();
        if !bodies.is_empty() {
            self.ingest(&bodies).await;
        }
        bodies.len()
    }

    async fn work(&self) -> String {
        self.ledger(&[
            "worker",
            "--until-idle",
            "--batch-window-ms",
            "0",
            "--retry-backoff-ms",
            "10",
            "--max-retries",
            "3",
        ])
        .await
    }

    /// Project, deliver what the systems emitted, and repeat until nothing more happens
    /// (bounded: a loop that never settles fails the test).
    async fn settle(&self) {
        for _ in 0..8 {
            self.work().await;
            if self.deliver_outbox().await == 0 {
                return;
            }
        }
        panic!("sync did not settle after 8 rounds: ping-pong?");
    }

    fn log(&self) -> SqliteLedger {
        SqliteLedger::open(&self.db).unwrap()
    }

    async fn events(&self, stream: &str) -> Vec<RecordedEvent> {
        self.log()
            .read_stream(&StreamId::parse(stream).unwrap(), 1)
            .await
            .unwrap()
    }

    async fn types(&self, stream: &str) -> Vec<String> {
        self.events(stream)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    async fn link(&self, side: &str, id: &str) -> Option<Value> {
        let views = SqliteViewStore::open(&self.db).unwrap();
        views
            .get(&ViewKey::new("correlation", &format!("link#{side}#{id}")).unwrap())
            .await
            .unwrap()
            .map(|item| item.state)
    }

    fn crm_account(&self, name: &str) -> String {
        self.sandbox
            .crm_user_create(
                "Account",
                fields(json!({"Name": name, "CurrencyIsoCode": "USD"})),
            )
            .unwrap()
    }
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn counterpart(link: &Value) -> Option<&str> {
    link["links"][0]["counterpart_id"].as_str()
}

fn gold() -> Product {
    Product {
        id: String::new(),
        sku: "SKU-GOLD".into(),
        name: "Gold".into(),
        effective_end_date: None,
        product_rate_plans: vec![RatePlan {
            id: String::new(),
            name: "Gold Monthly".into(),
            product_rate_plan_charges: vec![Charge {
                id: String::new(),
                name: "Seats".into(),
                pricing: vec![Price {
                    currency: "USD".into(),
                    price: 30.0,
                }],
            }],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_account_becomes_a_billing_account_linked_both_ways() {
    let w = World::new().await;
    let crm_id = w.crm_account("Acme Corp");
    w.deliver_outbox().await;
    w.settle().await;

    let accounts = w.sandbox.billing_accounts();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let billing_id = accounts[0].id.clone();
    assert_eq!(accounts[0].crm_id.as_deref(), Some(crm_id.as_str()));
    assert_eq!(accounts[0].name, "Acme Corp");

    let stream = format!("crm-account-{crm_id}");
    let events = w.events(&stream).await;
    let inbound = &events[0];
    let synced = events
        .iter()
        .find(|e| e.event_type == "AccountSynced" && e.payload["action"] == "created")
        .expect("AccountSynced recorded on the CRM account's stream");
    assert_eq!(synced.payload["billing_id"], json!(billing_id));
    assert_eq!(synced.correlation_id, inbound.correlation_id);
    assert_eq!(synced.causation_id, Some(inbound.event_id));

    let crm_link = w.link("crm", &crm_id).await.expect("CRM id resolves");
    assert_eq!(counterpart(&crm_link), Some(billing_id.as_str()));
    let billing_link = w
        .link("billing", &billing_id)
        .await
        .expect("Billing id resolves");
    assert_eq!(counterpart(&billing_link), Some(crm_id.as_str()));
    // The CRM record now carries the Billing id, written once.
    let crm = w.sandbox.crm_records("Account");
    assert_eq!(crm[0]["Billing_Account_Id__c"], json!(billing_id));
    assert_eq!(w.sandbox.calls().count("POST /v1/accounts"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_before_its_account_is_deferred_then_synced() {
    let w = World::new().await;
    w.sandbox.upsert_product(gold());
    w.deliver_outbox().await;
    let crm_id = w.crm_account("Order First Ltd");
    let account_events = w.sandbox.drain_outbox();
    let order_id = w
        .sandbox
        .crm_user_create(
            "Order",
            fields(json!({"AccountId": crm_id, "Status": "Activated",
                "EffectiveDate": "2026-12-01", "CurrencyIsoCode": "USD",
                "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": 3}]})),
        )
        .unwrap();
    // The relay delivers the order first; the account's change event comes later.
    w.deliver_outbox().await;
    w.work().await;
    let order_stream = format!("crm-order-{order_id}");
    assert!(
        w.types(&order_stream)
            .await
            .contains(&"SyncDeferred".to_string()),
        "{:?}",
        w.types(&order_stream).await
    );
    assert!(w.sandbox.billing_subscriptions().is_empty());

    w.ingest(
        &account_events
            .into_iter()
            .map(|e| e.body)
            .collect::<Vec<_>>(),
    )
    .await;
    w.settle().await;
    let subscriptions = w.sandbox.billing_subscriptions();
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(subscriptions[0].rate_plans[0].charges[0].quantity, 3.0);
    let order_events = w.events(&order_stream).await;
    let synced = order_events
        .iter()
        .find(|e| e.event_type == "OrderSynced" && e.payload["action"] == "created")
        .expect("OrderSynced recorded on the order's stream");
    assert_eq!(
        synced.payload["billing_id"],
        json!(subscriptions[0].subscription_number)
    );
    assert_eq!(w.sandbox.calls().count("POST /v1/subscriptions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_catalog_change_lands_in_the_crm() {
    let w = World::new().await;
    let product = w.sandbox.upsert_product(gold());
    w.deliver_outbox().await;
    w.settle().await;

    let products = w.sandbox.crm_records("Product2");
    let crm_product = products
        .iter()
        .find(|p| p["Billing_Product_Id__c"] == json!(product.id))
        .unwrap_or_else(|| panic!("no CRM product for {}: {products:?}", product.id));
    assert_eq!(crm_product["Name"], json!("Gold"));
    assert_eq!(crm_product["ProductCode"], json!("SKU-GOLD"));
    let prices = w.sandbox.crm_records("PricebookEntry");
    assert!(
        prices
            .iter()
            .any(|p| p["UnitPrice"] == json!(30.0) && p["CurrencyIsoCode"] == json!("USD")),
        "{prices:?}"
    );
    let types = w.types(&format!("billing-product-{}", product.id)).await;
    assert!(types.contains(&"ProductSynced".to_string()), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_billing_update_echoes_back_and_is_suppressed() {
    let w = World::new().await;
    let crm_id = w.crm_account("Echo Inc");
    w.deliver_outbox().await;
    w.settle().await;
    let billing_id = w.sandbox.billing_accounts()[0].id.clone();
    w.sandbox.reset_calls();

    // A person renames the account in the CRM: we update Billing, Billing's callout about
    // that update comes back, and must not be written back to the CRM.
    w.sandbox
        .crm_user_update(
            "Account",
            &crm_id,
            fields(json!({"Name": "Echo Incorporated"})),
        )
        .unwrap();
    w.deliver_outbox().await;
    w.settle().await;
    // Extra rounds with nothing new change nothing either.
    w.settle().await;

    assert_eq!(w.sandbox.billing_accounts()[0].name, "Echo Incorporated");
    let calls = w.sandbox.calls();
    assert_eq!(
        calls.count("PUT /v1/accounts/{key}"),
        1,
        "{:?}",
        calls.by_route
    );
    let crm_writes: u64 = calls
        .by_route
        .iter()
        .filter(|(route, _)| route.starts_with("PATCH "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        crm_writes, 0,
        "the echo went back to the CRM: {:?}",
        calls.by_route
    );
    let billing_types = w.types(&format!("billing-account-{billing_id}")).await;
    assert!(
        billing_types.contains(&"EchoSuppressed".to_string()),
        "{billing_types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_records_change_nothing() {
    let w = World::new().await;
    let crm_id = w.crm_account("Twice GmbH");
    let first = w.sandbox.drain_outbox();
    let bodies: Vec<Value> = first.iter().map(|e| e.body.clone()).collect();
    w.ingest(&bodies).await;
    w.settle().await;
    let stream = format!("crm-account-{crm_id}");
    let before = w.events(&stream).await;
    let calls_before = w.sandbox.calls().total;
    let links_before = w.link("crm", &crm_id).await;

    // The relay redelivers the same event (reversed with a duplicate), and every projection
    // reads the whole feed again from the start.
    let mut again = bodies.clone();
    again.extend(bodies.iter().rev().cloned());
    w.ingest(&again).await;
    let views = SqliteViewStore::open(&w.db).unwrap();
    for projection in ["account-sync", "order-sync", "product-sync", "correlation"] {
        views
            .save_checkpoint(&format!("worker#{projection}"), "0")
            .await
            .unwrap();
    }
    let report = w.work().await;
    assert!(report.contains("already applied"), "{report}");

    assert_eq!(w.events(&stream).await, before);
    assert_eq!(w.sandbox.calls().total, calls_before);
    assert_eq!(w.sandbox.billing_accounts().len(), 1);
    assert_eq!(w.link("crm", &crm_id).await, links_before);
}
