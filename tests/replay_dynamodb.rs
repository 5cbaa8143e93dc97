//! `ledger replay` against DynamoDB (moto), through the real binary: wipe -> replay gives the
//! same digest as the first build and as the pure fold of the log (read through the `by-time`
//! order), an interrupted replay resumes from its checkpoint, and `--verify` names a tampered key.

mod common;

use common::moto::{moto, unique_name};
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::{Projection, Views};
use std::process::{Command, Output};
use std::sync::Arc;
use sync_ledger::ledger::dynamodb::DynamoDbLedger;
use sync_ledger::ledger::EventLog;
use sync_ledger::replay::{canonical_json, snapshot, ViewDigest};
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::{ViewKey, ViewStore, ViewWrite};

/// The demo's hand-written day (see the header of `src/cli/demo.rs` for its shape).
const SAMPLE: &str = include_str!("../src/cli/demo_sample.jsonl");

struct Store {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Store {
    /// A migrated table prefix holding the sample day plus `accounts` generated accounts.
    fn with_events(accounts: usize) -> Self {
        let store = Self {
            prefix: unique_name("replay"),
            dir: tempfile::tempdir().unwrap(),
        };
        store.ledger_ok(&["migrate"]);
        let mut lines = SAMPLE.to_string();
        for n in 0..accounts {
            for change in 0..2 {
                lines.push_str(&format!(
                    r#"{{"stream_id":"crm-account-001DDB{n:05}","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"ddb-{n}-{change}","correlation_id":"0193a0b4-1c00-7000-8000-{n:08}{change:04}","occurred_at":"2026-11-26T09:00:00Z","payload":{{"account_id":"001DDB{n:05}","name":"Dynamo {n} v{change}","currency":"USD","billing_account_id":"8ad0ddb{n:04}"}}}}"#
                ));
                lines.push('\n');
            }
        }
        let file = store.dir.path().join("day.jsonl");
        std::fs::write(&file, lines).unwrap();
        store.ledger_ok(&["ingest", file.to_str().unwrap()]);
        store
    }

    fn ledger(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        moto()
            .apply_env(&mut command)
            .args(args)
            .env("LEDGER_STORE", format!("dynamodb://{}", self.prefix))
            .env_remove("RUST_LOG");
        command.output().expect("run ledger")
    }

    fn ledger_ok(&self, args: &[&str]) -> String {
        let output = self.ledger(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "ledger {args:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    async fn views(&self) -> Arc<dyn ViewStore> {
        Arc::new(DynamoViewStore::new(
            moto().dynamodb().await,
            DynamoViewStore::table_name(&self.prefix),
        ))
    }

    async fn log(&self) -> DynamoDbLedger {
        DynamoDbLedger::open_with(&moto().sdk_config().await, &self.prefix)
            .await
            .unwrap()
    }

    async fn digest(&self, projection: &str) -> ViewDigest {
        ViewDigest::of(
            &snapshot(self.views().await.as_ref(), projection)
                .await
                .unwrap(),
        )
    }

    async fn pure_fold<P: Projection>(&self) -> ViewDigest {
        let events = self
            .log()
            .await
            .read_all(None, None, usize::MAX)
            .await
            .unwrap();
        let mut views = Views::<P::State>::default();
        for event in &events {
            views.apply::<P>(event);
        }
        let expected = views
            .items
            .into_iter()
            .map(|(key, item)| {
                let held = serde_json::json!({
                    "last_version": item.last_version,
                    "state": serde_json::to_value(&item.state).unwrap(),
                });
                (format!("{}#{key}", P::NAME), canonical_json(&held))
            })
            // Spilled pages are items of their own, without a per-stream guard.
            .chain(views.pages.into_iter().map(|(key, state)| {
                let held = serde_json::json!({"last_version": {}, "state": state});
                (format!("{}#{key}", P::NAME), canonical_json(&held))
            }))
            .collect();
        ViewDigest::of(&expected)
    }
}

fn line_of<'a>(stdout: &'a str, projection: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{projection} -> ")))
        .unwrap_or_else(|| panic!("no summary line for {projection} in:\n{stdout}"))
}

#[tokio::test]
async fn replay_after_wiping_views_reproduces_them_exactly_on_dynamodb() {
    let store = Store::with_events(60);
    store.ledger_ok(&["replay"]);
    let account = store.digest(AccountSync::NAME).await;
    let correlation = store.digest(CorrelationView::NAME).await;
    assert!(
        account.items >= 60 && correlation.items >= 60,
        "{account} {correlation}"
    );
    assert_eq!(account, store.pure_fold::<AccountSync>().await);
    assert_eq!(correlation, store.pure_fold::<CorrelationView>().await);

    let views = store.views().await;
    for name in [AccountSync::NAME, CorrelationView::NAME] {
        assert!(views.delete_projection(name).await.unwrap() > 0);
    }
    let out = store.ledger_ok(&["replay"]);
    assert_eq!(store.digest(AccountSync::NAME).await, account, "{out}");
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        correlation,
        "{out}"
    );
}

#[tokio::test]
async fn interrupted_replay_resumes_from_its_checkpoint_on_dynamodb() {
    let store = Store::with_events(10);
    let total = store
        .log()
        .await
        .read_all(None, None, usize::MAX)
        .await
        .unwrap()
        .len();
    let first = store.ledger_ok(&[
        "replay",
        "--projection",
        AccountSync::NAME,
        "--max-events",
        "12",
        "--checkpoint-every",
        "5",
    ]);
    assert!(first.contains("stopped early"), "{first}");

    let second = store.ledger_ok(&["replay", "--projection", AccountSync::NAME]);
    let line = line_of(&second, AccountSync::NAME);
    assert!(line.contains("resumed from its checkpoint"), "{second}");
    assert!(
        line.contains(&format!("{} events read", total - 12)),
        "{second}"
    );
    assert_eq!(
        store.digest(AccountSync::NAME).await,
        store.pure_fold::<AccountSync>().await
    );
}

#[tokio::test]
async fn verify_names_a_tampered_key_on_dynamodb() {
    let store = Store::with_events(2);
    store.ledger_ok(&["replay", "--projection", CorrelationView::NAME]);
    let clean = store.ledger_ok(&["replay", "--verify", "--projection", CorrelationView::NAME]);
    assert!(clean.contains("identical"), "{clean}");

    let views = store.views().await;
    let key = ViewKey::new(CorrelationView::NAME, "link#crm#001DDB00001").unwrap();
    let item = views
        .get(&key)
        .await
        .unwrap()
        .expect("the link item exists");
    let mut state = item.state.clone();
    state["links"] = serde_json::json!([]);
    views
        .commit(vec![ViewWrite::replacing(
            key.clone(),
            Some(&item),
            item.last_version.clone(),
            state,
        )])
        .await
        .unwrap();
    let run = store.ledger(&["replay", "--verify", "--projection", CorrelationView::NAME]);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{}  differs", key.pk())), "{out}");
}
