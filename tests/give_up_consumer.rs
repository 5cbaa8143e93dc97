//! The give-up consumer through its handler, on moto DynamoDB + Streams: an on-failure
//! destination record (the shape Lambda sends for a discarded DynamoDB Streams batch) names a
//! shard/sequence range; the handler reads those records back from the stream and records a
//! `SyncFailed` per event, once, which redrive then lists as a given-up delivery.

mod common;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use common::moto::{moto, unique_name};
use projections::{
    CorrelationId, DomainEvent, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use std::sync::Arc;
use sync_ledger::lambda::give_up::stream_range::DynamoStreamRange;
use sync_ledger::lambda::give_up::{range_stream, GiveUpHandler};
use sync_ledger::ledger::dynamodb::item::decode_event;
use sync_ledger::ledger::dynamodb::{migrate_with, views_table, DynamoDbLedger};
use sync_ledger::ledger::{EventLog, ExpectedVersion};
use sync_ledger::redrive::{plan, Pending};
use sync_ledger::views::dynamodb::DynamoViewStore;
use sync_ledger::views::ViewStore;

const PREFIX: &str = "sl-projector-";

struct World {
    ledger: DynamoDbLedger,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    handler: GiveUpHandler,
}

async fn world() -> World {
    let config = moto().sdk_config().await;
    let prefix = unique_name("giveup");
    migrate_with(&config, &prefix).await.unwrap();
    let ledger = DynamoDbLedger::open_with(&config, &prefix).await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(ledger.clone());
    let views: Arc<dyn ViewStore> = Arc::new(DynamoViewStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        views_table(&prefix),
    ));
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let handler = GiveUpHandler::new(
        log.clone(),
        Arc::new(DynamoStreamRange::new(streams)),
        PREFIX,
    );
    World {
        ledger,
        log,
        views,
        handler,
    }
}

fn account_change(account_id: &str, correlation: CorrelationId, name: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        stream_id: StreamId::parse(format!("crm-account-{account_id}")).unwrap(),
        event_type: "CrmAccountUpserted".into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse(format!("{account_id}-{name}")).unwrap(),
        correlation_id: correlation,
        causation_id: None,
        occurred_at: Utc::now(),
        payload: serde_json::json!({"account_id": account_id, "name": name, "currency": "USD"}),
    }
}

/// Every event record of the table's stream as `(shard, sequence number, event)`.
async fn stream_records(ledger: &DynamoDbLedger) -> Vec<(String, String, RecordedEvent)> {
    let streams = moto().dynamodb_streams().await;
    let described = streams
        .describe_stream()
        .stream_arn(ledger.stream_arn())
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for shard in described.stream_description().unwrap().shards() {
        let shard_id = shard.shard_id().unwrap().to_string();
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(ledger.stream_arn())
            .shard_id(&shard_id)
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(it) = iterator.take() {
            let page = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let change = record.dynamodb().unwrap();
                if let Some(Some(event)) =
                    change.new_image().map(|i| decode_event(i.clone()).unwrap())
                {
                    let seq = change.sequence_number().unwrap().to_string();
                    out.push((shard_id.clone(), seq, event));
                }
            }
            iterator = page.next_shard_iterator().map(str::to_string);
        }
    }
    out
}

/// The on-failure destination record Lambda sends for a discarded DynamoDB Streams batch.
fn on_failure_body(
    function: &str,
    stream_arn: &str,
    shard: &str,
    start: &str,
    end: &str,
    invokes: u32,
) -> String {
    serde_json::json!({
        "requestContext": {
            "requestId": "316aa6d0-8154-4b3a-9af7-85d5f4a6bc81",
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invokes
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-12-05T20:13:49.717Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-12-05T20:13:19Z",
            "approximateArrivalOfLastRecord": "2026-12-05T20:13:19Z",
            "batchSize": 2,
            "streamArn": stream_arn
        }
    })
    .to_string()
}

