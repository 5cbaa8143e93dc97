//! A fresh, migrated ledger per ingest test, behind the `EventLog` port, so the ingest
//! tests read the same whichever store they run on.

use std::sync::Arc;
use sync_ledger::ledger::{sqlite, EventLog, SqliteLedger};

pub struct TestStore {
    log: Arc<dyn EventLog>,
    _dir: tempfile::TempDir,
}

impl TestStore {
    pub fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }
}

pub async fn fresh_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    sqlite::migrate(&path).unwrap();
    TestStore {
        log: Arc::new(SqliteLedger::open(&path).unwrap()),
        _dir: dir,
    }
}
