//! The `EventLog` conformance suite against the embedded store: every body runs on a fresh,
//! migrated `SqliteLedger` in its own temp dir. Plus what only the embedded store promises.

mod common;

use common::conformance::{probes, unique_stream};
use std::collections::HashSet;
use std::ops::Deref;
use sync_ledger::ledger::{
    sqlite, AppendFault, EventLog, ExpectedVersion, FeedStart, LedgerError, SqliteLedger,
};

/// A migrated store that lives as long as its temp dir.
struct FreshStore {
    ledger: SqliteLedger,
    _dir: tempfile::TempDir,
}

impl Deref for FreshStore {
    type Target = dyn EventLog;
    fn deref(&self) -> &Self::Target {
        &self.ledger
    }
}

async fn fresh_store() -> FreshStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    sqlite::migrate(&path).unwrap();
    FreshStore {
        ledger: SqliteLedger::open(&path).unwrap(),
        _dir: dir,
    }
}

impl FreshStore {
    fn append_fault(&self) -> &AppendFault {
        self.ledger.append_fault()
    }
}

conformance_tests!(fresh_store);

#[tokio::test]
async fn embedded_change_feed_is_exactly_once_in_commit_order() {
    let store = fresh_store().await;
    let a = unique_stream("a");
    let b = unique_stream("b");
    let mut feed = store.change_feed(FeedStart::Beginning).await.unwrap();
    store
        .append(&a, ExpectedVersion::Any, probes(&a, 3))
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::Any, probes(&b, 2))
        .await
        .unwrap();
    store
        .append(&a, ExpectedVersion::Any, probes(&a, 1))
        .await
        .unwrap();
    let mut delivered = Vec::new();
    loop {
        let batch = feed.poll(2).await.unwrap();
        if batch.is_empty() {
            break;
        }
        delivered.extend(batch);
    }
    let order: Vec<(String, u64)> = delivered
        .iter()
        .map(|i| (i.event.stream_id.to_string(), i.event.version))
        .collect();
    let (a, b) = (a.to_string(), b.to_string());
    assert_eq!(
        order,
        vec![
            (a.clone(), 1),
            (a.clone(), 2),
            (a.clone(), 3),
            (b.clone(), 1),
            (b, 2),
            (a, 4)
        ]
    );
    let positions: Vec<i64> = delivered
        .iter()
        .map(|i| i.position.parse().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    // Latest starts after everything already recorded.
    let mut latest = store.change_feed(FeedStart::Latest).await.unwrap();
    assert!(latest.poll(10).await.unwrap().is_empty());
    let c = unique_stream("c");
    store
        .append(&c, ExpectedVersion::Any, probes(&c, 1))
        .await
        .unwrap();
    let fresh: HashSet<String> = latest
        .poll(10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.event.stream_id.to_string())
        .collect();
    assert_eq!(fresh, HashSet::from([c.to_string()]));
}

#[tokio::test]
async fn an_unmigrated_store_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.db");
    let err = SqliteLedger::open(&missing).unwrap_err();
    assert!(matches!(err, LedgerError::NotMigrated(_)), "{err:?}");
    assert!(err.to_string().contains("ledger migrate"), "{err}");
    assert!(!missing.exists(), "opening must not create the store");
}

#[tokio::test]
async fn migrating_twice_applies_each_migration_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("ledger.db");
    let first = sqlite::migrate(&path).unwrap();
    let all: Vec<String> = sqlite::MIGRATIONS
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(first.applied, all);
    assert!(first.already_applied.is_empty());
    let second = sqlite::migrate(&path).unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, first.applied);
}

#[tokio::test]
async fn a_second_process_sees_appends_through_its_own_connection() {
    let store = fresh_store().await;
    let other = SqliteLedger::open(store.ledger.path()).unwrap();
    let s = unique_stream("shared");
    store
        .append(&s, ExpectedVersion::Any, probes(&s, 2))
        .await
        .unwrap();
    let out = other
        .append(&s, ExpectedVersion::Exact(2), probes(&s, 1))
        .await
        .unwrap();
    assert!(out[0].is_appended());
    assert_eq!(store.read_stream(&s, 1).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_proceed_while_another_process_holds_the_write_lock() {
    let store = fresh_store().await;
    let s = unique_stream("locked");
    store
        .append(&s, ExpectedVersion::Any, probes(&s, 3))
        .await
        .unwrap();
    // Another process (here: a raw connection) is in the middle of a write transaction.
    let mut other = rusqlite::Connection::open(store.ledger.path()).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let reads = (0..8).map(|_| store.read_stream(&s, 1));
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.unwrap().len(), 3);
    }
    assert_eq!(store.read_all(None, None, 10).await.unwrap().len(), 3);
    tx.rollback().unwrap();
}
