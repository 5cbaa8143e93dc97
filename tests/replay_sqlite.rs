//! `ledger replay` on the embedded store, through the real binary: a wipe and replay rebuilds
//! the views exactly (digest equal, and equal to the pure fold of the log), an interrupted
//! replay resumes from its checkpoint, `--verify` names tampered keys, `--into` + `--switch`.

use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::{Projection, Views};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use sync_ledger::config::StoreUrl;
use sync_ledger::ledger::open_store;
use sync_ledger::replay::{canonical_json, snapshot, ViewDigest};
use sync_ledger::views::{open_views, ViewKey, ViewNamespace, ViewStore, ViewWrite};

/// The demo's hand-written day (see the header of `src/cli/demo.rs` for its shape).
const SAMPLE: &str = include_str!("../src/cli/demo_sample.jsonl");

struct Store {
    dir: tempfile::TempDir,
}

struct Run(Output);

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn ok(self) -> Self {
        assert!(
            self.0.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            String::from_utf8_lossy(&self.0.stderr)
        );
        self
    }
    fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
}

impl Store {
    /// A migrated store holding the sample day plus `accounts` generated accounts (three
    /// changes each, half of them linked to a Billing id), so replays span several pages.
    fn with_events(accounts: usize) -> Self {
        let store = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        store.ledger(&["migrate"]).ok();
        let mut lines = SAMPLE.to_string();
        for n in 0..accounts {
            for change in 0..3 {
                let billing = if n % 2 == 0 {
                    format!(r#","billing_account_id":"8ad0gen{n:04}""#)
                } else {
                    String::new()
                };
                lines.push_str(&format!(
                    r#"{{"stream_id":"crm-account-001GEN{n:05}","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"gen-{n}-{change}","correlation_id":"0193a0b4-1c00-7000-8000-{n:08}{change:04}","occurred_at":"2026-11-26T09:00:00Z","payload":{{"account_id":"001GEN{n:05}","name":"Generated {n} v{change}","currency":"USD"{billing}}}}}"#
                ));
                lines.push('\n');
            }
        }
        let file = store.dir.path().join("day.jsonl");
        std::fs::write(&file, lines).unwrap();
        store.ledger(&["ingest", file.to_str().unwrap()]).ok();
        store
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn ledger(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(args)
            .env(
                "LEDGER_STORE",
                format!("sqlite://{}", self.path().display()),
            )
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        Run(output)
    }

    async fn views(&self) -> Arc<dyn ViewStore> {
        open_views(&StoreUrl::Sqlite(self.path())).await.unwrap()
    }

    async fn digest(&self, projection: &str) -> ViewDigest {
        ViewDigest::of(
            &snapshot(self.views().await.as_ref(), projection)
                .await
                .unwrap(),
        )
    }

    /// What the projection's items must hold: the pure in-memory fold of the whole log.
    async fn pure_fold<P: Projection>(&self) -> ViewDigest {
        let log = open_store(&StoreUrl::Sqlite(self.path())).await.unwrap();
        let events = log.read_all(None, None, usize::MAX).await.unwrap();
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
            .collect();
        ViewDigest::of(&expected)
    }
}

fn digest_line<'a>(stdout: &'a str, projection: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{projection} -> ")))
        .unwrap_or_else(|| panic!("no summary line for {projection} in:\n{stdout}"))
}

#[tokio::test]
async fn replay_after_wiping_views_reproduces_them_exactly() {
    let store = Store::with_events(60);
    store.ledger(&["replay"]).ok();
    let account = store.digest(AccountSync::NAME).await;
    let correlation = store.digest(CorrelationView::NAME).await;
    assert!(
        account.items > 60 && correlation.items > 60,
        "{account} {correlation}"
    );

    let views = store.views().await;
    for name in [AccountSync::NAME, CorrelationView::NAME] {
        assert!(views.delete_projection(name).await.unwrap() > 0);
        assert_eq!(store.digest(name).await.items, 0);
    }

    let out = store.ledger(&["replay"]).ok().stdout();
    assert_eq!(store.digest(AccountSync::NAME).await, account);
    assert_eq!(store.digest(CorrelationView::NAME).await, correlation);
    assert!(
        digest_line(&out, AccountSync::NAME).contains(account.short()),
        "{out}"
    );
}

#[tokio::test]
async fn rebuilt_views_equal_the_pure_fold_of_the_log() {
    let store = Store::with_events(5);
    let out = store.ledger(&["replay"]).ok().stdout();
    assert_eq!(
        store.digest(AccountSync::NAME).await,
        store.pure_fold::<AccountSync>().await,
        "{out}"
    );
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        store.pure_fold::<CorrelationView>().await
    );
    // A second in-place replay wipes and rebuilds to the same digest.
    let again = store.ledger(&["replay"]).ok().stdout();
    assert!(
        digest_line(&again, AccountSync::NAME).contains("wiped"),
        "{again}"
    );
    assert_eq!(
        store.digest(AccountSync::NAME).await,
        store.pure_fold::<AccountSync>().await
    );
}

