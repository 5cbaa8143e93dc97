//! The world of the end-to-end sync tests, on either store: the in-process sandbox (its
//! outbox plays the event relay), and the `ledger` binary for migrate, ingest and worker,
//! exactly as a user runs them. Scenario bodies live here so both stores run the same ones;
//! `tests/sync_e2e_sqlite.rs` and `tests/sync_e2e_dynamodb.rs` only pick the store.
#![allow(dead_code)]

use sandbox::{Charge, Price, Product, RatePlan, Sandbox, SandboxConfig};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use sync_ledger::ledger::EventLog;
use sync_ledger::projections::{RecordedEvent, StreamId};
use sync_ledger::views::{ViewKey, ViewStore};
use tokio::process::Command;

/// Which store a world runs on, and how to reach it from the test process.
pub struct Store {
    /// `--store` value.
    pub url: String,
    /// Extra environment of every `ledger` run (the AWS endpoint, tokens source, ...).
    pub env: Vec<(String, String)>,
    pub log: Arc<dyn EventLog>,
    pub views: Arc<dyn ViewStore>,
    /// Whatever must live as long as the world (a temp dir).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub store: Option<Store>,
}

impl World {
    /// A world on the store `open` migrates and opens (given the sandbox and a temp dir).
    pub async fn new<F, Fut>(open: F) -> Self
    where
        F: FnOnce(std::path::PathBuf, Vec<(String, String)>) -> Fut,
        Fut: std::future::Future<Output = Store>,
    {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let mut base = vec![("RUST_LOG".to_string(), "warn".to_string())];
        base.extend(
            sandbox
                .connectors_env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        let store = open(dir.path().to_path_buf(), base).await;
        Self {
            dir,
            sandbox,
            store: Some(store),
        }
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    /// Runs `ledger <args>` against this world's store and sandbox; panics on failure.
    pub async fn ledger(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["--store", &self.store().url])
            .args(args)
            .envs(
                self.store()
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
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
    pub async fn ingest(&self, bodies: &[Value]) {
        let path = self
            .dir
            .path()
            .join(format!("in-{}.jsonl", uuid::Uuid::now_v7()));
        let text: String = bodies.iter().map(|b| format!("{b}\n")).collect();
        std::fs::write(&path, text).unwrap();
        self.ledger(&["ingest", path.to_str().unwrap()]).await;
    }

    pub async fn deliver_outbox(&self) -> usize {
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

    pub async fn work(&self) -> String {
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
    pub async fn settle(&self) {
        for _ in 0..8 {
            self.work().await;
            if self.deliver_outbox().await == 0 {
                return;
            }
        }
        panic!("sync did not settle after 8 rounds: ping-pong?");
    }

    pub async fn events(&self, stream: &str) -> Vec<RecordedEvent> {
        self.store()
            .log
            .read_stream(&StreamId::parse(stream).unwrap(), 1)
            .await
            .unwrap()
    }

    pub async fn types(&self, stream: &str) -> Vec<String> {
        self.events(stream)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    pub async fn link(&self, side: &str, id: &str) -> Option<Value> {
        self.store()
            .views
            .get(&ViewKey::new("correlation", &format!("link#{side}#{id}")).unwrap())
            .await
            .unwrap()
            .map(|item| item.state)
    }

    pub fn crm_account(&self, name: &str) -> String {
        self.sandbox
            .crm_user_create(
                "Account",
                fields(json!({"Name": name, "CurrencyIsoCode": "USD"})),
            )
            .unwrap()
    }
}

/// A sync world on a migrated embedded store in the world's temp dir.
pub async fn sqlite_world() -> World {
    World::new(|dir, env| async move {
        let db = dir.join("ledger.db");
        sync_ledger::ledger::sqlite::migrate(&db).unwrap();
        Store {
            url: format!("sqlite://{}", db.display()),
            env,
            log: Arc::new(sync_ledger::ledger::sqlite::SqliteLedger::open(&db).unwrap()),
            views: Arc::new(sync_ledger::views::sqlite::SqliteViewStore::open(&db).unwrap()),
            guard: Box::new(()),
        }
    })
    .await
}

pub fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

pub fn counterpart(link: &Value) -> Option<&str> {
    link["links"][0]["counterpart_id"].as_str()
}

pub fn gold() -> Product {
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

// ------------------------------------------------------------- scenarios

pub async fn crm_account_becomes_a_billing_account_linked_both_ways(w: &World) {
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

pub async fn an_order_arriving_before_its_account_is_deferred_then_synced(w: &World) {
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

pub async fn a_billing_catalog_change_lands_in_the_crm(w: &World) {
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

pub async fn our_billing_update_echoes_back_and_is_suppressed(w: &World) {
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

/// `checkpoints`: the worker checkpoints to rewind to the start of the feed.
pub async fn redelivered_records_change_nothing(w: &World, checkpoints: &[String]) {
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
    for name in checkpoints {
        w.store().views.save_checkpoint(name, "0").await.unwrap();
    }
    let report = w.work().await;
    assert!(report.contains("already applied"), "{report}");

    assert_eq!(w.events(&stream).await, before);
    assert_eq!(w.sandbox.calls().total, calls_before);
    let linked = w.sandbox.billing_accounts();
    let linked: Vec<_> = linked
        .iter()
        .filter(|a| a.crm_id.as_deref() == Some(crm_id.as_str()))
        .collect();
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(w.link("crm", &crm_id).await, links_before);
}
