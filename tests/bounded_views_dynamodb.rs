//! No view item grows with history, on DynamoDB (moto; issue 15 item 1): a smaller N than
//! the embedded store's, with the same item-size assertion over every stored item.

mod common;

use common::bounded_views;

use common::moto::{moto, unique_name};
use std::sync::Arc;
use sync_ledger::ledger::dynamodb::{migrate_with, views_table, DynamoDbLedger};
use sync_ledger::views::dynamodb::DynamoViewStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_relinked_300_times_projects_into_items_under_64_kib() {
    let prefix = unique_name("bounded");
    let config = moto().sdk_config().await;
    migrate_with(&config, &prefix).await.unwrap();
    bounded_views::a_link_relinked_n_times_projects_into_bounded_items(
        Arc::new(DynamoDbLedger::open_with(&config, &prefix).await.unwrap()),
        Arc::new(DynamoViewStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            views_table(&prefix),
        )),
        300,
    )
    .await;
}
