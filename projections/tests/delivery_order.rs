//! The views are a fold of the recorded log only: replaying the log rebuilds exactly what
//! live projection built, and any interleaving / duplication of the records (DynamoDB Streams
//! order only per item and deliver at least once) yields the same views and the same
//! decisions, given the shell fills gaps from the log.

mod common;

use chrono::{DateTime, Utc};
use common::world::World;
use common::Inbound;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::{Decision, Handled, Projection, RecordedEvent, Source, Views};
use proptest::prelude::*;
use std::collections::BTreeMap;

use projections::catalogue::{BillingPriceChanged, BillingProductChanged, BillingRatePlanChanged};
use projections::DomainEvent;

/// A log covering every sync: CRM- and Billing-originated accounts, an order that waits for
/// its account, amendments, a Billing-side cancel, and a catalog whose price precedes its plan.
fn scenario_log() -> Vec<RecordedEvent> {
    let mut world = World::new();
    world.fakes.echo_carries_origin = false;
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 1.0);
    world.crm_account_saved("001A", "Acme");
    world.crm_account_saved("001A", "Acme Ltd");
    world.billing_account_event(
        DomainEvent::BillingAccountCreated,
        "8a8b9999",
        "Globex",
        None,
    );
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        DomainEvent::BillingPriceChanged(BillingPriceChanged {
            rate_plan_id: "2c92rp".into(),
            charge_id: "c1".into(),
            currency: "EUR".into(),
            price: 10.0,
            extra: Default::default(),
        }),
    );
    world.run();
    world.gold_order(DomainEvent::CrmOrderAmended, "Activated", 4.0);
    world.user_changes(
        "billing-product-2c92p",
        Source::Billing,
        DomainEvent::BillingProductChanged(BillingProductChanged {
            product_id: "2c92p".into(),
            sku: "SKU-GOLD".into(),
            name: "Gold".into(),
            effective_end_date: None,
            extra: Default::default(),
        }),
    );
    world.user_changes(
        "billing-rateplan-2c92rp",
        Source::Billing,
        DomainEvent::BillingRatePlanChanged(BillingRatePlanChanged {
            rate_plan_id: "2c92rp".into(),
            product_id: "2c92p".into(),
            name: "Gold Monthly".into(),
            extra: Default::default(),
        }),
    );
    world.run();
    let (number, sub) = world
        .fakes
        .subscriptions
        .iter()
        .next()
        .map(|(n, s)| (n.clone(), s.clone()))
        .expect("the order was synced");
    world.user_changes(
        &format!("billing-subscription-{number}"),
        Source::Billing,
        DomainEvent::BillingSubscriptionCancelled(projections::catalogue::BillingSubscription {
            status: "Cancelled".into(),
            origin: None,
            ..sub
        }),
    );
    world.run();
    assert!(
        world.log.events.len() > 40,
        "the scenario exercises the syncs"
    );
    world.log.events.clone()
}

fn now() -> DateTime<Utc> {
    common::t0()
}

/// The decisions' identities: what a shell would call and record.
fn fingerprint(decision: &Decision) -> Vec<String> {
    let mut ids: Vec<String> = decision
        .commands
        .iter()
        .map(|c| {
            format!(
                "call {} {}",
                c.meta.idempotency_key,
                serde_json::to_string(&c.call).unwrap()
            )
        })
        .collect();
    ids.extend(
        decision
            .outcomes
            .iter()
            .map(|o| format!("record {} {}", o.source_event_id, o.payload)),
    );
    ids
}

/// A shell over one projection: offers each delivered record, filling gaps from the log.
struct Shell<'a, P: Projection> {
    log: &'a [RecordedEvent],
    views: Views<P::State>,
    decisions: Vec<String>,
    decided: usize,
}

impl<'a, P: Projection> Shell<'a, P> {
    fn new(log: &'a [RecordedEvent]) -> Self {
        Self {
            log,
            views: Views::default(),
            decisions: Vec::new(),
            decided: 0,
        }
    }

    fn deliver(&mut self, event: &RecordedEvent) {
        match self.views.handle::<P>(event, now()) {
            None | Some(Handled::AlreadyApplied) => {}
            Some(Handled::Decided(decision)) => {
                self.decided += 1;
                self.decisions.extend(fingerprint(&decision));
            }
            Some(Handled::Gap {
                stream,
                expected,
                got,
            }) => {
                // The strongly consistent read of the stream the real shell does.
                let missing: Vec<_> = self
                    .log
                    .iter()
                    .filter(|e| e.stream_id == stream && e.version >= expected && e.version < got)
                    .cloned()
                    .collect();
                for e in missing {
                    self.deliver(&e);
                }
                self.deliver(event);
            }
        }
    }
}

