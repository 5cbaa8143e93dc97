//! The views conformance suite against the DynamoDB adapter, on moto (one views table per
//! test, so tests never see each other's items).

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use common::moto::{moto, unique_name};
use std::sync::Arc;
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::ViewStore;

async fn fresh() -> ((), Arc<dyn ViewStore>) {
    let client = moto().dynamodb().await;
    let table = DynamoViewStore::table_name(&unique_name("views"));
    create_views_table(&client, &table).await;
    ((), Arc::new(DynamoViewStore::new(client, table)))
}

/// The views table's key schema of DESIGN §3: hash key `pk` (String), nothing else.
async fn create_views_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create views table on moto");
}

all_views_conformance_tests!(fresh());

#[tokio::test]
async fn a_missing_table_is_reported_as_not_migrated() {
    let store = DynamoViewStore::new(moto().dynamodb().await, unique_name("absent"));
    let key = sync_ledger::views::ViewKey::new("account", "1").unwrap();
    let err = store.get(&key).await.unwrap_err();
    assert!(err.to_string().contains("ledger migrate"), "{err}");
}
