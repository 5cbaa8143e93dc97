//! The `EventLog` conformance suite against the DynamoDB adapter on moto (each body on its
//! own migrated table prefix), plus what only the DynamoDB store promises: the table shapes
//! of DESIGN §3 as `ledger migrate` creates them, and idempotent `ledger ingest`.

mod common;

use std::collections::HashMap;
use std::ops::Deref;
use std::process::{Command, Output};

use aws_sdk_dynamodb::types::AttributeValue;
use common::conformance::{probes, unique_stream};
use common::moto::{moto, unique_name};
use serde_json::json;
use sync_ledger::ledger::dynamodb::{self, DynamoDbLedger};
use sync_ledger::ledger::{AppendFault, EventLog, ExpectedVersion, FeedStart, LedgerError};

const SAMPLE: &str = include_str!("../src/cli/demo_sample.jsonl");

struct FreshStore {
    ledger: DynamoDbLedger,
}

impl Deref for FreshStore {
    type Target = dyn EventLog;
    fn deref(&self) -> &Self::Target {
        &self.ledger
    }
}

async fn fresh_store() -> FreshStore {
    let config = moto().sdk_config().await;
    let prefix = unique_name("conf");
    dynamodb::migrate_with(&config, &prefix)
        .await
        .expect("migrate");
    FreshStore {
        ledger: DynamoDbLedger::open_with(&config, &prefix)
            .await
            .expect("open"),
    }
}

impl FreshStore {
    fn append_fault(&self) -> &AppendFault {
        self.ledger.append_fault()
    }
}

conformance_tests!(fresh_store);

/// Runs the real `ledger` binary against moto with `LEDGER_STORE=dynamodb://<prefix>`.
fn ledger(prefix: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    moto()
        .apply_env(&mut command)
        .args(args)
        .env("LEDGER_STORE", format!("dynamodb://{prefix}"))
        .env_remove("RUST_LOG");
    let output = command.output().expect("run ledger");
    assert!(
        output.status.success(),
        "ledger {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The tables as boto3 describes them (tests/common/describe_tables.py).
fn describe_with_boto3(prefix: &str) -> serde_json::Value {
    let python = std::env::var_os("MOTO_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    let output = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/describe_tables.py"
        ))
        .args([moto().endpoint(), prefix])
        .output()
        .expect("run describe_tables.py");
    assert!(
        output.status.success(),
        "describe_tables.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("describe_tables.py prints JSON")
}

#[test]
fn ledger_migrate_creates_the_tables_of_the_design_and_is_idempotent() {
    let prefix = unique_name("mig");
    let first = stdout(&ledger(&prefix, &["migrate"]));
    assert!(first.contains("applied          0001_events"), "{first}");
    assert!(first.contains("applied          0002_views"), "{first}");

    let tables = describe_with_boto3(&prefix);
    assert_eq!(
        tables["events"],
        json!({
            "TableName": format!("{prefix}-events"),
            "TableStatus": "ACTIVE",
            "Keys": {"HASH": "pk", "RANGE": "sk"},
            "Attributes": {
                "pk": "S", "sk": "N",
                "correlation_id": "S", "corr_sk": "S",
                "bucket": "S", "time_sk": "S"
            },
            "Indexes": {
                "by-correlation": {
                    "Keys": {"HASH": "correlation_id", "RANGE": "corr_sk"},
                    "Projection": "ALL"
                },
                "by-time": {
                    "Keys": {"HASH": "bucket", "RANGE": "time_sk"},
                    "Projection": "ALL"
                }
            },
            "Stream": {"StreamEnabled": true, "StreamViewType": "NEW_IMAGE"},
            "HasStreamArn": true,
            "BillingMode": "PAY_PER_REQUEST",
            "SSE": {"Status": "ENABLED", "SSEType": "KMS"},
            "DeletionProtectionEnabled": true,
            "PointInTimeRecovery": "ENABLED"
        })
    );
    assert_eq!(
        tables["views"],
        json!({
            "TableName": format!("{prefix}-views"),
            "TableStatus": "ACTIVE",
            "Keys": {"HASH": "pk"},
            "Attributes": {"pk": "S"},
            "Indexes": {},
            "Stream": null,
            "HasStreamArn": false,
            "BillingMode": "PAY_PER_REQUEST",
            "SSE": {"Status": "ENABLED", "SSEType": "KMS"},
            "DeletionProtectionEnabled": true,
            "PointInTimeRecovery": "ENABLED"
        })
    );

    let second = stdout(&ledger(&prefix, &["migrate"]));
    assert!(second.contains("nothing to apply"), "{second}");
    assert!(second.contains("already applied  0001_events"), "{second}");
    assert!(second.contains("already applied  0002_views"), "{second}");
}

#[tokio::test]
async fn migrations_are_recorded_in_the_views_table_with_the_ledger_meta_item() {
    let prefix = unique_name("rec");
    let config = moto().sdk_config().await;
    let report = dynamodb::migrate_with(&config, &prefix).await.unwrap();
    assert_eq!(report.applied, ["0001_events", "0002_views"]);
    let db = moto().dynamodb().await;
    for id in ["0001_events", "0002_views"] {
        let found = db
            .get_item()
            .table_name(format!("{prefix}-views"))
            .key("pk", AttributeValue::S(format!("migration#{id}")))
            .send()
            .await
            .unwrap();
        assert!(found.item.is_some(), "migration#{id} is recorded");
    }
    let meta = db
        .get_item()
        .table_name(format!("{prefix}-events"))
        .key("pk", AttributeValue::S("meta#ledger".into()))
        .key("sk", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("meta#ledger exists");
    assert_eq!(meta["kind"], AttributeValue::S("meta".into()));
    let again = dynamodb::migrate_with(&config, &prefix).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, ["0001_events", "0002_views"]);
}

/// Counts the events table's items by `kind`.
async fn kinds(prefix: &str) -> HashMap<String, usize> {
    let db = moto().dynamodb().await;
    let mut counts = HashMap::new();
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(format!("{prefix}-events"))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            if let Some(AttributeValue::S(kind)) = item.get("kind") {
                *counts.entry(kind.clone()).or_default() += 1;
            }
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return counts;
        }
    }
}

