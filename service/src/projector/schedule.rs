//! How a delivered batch splits into independent work: groups of streams that share no view
//! item with any other group, so groups can be applied concurrently while, inside a group,
//! streams run one after another and each stream's events in version order.
//!
//! Two streams land in one group when any of their delivered events maps to the same view
//! item (order sync folds an order's stream and its account's stream into one item: applying
//! them concurrently would make them race on that item's conditional write and decide on a
//! state that misses the other's event). Pure: it only looks at stream ids and the keys the
//! projection names.

use projections::{RecordedEvent, StreamId};
use std::collections::HashMap;

/// The events of one stream of a batch, as indices into the delivered batch, sorted by
/// version (duplicates kept, so every delivered record gets a status).
pub type StreamRun = Vec<usize>;

/// Streams that must be applied one after another (they share view items), in order of
/// first appearance in the batch.
pub type Group = Vec<StreamRun>;

/// Splits `events` into independent groups, in order of first appearance. `key` names the
/// view item an event touches (`None`: the projection ignores it).
pub fn independent_groups(
    events: &[RecordedEvent],
    key: impl Fn(&RecordedEvent) -> Option<String>,
) -> Vec<Group> {
    // Streams in order of first appearance, each with its delivered indices.
    let mut stream_of: HashMap<&StreamId, usize> = HashMap::new();
    let mut runs: Vec<StreamRun> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let s = *stream_of.entry(&e.stream_id).or_insert_with(|| {
            runs.push(Vec::new());
            runs.len() - 1
        });
        runs[s].push(i);
    }
    // Union-find over streams: a view key joins every stream that touches it.
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    let mut owner_of_key: HashMap<String, usize> = HashMap::new();
    for e in events {
        let Some(k) = key(e) else { continue };
        let s = stream_of[&e.stream_id];
        match owner_of_key.get(&k) {
            Some(&other) => union(&mut parent, s, other),
            None => {
                owner_of_key.insert(k, s);
            }
        }
    }
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (s, mut run) in runs.into_iter().enumerate() {
        run.sort_by_key(|&i| (events[i].version, i));
        let root = find(&mut parent, s);
        let g = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(run);
    }
    groups
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The earlier stream stays the root, so groups keep first-appearance order.
    let (keep, join) = if ra <= rb { (ra, rb) } else { (rb, ra) };
    parent[join] = keep;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use projections::{CorrelationId, EventId, Source, SourceEventId};

    fn event(stream: &str, version: u64, item: &str) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId::new(),
            stream_id: StreamId::parse(stream).unwrap(),
            version,
            event_type: "T".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse(format!("{stream}-{version}")).unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            payload: serde_json::json!({ "item": item }),
        }
    }

    fn item(e: &RecordedEvent) -> Option<String> {
        e.payload["item"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    #[test]
    fn streams_sharing_a_view_item_share_a_group_and_keep_version_order() {
        let events = vec![
            event("crm-order-o1", 2, "acct-a"),
            event("crm-account-b", 1, "acct-b"),
            event("crm-order-o1", 1, "acct-a"),
            event("crm-account-a", 1, "acct-a"),
            event("crm-account-c", 1, ""),
        ];
        let groups = independent_groups(&events, item);
        assert_eq!(
            groups,
            vec![vec![vec![2, 0], vec![3]], vec![vec![1]], vec![vec![4]]]
        );
    }

    #[test]
    fn a_chain_of_shared_items_joins_transitively() {
        let events = vec![
            event("s-a-1", 1, "x"),
            event("s-b-1", 1, "y"),
            event("s-c-1", 1, "x"),
            event("s-c-1", 2, "y"),
        ];
        let groups = independent_groups(&events, item);
        assert_eq!(groups, vec![vec![vec![0], vec![1], vec![2, 3]]]);
    }
}