fn sqs_event(messages: &[(&str, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (id, body) in messages {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_string());
        message.body = Some(body.clone());
        event.records.push(message);
    }
    event
}

fn sync_failed_of(events: &[RecordedEvent]) -> Vec<&RecordedEvent> {
    events
        .iter()
        .filter(|e| e.event_type == "SyncFailed")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_range_is_recorded_once_per_event_and_redrive_finds_it() {
    let w = world().await;
    let correlation = CorrelationId::new();
    let first = account_change("001GU1", correlation, "Giveco");
    let second = account_change("001GU2", correlation, "Other");
    w.log
        .append(
            &first.stream_id.clone(),
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )
        .await
        .unwrap();
    w.log
        .append(
            &second.stream_id.clone(),
            ExpectedVersion::NoStream,
            vec![second.clone()],
        )
        .await
        .unwrap();
    let records = stream_records(&w.ledger).await;
    let ours: Vec<_> = records
        .iter()
        .filter(|(_, _, e)| e.correlation_id == correlation)
        .collect();
    assert_eq!(ours.len(), 2, "both events are in the stream");
    let (shard, start, _) = ours[0];
    let (_, end, _) = ours[1];
    let body = on_failure_body(
        "sl-projector-account",
        w.ledger.stream_arn(),
        shard,
        start,
        end,
        11,
    );

    let response = w
        .handler
        .handle_sqs(sqs_event(&[("m-1", body.clone())]))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "recorded, so deleted"
    );

    for event in [&first, &second] {
        let stream = w.log.read_stream(&event.stream_id, 0).await.unwrap();
        let failed = sync_failed_of(&stream);
        assert_eq!(failed.len(), 1, "one SyncFailed on {}", event.stream_id);
        let failed = failed[0];
        assert_eq!(failed.causation_id, Some(event.event_id));
        assert_eq!(failed.correlation_id, correlation);
        let DomainEvent::SyncFailed(payload) = failed.decode().unwrap() else {
            panic!("not a SyncFailed");
        };
        assert_eq!(payload.projection, "account-sync");
        assert_eq!(payload.reason, "gave up after 11 deliveries");
        assert_eq!(payload.extra["shard_id"], serde_json::json!(shard));
        assert_eq!(
            failed.source_event_id.as_str(),
            format!("{}:on-failure:account-sync:gave-up", event.event_id)
        );
    }

    // SQS delivers at least once: the same message again records nothing.
    let again = w.handler.handle_message(&body).await.unwrap();
    assert_eq!((again.appended, again.already_recorded), (0, 2));
    let stream = w.log.read_stream(&first.stream_id, 0).await.unwrap();
    assert_eq!(
        stream.len(),
        2,
        "the event and one SyncFailed, nothing more"
    );

    // Redrive finds both as given-up deliveries of the account sync.
    let (_, targets) = plan(w.log.as_ref(), w.views.as_ref(), &correlation)
        .await
        .unwrap();
    let gave_up: Vec<_> = targets
        .iter()
        .filter(|t| matches!(t.pending, Pending::GaveUp { .. }))
        .map(|t| (t.cause.event_id, t.projection))
        .collect();
    assert_eq!(
        gave_up,
        [
            (first.event_id, "account-sync"),
            (second.event_id, "account-sync")
        ]
    );

    // The give-up records themselves given up (a projector that is down): not recorded again.
    let records = stream_records(&w.ledger).await;
    let give_ups: Vec<_> = records
        .iter()
        .filter(|(_, _, e)| e.correlation_id == correlation && e.event_type == "SyncFailed")
        .collect();
    assert_eq!(give_ups.len(), 2);
    let body = on_failure_body(
        "sl-projector-account",
        w.ledger.stream_arn(),
        &give_ups[0].0,
        &give_ups[0].1,
        &give_ups[1].1,
        3,
    );
    let recorded = w.handler.handle_message(&body).await.unwrap();
    assert_eq!((recorded.appended, recorded.skipped_give_ups), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_the_stream_no_longer_holds_is_recorded_as_a_range_once() {
    let w = world().await;
    // A shard trimmed away after the stream's 24 h retention is no longer found.
    let body = on_failure_body(
        "sl-projector-order",
        w.ledger.stream_arn(),
        "shardId-00000001700000000000-0000dead",
        "4100000000000000000001",
        "4100000000000000000009",
        11,
    );
    let recorded = w.handler.handle_message(&body).await;
    assert!(
        recorded
            .as_ref()
            .is_ok_and(|r| r.range_recorded && r.appended == 1),
        "{recorded:?}"
    );
    let stream = range_stream("order-sync").unwrap();
    let events = w.log.read_stream(&stream, 0).await.unwrap();
    assert_eq!(events.len(), 1, "one SyncFailed for the whole range");
    let DomainEvent::SyncFailed(failed) = events[0].decode().unwrap() else {
        panic!("not a SyncFailed");
    };
    assert_eq!(failed.projection, "order-sync");
    assert!(
        failed
            .reason
            .starts_with("gave up after 11 deliveries: the records are no longer in the stream"),
        "{}",
        failed.reason
    );
    assert_eq!(
        failed.extra["start_sequence_number"],
        serde_json::json!("4100000000000000000001")
    );
    let response = w
        .handler
        .handle_sqs(sqs_event(&[("m-aged", body.clone())]))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "delivered again: deleted"
    );
    assert_eq!(w.log.read_stream(&stream, 0).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_a_projector_give_up_stays_on_the_queue() {
    let w = world().await;
    let not_projector =
        on_failure_body("sl-ingest", w.ledger.stream_arn(), "shardId-1", "1", "2", 1);
    let response = w
        .handler
        .handle_sqs(sqs_event(&[
            ("m-garbage", "{\"hello\": 1}".to_string()),
            ("m-ingest", not_projector.clone()),
        ]))
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-garbage", "m-ingest"]);
    let err = w.handler.handle_message(&not_projector).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("requestContext.functionArn: function \"sl-ingest\" is not a projector"),
        "{err}"
    );
}
