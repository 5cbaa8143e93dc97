//! No view item grows with history, on the embedded store (issue 15 item 1): a link relinked
//! 5,000 times projects completely with every item under 64 KiB.

mod common;

use common::bounded_views;

use std::sync::Arc;
use sync_ledger::ledger::sqlite::{migrate, SqliteLedger};
use sync_ledger::views::sqlite::SqliteViewStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_relinked_5000_times_projects_into_items_under_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    migrate(&path).unwrap();
    bounded_views::a_link_relinked_n_times_projects_into_bounded_items(
        Arc::new(SqliteLedger::open(&path).unwrap()),
        Arc::new(SqliteViewStore::open(&path).unwrap()),
        5_000,
    )
    .await;
}
