//! The views conformance suite against the embedded SQLite adapter, on a fresh migrated
//! ledger file per test.

mod common;

use std::sync::Arc;
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;

async fn fresh() -> (tempfile::TempDir, Arc<dyn ViewStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    sync_ledger::ledger::sqlite::migrate(&path).unwrap();
    let store = SqliteViewStore::open(&path).unwrap();
    (dir, Arc::new(store))
}

all_views_conformance_tests!(fresh());

#[tokio::test]
async fn an_unmigrated_file_is_reported_as_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty).unwrap();
    let err = SqliteViewStore::open(&empty)
        .err()
        .expect("an empty file has no views table");
    assert!(err.to_string().contains("ledger migrate"), "{err}");
}

#[tokio::test]
async fn opening_a_missing_file_does_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.db");
    assert!(SqliteViewStore::open(&missing).is_err());
    assert!(!missing.exists());
}
