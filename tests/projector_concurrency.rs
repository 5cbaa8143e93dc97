//! The projector applies the independent streams of a batch concurrently. Property: for any
//! set of CRM accounts and orders, delivered in any order, with duplicates, in batches of any
//! size, and with the external calls answering after any delays (so the concurrent groups
//! interleave differently every case), the account and order projections end with the same
//! view items, the same calls (idempotency key and body) and the same ledger as the
//! sequential runner given the same deliveries. Order sync is the interesting one: an
//! order's stream and its account's stream fold into one view item and must not race.
//!
//! Driven on the embedded ledger and views through the runner's real entry point
//! (`Projector::process`, what the Lambda handler and `ledger worker` call), with a recording
//! `Effects`: the effects port is ours, and the connectors behind it are exercised by the
//! end-to-end and fault tests.

use async_trait::async_trait;
use chrono::Utc;
use proptest::prelude::*;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_ledger::ledger::sqlite::migrate;
use sync_ledger::ledger::{EventLog, ExpectedVersion, FeedStart, SqliteLedger};
use sync_ledger::projections::account_sync::AccountSync;
use sync_ledger::projections::commands::{BillingCommand, Call, CallResult, Command, CrmCommand};
use sync_ledger::projections::order_sync::OrderSync;
use sync_ledger::projections::projection::Projection;
use sync_ledger::projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use sync_ledger::projector::{Effects, Projector, Runner, RunnerSettings, TransientCallFailure};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;

