//! Fault family 1, redelivery, on the embedded store through `ledger ingest` and `ledger
//! worker`: inbound CRM change events (the sandbox's real EventBridge shapes) are delivered
//! with 30% of them twice or three times, the redeliveries shuffled into the stream's batch
//! after their first delivery and the streams interleaved at random. Asserted: exactly one
//! ledger event per source event; through the projector, one Billing account per CRM account,
//! every account linked after a single `ledger worker --until-idle` run, and the same Billing
//! state and correlation links as a clean (once, in order) run. A scaled case runs the same on
//! DynamoDB (moto): `ledger ingest` into the events table, `ledger worker` over its Stream.

mod common;

use common::sync_world_dynamodb;

use common::fault_world::{crm_activity, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use sync_ledger::projections::RecordedEvent;
use sync_world_dynamodb::{billing_state, dynamodb_world};

const DUPLICATED: f64 = 0.30;

/// The inbound (CRM) events of a world's ledger.
async fn inbound_events(w: &World) -> Vec<RecordedEvent> {
    let mut all = w.all_events().await;
    all.retain(|e| e.event_type.starts_with("Crm"));
    all
}

/// Deliveries of `per_stream` events: 30% of events delivered 2 or 3 times, each redelivery
/// at a random later place in its stream's batch, streams interleaved at random.
fn redeliver(per_stream: &[(String, Vec<Value>)], rng: &mut StdRng) -> (Vec<Value>, usize) {
    let mut duplicated = 0;
    let mut batches: Vec<Vec<Value>> = per_stream
        .iter()
        .map(|(_, events)| {
            let mut batch: Vec<Value> = events.clone();
            for event in events {
                if rng.random_bool(DUPLICATED) {
                    duplicated += 1;
                    let copies = if rng.random_bool(0.2) { 2 } else { 1 };
                    for _ in 0..copies {
                        // Somewhere after the first delivery of this event.
                        let first = batch.iter().position(|b| b == event).unwrap();
                        let at = rng.random_range(first + 1..=batch.len());
                        batch.insert(at, event.clone());
                    }
                }
            }
            batch
        })
        .collect();
    let mut out = Vec::new();
    while !batches.is_empty() {
        let pick = rng.random_range(0..batches.len());
        out.push(batches[pick].remove(0));
        if batches[pick].is_empty() {
            batches.swap_remove(pick);
        }
    }
    (out, duplicated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_with_30_percent_redelivered_are_recorded_exactly_once() {
    let w = World::new().await;
    let per_stream = w.crm_activity(2_500, 3);
    let unique: usize = per_stream.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(unique, 10_000);
    let mut rng = StdRng::seed_from_u64(10_000);
    let (deliveries, duplicated) = redeliver(&per_stream, &mut rng);
    w.ingest(&deliveries).await;

    let events = inbound_events(&w).await;
    assert_eq!(
        events.len(),
        unique,
        "exactly one ledger event per source event"
    );
    let keys: BTreeSet<_> = events
        .iter()
        .map(|e| (e.source, e.source_event_id.as_str().to_string()))
        .collect();
    assert_eq!(keys.len(), unique);
    // Each account stream holds its events gapless and in emission order (the names say it).
    let mut by_stream: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
    for e in &events {
        by_stream
            .entry(e.stream_id.as_str().to_string())
            .or_default()
            .push(e);
    }
    assert_eq!(by_stream.len(), 2_500);
    for stream in by_stream.values_mut() {
        stream.sort_by_key(|e| e.version);
        let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=4).collect::<Vec<u64>>());
    }
    eprintln!(
        "faults_redelivery: {unique} source events, {} deliveries ({duplicated} events redelivered = {:.1}%), {} ledger events",
        deliveries.len(),
        100.0 * duplicated as f64 / unique as f64,
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_shuffled_sync_equals_a_clean_run() {
    const ACCOUNTS: usize = 40;
    let clean = World::new().await;
    let noisy = World::new().await;
    let clean_activity = clean.crm_activity(ACCOUNTS, 3);
    let noisy_activity = noisy.crm_activity(ACCOUNTS, 3);
    let in_order: Vec<Value> = clean_activity.iter().flat_map(|(_, e)| e.clone()).collect();
    let mut rng = StdRng::seed_from_u64(40);
    let (deliveries, duplicated) = redeliver(&noisy_activity, &mut rng);

    // One `worker --until-idle` run each: it must not stop before the correlation view has
    // folded the outcomes the other projections appended in the same run.
    clean.ingest(&in_order).await;
    clean.work().await;
    noisy.ingest(&deliveries).await;
    noisy.work().await;
    let after_one_run = noisy.billing_state().await;
    let unlinked = after_one_run.values().filter(|(_, linked)| !linked).count();
    assert_eq!(
        unlinked, 0,
        "one worker run left {unlinked} accounts unlinked"
    );
    // Then the write-backs' echoes, and the whole batch again (a replayed queue).
    clean.settle().await;
    noisy.settle().await;
    noisy.ingest(&deliveries).await;
    noisy.settle().await;

    assert_eq!(
        inbound_events(&noisy).await.len(),
        inbound_events(&clean).await.len()
    );
    let clean_state = clean.billing_state().await;
    let noisy_state = noisy.billing_state().await;
    assert_eq!(
        noisy_state.len(),
        ACCOUNTS,
        "one Billing account per CRM account"
    );
    assert!(
        noisy_state.values().all(|(_, linked)| *linked),
        "every account linked both ways"
    );
    assert_eq!(
        noisy_state, clean_state,
        "same Billing state and links as the clean run"
    );
    let creates = noisy.sandbox.calls().count("POST /v1/accounts");
    assert_eq!(creates, ACCOUNTS as u64, "one create call per entity");
    eprintln!(
        "faults_redelivery: sync: {ACCOUNTS} accounts, {} source events, {} deliveries x2 ({duplicated} redelivered), {creates} Billing creates, state equal to the clean run",
        in_order.len(),
        deliveries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_on_dynamodb_are_recorded_once_and_sync_like_a_clean_run() {
    const ACCOUNTS: usize = 10;
    let clean = World::new().await;
    let clean_activity = clean.crm_activity(ACCOUNTS, 3);
    let in_order: Vec<Value> = clean_activity.iter().flat_map(|(_, e)| e.clone()).collect();
    clean.ingest(&in_order).await;
    clean.settle().await;
    let clean_state = clean.billing_state().await;

    let w = dynamodb_world().await;
    let activity = crm_activity(&w.sandbox, ACCOUNTS, 3);
    let mut rng = StdRng::seed_from_u64(10);
    let (deliveries, duplicated) = redeliver(&activity, &mut rng);
    w.ingest(&deliveries).await;
    let all = w.store().log.read_all(None, None, 100_000).await.unwrap();
    let inbound: Vec<_> = all
        .iter()
        .filter(|e| e.event_type.starts_with("Crm"))
        .collect();
    assert_eq!(
        inbound.len(),
        in_order.len(),
        "one ledger event per source event"
    );
    for (crm_id, _) in &activity {
        let versions: Vec<u64> = w
            .events(&format!("crm-account-{crm_id}"))
            .await
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (1..=4).collect::<Vec<u64>>(), "gapless {crm_id}");
    }

    w.settle().await;
    let state = billing_state(&w).await;
    assert_eq!(
        state, clean_state,
        "same Billing state and links as a clean run"
    );
    let creates = w.sandbox.calls().count("POST /v1/accounts");
    assert_eq!(creates, ACCOUNTS as u64, "one create call per entity");
    eprintln!(
        "faults_redelivery: DynamoDB (moto): {ACCOUNTS} accounts, {} source events, {} deliveries ({duplicated} redelivered) -> {} ledger events, gapless; {creates} Billing creates, state equal to a clean run",
        in_order.len(),
        deliveries.len(),
        inbound.len()
    );
}
