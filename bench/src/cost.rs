//! DynamoDB cost model: request units per appended and per replayed event, computed from the
//! sizes of the items the ledger's codec actually writes (DynamoDB's item-size rules), beside
//! a naive design (one PutItem per event, no dedupe marker, no `by-time` index, Scan replay).
//! Pure arithmetic over generated events: it calls no endpoint.

use super::workload::{story, Story, EVENTS_PER_STORY};
use super::{Measurement, Outcome, Scale};
use chrono::Utc;
use serde_dynamo::AttributeValue;
use std::collections::HashMap;
use sync_ledger::ledger::dynamodb::item::{dedupe_item, event_item, DEFAULT_BY_TIME_SHARDS};

pub const NAME: &str = "cost";
pub const TITLE: &str = "DynamoDB cost model: request units per event vs a naive design";

/// Write units are counted per started KiB, read units per started 4 KiB.
const WRITE_UNIT: usize = 1024;
const READ_UNIT: usize = 4096;

/// Stories whose items are sized (the average is stable well before this).
const STORIES: usize = 200;

/// The share of the log a point-in-time replay covers in the comparison (10%).
const PARTIAL_REPLAY: f64 = 0.1;

/// DynamoDB's size of a number: one byte per two significant digits, plus one.
fn number_size(n: &str) -> usize {
    let digits: String = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::B(b) => b.len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(Vec::len).sum(),
        // Maps and lists: 3 bytes of overhead plus 1 byte per element.
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
    }
}

/// The size DynamoDB bills for an item: attribute names plus values.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn size_of<T: serde::Serialize>(item: &T) -> usize {
    let item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(item).expect("ledger items convert to DynamoDB items");
    item_size(&item)
}

fn units(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit) as f64
}

/// Sizes of one event's items: ours (event item, dedupe marker) and the naive event item.
struct Sizes {
    event: usize,
    dedupe: usize,
    naive_event: usize,
}

fn sizes(s: &Story) -> Vec<Sizes> {
    let now = Utc::now();
    let mut out = Vec::new();
    for events in [&s.crm, &s.billing] {
        for (i, e) in events.iter().enumerate() {
            let version = i as u64 + 1;
            let item = event_item(e, version, &now, DEFAULT_BY_TIME_SHARDS);
            let event = size_of(&item);
            let dedupe = size_of(&dedupe_item(e, version, &now));
            // The naive item is the same without the by-time index keys.
            let naive_event = event
                - ("bucket".len() + item.bucket.len())
                - ("time_sk".len() + item.time_sk.len());
            out.push(Sizes {
                event,
                dedupe,
                naive_event,
            });
        }
    }
    out
}

pub fn run(_scale: Scale) -> Outcome {
    let all: Vec<Sizes> = (0..STORIES).flat_map(|n| sizes(&story(n))).collect();
    let n = all.len() as f64;
    let avg = |f: &dyn Fn(&Sizes) -> f64| all.iter().map(f).sum::<f64>() / n;
    // One strongly consistent head Query (1 read unit) per append call; a story is two calls.
    let head_reads = 2.0 / EVENTS_PER_STORY as f64;
    // TransactWriteItems: 2 write units per started KiB of each item; each GSI (projection
    // ALL) takes a standard write of the item's size.
    let ours_write = avg(&|s| {
        2.0 * units(s.event, WRITE_UNIT)
            + 2.0 * units(s.dedupe, WRITE_UNIT)
            + 2.0 * units(s.event, WRITE_UNIT)
    });
    let naive_write = avg(&|s| units(s.naive_event, WRITE_UNIT) + units(s.naive_event, WRITE_UNIT));
    // Replay reads the by-time index with eventually consistent Queries: half a unit per
    // 4 KiB of items returned; pages are up to 1 MB, so per-page rounding is negligible.
    let ours_replay = avg(&|s| 0.5 * s.event as f64 / READ_UNIT as f64);
    let naive_replay = avg(&|s| 0.5 * s.naive_event as f64 / READ_UNIT as f64);
    let measurements = vec![
        Measurement::new(NAME, "write units per appended event", ours_write, "WRU")
            .against("naive: PutItem, no dedupe, one GSI", naive_write),
        Measurement::new(
            NAME,
            "read units per appended event (stream head)",
            head_reads,
            "RRU",
        ),
        Measurement::new(
            NAME,
            "read units per replayed event, whole log",
            ours_replay,
            "RRU",
        )
        .against("naive: Scan of the table", naive_replay),
        Measurement::new(
            NAME,
            format!(
                "read units per replayed event, last {:.0}% of the log",
                PARTIAL_REPLAY * 100.0
            ),
            ours_replay,
            "RRU",
        )
        .against(
            "naive: Scan reads the whole table",
            naive_replay / PARTIAL_REPLAY,
        ),
    ];
    Outcome::Measured {
        measurements,
        notes: vec![
            format!(
                "item sizes of {} generated events through the ledger's item codec: event item \
                 {:.0} B, dedupe marker {:.0} B on average (DynamoDB size rules: attribute \
                 names + values, numbers 1 B per 2 digits + 1)",
                all.len(),
                avg(&|s| s.event as f64),
                avg(&|s| s.dedupe as f64)
            ),
            "ours: event + dedupe marker in TransactWriteItems (2 WRU per started KiB each) + \
             by-correlation and by-time GSI writes (projection ALL, 1 WRU per KiB each); naive: \
             one PutItem + by-correlation GSI; both need the same head read per append call. \
             Replay: by-time Query vs Scan, eventually consistent (0.5 RRU per 4 KiB); a Scan \
             cannot start at a point in time, so a partial replay reads the whole table. View \
             writes are the same in both designs and not counted. Computed, not read back from \
             an endpoint's ReturnConsumedCapacity."
                .to_string(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("1000"), 2);
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), AttributeValue::S("crm-account-1".into())),
            ("sk".to_string(), AttributeValue::N("7".into())),
        ]
        .into();
        assert_eq!(item_size(&item), 2 + 13 + 2 + 2);
    }
}
