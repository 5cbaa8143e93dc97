//! End-to-end sync on DynamoDB (moto) through the real entry points: `ledger ingest` appends
//! to the events table, `ledger worker` reads its DynamoDB Stream through the Streams API and
//! invokes the projector Lambda handler exactly as the event source mapping would. Plus the
//! handler itself fed real stream records twice and out of order. Scenarios shared with the
//! embedded store live in `tests/common/sync_world.rs`.

mod common;

use common::sync_world;
use common::sync_world_dynamodb;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use common::moto::moto;
use std::sync::Arc;
use sync_ledger::connectors::config::ConnectorsConfig;
use sync_ledger::lambda::projector::ProjectorHandler;
use sync_ledger::ledger::dynamodb::events_table;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{build, ProjectorDeps, RunnerSettings};
use sync_world::World;

async fn world() -> (World, String) {
    let world = sync_world_dynamodb::dynamodb_world().await;
    let prefix = sync_world_dynamodb::table_prefix(&world).to_string();
    (world, prefix)
}

/// Every record of the events table's stream, as the Lambda event source mapping hands them.
async fn stream_records(prefix: &str) -> Vec<EventRecord> {
    let config = moto().sdk_config().await;
    let db = aws_sdk_dynamodb::Client::new(&config);
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let arn = db
        .describe_table()
        .table_name(events_table(prefix))
        .send()
        .await
        .unwrap()
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_string();
    let shards = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    let mut records = Vec::new();
    for shard in shards.stream_description().unwrap().shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(it) = iterator {
            let out = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if out.records().is_empty() {
                break;
            }
            // The JSON Lambda receives is the Streams record shape; round-trip through it.
            for r in out.records() {
                let change = r.dynamodb().unwrap();
                let image: serde_dynamo::Item =
                    change.new_image().cloned().unwrap_or_default().into();
                let json = serde_json::json!({
                    "awsRegion": "us-east-1",
                    "eventID": r.event_id(),
                    "eventName": r.event_name().map(|n| n.as_str()),
                    "eventSource": "aws:dynamodb",
                    "eventSourceARN": arn,
                    "dynamodb": {
                        "Keys": {},
                        "NewImage": image,
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes().unwrap_or(0),
                        "StreamViewType": "NEW_IMAGE",
                    },
                });
                records.push(serde_json::from_value(json).unwrap());
            }
            iterator = out.next_shard_iterator().map(str::to_string);
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_account_becomes_a_billing_account_linked_both_ways() {
    let (w, _) = world().await;
    sync_world::crm_account_becomes_a_billing_account_linked_both_ways(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_before_its_account_is_deferred_then_synced() {
    let (w, _) = world().await;
    sync_world::an_order_arriving_before_its_account_is_deferred_then_synced(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_catalog_change_lands_in_the_crm() {
    let (w, _) = world().await;
    sync_world::a_billing_catalog_change_lands_in_the_crm(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_billing_update_echoes_back_and_is_suppressed() {
    let (w, _) = world().await;
    sync_world::our_billing_update_echoes_back_and_is_suppressed(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_delivered_twice_and_out_of_order_change_nothing() {
    let (w, prefix) = world().await;
    let crm_id = w.crm_account("Shuffle AG");
    w.deliver_outbox().await;
    w.settle().await;
    let stream = format!("crm-account-{crm_id}");
    let before = w.events(&stream).await;
    let calls_before = w.sandbox.calls().total;
    let link_before = w.link("crm", &crm_id).await;
    assert!(link_before.is_some());

    // The whole stream so far, reversed and with every record twice, to each projector
    // Lambda handler, built as the Lambda main builds it.
    let mut records = stream_records(&prefix).await;
    assert!(records.len() >= 3, "{} records", records.len());
    records.reverse();
    let mut twice = records.clone();
    twice.extend(records);
    let env: Vec<(String, String)> = w.store().env.clone();
    let connectors = ConnectorsConfig::from_lookup(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let deps = ProjectorDeps {
        log: w.store().log.clone(),
        views: w.store().views.clone(),
        effects: Arc::new(ConnectorEffects::from_config(&connectors, None).unwrap()),
        settings: RunnerSettings::default(),
    };
    for (name, _) in sync_ledger::projector::PROJECTIONS {
        let handler = ProjectorHandler::new(build(name, &deps).unwrap());
        let mut event = Event::default();
        event.records = twice.clone();
        let response = handler.handle_stream_event(event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{name}: {response:?}"
        );
    }

    assert_eq!(w.events(&stream).await, before);
    assert_eq!(w.sandbox.calls().total, calls_before);
    assert_eq!(w.sandbox.billing_accounts().len(), 1);
    assert_eq!(w.link("crm", &crm_id).await, link_before);

    // The relay redelivering the same source event records nothing and calls nothing.
    sync_world::redelivered_records_change_nothing(&w, &[]).await;
}
