//! The views conformance suite against the embedded SQLite adapter, on a fresh migrated
//! ledger file per test.

#[path = "common/views_conformance.rs"]
mod views_conformance;

use std::sync::Arc;
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;

async fn fresh() -> (tempfile::TempDir, Arc<dyn ViewStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    migrate(&path);
    let store = SqliteViewStore::open(&path).unwrap();
    (dir, Arc::new(store))
}

/// Applies `migrations/sqlite/*.sql` in name order, as `ledger migrate` does.
fn migrate(path: &std::path::Path) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let conn = rusqlite::Connection::open(path).unwrap();
    for f in files {
        conn.execute_batch(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

all_views_conformance_tests!(fresh());

#[tokio::test]
async fn an_unmigrated_file_is_reported_as_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteViewStore::open(&dir.path().join("empty.db"))
        .err()
        .expect("an empty file has no views table");
    assert!(err.to_string().contains("ledger migrate"), "{err}");
}