fn hash_of(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Records every call and answers success with an id derived from the idempotency key (the
/// same call gets the same answer in every run), after a delay derived from `seed` and the
/// key: each case interleaves the concurrent groups differently.
struct Recording {
    seed: Option<u64>,
    calls: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Recording {
    fn new(seed: Option<u64>) -> Self {
        Self {
            seed,
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> Vec<(String, String)> {
        let mut calls = self.calls.lock().unwrap().clone();
        calls.sort();
        calls
    }
}

#[async_trait]
impl Effects for Recording {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        let key = command.meta.idempotency_key.clone();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(seed) = self.seed {
            let micros = hash_of((seed, &key)) % 3_000;
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.calls
            .lock()
            .unwrap()
            .push((key.clone(), format!("{:?}", command.call)));
        let h = hash_of(&key);
        let id = match &command.call {
            Call::Billing(BillingCommand::CreateSubscription { .. }) => {
                format!("A-S{:08}", h % 100_000_000)
            }
            Call::Billing(_) => format!("{:032x}", u128::from(h) << 64 | u128::from(h)),
            Call::Crm(CrmCommand::UpdateOrderStatus { order_id, .. }) => order_id.clone(),
            Call::Crm(_) => format!("001{:015}", h % 1_000_000_000_000_000),
        };
        Ok(CallResult::Succeeded { id, created: true })
    }
}

/// One CRM account of a case: its edits, whether it arrives linked to a Billing account, and
/// its orders (each activated, some then cancelled).
#[derive(Debug, Clone)]
struct AccountCase {
    edits: usize,
    linked: bool,
    orders: Vec<bool>,
}

fn account_case() -> impl Strategy<Value = AccountCase> {
    (
        1..=3usize,
        any::<bool>(),
        prop::collection::vec(any::<bool>(), 0..=2),
    )
        .prop_map(|(edits, linked, orders)| AccountCase {
            edits,
            linked,
            orders,
        })
}

/// How the recorded events are delivered: shuffled by `seed`, every `dup_every`-th record
/// delivered twice, cut into batches of `batch` records.
#[derive(Debug, Clone)]
struct Delivery {
    seed: u64,
    dup_every: usize,
    batch: usize,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (any::<u64>(), 2..=7usize, 1..=40usize).prop_map(|(seed, dup_every, batch)| Delivery {
        seed,
        dup_every,
        batch,
    })
}

fn inbound(event_type: &str, stream: &str, n: usize, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        // Fixed ids: both runs record the very same inbound events, so outcome ids (derived
        // from their causes) and idempotency keys compare across runs.
        event_id: EventId::derived(
            Source::Crm,
            &SourceEventId::parse(format!("{stream}-{n}")).unwrap(),
        ),
        stream_id: StreamId::parse(stream).unwrap(),
        event_type: event_type.into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse(format!("{stream}-{n}")).unwrap(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
        payload,
    }
}

/// The inbound CRM events of a case, per stream.
fn scenario(accounts: &[AccountCase]) -> Vec<(StreamId, Vec<NewEvent>)> {
    let mut streams = Vec::new();
    for (a, case) in accounts.iter().enumerate() {
        let account_id = format!("001A0000000000{a:02}");
        let stream = format!("crm-account-{account_id}");
        let events = (0..case.edits)
            .map(|n| {
                let mut payload = serde_json::json!({
                    "account_id": account_id,
                    "name": format!("Account {a} rev {n}"),
                    "currency": "USD",
                });
                if case.linked {
                    payload["billing_account_id"] =
                        format!("{:032x}", 0xb111_0000u128 + a as u128).into();
                }
                inbound("CrmAccountUpserted", &stream, n, payload)
            })
            .collect();
        streams.push((StreamId::parse(&stream).unwrap(), events));
        for (o, cancelled) in case.orders.iter().enumerate() {
            let order_id = format!("801A00000000{a:02}{o:02}");
            let stream = format!("crm-order-{order_id}");
            let order = |status: &str| {
                serde_json::json!({
                    "order_id": order_id,
                    "account_id": account_id,
                    "order_number": format!("0000{a}{o}"),
                    "status": status,
                    "effective_date": "2026-01-01",
                    "currency": "USD",
                    "items": [{"product_code": "SKU-BASIC", "quantity": 1.0 + o as f64}],
                })
            };
            let mut events = vec![inbound("CrmOrderActivated", &stream, 0, order("Activated"))];
            if *cancelled {
                events.push(inbound("CrmOrderCancelled", &stream, 1, order("Cancelled")));
            }
            streams.push((StreamId::parse(&stream).unwrap(), events));
        }
    }
    streams
}

/// A small deterministic shuffle (xorshift), so a case replays exactly.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// What a run leaves behind, in a comparable form.
#[derive(Debug, PartialEq)]
struct Outcome {
    views: BTreeMap<String, (String, serde_json::Value)>,
    calls: Vec<(String, String)>,
    log: Vec<(String, u64, String, String)>,
}

struct Run {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    effects: Arc<Recording>,
    runners: Vec<Arc<dyn Projector>>,
}

async fn run(
    accounts: &[AccountCase],
    delivery: &Delivery,
    concurrency: usize,
    seed: Option<u64>,
) -> (Outcome, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    migrate(&path).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).unwrap());
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&path).unwrap());
    let effects = Arc::new(Recording::new(seed));
    let settings = RunnerSettings {
        max_concurrent_groups: concurrency,
        ..RunnerSettings::default()
    };
    let runners: Vec<Arc<dyn Projector>> = vec![
        Arc::new(Runner::<AccountSync>::new(
            log.clone(),
            views.clone(),
            effects.clone(),
            settings,
        )),
        Arc::new(Runner::<OrderSync>::new(
            log.clone(),
            views.clone(),
            effects.clone(),
            settings,
        )),
    ];
    let r = Run {
        _dir: dir,
        log,
        views,
        effects,
        runners,
    };
    for (stream, events) in scenario(accounts) {
        r.log
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    // Deliver what the feed holds, then what that appended (outcomes), until idle: what
    // the worker and the stream mapping do.
    let mut feed = r.log.change_feed(FeedStart::Beginning).await.unwrap();
    for round in 0.. {
        assert!(round < 20, "the projections never settled");
        let mut events: Vec<RecordedEvent> = feed
            .poll(10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|item| item.event)
            .collect();
        if events.is_empty() {
            break;
        }
        // The feed's order depends on the run's timing; the delivery must not.
        events.sort_by(|a, b| (&a.stream_id, a.version).cmp(&(&b.stream_id, b.version)));
        shuffle(&mut events, delivery.seed ^ round);
        let mut delivered = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            if i % delivery.dup_every == 0 {
                delivered.push(e.clone());
            }
            delivered.push(e);
        }
        for batch in delivered.chunks(delivery.batch) {
            for runner in &r.runners {
                let outcome = runner.process(batch.to_vec()).await;
                assert_eq!(
                    outcome.first_failure(),
                    None,
                    "{}: {outcome:?}",
                    runner.name()
                );
            }
        }
    }
    let mut views = BTreeMap::new();
    for projection in [AccountSync::NAME, OrderSync::NAME] {
        for row in r.views.list(projection).await.unwrap() {
            views.insert(row.key.pk(), (format!("{:?}", row.last_version), row.state));
        }
    }
    let mut log: Vec<_> = r
        .log
        .read_all(None, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.stream_id.to_string(),
                e.version,
                e.event_type,
                e.event_id.to_string(),
            )
        })
        .collect();
    log.sort();
    let max_in_flight = r.effects.max_in_flight.load(Ordering::SeqCst);
    (
        Outcome {
            views,
            calls: r.effects.calls(),
            log,
        },
        max_in_flight,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_apply_ends_where_the_sequential_runner_ends(
        accounts in prop::collection::vec(account_case(), 1..=6),
        delivery in delivery(),
        timing in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (sequential, _) = rt.block_on(run(&accounts, &delivery, 1, None));
        let (concurrent, _) = rt.block_on(run(&accounts, &delivery, 100, Some(timing)));
        prop_assert!(!sequential.calls.is_empty(), "every case makes calls");
        prop_assert_eq!(&concurrent.views, &sequential.views);
        prop_assert_eq!(&concurrent.calls, &sequential.calls);
        prop_assert_eq!(&concurrent.log, &sequential.log);
    }
}

/// The property above would pass trivially if nothing ran at once: independent accounts do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_streams_of_one_batch_have_their_calls_in_flight_together() {
    let accounts = vec![
        AccountCase {
            edits: 1,
            linked: false,
            orders: vec![],
        };
        8
    ];
    let delivery = Delivery {
        seed: 7,
        dup_every: 1_000,
        batch: 100,
    };
    let (_, sequential) = run(&accounts, &delivery, 1, Some(1)).await;
    let (_, concurrent) = run(&accounts, &delivery, 100, Some(1)).await;
    assert_eq!(
        sequential, 1,
        "the sequential runner makes one call at a time"
    );
    assert!(
        concurrent >= 4,
        "8 independent account creates had at most {concurrent} calls in flight"
    );
}
