//! The `ledger replay` scenarios, written once and run on both stores through the real
//! binary (`tests/replay_sqlite.rs`, `tests/replay_dynamodb.rs` on moto, each one line of
//! `replay_tests!(Backend::..)`): a wipe and replay rebuilds the views exactly (digest equal,
//! and equal to the pure fold of the log), an interrupted replay resumes from its checkpoint,
//! `--verify` names tampered keys, `--into` + `--switch`, `--from`, an unknown projection.
//! Account counts stay small because every scenario also runs against moto.

use super::ledger_run::{ledger_command, Run};
use super::moto::{moto, unique_name};
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::{Projection, Views};
use std::path::PathBuf;
use std::sync::Arc;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::dynamodb::DynamoDbLedger;
use sync_ledger::ledger::{open_store, EventLog};
use sync_ledger::replay::{canonical_json, snapshot, ViewDigest};
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::{open_views, ViewKey, ViewNamespace, ViewStore, ViewWrite};

/// The demo's hand-written day (see the header of `src/cli/demo.rs` for its shape).
const SAMPLE: &str = include_str!("../../src/cli/demo_sample.jsonl");

/// Which store a scenario runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// An embedded store in a temp dir.
    Sqlite,
    /// A fresh table prefix on this binary's moto server.
    DynamoDb,
}

/// Generates one `#[tokio::test]` per scenario below, on `$backend`.
#[macro_export]
macro_rules! replay_tests {
    ($backend:expr) => {
        $crate::replay_tests!(@each $backend;
            replay_after_wiping_views_reproduces_them_exactly,
            rebuilt_views_equal_the_pure_fold_of_the_log,
            interrupted_replay_resumes_from_its_checkpoint,
            verify_exits_non_zero_listing_the_tampered_keys,
            replay_into_a_namespace_leaves_live_views_alone_until_switched,
            from_a_point_in_time_catches_up_views_restored_from_before_it,
            an_unknown_projection_is_refused_naming_the_known_ones,
            a_tiny_cache_writing_behind_builds_the_items_of_the_pure_fold,
        );
    };
    (@each $backend:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::common::replay_scenarios::$name($backend).await;
            }
        )*
    };
}

/// A migrated store and what the scenarios read back from it.
pub struct Store {
    backend: Backend,
    /// The `LEDGER_STORE` value of every `ledger` run.
    url: String,
    /// Holds the embedded store (SQLite) and the day's input file (both).
    dir: tempfile::TempDir,
}

