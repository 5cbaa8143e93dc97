//! Proves, through the real moto endpoint, that each patch in `tests/common/moto_server.py`
//! holds. The ledger's DynamoDB tests rely on these behaviours, which real DynamoDB has and
//! moto 5.2.1 lacks.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, StreamSpecification, StreamViewType, TransactWriteItem, Update,
};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use common::moto::{moto, unique_name};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// A `pk` (S) / `sk` (N) table with a NEW_IMAGE stream; returns its stream ARN.
async fn create_streamed_table(db: &aws_sdk_dynamodb::Client, name: &str) -> String {
    let out = db
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", ScalarAttributeType::N))
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    out.table_description()
        .and_then(|t| t.latest_stream_arn())
        .expect("table has a stream")
        .to_string()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

fn attr(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .unwrap()
}

fn item(pk: &str, sk: u64, note: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.to_string())),
        ("sk".to_string(), AttributeValue::N(sk.to_string())),
        ("note".to_string(), AttributeValue::S(note.to_string())),
    ])
}

fn put(table: &str, item: Item, only_if_new: bool) -> TransactWriteItem {
    let mut put = Put::builder().table_name(table).set_item(Some(item));
    if only_if_new {
        put = put.condition_expression("attribute_not_exists(pk)");
    }
    TransactWriteItem::builder()
        .put(put.build().unwrap())
        .build()
}

/// A TRIM_HORIZON iterator on the table's (single, in moto) shard.
async fn open_iterator(streams: &aws_sdk_dynamodbstreams::Client, stream_arn: &str) -> String {
    let description = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .expect("describe stream");
    let shard_id = description
        .stream_description()
        .and_then(|d| d.shards().first())
        .and_then(|s| s.shard_id())
        .expect("stream has a shard")
        .to_string();
    streams
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("get shard iterator")
        .shard_iterator()
        .expect("an iterator")
        .to_string()
}

/// One stream record as `(event name, pk, sk, note of the new image)`.
type Record = (String, String, String, String);

/// Reads what the iterator has now, and the next iterator.
async fn read_records(
    streams: &aws_sdk_dynamodbstreams::Client,
    iterator: &str,
) -> (Vec<Record>, String) {
    let out = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("get records");
    let records = out
        .records()
        .iter()
        .map(|r| {
            let keys = r.dynamodb().and_then(|d| d.keys()).expect("record keys");
            let image = r.dynamodb().and_then(|d| d.new_image()).expect("new image");
            let text = |name: &str| match keys.get(name).or_else(|| image.get(name)) {
                Some(aws_sdk_dynamodbstreams::types::AttributeValue::S(s)) => s.clone(),
                Some(aws_sdk_dynamodbstreams::types::AttributeValue::N(n)) => n.clone(),
                other => panic!("unexpected key {name}: {other:?}"),
            };
            (
                r.event_name().expect("event name").as_str().to_string(),
                text("pk"),
                text("sk"),
                text("note"),
            )
        })
        .collect();
    let next = out
        .next_shard_iterator()
        .expect("an open shard keeps an iterator")
        .to_string();
    (records, next)
}

async fn all_items(db: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Item> {
    let mut items = db
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec();
    items.sort_by_key(|i| format!("{:?}{:?}", i["pk"], i["sk"]));
    items
}

#[tokio::test]
async fn update_item_that_creates_an_item_streams_exactly_one_insert() {
    let moto = moto();
    let (db, streams) = (moto.dynamodb().await, moto.dynamodb_streams().await);
    let table = unique_name("patch-a");
    let stream_arn = create_streamed_table(&db, &table).await;
    let iterator = open_iterator(&streams, &stream_arn).await;

    db.update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("created-by-update".into()))
        .key("sk", AttributeValue::N("1".into()))
        .update_expression("SET note = :n")
        .expression_attribute_values(":n", AttributeValue::S("first".into()))
        .send()
        .await
        .expect("update item");
    db.update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("created-by-update".into()))
        .key("sk", AttributeValue::N("1".into()))
        .update_expression("SET note = :n")
        .expression_attribute_values(":n", AttributeValue::S("second".into()))
        .send()
        .await
        .expect("update item again");

    let (records, _) = read_records(&streams, &iterator).await;
    let names: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["INSERT", "MODIFY"], "records: {records:?}");
}

