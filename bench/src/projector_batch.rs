//! Projector batch: decoding a 1,000-record DynamoDB Streams event of the event log (the
//! Lambda event shape, `NewImage`s from the ledger's item codec) and applying it to one
//! projection's items in memory, against a plain `serde_json` parse of the same bytes.
//! It measures the CPU work of a batch only; view reads and writes are in `replay`.

use super::workload::recorded_events;
use super::{side_by_side, Bound, Measurement, Outcome, Scale, Target};
use chrono::Utc;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::{NewEvent, Projection, RecordedEvent, Views};
use serde_json::{json, Value};
use std::hint::black_box;
use sync_ledger::lambda::projector::{decode_record, Decoded};
use sync_ledger::ledger::dynamodb::item::{event_item, DEFAULT_BY_TIME_SHARDS};

pub const NAME: &str = "projector_batch";
pub const TITLE: &str = "Projector batch: decode + apply vs serde_json parse";

/// Records per batch, as the issue asks (Lambda's DynamoDB batch size maximum is 10,000).
pub const RECORDS: usize = 1000;

const STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/prod-events/stream/2026-11-26T00:00:00.000";

/// The Lambda event of `events` as the event source mapping delivers it: one `INSERT`
/// record per event, `NewImage` in DynamoDB JSON exactly as the ledger stores the item.
pub fn stream_event_json(events: &[RecordedEvent]) -> String {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let new = NewEvent {
                event_id: e.event_id,
                stream_id: e.stream_id.clone(),
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                source: e.source,
                source_event_id: e.source_event_id.clone(),
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
                occurred_at: e.occurred_at,
                payload: e.payload.clone(),
            };
            let item = event_item(&new, e.version, &e.recorded_at, DEFAULT_BY_TIME_SHARDS);
            let image: serde_dynamo::Item =
                serde_dynamo::to_item(&item).expect("event items convert to DynamoDB items");
            let image = serde_json::to_value(&image).expect("DynamoDB items serialize");
            let size = image.to_string().len();
            json!({
                "eventID": format!("{:032x}", i + 1),
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": e.recorded_at.timestamp(),
                    "Keys": {"pk": image["pk"], "sk": image["sk"]},
                    "NewImage": image,
                    "SequenceNumber": format!("{:021}", 4_000_000_000_000_000_000u64 + i as u64),
                    "SizeBytes": size,
                    "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": STREAM_ARN
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// What the projector does with the batch before any I/O: parse the Lambda event, decode
/// each `NewImage` with the ledger codec, decide and fold into `P`'s items. Returns how many
/// events were applied.
pub fn decode_and_apply<P: Projection>(text: &str) -> usize {
    let event: aws_lambda_events::dynamodb::Event =
        serde_json::from_str(text).expect("the generated event parses");
    let mut views = Views::<P::State>::default();
    let now = Utc::now();
    let mut applied = 0;
    for record in &event.records {
        // The projector function's own decode step.
        if let Decoded::Event(e) = decode_record(record) {
            if let Some(projections::Handled::Decided(d)) = views.handle::<P>(&e, now) {
                black_box(d);
                applied += 1;
            }
        }
    }
    black_box(views);
    applied
}

/// The parse + codec part alone (no projection), to show where the time goes.
pub fn decode_only(text: &str) -> usize {
    let event: aws_lambda_events::dynamodb::Event =
        serde_json::from_str(text).expect("the generated event parses");
    event
        .records
        .iter()
        .filter(|r| matches!(black_box(decode_record(r)), Decoded::Event(_)))
        .count()
}

pub fn run(scale: Scale) -> Outcome {
    let events = recorded_events(0, RECORDS, Utc::now());
    let text = stream_event_json(&events);
    let rounds = scale.rounds() * 2;
    let parse = || {
        black_box(serde_json::from_str::<Value>(black_box(&text)).expect("parses"));
    };
    // A batch whose events do not all apply would measure less than a batch: check first.
    for applied in [
        decode_and_apply::<AccountSync>(&text),
        decode_and_apply::<CorrelationView>(&text),
    ] {
        if applied != RECORDS {
            return Outcome::Skipped {
                reason: format!("only {applied} of {RECORDS} generated events applied"),
            };
        }
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut measurements = Vec::new();
    let (decoded, parsed) = side_by_side(
        rounds,
        || {
            black_box(decode_only(&text));
        },
        parse,
    );
    measurements.push(
        Measurement::new(
            NAME,
            "decode only (Lambda event + item codec)",
            ms(decoded),
            "ms",
        )
        .against("serde_json::Value parse", ms(parsed)),
    );
    for (label, subject) in [
        (
            "decode + apply, account projection",
            decode_and_apply::<AccountSync> as fn(&str) -> usize,
        ),
        (
            "decode + apply, correlation projection",
            decode_and_apply::<CorrelationView>,
        ),
    ] {
        let (applied, parsed) = side_by_side(
            rounds,
            || {
                black_box(subject(&text));
            },
            parse,
        );
        measurements.push(
            Measurement::new(NAME, label, ms(applied), "ms")
                .against("serde_json::Value parse", ms(parsed))
                .target(Target::Ratio(Bound::AtMost(2.0))),
        );
    }
    Outcome::Measured {
        measurements,
        notes: vec![format!(
            "{RECORDS} INSERT records ({} KiB of JSON, account stories: CRM/Billing account \
             changes, sync outcomes, echoes), median of {rounds} alternating rounds; apply = \
             decide + evolve into in-memory items (what a projector function does per event \
             before its view I/O)",
            text.len() / 1024
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_ledger::ledger::dynamodb::item::decode_event;

    #[test]
    fn the_generated_stream_event_decodes_back_to_the_recorded_events() {
        let events = recorded_events(0, 20, Utc::now());
        let text = stream_event_json(&events);
        let event: aws_lambda_events::dynamodb::Event = serde_json::from_str(&text).unwrap();
        let decoded: Vec<RecordedEvent> = event
            .records
            .into_iter()
            .map(|r| decode_event(r.change.new_image).unwrap().unwrap())
            .collect();
        assert_eq!(decoded, events);
        assert_eq!(decode_and_apply::<AccountSync>(&text), 20);
    }
}
