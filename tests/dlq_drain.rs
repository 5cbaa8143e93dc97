//! `ledger dlq drain --queue <url>` against moto SQS and an embedded ledger, through the real
//! `ledger` binary: every message of the dead-letter queue is re-ingested through the ingest
//! Lambda's SQS mapping (recorded once, or `IngestRejected` with its reason) and deleted only
//! once its outcome is in the ledger; one the ledger cannot keep whole stays on the queue.

mod common;

use common::ingest_fixtures::fixture;
use common::moto::{moto, unique_name};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::open_store;

fn ledger(store: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    moto().apply_env(&mut command);
    command
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    (
        attrs[&A::ApproximateNumberOfMessages].clone(),
        attrs[&A::ApproximateNumberOfMessagesNotVisible].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_records_each_message_once_then_deletes_it_and_keeps_what_the_ledger_cannot_hold() {
    let sqs = aws_sdk_sqs::Client::new(&moto().sdk_config().await);
    let url = sqs
        .create_queue()
        .queue_name(unique_name("ingest-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let account = fixture("salesforce/account_change_create.json");
    let product = fixture("salesforce/product2_change_create.json");
    // Larger than the ledger keeps of a rejected body (64 KiB head): the queue keeps it whole.
    let oversized = format!("{{\"not\": \"{}\"}}", "x".repeat(100 * 1024));
    for body in [
        account.as_str(),
        account.as_str(), // the same event dead-lettered twice
        product.as_str(),
        "{\"detail-type\": \"AccountChangeEvent\", \"detail\": 7}",
        oversized.as_str(),
    ] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let dir = std::env::temp_dir().join(unique_name("dlq-drain"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite://{}", dir.join("ledger.db").display());
    let out = ledger(&store, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = ledger(&store, &["dlq", "drain", "--queue", &url]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a kept message fails the run: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "drained {url}: 5 received, 2 appended, 1 already recorded, 1 rejected (IngestRejected), 1 kept on the queue (outcome not recorded)"
        )),
        "{stdout}"
    );
    // Only the oversized message is left (in flight until its visibility timeout ends).
    assert_eq!(queue_depth(&sqs, &url).await, ("0".into(), "1".into()));

    let log = open_store(&StoreUrl::parse(&store).unwrap(), &AwsConfig::lazy())
        .await
        .unwrap();
    let events = log.read_all(None, None, 1000).await.unwrap();
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *by_type.entry(e.event_type.as_str()).or_default() += 1;
    }
    assert_eq!(by_type.get("CrmAccountUpserted"), Some(&1), "{by_type:?}");
    // Two rejections: the malformed event, and the oversized body's head (the queue keeps
    // the whole, as the ingest Lambda leaves it to SQS).
    assert_eq!(by_type.get("IngestRejected"), Some(&2), "{by_type:?}");
    assert_eq!(by_type.values().sum::<usize>(), 4, "{by_type:?}");
    for rejected in events.iter().filter(|e| e.event_type == "IngestRejected") {
        let reason = rejected.payload["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.is_empty(),
            "the rejection says why: {}",
            rejected.payload
        );
    }

    // Drained again: nothing visible, nothing recorded twice.
    let out = ledger(&store, &["dlq", "drain", "--queue", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": 0 received"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(log.read_all(None, None, 1000).await.unwrap().len(), 4);

    // A queue that is not a URL is refused, naming the flag.
    let out = ledger(&store, &["dlq", "drain", "--queue", "ingest-dlq"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--queue"),
        "{}",
        text(&out.stderr)
    );
}