#[tokio::test]
async fn cancelled_transaction_keeps_earlier_stream_iterators_reading() {
    let moto = moto();
    let (db, streams) = (moto.dynamodb().await, moto.dynamodb_streams().await);
    let table = unique_name("patch-b");
    let stream_arn = create_streamed_table(&db, &table).await;
    db.put_item()
        .table_name(&table)
        .set_item(Some(item("s", 1, "before")))
        .send()
        .await
        .expect("put");
    let iterator = open_iterator(&streams, &stream_arn).await;
    let (records, iterator) = read_records(&streams, &iterator).await;
    assert_eq!(records.len(), 1);

    // One action would succeed, the other's condition fails: the whole transaction cancels.
    let cancelled = db
        .transact_write_items()
        .transact_items(put(&table, item("s", 2, "phantom"), true))
        .transact_items(put(&table, item("s", 1, "clash"), true))
        .send()
        .await;
    let err = cancelled.expect_err("the second condition fails");
    assert!(
        format!("{:?}", err.into_service_error()).contains("TransactionCanceled"),
        "cancelled with reasons"
    );

    db.transact_write_items()
        .transact_items(put(&table, item("s", 2, "after"), true))
        .send()
        .await
        .expect("a later transaction commits");

    let (records, _) = read_records(&streams, &iterator).await;
    assert_eq!(
        records,
        [(
            "INSERT".to_string(),
            "s".to_string(),
            "2".to_string(),
            "after".to_string()
        )],
        "the iterator from before the cancellation sees the later write, and nothing of the \
         cancelled transaction"
    );
}

#[tokio::test]
async fn cancelled_transaction_restores_the_table_copying_only_touched_items() {
    let moto = moto();
    let db = moto.dynamodb().await;
    let table = unique_name("patch-c");
    create_streamed_table(&db, &table).await;
    const TABLE_SIZE: u64 = 40;
    for sk in 1..=TABLE_SIZE {
        db.put_item()
            .table_name(&table)
            .set_item(Some(item("many", sk, "original")))
            .send()
            .await
            .expect("put");
    }
    let before = all_items(&db, &table).await;
    assert_eq!(before.len() as u64, TABLE_SIZE);

    // Four writes (overwrite, insert, in-place update, delete) are applied before the last
    // action's condition fails; all four must be undone.
    let update = Update::builder()
        .table_name(&table)
        .key("pk", AttributeValue::S("many".into()))
        .key("sk", AttributeValue::N("5".into()))
        .update_expression("SET note = :n, extra = :n")
        .expression_attribute_values(":n", AttributeValue::S("updated".into()))
        .build()
        .unwrap();
    let delete = Delete::builder()
        .table_name(&table)
        .key("pk", AttributeValue::S("many".into()))
        .key("sk", AttributeValue::N("6".into()))
        .build()
        .unwrap();
    let err = db
        .transact_write_items()
        .transact_items(put(&table, item("many", 3, "overwritten"), false))
        .transact_items(put(&table, item("brand-new", 1, "inserted"), false))
        .transact_items(TransactWriteItem::builder().update(update).build())
        .transact_items(TransactWriteItem::builder().delete(delete).build())
        .transact_items(put(&table, item("many", 7, "clash"), true))
        .send()
        .await
        .expect_err("the last condition fails");
    assert!(format!("{:?}", err.into_service_error()).contains("TransactionCanceled"));

    assert_eq!(
        all_items(&db, &table).await,
        before,
        "every item is exactly as before the cancelled transaction"
    );
    let stats = &moto.patch_stats().await["tables"][&table];
    assert_eq!(stats["transactions"], 1, "{stats}");
    assert_eq!(stats["cancelled"], 1, "{stats}");
    assert_eq!(
        stats["last_items_copied"], 4,
        "the undo log holds the four items written, not the {TABLE_SIZE}-item table: {stats}"
    );
}

#[tokio::test]
async fn shard_iterator_of_an_unknown_shard_is_resource_not_found() {
    use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
    let db = moto().dynamodb().await;
    let streams = moto().dynamodb_streams().await;
    let stream_arn = create_streamed_table(&db, &unique_name("patch-e")).await;
    let err = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id("shardId-00000001700000000000-0000dead")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("no such shard");
    assert_eq!(err.code(), Some("ResourceNotFoundException"), "{err:?}");
}
