//! How an append is cut into DynamoDB transactions: at most `MAX_EVENTS_PER_TRANSACTION`
//! events and `MAX_TRANSACTION_BYTES` per TransactWriteItems, each event as its item and its
//! dedupe marker, versions and `recorded_at` continuing from the stream head. Pure: no SDK
//! calls, so the limits are unit-tested here and `append` only sends what this plans.

use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use projections::NewEvent;

use super::item::{self, DedupeItem};
use crate::ledger::{append_rules, LedgerError};

/// Each event takes two actions (event + dedupe marker) and TransactWriteItems allows 100
/// actions per transaction, so a transaction carries at most 50 events.
pub const MAX_EVENTS_PER_TRANSACTION: usize = 50;

/// TransactWriteItems refuses a transaction whose items total more than 4 MB; the budget
/// leaves headroom below 4 MiB because item sizes are estimated (`item::item_size_bound`).
pub const MAX_TRANSACTION_BYTES: usize = 4_000_000;

/// The last event of a stream, as far as appends need it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) version: u64,
    pub(super) recorded_at: Option<DateTime<Utc>>,
}

/// The items of one transaction, before they become actions.
pub(super) struct Chunk {
    /// Indexes (into the call's events) of the events it appends, in order.
    pub(super) events: Vec<usize>,
    pub(super) items: Vec<(HashMap<String, AttributeValue>, DedupeItem)>,
}

/// Takes the next chunk from `pending`: events in order while the chunk stays within
/// `MAX_EVENTS_PER_TRANSACTION` and `MAX_TRANSACTION_BYTES` (always at least one event; an
/// event too large for DynamoDB alone is then refused by DynamoDB, naming the limit). Markers
/// carry `append_call` when the call spans several transactions: `split_already` (an earlier
/// chunk of this call committed) or this chunk not taking every pending event.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_chunk(
    events: &[NewEvent],
    pending: &VecDeque<usize>,
    head: Option<Head>,
    now: DateTime<Utc>,
    by_time_shards: u32,
    call: &str,
    split_already: bool,
    max_bytes: usize,
) -> Result<Chunk, LedgerError> {
    let base = head.map_or(0, |h| h.version);
    let mut previous = head.and_then(|h| h.recorded_at);
    let mut chunk = Chunk {
        events: Vec::new(),
        items: Vec::new(),
    };
    let mut bytes = 0;
    for (offset, idx) in pending.iter().take(MAX_EVENTS_PER_TRANSACTION).enumerate() {
        let event = &events[*idx];
        let version = base + 1 + offset as u64;
        let recorded_at = append_rules::next_recorded_at(previous, now);
        let event_item = encode(&item::event_item(
            event,
            version,
            &recorded_at,
            by_time_shards,
        ))?;
        let mut marker = item::dedupe_item(event, version, &recorded_at);
        // Sized with the call id, the larger of the two shapes the marker can take.
        marker.append_call = Some(call.to_string());
        let size = item::item_size_bound(&event_item) + item::item_size_bound(&encode(&marker)?);
        if offset > 0 && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        previous = Some(recorded_at);
        chunk.events.push(*idx);
        chunk.items.push((event_item, marker));
    }
    if !split_already && chunk.events.len() == pending.len() {
        // The whole call commits in this one transaction: it can never be left part-way, so
        // its markers keep the plain shape.
        for (_, marker) in &mut chunk.items {
            marker.append_call = None;
        }
    }
    Ok(chunk)
}

pub(super) fn encode<T: serde::Serialize>(
    value: &T,
) -> Result<HashMap<String, AttributeValue>, LedgerError> {
    serde_dynamo::to_item(value).map_err(|e| LedgerError::Store(format!("cannot encode item: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::{CorrelationId, EventId, Source, SourceEventId, StreamId};

    fn events(n: usize, payload_bytes: usize) -> Vec<NewEvent> {
        let stream = StreamId::parse("crm-account-chunks").unwrap();
        (0..n)
            .map(|i| NewEvent {
                event_id: EventId::new(),
                stream_id: stream.clone(),
                event_type: "Probe".into(),
                schema_version: 1,
                source: Source::Crm,
                source_event_id: SourceEventId::parse(format!("chunk-{i}")).unwrap(),
                correlation_id: CorrelationId::new(),
                causation_id: None,
                occurred_at: Utc::now(),
                payload: serde_json::json!({ "blob": "x".repeat(payload_bytes) }),
            })
            .collect()
    }

    fn plan(events: &[NewEvent], split_already: bool, max_bytes: usize) -> Chunk {
        let pending: VecDeque<usize> = (0..events.len()).collect();
        let head = Some(Head {
            version: 7,
            recorded_at: None,
        });
        plan_chunk(
            events,
            &pending,
            head,
            Utc::now(),
            4,
            "call",
            split_already,
            max_bytes,
        )
        .unwrap()
    }

    fn calls(chunk: &Chunk) -> Vec<Option<&str>> {
        chunk
            .items
            .iter()
            .map(|(_, m)| m.append_call.as_deref())
            .collect()
    }

    #[test]
    fn a_call_that_fits_one_transaction_keeps_plain_markers() {
        let all = events(3, 10);
        let chunk = plan(&all, false, MAX_TRANSACTION_BYTES);
        assert_eq!(chunk.events, [0, 1, 2]);
        let versions: Vec<u64> = chunk.items.iter().map(|(_, m)| m.version).collect();
        assert_eq!(versions, [8, 9, 10], "after the head");
        assert_eq!(calls(&chunk), [None, None, None]);
        // The last chunk of a call that was split is marked too.
        assert_eq!(
            calls(&plan(&all, true, MAX_TRANSACTION_BYTES)),
            [Some("call"); 3]
        );
    }

    #[test]
    fn chunks_hold_at_most_50_events() {
        let all = events(120, 10);
        let chunk = plan(&all, false, MAX_TRANSACTION_BYTES);
        assert_eq!(chunk.events, (0..50).collect::<Vec<_>>());
        assert!(calls(&chunk).iter().all(|c| *c == Some("call")));
    }

    #[test]
    fn chunks_stay_within_the_transaction_byte_limit() {
        // 50 events of ~100 KB are ~5 MB: more than one transaction may carry.
        let all = events(50, 100_000);
        let chunk = plan(&all, false, MAX_TRANSACTION_BYTES);
        let bytes: usize = chunk
            .items
            .iter()
            .map(|(e, m)| item::item_size_bound(e) + item::item_size_bound(&encode(m).unwrap()))
            .sum();
        assert!(bytes <= MAX_TRANSACTION_BYTES, "{bytes}");
        assert!(
            (30..50).contains(&chunk.events.len()),
            "{}",
            chunk.events.len()
        );
        assert!(calls(&chunk).iter().all(|c| *c == Some("call")), "split");
        // An event larger than the budget still goes alone (DynamoDB then names its limit).
        assert_eq!(plan(&all, false, 10).events, [0]);
    }
}
