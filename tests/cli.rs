//! The `ledger` binary as a user runs it: each test spawns the real executable against its
//! own embedded store in a temp dir and checks what it prints and how it exits. (`demo` has
//! its own test binary, `tests/demo.rs`.)

mod common;

use common::ledger_run::{ledger_command, Run};
use std::path::{Path, PathBuf};
use std::process::Command;

const SAMPLE: &str = include_str!("../src/cli/demo_sample.jsonl");

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("ledger.db").display())
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs `ledger` with this store in LEDGER_STORE.
    fn ledger(&self, args: &[&str]) -> Run {
        Run::of(ledger_command(&self.url(), args))
    }

    fn ingest(&self, path: &Path) -> Run {
        self.ledger(&["ingest", path.to_str().unwrap()])
    }
}

/// `ledger events <stream> --json` parsed back.
fn events(store: &Store, stream: &str) -> Vec<serde_json::Value> {
    store
        .ledger(&["events", stream, "--json"])
        .ok()
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn migrate_twice_applies_once_then_has_nothing_to_apply() {
    let store = Store::new();
    let first = store.ledger(&["migrate"]).ok().stdout();
    assert!(first.contains("applied          0001_init"), "{first}");
    assert!(!first.contains("nothing to apply"), "{first}");
    let second = store.ledger(&["migrate"]).ok().stdout();
    assert!(second.contains("nothing to apply"), "{second}");
    assert!(second.contains("already applied  0001_init"), "{second}");
}

#[test]
fn store_flag_overrides_ledger_store() {
    let store = Store::new();
    let other = store.dir.path().join("other.db");
    let url = format!("sqlite://{}", other.display());
    store.ledger(&["--store", &url, "migrate"]).ok();
    assert!(other.exists());
    assert!(!store.dir.path().join("ledger.db").exists());
}

#[test]
fn a_bad_store_url_names_the_variable() {
    let run = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["migrate"])
        .env("LEDGER_STORE", "postgres://db")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("LEDGER_STORE"), "{err}");
}

#[test]
fn using_an_unmigrated_store_says_to_run_migrate() {
    let store = Store::new();
    let run = store.ledger(&["events", "crm-account-1"]);
    assert!(!run.0.status.success());
    assert!(run.stderr().contains("ledger migrate"), "{}", run.stderr());
}

#[test]
fn ingesting_the_same_file_twice_records_each_event_once() {
    let store = Store::new();
    store.ledger(&["migrate"]).ok();
    let file = store.file("day.jsonl", SAMPLE);
    let first = store.ingest(&file).ok().stdout();
    // 15 deliveries, two of them in-file redeliveries.
    assert!(
        first.contains("appended 13, already recorded 2, rejected 0"),
        "{first}"
    );
    let second = store.ingest(&file).ok().stdout();
    assert!(
        second.contains("appended 0, already recorded 15, rejected 0"),
        "{second}"
    );

    let acme = events(&store, "crm-account-001Dn00000AcmeIAH");
    assert_eq!(acme.len(), 2, "{acme:#?}");
    assert_eq!(acme[0]["version"], 1);
    assert_eq!(acme[1]["version"], 2);
    assert_eq!(
        acme[0]["source_event_id"],
        "AccountChangeEvent:000000000000001001"
    );
    assert_eq!(acme[0]["payload"]["Industry"], "Manufacturing");
    let subscription = events(&store, "billing-subscription-A-S00000101");
    assert_eq!(subscription.len(), 1);
}

#[test]
fn a_bad_line_is_named_and_the_good_lines_still_land() {
    let store = Store::new();
    store.ledger(&["migrate"]).ok();
    let good = |n: u32| {
        format!(
            r#"{{"stream_id":"crm-account-00{n}","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"replay-{n}","occurred_at":"2026-11-26T09:00:00Z","payload":{{"account_id":"00{n}","name":"Acme {n}"}}}}"#
        )
    };
    let missing_account_id = r#"{"stream_id":"crm-account-009","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"replay-9","occurred_at":"2026-11-26T09:00:00Z","payload":{"name":"No Id"}}"#;
    let lines = [
        good(1),
        good(2),
        "this is not json".to_string(),
        good(3),
        missing_account_id.to_string(),
        good(4),
    ];
    let file = store.file("mixed.jsonl", &(lines.join("\n") + "\n"));
    let run = store.ingest(&file);
    assert!(
        !run.0.status.success(),
        "a rejected line makes the exit code non-zero"
    );
    let (out, err) = (run.stdout(), run.stderr());
    assert!(
        out.contains("appended 4, already recorded 0, rejected 2"),
        "{out}"
    );
    assert!(err.contains("line 3: not JSON"), "{err}");
    assert!(err.contains("line 5: payload.account_id:"), "{err}");
    for n in 1..=4 {
        assert_eq!(events(&store, &format!("crm-account-00{n}")).len(), 1);
    }
    assert!(events(&store, "crm-account-009").is_empty());

    // Nothing is lost: each bad line is kept verbatim in an IngestRejected event.
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let rejected = events(&store, &format!("system-ingest-rejected-{day}"));
    let raws: Vec<&str> = rejected
        .iter()
        .map(|e| e["payload"]["raw"].as_str().unwrap())
        .collect();
    assert!(raws.contains(&"this is not json"), "{raws:?}");
    assert!(raws.contains(&missing_account_id), "{raws:?}");
    assert!(rejected
        .iter()
        .any(|e| e["payload"]["field"] == "payload.account_id"));
}

#[test]
fn ingest_reads_stdin_and_events_prints_a_table() {
    use std::io::Write;
    let store = Store::new();
    store.ledger(&["migrate"]).ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["ingest", "-"])
        .env("LEDGER_STORE", store.url())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SAMPLE.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("appended 13"));

    let table = store
        .ledger(&["events", "crm-order-801Dn00000Ord1IAH", "--from", "2"])
        .ok()
        .stdout();
    assert!(table.contains("CrmOrderAmended"), "{table}");
    assert!(
        !table.contains("CrmOrderActivated"),
        "--from 2 skips version 1: {table}"
    );
    assert!(
        table.contains("crm-order-801Dn00000Ord1IAH: 1 events"),
        "{table}"
    );
}
