//! Reconciliation scenarios on a sync world (either store): a tenant seeded through the
//! sandbox's APIs (a person's CRM edits, Billing REST calls, CRM REST deletes) whose change
//! events are lost on the way (the outbox is drained, not delivered), then `ledger reconcile`
//! and `ledger worker` run as a user runs them. Bodies shared by `tests/reconcile_*.rs`.
#![allow(dead_code)]

use super::sync_world::{fields, World};
use futures::stream::{self, StreamExt};
use sandbox::System;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// How many records of each drift kind a scenario seeds.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Pairs linked before the drift is made.
    pub linked: usize,
    /// Differences of each kind.
    pub each: usize,
}

/// One client for the whole test: building one loads the platform's root certificates,
/// which costs more than a sandbox call.
fn http() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

async fn billing_call(w: &World, method: reqwest::Method, path: &str, body: Value) -> Value {
    let token = w.sandbox.issue_token(System::Billing);
    let response = http()
        .request(method, w.sandbox.url().join(path).unwrap())
        .bearer_auth(token.expose_secret())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Creates Billing accounts through `POST /v1/accounts` (a few at a time); their ids in order.
pub async fn billing_accounts(w: &World, accounts: Vec<(String, Option<String>)>) -> Vec<String> {
    stream::iter(accounts)
        .map(|(name, crm_id)| async move {
            let mut body = json!({"name": name, "currency": "USD"});
            if let Some(crm) = crm_id {
                body["crmId"] = json!(crm);
            }
            let answer = billing_call(w, reqwest::Method::POST, "v1/accounts", body).await;
            answer["accountId"].as_str().unwrap().to_string()
        })
        .buffered(8)
        .collect()
        .await
}

/// A person renames a Billing account (`PUT /v1/accounts/{id}`).
pub async fn rename_billing(w: &World, id: &str, name: &str) {
    billing_call(
        w,
        reqwest::Method::PUT,
        &format!("v1/accounts/{id}"),
        json!({"name": name}),
    )
    .await;
}

/// Someone deletes a CRM account (`DELETE /services/data/v60.0/sobjects/Account/{id}`).
pub async fn delete_crm(w: &World, id: &str) {
    let token = w.sandbox.issue_token(System::Crm);
    let url = w
        .sandbox
        .url()
        .join(&format!("services/data/v60.0/sobjects/Account/{id}"))
        .unwrap();
    let status = http()
        .delete(url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
}

/// `n` CRM accounts a person creates, each with a Billing account naming it and the CRM
/// record naming that back: pairs that exist before the sync knows them. `(crm, billing)`.
pub async fn linked_pairs(w: &World, prefix: &str, n: usize) -> Vec<(String, String)> {
    let crm: Vec<String> = (0..n)
        .map(|i| w.crm_account(&format!("{prefix} {i:05}")))
        .collect();
    let billing = billing_accounts(
        w,
        crm.iter()
            .enumerate()
            .map(|(i, c)| (format!("{prefix} {i:05}"), Some(c.clone())))
            .collect(),
    )
    .await;
    for (c, b) in crm.iter().zip(&billing) {
        w.sandbox
            .crm_user_update("Account", c, fields(json!({"Billing_Account_Id__c": b})))
            .unwrap();
    }
    crm.into_iter().zip(billing).collect()
}

/// Events the systems emitted that never reach the ledger (lost upstream).
pub fn lose_events(w: &World) {
    w.sandbox.drain_outbox();
}

/// Runs `ledger reconcile <args> --json` and returns the object.
pub async fn reconcile(w: &World, args: &[&str]) -> Value {
    let mut all = vec!["reconcile", "--json"];
    all.extend_from_slice(args);
    let out = w.ledger(&all).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

pub fn drift_counts(report: &Value) -> BTreeMap<String, u64> {
    report["drift"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn expected(each: u64) -> BTreeMap<String, u64> {
    [
        "missing_in_billing",
        "missing_in_crm",
        "unlinked",
        "broken_link",
        "field_drift",
    ]
    .into_iter()
    .map(|k| (k.to_string(), each))
    .collect()
}

/// Write calls (anything but reads and token requests) the sandbox answered since the last
/// reset.
pub fn write_calls(w: &World) -> BTreeMap<String, u64> {
    w.sandbox
        .calls()
        .by_route
        .into_iter()
        .filter(|(route, _)| {
            !route.starts_with("GET ")
                && !route.contains("/action/query")
                && !route.contains("/oauth")
        })
        .collect()
}

/// Both systems agree: every CRM account and Billing account name each other, one to one,
/// with the same name.
pub fn assert_systems_agree(w: &World) {
    let crm = w.sandbox.crm_records("Account");
    let billing = w.sandbox.billing_accounts();
    assert_eq!(crm.len(), billing.len(), "as many accounts on both sides");
    let by_id: HashMap<&str, &sandbox::billing::AccountRecord> =
        billing.iter().map(|b| (b.id.as_str(), b)).collect();
    for record in &crm {
        let id = record["Id"].as_str().unwrap();
        let name = record["Name"].as_str().unwrap();
        let linked = record["Billing_Account_Id__c"]
            .as_str()
            .unwrap_or_else(|| panic!("CRM {id} ({name}) names no Billing account"));
        let b = by_id
            .get(linked)
            .unwrap_or_else(|| panic!("CRM {id} names {linked}, which does not exist"));
        assert_eq!(
            b.crm_id.as_deref(),
            Some(id),
            "Billing {linked} names CRM {id}"
        );
        assert_eq!(b.name, name, "names of {id} / {linked}");
    }
}

/// The issue's scenario: a synced tenant drifts (`each` of every kind), a dry run reports
/// exactly that, `--repair` plus the projectors make the systems agree, and a second run
/// finds nothing and writes nothing.
pub async fn drift_is_reported_exactly_and_repaired_through_the_projectors(w: &World, n: Sizes) {
    // A tenant that was in step: pairs the backfill adopted (see the backfill scenario).
    let pairs = linked_pairs(w, "Linked", n.linked).await;
    lose_events(w);
    let backfill = reconcile(w, &["--repair"]).await;
    assert_eq!(backfill["drift"]["unlinked"], json!(n.linked), "{backfill}");
    w.settle().await;

    // Drift, behind the sync's back.
    let each = n.each;
    for i in 0..each {
        w.crm_account(&format!("Only in CRM {i:05}"));
    }
    billing_accounts(
        w,
        (0..each)
            .map(|i| (format!("Only in Billing {i:05}"), None))
            .collect(),
    )
    .await;
    linked_pairs(w, "Unlinked", each).await;
    let (gone, renamed) = pairs.split_at(each);
    for (crm, _) in gone {
        delete_crm(w, crm).await;
    }
    for (_, billing) in &renamed[..each] {
        rename_billing(w, billing, &format!("Renamed {billing}")).await;
    }
    lose_events(w);

    let crm_total = (n.linked + each) as u64; // - deleted + only in CRM + unlinked pairs
    let billing_total = (n.linked + 2 * each) as u64;
    let pages = |records: u64| records.div_ceil(2_000);
    w.sandbox.reset_calls();
    let dry = reconcile(w, &["--dry-run"]).await;
    assert_eq!(drift_counts(&dry), expected(each as u64), "{dry}");
    assert_eq!(
        dry["scanned"],
        json!({"crm": crm_total, "billing": billing_total})
    );
    assert_eq!(
        dry["api_calls"],
        json!({"crm": pages(crm_total), "billing": pages(billing_total)}),
        "one query call per 2,000 records"
    );
    assert!(write_calls(w).is_empty(), "{:?}", write_calls(w));
    assert_eq!(dry["repaired"], json!(0));

    let repair = reconcile(w, &["--repair"]).await;
    assert_eq!(drift_counts(&repair), expected(each as u64), "{repair}");
    assert_eq!(repair["repaired"], json!(5 * each), "{repair}");
    w.settle().await;
    assert_systems_agree(w);
    let renamed_crm = &renamed[0].0;
    let record = w
        .sandbox
        .crm_records("Account")
        .into_iter()
        .find(|r| r["Id"] == json!(renamed_crm))
        .unwrap();
    assert_eq!(
        record["Name"],
        json!(format!("Renamed {}", renamed[0].1)),
        "the newer side (Billing) won the field drift"
    );

    w.sandbox.reset_calls();
    let again = reconcile(w, &[]).await;
    assert_eq!(drift_counts(&again), expected(0), "{again}");
    w.work().await;
    assert!(write_calls(w).is_empty(), "{:?}", write_calls(w));

    // The run is a trace; a drifted record's audit reaches the run's drift.
    let run = repair["run_id"].as_str().unwrap();
    let trace = w.ledger(&["audit", run]).await;
    assert!(trace.contains("ReconciliationStarted"), "{trace}");
    assert!(trace.contains("ReconciliationCompleted"), "{trace}");
    let record_audit = w.ledger(&["audit", renamed_crm]).await;
    assert!(record_audit.contains("DriftDetected"), "{record_audit}");
}

/// Backfill: a fresh deployment (empty ledger) against a tenant holding linked pairs and
/// accounts on one side only ends with every account linked and no duplicate, in budgeted
/// legs that resume from the checkpoint.
pub async fn backfill_links_or_creates_everything_once_resumably(w: &World, n: Sizes) {
    linked_pairs(w, "Existing", n.linked).await;
    for i in 0..n.each {
        w.crm_account(&format!("CRM only {i:05}"));
    }
    billing_accounts(
        w,
        (0..n.each)
            .map(|i| (format!("Billing only {i:05}"), None))
            .collect(),
    )
    .await;
    lose_events(w);

    // A budget of one call reads only the first Billing page: the run stops cleanly.
    let first = reconcile(w, &["--repair", "--max-api-calls", "1"]).await;
    assert_eq!(
        first["api_calls"],
        json!({"crm": 0, "billing": 1}),
        "{first}"
    );
    assert_eq!(first["repaired"], json!(0));
    // Resumed: same run id, and it completes.
    let second = reconcile(w, &["--repair"]).await;
    assert_eq!(second["run_id"], first["run_id"], "the run resumes");
    assert_eq!(second["drift"]["unlinked"], json!(n.linked), "{second}");
    assert_eq!(second["drift"]["missing_in_billing"], json!(n.each));
    assert_eq!(second["drift"]["missing_in_crm"], json!(n.each));
    w.sandbox.reset_calls();
    w.settle().await;
    // Adopted pairs cost no call: only the one-sided accounts were written.
    let writes: u64 = write_calls(w).values().sum();
    assert!(
        writes <= 2 * 2 * n.each as u64,
        "create + link per one-sided account, nothing for linked pairs: {:?}",
        write_calls(w)
    );
    assert_systems_agree(w);
    assert_eq!(
        w.sandbox.crm_records("Account").len(),
        n.linked + 2 * n.each,
        "no duplicate"
    );
    let third = reconcile(w, &[]).await;
    assert_eq!(drift_counts(&third), expected(0), "{third}");
    assert_ne!(
        third["run_id"], first["run_id"],
        "a finished run is not resumed"
    );
}
