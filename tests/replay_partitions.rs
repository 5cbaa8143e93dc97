//! `ledger replay --partition i/N` through the real binary, on SQLite and on DynamoDB (moto):
//! four partitions rebuilt by four concurrent processes give, combined, the same digest as one
//! whole run (and the same items), each partition rebuilds and wipes only its own keys, and a
//! bad partition is refused naming the flag.

mod common;

use common::moto::{moto, unique_name};
use projections::Partition;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use sync_ledger::replay::{stream_digest, ViewDigest, PROJECTIONS};
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::{ViewNamespace, ViewStore};

/// The demo's hand-written day (see the header of `src/cli/demo.rs` for its shape).
const SAMPLE: &str = include_str!("../src/cli/demo_sample.jsonl");

const PARTITIONS: u32 = 4;

enum Backend {
    Sqlite(tempfile::TempDir),
    Dynamo { prefix: String },
}

struct Store {
    backend: Backend,
    dir: tempfile::TempDir,
}

impl Store {
    /// A migrated store holding the sample day plus `accounts` generated accounts (two
    /// changes each, every other one linked to a Billing id).
    fn with_events(backend: Backend, accounts: usize) -> Self {
        let store = Self {
            backend,
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&store.ledger(&["migrate"]), &["migrate"]);
        let mut lines = SAMPLE.to_string();
        for n in 0..accounts {
            for change in 0..2 {
                let billing = if n % 2 == 0 {
                    format!(r#","billing_account_id":"8ad0prt{n:04}""#)
                } else {
                    String::new()
                };
                lines.push_str(&format!(
                    r#"{{"stream_id":"crm-account-001PRT{n:05}","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"prt-{n}-{change}","correlation_id":"0193a0b4-1c00-7000-8000-{n:08}{change:04}","occurred_at":"2026-11-26T09:00:00Z","payload":{{"account_id":"001PRT{n:05}","name":"Partitioned {n} v{change}","currency":"USD"{billing}}}}}"#
                ));
                lines.push('\n');
            }
        }
        let file = store.dir.path().join("day.jsonl");
        std::fs::write(&file, lines).unwrap();
        let args = ["ingest", file.to_str().unwrap()];
        ok(&store.ledger(&args), &args);
        store
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        match &self.backend {
            Backend::Sqlite(dir) => {
                let path = dir.path().join("ledger.db");
                command.env("LEDGER_STORE", format!("sqlite://{}", path.display()));
            }
            Backend::Dynamo { prefix } => {
                moto().apply_env(&mut command);
                command.env("LEDGER_STORE", format!("dynamodb://{prefix}"));
            }
        }
        command.args(args).env_remove("RUST_LOG");
        command
    }

    fn ledger(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ledger")
    }

    async fn views(&self, namespace: ViewNamespace) -> Arc<dyn ViewStore> {
        let live: Arc<dyn ViewStore> = match &self.backend {
            Backend::Sqlite(dir) => {
                Arc::new(SqliteViewStore::open(&dir.path().join("ledger.db")).unwrap())
            }
            Backend::Dynamo { prefix } => Arc::new(DynamoViewStore::new(
                moto().dynamodb().await,
                DynamoViewStore::table_name(prefix),
            )),
        };
        live.in_namespace(namespace)
    }
}

fn ok(output: &Output, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ledger {args:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The digest a run printed for `projection` (its summary line shows all 64 hex digits).
fn printed_digest(stdout: &str, projection: &str) -> ViewDigest {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{projection} -> ")))
        .unwrap_or_else(|| panic!("no summary line for {projection} in:\n{stdout}"));
    let (_, rest) = line
        .split_once("digest sha256-sum:")
        .unwrap_or_else(|| panic!("no digest in {line:?}"));
    let hex = &rest[..64];
    let items = rest[64..]
        .trim_start_matches(" (")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {line:?}"));
    ViewDigest::from_hex(hex, items).unwrap_or_else(|| panic!("bad digest in {line:?}"))
}

/// One whole run into the live views, then N concurrent partition runs into a namespace:
/// their digests combine into the whole run's, partition by partition disjoint, and the
/// namespace holds exactly the whole run's items. A partition run again (wiping its own
/// keys) leaves the other partitions' items alone.
async fn partitions_combine_into_one_run(store: Store) {
    let whole = ok(&store.ledger(&["replay"]), &["replay"]);
    let mut runs = Vec::new();
    for i in 0..PARTITIONS {
        let partition = format!("{i}/{PARTITIONS}");
        let args = ["replay", "--into", "parts", "--partition", &partition];
        runs.push(
            store
                .command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ledger"),
        );
    }
    let outputs: Vec<String> = runs
        .into_iter()
        .map(|child| ok(&child.wait_with_output().unwrap(), &["replay --partition"]))
        .collect();

    let parts = store.views(ViewNamespace::named("parts").unwrap()).await;
    for projection in PROJECTIONS {
        let expected = printed_digest(&whole, projection);
        assert!(expected.items > 0, "{projection}: {expected}");
        // The generated accounts make these two large enough that every partition has some.
        let large = matches!(*projection, "account-sync" | "correlation");
        assert!(!large || expected.items > 30, "{projection}: {expected}");
        let mut combined = ViewDigest::from_hex(&"0".repeat(64), 0).unwrap();
        for (i, out) in outputs.iter().enumerate() {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{projection} -> ")))
                .unwrap();
            assert!(
                line.contains(&format!("(partition {i}/{PARTITIONS})")),
                "{line}"
            );
            let part = printed_digest(out, projection);
            assert!(part.items <= expected.items, "{projection} {i}: {part}");
            assert!(
                !large || (part.items > 0 && part.items < expected.items),
                "{projection} {i}: {part}"
            );
            combined = combined.combine(&part);
        }
        assert_eq!(combined, expected, "{projection}: partitions combined");
        // The namespace now holds what one run built, item for item.
        let held = stream_digest(parts.as_ref(), projection, Partition::ALL)
            .await
            .unwrap();
        assert_eq!(held, expected, "{projection}: items of the namespace");
    }

    // Partition 1 again: it wipes and rebuilds its own keys only.
    let again = ok(
        &store.ledger(&["replay", "--into", "parts", "--partition", "1/4"]),
        &["replay --partition 1/4 again"],
    );
    for projection in PROJECTIONS {
        let line = again
            .lines()
            .find(|l| l.starts_with(&format!("{projection} -> ")))
            .unwrap();
        let part = printed_digest(&again, projection);
        assert!(
            line.contains(&format!("wiped {} items", part.items)) || part.items == 0,
            "{line}"
        );
        let held = stream_digest(parts.as_ref(), projection, Partition::ALL)
            .await
            .unwrap();
        assert_eq!(held, printed_digest(&whole, projection), "{projection}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_combine_into_the_digest_of_one_run_on_sqlite() {
    let store = Store::with_events(Backend::Sqlite(tempfile::tempdir().unwrap()), 80);
    partitions_combine_into_one_run(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_combine_into_the_digest_of_one_run_on_dynamodb() {
    let prefix = unique_name("parts");
    let store = Store::with_events(Backend::Dynamo { prefix }, 40);
    partitions_combine_into_one_run(store).await;
}

#[test]
fn a_bad_partition_is_refused_naming_the_flag() {
    let store = Store::with_events(Backend::Sqlite(tempfile::tempdir().unwrap()), 0);
    for (bad, reason) in [
        ("4/4", "index 4 must be below the count 4"),
        ("two/4", "is not a number"),
        ("1", "must be <index>/<count>"),
    ] {
        let out = store.ledger(&["replay", "--partition", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(stderr.contains("--partition"), "{bad}: {stderr}");
        assert!(stderr.contains(reason), "{bad}: {stderr}");
    }
    let out = store.ledger(&["replay", "--partition", "0/2", "--into", "x", "--switch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--switch"),
        "switching one partition would replace every live item"
    );
}
