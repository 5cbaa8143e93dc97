//! The console tests' world: a sync story built through the real ingest + worker path (an
//! order that waits for its account, then syncs; an order whose subscription create fails
//! because Billing does not sell its product yet), and `ledger serve` on a free port over it.
#![allow(dead_code)]

use super::sync_world::{fields, gold, World};
use sandbox::Product;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Ids of the story's records and traces.
pub struct Story {
    /// The order that arrived before its account (SyncDeferred, then OrderSynced).
    pub waited_order: String,
    pub waited_trace: String,
    /// The order whose subscription create failed (its product is not in the catalog).
    pub failed_order: String,
    pub failed_trace: String,
}

/// A product Billing does not sell until the test adds it.
pub fn silver() -> Product {
    let mut p = gold();
    p.sku = "SKU-SILVER".into();
    p.name = "Silver".into();
    p.product_rate_plans[0].name = "Silver Monthly".into();
    p
}

fn order(w: &World, account: &str, sku: &str) -> String {
    w.sandbox
        .crm_user_create(
            "Order",
            fields(json!({"AccountId": account, "Status": "Activated",
                "EffectiveDate": "2026-12-01", "CurrencyIsoCode": "USD",
                "OrderItems": [{"ProductCode": sku, "Quantity": 3}]})),
        )
        .unwrap()
}

/// Builds the story in `w`.
pub async fn story(w: &World) -> Story {
    // Billing sells Gold; Globex's order reaches the ledger before Globex's account.
    w.sandbox.upsert_product(gold());
    w.deliver_outbox().await;
    w.settle().await;
    let globex = w.crm_account("Globex Corporation");
    let account_events: Vec<_> = w
        .sandbox
        .drain_outbox()
        .into_iter()
        .map(|e| e.body)
        .collect();
    let waited_order = order(w, &globex, "SKU-GOLD");
    w.deliver_outbox().await;
    w.work().await;
    w.ingest(&account_events).await;
    w.settle().await;
    let waited_trace = w.events(&format!("crm-order-{waited_order}")).await[0]
        .correlation_id
        .to_string();

    // Initech's order names Silver, which Billing does not sell: the create fails for good.
    let initech = w.crm_account("Initech");
    w.deliver_outbox().await;
    w.settle().await;
    let failed_order = order(w, &initech, "SKU-SILVER");
    w.deliver_outbox().await;
    w.settle().await;
    let failed_trace = w.events(&format!("crm-order-{failed_order}")).await[0]
        .correlation_id
        .to_string();
    assert!(
        w.types(&format!("crm-order-{failed_order}"))
            .await
            .contains(&"SyncFailed".to_string()),
        "the story needs a failed sync"
    );
    Story {
        waited_order,
        waited_trace,
        failed_order,
        failed_trace,
    }
}

/// `ledger serve --port 0` over a store; stopped when dropped.
pub struct Served {
    child: Child,
    pub base: String,
}

impl Served {
    /// Starts the server with `args` after `serve`, the store and extra environment.
    pub fn start(store_url: &str, env: &[(String, String)], args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command.env_remove("LEDGER_CONSOLE_TOKEN");
        Self::spawn(command, store_url, env, args)
    }

    /// Bound to every address, requiring `token` (reached through loopback).
    pub fn start_with_token(store_url: &str, env: &[(String, String)], token: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command.env("LEDGER_CONSOLE_TOKEN", token);
        let mut served = Self::spawn(command, store_url, env, &["--bind", "0.0.0.0"]);
        served.base = served.base.replace("0.0.0.0", "127.0.0.1");
        served
    }

    fn spawn(
        mut command: Command,
        store_url: &str,
        env: &[(String, String)],
        args: &[&str],
    ) -> Self {
        let mut child = command
            .args(["--store", store_url, "serve", "--port", "0"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ledger serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let base = first
            .split_whitespace()
            .find_map(|w| w.strip_suffix("/audit/{id}"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        Self { child, base }
    }

    /// Serves `w`'s store with its sandbox configured for redrive.
    pub fn world(w: &World) -> Self {
        Self::start(&w.store().url, &w.store().env, &[])
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path`: status and body (redirects followed).
pub async fn get(served: &Served, path: &str) -> (u16, String) {
    let r = reqwest::get(served.url(path)).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// POST a form to `path`: status and body.
pub async fn post_form(served: &Served, path: &str, pairs: &[(&str, &str)]) -> (u16, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let r = reqwest::Client::new()
        .post(served.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}