#[test]
fn ledger_ingest_of_the_same_file_twice_leaves_one_copy_of_each_event() {
    let prefix = unique_name("ing");
    ledger(&prefix, &["migrate"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, SAMPLE).unwrap();
    let path = file.to_str().unwrap();

    let first = stdout(&ledger(&prefix, &["ingest", path]));
    // 15 deliveries, two of them in-file redeliveries.
    assert!(
        first.contains("appended 13, already recorded 2, rejected 0"),
        "{first}"
    );
    let second = stdout(&ledger(&prefix, &["ingest", path]));
    assert!(
        second.contains("appended 0, already recorded 15, rejected 0"),
        "{second}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let counts = runtime.block_on(kinds(&prefix));
    assert_eq!(counts.get("event"), Some(&13), "{counts:?}");
    assert_eq!(
        counts.get("dedupe"),
        Some(&13),
        "one marker per event: {counts:?}"
    );

    let acme: Vec<serde_json::Value> = stdout(&ledger(
        &prefix,
        &["events", "crm-account-001Dn00000AcmeIAH", "--json"],
    ))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(acme.len(), 2, "{acme:#?}");
    assert_eq!(acme[0]["version"], 1);
    assert_eq!(acme[1]["version"], 2);
    assert_eq!(acme[0]["payload"]["Industry"], "Manufacturing");
}

#[tokio::test]
async fn an_unmigrated_prefix_is_refused_with_a_hint() {
    let config = moto().sdk_config().await;
    let err = DynamoDbLedger::open_with(&config, &unique_name("absent"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotMigrated(_)), "{err:?}");
    assert!(err.to_string().contains("ledger migrate"), "{err}");
}

#[tokio::test]
async fn read_all_without_a_start_begins_at_the_ledgers_first_hour() {
    let store = fresh_store().await;
    let a = unique_stream("a");
    let b = unique_stream("b");
    store
        .append(&a, ExpectedVersion::NoStream, probes(&a, 3))
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::NoStream, probes(&b, 2))
        .await
        .unwrap();
    let all = store.read_all(None, None, 1000).await.unwrap();
    let streams: Vec<String> = all.iter().map(|e| e.stream_id.to_string()).collect();
    assert_eq!(streams.len(), 5, "{streams:?}");
    let keys: Vec<String> = all.iter().map(|e| e.global_order_key()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[tokio::test]
async fn the_change_feed_never_delivers_dedupe_markers_or_meta_items() {
    let store = fresh_store().await;
    let mut feed = store.change_feed(FeedStart::Beginning).await.unwrap();
    let s = unique_stream("feed");
    let events = probes(&s, 4);
    store
        .append(&s, ExpectedVersion::Any, events.clone())
        .await
        .unwrap();
    // The stream also holds the 4 markers and the meta item: 9 records, 4 events.
    let delivered = feed.poll(100).await.unwrap();
    let ids: Vec<_> = delivered.iter().map(|i| i.event.event_id).collect();
    assert_eq!(ids, events.iter().map(|e| e.event_id).collect::<Vec<_>>());
    assert!(delivered
        .iter()
        .all(|i| i.position.contains('/') && i.event.stream_id == s));
    assert!(feed.poll(100).await.unwrap().is_empty(), "caught up");
}

#[tokio::test]
async fn read_all_from_between_two_microseconds_starts_after_the_earlier_one() {
    let store = fresh_store().await;
    let s = unique_stream("ns");
    store
        .append(&s, ExpectedVersion::NoStream, probes(&s, 2))
        .await
        .unwrap();
    let stored = store.read_stream(&s, 1).await.unwrap();
    let from = stored[0].recorded_at + chrono::TimeDelta::nanoseconds(500);
    let read: Vec<u64> = store
        .read_all(Some(from), None, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.stream_id == s)
        .map(|e| e.version)
        .collect();
    assert_eq!(read, [2], "v1 was recorded before `from`");
}
