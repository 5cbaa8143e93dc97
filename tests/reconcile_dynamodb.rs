//! Reconciliation on DynamoDB (moto): the same scenarios as `tests/reconcile_sqlite.rs` at a
//! smaller N, through the `ledger` binary (the worker reads the table's stream through the
//! Streams API).

mod common;

use common::reconcile_world;
use common::sync_world_dynamodb;

use reconcile_world::Sizes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_exactly_and_repaired_through_the_projectors_on_dynamodb() {
    let w = sync_world_dynamodb::dynamodb_world().await;
    let sizes = Sizes {
        linked: 20,
        each: 4,
    };
    reconcile_world::drift_is_reported_exactly_and_repaired_through_the_projectors(&w, sizes).await;
}
