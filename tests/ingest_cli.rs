//! `ledger ingest` fed the raw source records an operator has at hand: an
//! `aws sqs receive-message` dump of the ingest dead-letter queue, an SQS Lambda event,
//! EventBridge events and Zuora callout bodies, one per line. Runs the real `ledger` binary
//! against an embedded store and checks what it prints and what the ledger holds.

mod common;

use common::ingest_fixtures::fixture;
use serde_json::{json, Value};
use std::process::{Command, Output};

/// A fixture as one JSON line.
fn line(path: &str) -> String {
    let v: Value = serde_json::from_str(&fixture(path)).unwrap();
    v.to_string()
}

fn ledger(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env("LEDGER_STORE", store)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn events(store: &str, stream: &str) -> Vec<Value> {
    let out = ledger(store, &["events", stream, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_dead_letter_queue_dump_is_reingested_once_with_bad_messages_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("ledger.db").display());
    assert!(ledger(&store, &["migrate"]).status.success());

    // `aws sqs receive-message --queue-url <dlq> --max-number-of-messages 10` output.
    let dump = json!({"Messages": [
        {"MessageId": "dlq-1", "ReceiptHandle": "AQEB...1", "MD5OfBody": "x",
         "Body": fixture("salesforce/order_event_activated.json")},
        {"MessageId": "dlq-2", "ReceiptHandle": "AQEB...2", "MD5OfBody": "x",
         "Body": fixture("bad/order_event_missing_account.json")},
    ]});
    let mut sqs: Value = serde_json::from_str(&fixture("aws/sqs_record.json")).unwrap();
    sqs["body"] = json!(fixture("salesforce/product2_change_create.json"));
    let input = [
        dump.to_string(),
        json!({"Records": [sqs]}).to_string(),
        line("salesforce/account_change_create.json"),
        line("zuora/subscription_created.json"),
    ]
    .join("\n");
    let path = dir.path().join("dlq.jsonl");
    std::fs::write(&path, input).unwrap();

    let first = ledger(&store, &["ingest", path.to_str().unwrap()]);
    assert_eq!(
        text(&first.stdout).trim(),
        "appended 4, already recorded 0, rejected 1"
    );
    assert!(
        !first.status.success(),
        "a rejected record makes the run fail"
    );
    assert!(
        text(&first.stderr).contains(
            "line 1 (message dlq-2): detail.payload.Account_Id__c: is required but missing"
        ),
        "{}",
        text(&first.stderr)
    );

    let order = events(&store, "crm-order-801xx000003GZ9vAAG");
    assert_eq!(order.len(), 1);
    assert_eq!(order[0]["event_type"], "CrmOrderActivated");
    assert_eq!(
        order[0]["source_event_id"],
        "a4b2c1d0-9e8f-4a7b-8c6d-5e4f3a2b1c01"
    );
    assert_eq!(events(&store, "crm-product-01txx0000006i2EAAQ").len(), 1);
    assert_eq!(events(&store, "crm-account-001xx000003DGb2AAG").len(), 1);
    let sub = events(&store, "billing-subscription-A-S00000107");
    assert_eq!(sub[0]["event_type"], "BillingSubscriptionCreated");

    // Re-ingesting the same dump (an operator retrying) appends nothing.
    let again = ledger(&store, &["ingest", path.to_str().unwrap()]);
    assert_eq!(
        text(&again.stdout).trim(),
        "appended 0, already recorded 4, rejected 1"
    );
    assert_eq!(events(&store, "crm-order-801xx000003GZ9vAAG").len(), 1);
}
