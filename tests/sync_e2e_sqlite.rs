//! End-to-end sync on the embedded store, through the real entry points: the sandbox's CRM
//! and Billing emit what a person or our own writes cause (its outbox plays the event relay),
//! `ledger ingest` records it, `ledger worker` projects it over the change feed and calls the
//! sandbox. The scenarios (shared with DynamoDB) live in `tests/common/sync_world.rs`.

#[path = "common/sync_world.rs"]
mod sync_world;

use std::sync::Arc;
use sync_ledger::ledger::sqlite::SqliteLedger;
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_world::{Store, World};

async fn world() -> World {
    World::new(|dir, env| async move {
        let db = dir.join("ledger.db");
        let url = format!("sqlite://{}", db.display());
        sync_ledger::ledger::sqlite::migrate(&db).unwrap();
        Store {
            url,
            env,
            log: Arc::new(SqliteLedger::open(&db).unwrap()),
            views: Arc::new(SqliteViewStore::open(&db).unwrap()),
            guard: Box::new(()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_account_becomes_a_billing_account_linked_both_ways() {
    sync_world::crm_account_becomes_a_billing_account_linked_both_ways(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_before_its_account_is_deferred_then_synced() {
    sync_world::an_order_arriving_before_its_account_is_deferred_then_synced(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_catalog_change_lands_in_the_crm() {
    sync_world::a_billing_catalog_change_lands_in_the_crm(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_billing_update_echoes_back_and_is_suppressed() {
    sync_world::our_billing_update_echoes_back_and_is_suppressed(&world().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_records_change_nothing() {
    let checkpoints: Vec<String> = sync_ledger::projector::PROJECTIONS
        .iter()
        .map(|(_, view)| sync_ledger::worker::feed::checkpoint_name(view))
        .collect();
    sync_world::redelivered_records_change_nothing(&world().await, &checkpoints).await;
}