#[tokio::test]
async fn interrupted_replay_resumes_from_its_checkpoint() {
    let store = Store::with_events(20);
    let total = open_store(&StoreUrl::Sqlite(store.path()))
        .await
        .unwrap()
        .read_all(None, None, usize::MAX)
        .await
        .unwrap()
        .len();

    let first = store
        .ledger(&[
            "replay",
            "--projection",
            CorrelationView::NAME,
            "--max-events",
            "25",
            "--checkpoint-every",
            "10",
        ])
        .ok()
        .stdout();
    assert!(first.contains("stopped early"), "{first}");
    assert!(
        digest_line(&first, CorrelationView::NAME).contains("stopped after 25 events"),
        "{first}"
    );
    let partial = store.digest(CorrelationView::NAME).await;
    assert!(partial.items > 0);

    let second = store
        .ledger(&["replay", "--projection", CorrelationView::NAME])
        .ok()
        .stdout();
    let line = digest_line(&second, CorrelationView::NAME);
    assert!(line.contains("resumed from its checkpoint"), "{second}");
    assert!(
        line.contains(&format!("{} events read", total - 25)),
        "expected {} events after the checkpoint: {second}",
        total - 25
    );
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        store.pure_fold::<CorrelationView>().await
    );
}

#[tokio::test]
async fn verify_exits_non_zero_listing_the_tampered_keys() {
    let store = Store::with_events(3);
    store.ledger(&["replay"]).ok();
    let clean = store.ledger(&["replay", "--verify"]).ok().stdout();
    assert!(
        clean.contains(&format!("{}: identical", AccountSync::NAME)),
        "{clean}"
    );

    let views = store.views().await;
    let key = ViewKey::new(AccountSync::NAME, "crm#001GEN00001").unwrap();
    let item = views
        .get(&key)
        .await
        .unwrap()
        .expect("the account item exists");
    let mut state = item.state.clone();
    state["last_seen"]["name"] = serde_json::json!("Tampered Inc");
    views
        .commit(vec![ViewWrite::replacing(
            key.clone(),
            Some(&item),
            item.last_version.clone(),
            state,
        )])
        .await
        .unwrap();
    let stray = ViewKey::new(CorrelationView::NAME, "link#crm#ghost").unwrap();
    views
        .commit(vec![ViewWrite::replacing(
            stray.clone(),
            None,
            Default::default(),
            serde_json::json!({}),
        )])
        .await
        .unwrap();

    let run = store.ledger(&["replay", "--verify"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    let out = run.stdout();
    assert!(out.contains(&format!("{}  differs", key.pk())), "{out}");
    assert!(
        out.contains(&format!("{}  only in the live views", stray.pk())),
        "{out}"
    );
    // Verify only reads the live views: the tampering is still there for a person to see.
    let still = views.get(&key).await.unwrap().unwrap();
    assert_eq!(still.state["last_seen"]["name"], "Tampered Inc");
}

#[tokio::test]
async fn replay_into_a_namespace_leaves_live_views_alone_until_switched() {
    let store = Store::with_events(4);
    let out = store
        .ledger(&["replay", "--into", "rebuild1"])
        .ok()
        .stdout();
    assert!(
        out.contains("ledger replay --into rebuild1 --switch"),
        "{out}"
    );
    assert_eq!(store.digest(AccountSync::NAME).await.items, 0);
    let rebuilt = ViewDigest::of(
        &snapshot(
            store
                .views()
                .await
                .in_namespace(ViewNamespace::named("rebuild1").unwrap())
                .as_ref(),
            AccountSync::NAME,
        )
        .await
        .unwrap(),
    );
    assert_eq!(rebuilt, store.pure_fold::<AccountSync>().await);

    let switched = store
        .ledger(&["replay", "--into", "rebuild1", "--switch"])
        .ok()
        .stdout();
    assert!(switched.contains("switched"), "{switched}");
    assert_eq!(store.digest(AccountSync::NAME).await, rebuilt);
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        store.pure_fold::<CorrelationView>().await
    );
}

#[tokio::test]
async fn from_a_point_in_time_catches_up_views_restored_from_before_it() {
    let store = Store::with_events(6);
    let log = open_store(&StoreUrl::Sqlite(store.path())).await.unwrap();
    let events = log.read_all(None, None, usize::MAX).await.unwrap();
    let cut = &events[events.len() / 2];
    let cut_at = projections::envelope::format_timestamp(&cut.recorded_at);

    // Views as a backup taken before the cut would hold them: only the events before it.
    store
        .ledger(&[
            "replay",
            "--max-events",
            &(events.len() / 2).to_string(),
            "--projection",
            AccountSync::NAME,
        ])
        .ok();
    let restored = store.digest(AccountSync::NAME).await;
    assert_ne!(restored, store.pure_fold::<AccountSync>().await);

    let out = store
        .ledger(&[
            "replay",
            "--projection",
            AccountSync::NAME,
            "--from",
            &cut_at,
        ])
        .ok()
        .stdout();
    assert!(
        !digest_line(&out, AccountSync::NAME).contains("wiped"),
        "{out}"
    );
    assert_eq!(
        store.digest(AccountSync::NAME).await,
        store.pure_fold::<AccountSync>().await,
        "{out}"
    );
}

#[tokio::test]
async fn an_unknown_projection_is_refused_naming_the_known_ones() {
    let store = Store::with_events(0);
    let run = store.ledger(&["replay", "--projection", "nope"]);
    assert_eq!(run.code(), Some(1));
    let err = String::from_utf8_lossy(&run.0.stderr).into_owned();
    assert!(
        err.contains("projection: unknown projection \"nope\""),
        "{err}"
    );
    assert!(err.contains("known: account, "), "{err}");
}

#[tokio::test]
async fn a_replay_with_a_tiny_cache_writing_behind_builds_the_same_items_as_the_pure_fold() {
    // Every account changes once per round, so with a cache of 3 items per projection and
    // a batch every 7 events each item is evicted and read back from the store many times,
    // often right after the batch that wrote it went out.
    let store = Store::with_events(0);
    let mut lines = String::new();
    for round in 0..4 {
        for n in 0..40 {
            lines.push_str(&format!(
                r#"{{"stream_id":"crm-account-001CCH{n:05}","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"cache-{n}-{round}","correlation_id":"0193a0b4-1c00-7000-8000-{n:08}{round:04}","occurred_at":"2026-11-26T09:00:00Z","payload":{{"account_id":"001CCH{n:05}","name":"Cached {n} r{round}","currency":"USD","billing_account_id":"8ad0cch{n:04}"}}}}"#
            ));
            lines.push('\n');
        }
    }
    let file = store.dir.path().join("rounds.jsonl");
    std::fs::write(&file, lines).unwrap();
    store.ledger(&["ingest", file.to_str().unwrap()]).ok();

    let out = store
        .ledger(&["replay", "--cache-items", "3", "--checkpoint-every", "7"])
        .ok()
        .stdout();
    let account = store.digest(AccountSync::NAME).await;
    let correlation = store.digest(CorrelationView::NAME).await;
    assert!(account.items >= 40, "{account}");
    assert_eq!(account, store.pure_fold::<AccountSync>().await, "{out}");
    assert_eq!(
        correlation,
        store.pure_fold::<CorrelationView>().await,
        "{out}"
    );
    // The default cache builds the same.
    store.ledger(&["replay"]).ok();
    assert_eq!(store.digest(AccountSync::NAME).await, account);
    assert_eq!(store.digest(CorrelationView::NAME).await, correlation);
}