fn fold<P: Projection>(log: &[RecordedEvent]) -> Views<P::State> {
    let mut views = Views::default();
    for event in log {
        views.apply::<P>(event);
    }
    views
}

/// Offers `delivery` and the log in order to two shells; the views must agree. Decisions
/// must agree too when `same_decisions`: items that fold one stream see the same history
/// whatever the delivery. Items folding several streams (an account with its orders, a rate
/// plan with its charges) may see those streams interleave differently, as live projection
/// does, and then may record a different note (e.g. no `SyncDeferred` when the link was
/// already there) — but every event is still decided exactly once and no call is added.
fn check_delivery<P: Projection>(
    log: &[RecordedEvent],
    delivery: &[usize],
    same_decisions: bool,
) -> Result<(), TestCaseError> {
    let mut in_order = Shell::<P>::new(log);
    for event in log {
        in_order.deliver(event);
    }
    let mut shuffled = Shell::<P>::new(log);
    for &i in delivery {
        shuffled.deliver(&log[i]);
    }
    prop_assert_eq!(&shuffled.views, &in_order.views, "{} views differ", P::NAME);
    prop_assert_eq!(
        shuffled.decided,
        in_order.decided,
        "{}: an event decided twice or never",
        P::NAME
    );
    // Calls compare by what they ask (an upsert keyed by another event has the same effect;
    // a second create with the same content would show up as a count of two).
    let count = |d: &[String], calls_only: bool| {
        d.iter()
            .filter(|s| !calls_only || s.starts_with("call "))
            .map(|s| match calls_only {
                true => s.splitn(3, ' ').nth(2).unwrap_or_default().to_string(),
                false => s.clone(),
            })
            .fold(BTreeMap::new(), |mut m, s| {
                *m.entry(s).or_insert(0) += 1;
                m
            })
    };
    let shuffled_count = count(&shuffled.decisions, !same_decisions);
    let in_order_count = count(&in_order.decisions, !same_decisions);
    if same_decisions {
        prop_assert_eq!(
            shuffled_count,
            in_order_count,
            "{} decisions differ",
            P::NAME
        );
    } else {
        // A record whose outcome is already in the log (a redrive) may need no call at all;
        // a different interleaving must never cause a call in-order delivery would not make.
        for (call, n) in &shuffled_count {
            prop_assert!(
                in_order_count.get(call).is_some_and(|m| m >= n),
                "{}: extra call {}",
                P::NAME,
                call
            );
        }
    }
    Ok(())
}

#[test]
fn replaying_the_log_rebuilds_exactly_the_live_views() {
    let mut world = World::new();
    world.fakes.echo_carries_origin = false;
    world.crm_account_saved("001A", "Acme");
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 1.0);
    world.run();
    let log = world.log.events.clone();
    assert_eq!(fold::<AccountSync>(&log), world.accounts);
    assert_eq!(fold::<OrderSync>(&log), world.orders);
    assert_eq!(fold::<ProductSync>(&log), world.products);
    assert_eq!(fold::<CorrelationView>(&log), world.links);
    // and the stored form of the views reads back to the same thing
    let stored = serde_json::to_value(&world.orders).unwrap();
    assert_eq!(
        serde_json::from_value::<Views<_>>(stored).unwrap(),
        world.orders
    );
}

fn delivery_strategy(len: usize) -> impl Strategy<Value = Vec<usize>> {
    // every record at least once, in any order, plus up to `len` redeliveries anywhere
    (
        Just((0..len).collect::<Vec<_>>()).prop_shuffle(),
        proptest::collection::vec((0..len, 0..len), 0..len),
    )
        .prop_map(|(mut order, dups)| {
            for (record, at) in dups {
                let at = at.min(order.len());
                order.insert(at, record);
            }
            order
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_interleaving_and_duplication_yields_the_same_views_and_decisions(
        delivery in delivery_strategy(scenario_len())
    ) {
        let log = scenario_log();
        prop_assume!(log.len() == scenario_len());
        check_delivery::<AccountSync>(&log, &delivery, true)?;
        check_delivery::<CorrelationView>(&log, &delivery, true)?;
        check_delivery::<OrderSync>(&log, &delivery, false)?;
        check_delivery::<ProductSync>(&log, &delivery, false)?;
    }
}

fn scenario_len() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| scenario_log().len())
}