impl Store {
    /// A migrated store holding the sample day plus `accounts` generated accounts (three
    /// changes each, the even ones linked to a Billing id), so replays span several pages.
    pub fn with_events(backend: Backend, accounts: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("ledger.db").display()),
            Backend::DynamoDb => format!("dynamodb://{}", unique_name("replay")),
        };
        let store = Self { backend, url, dir };
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

    fn prefix(&self) -> &str {
        self.url
            .strip_prefix("dynamodb://")
            .expect("a DynamoDB store")
    }

    /// Runs `ledger <args>` against this store (and the moto endpoint on DynamoDB).
    pub fn ledger(&self, args: &[&str]) -> Run {
        let mut command = ledger_command(&self.url, args);
        if let Backend::DynamoDb = self.backend {
            moto().apply_env(&mut command);
        }
        Run::of(command)
    }

    pub async fn views(&self) -> Arc<dyn ViewStore> {
        match self.backend {
            Backend::Sqlite => open_views(&StoreUrl::Sqlite(self.path()), &AwsConfig::lazy())
                .await
                .unwrap(),
            Backend::DynamoDb => Arc::new(DynamoViewStore::new(
                moto().dynamodb().await,
                DynamoViewStore::table_name(self.prefix()),
            )),
        }
    }

    pub async fn log(&self) -> Arc<dyn EventLog> {
        match self.backend {
            Backend::Sqlite => open_store(&StoreUrl::Sqlite(self.path()), &AwsConfig::lazy())
                .await
                .unwrap(),
            Backend::DynamoDb => Arc::new(
                DynamoDbLedger::open_with(&moto().sdk_config().await, self.prefix())
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Every event of the log, in the global (`by-time`) order replay reads.
    pub async fn events(&self) -> Vec<projections::RecordedEvent> {
        self.log()
            .await
            .read_all(None, None, usize::MAX)
            .await
            .unwrap()
    }

    pub async fn digest(&self, projection: &str) -> ViewDigest {
        ViewDigest::of(
            &snapshot(self.views().await.as_ref(), projection)
                .await
                .unwrap(),
        )
    }

    /// What the projection's items must hold: the pure in-memory fold of the whole log.
    pub async fn pure_fold<P: Projection>(&self) -> ViewDigest {
        let mut views = Views::<P::State>::default();
        for event in &self.events().await {
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

/// The summary line replay prints for `projection`.
pub fn digest_line<'a>(stdout: &'a str, projection: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{projection} -> ")))
        .unwrap_or_else(|| panic!("no summary line for {projection} in:\n{stdout}"))
}

pub async fn replay_after_wiping_views_reproduces_them_exactly(backend: Backend) {
    let store = Store::with_events(backend, 60);
    store.ledger(&["replay"]).ok();
    let account = store.digest(AccountSync::NAME).await;
    let correlation = store.digest(CorrelationView::NAME).await;
    assert!(
        account.items > 60 && correlation.items > 60,
        "{account} {correlation}"
    );
    assert_eq!(account, store.pure_fold::<AccountSync>().await);
    assert_eq!(correlation, store.pure_fold::<CorrelationView>().await);

    let views = store.views().await;
    for name in [AccountSync::NAME, CorrelationView::NAME] {
        assert!(views.delete_projection(name).await.unwrap() > 0);
        assert_eq!(store.digest(name).await.items, 0);
    }

    let out = store.ledger(&["replay"]).ok().stdout();
    assert_eq!(store.digest(AccountSync::NAME).await, account, "{out}");
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        correlation,
        "{out}"
    );
    assert!(
        digest_line(&out, AccountSync::NAME).contains(account.short()),
        "{out}"
    );
}

pub async fn rebuilt_views_equal_the_pure_fold_of_the_log(backend: Backend) {
    let store = Store::with_events(backend, 5);
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

/// Each projection keeps its own checkpoint, so each is interrupted and resumed in turn.
pub async fn interrupted_replay_resumes_from_its_checkpoint(backend: Backend) {
    let store = Store::with_events(backend, 20);
    let total = store.events().await.len();

    for name in [CorrelationView::NAME, AccountSync::NAME] {
        let first = store
            .ledger(&[
                "replay",
                "--projection",
                name,
                "--max-events",
                "25",
                "--checkpoint-every",
                "10",
            ])
            .ok()
            .stdout();
        assert!(first.contains("stopped early"), "{first}");
        assert!(
            digest_line(&first, name).contains("stopped after 25 events"),
            "{first}"
        );
        let partial = store.digest(name).await;
        assert!(partial.items > 0, "{name}");

        let second = store
            .ledger(&["replay", "--projection", name])
            .ok()
            .stdout();
        let line = digest_line(&second, name);
        assert!(line.contains("resumed from its checkpoint"), "{second}");
        assert!(
            line.contains(&format!("{} events read", total - 25)),
            "expected {} events after the checkpoint: {second}",
            total - 25
        );
    }
    assert_eq!(
        store.digest(CorrelationView::NAME).await,
        store.pure_fold::<CorrelationView>().await
    );
    assert_eq!(
        store.digest(AccountSync::NAME).await,
        store.pure_fold::<AccountSync>().await
    );
}

/// Rewrites the state of an existing item, keeping its last versions, as a person might.
async fn tamper(views: &dyn ViewStore, key: &ViewKey, change: impl FnOnce(&mut serde_json::Value)) {
    let item = views.get(key).await.unwrap().expect("the item exists");
    let mut state = item.state.clone();
    change(&mut state);
    views
        .commit(vec![ViewWrite::replacing(
            key.clone(),
            Some(&item),
            item.last_version.clone(),
            state,
        )])
        .await
        .unwrap();
}

pub async fn verify_exits_non_zero_listing_the_tampered_keys(backend: Backend) {
    let store = Store::with_events(backend, 3);
    store.ledger(&["replay"]).ok();
    let clean = store.ledger(&["replay", "--verify"]).ok().stdout();
    assert!(
        clean.contains(&format!("{}: identical", AccountSync::NAME)),
        "{clean}"
    );
    let clean = store
        .ledger(&["replay", "--verify", "--projection", CorrelationView::NAME])
        .ok()
        .stdout();
    assert!(clean.contains("identical"), "{clean}");

    let views = store.views().await;
    let key = ViewKey::new(AccountSync::NAME, "crm#001GEN00001").unwrap();
    tamper(views.as_ref(), &key, |state| {
        state["last_seen"]["name"] = serde_json::json!("Tampered Inc");
    })
    .await;
    let link = ViewKey::new(CorrelationView::NAME, "link#crm#001GEN00000").unwrap();
    tamper(views.as_ref(), &link, |state| {
        state["links"] = serde_json::json!([]);
    })
    .await;
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
    assert!(out.contains(&format!("{}  differs", link.pk())), "{out}");
    assert!(
        out.contains(&format!("{}  only in the live views", stray.pk())),
        "{out}"
    );
    let run = store.ledger(&["replay", "--verify", "--projection", CorrelationView::NAME]);
    let out = run.stdout();
    assert_eq!(run.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{}  differs", link.pk())), "{out}");
    // Verify only reads the live views: the tampering is still there for a person to see.
    let still = views.get(&key).await.unwrap().unwrap();
    assert_eq!(still.state["last_seen"]["name"], "Tampered Inc");
}

pub async fn replay_into_a_namespace_leaves_live_views_alone_until_switched(backend: Backend) {
    let store = Store::with_events(backend, 4);
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

pub async fn from_a_point_in_time_catches_up_views_restored_from_before_it(backend: Backend) {
    let store = Store::with_events(backend, 6);
    let events = store.events().await;
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

pub async fn an_unknown_projection_is_refused_naming_the_known_ones(backend: Backend) {
    let store = Store::with_events(backend, 0);
    let run = store.ledger(&["replay", "--projection", "nope"]);
    assert_eq!(run.code(), Some(1));
    let err = run.stderr();
    assert!(
        err.contains("projection: unknown projection \"nope\""),
        "{err}"
    );
    assert!(err.contains("known: account, "), "{err}");
}

/// Every account changes once per round, so with a cache of 3 items per projection and a
/// batch every 7 events each item is evicted and read back from the store many times, often
/// right after the batch that wrote it went out (replay writes behind its folds).
pub async fn a_tiny_cache_writing_behind_builds_the_items_of_the_pure_fold(backend: Backend) {
    let store = Store::with_events(backend, 0);
    let mut lines = String::new();
    for round in 0..3 {
        for n in 0..25 {
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
    assert!(account.items >= 25, "{account}");
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
