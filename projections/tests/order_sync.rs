//! Order sync decisions: CRM orders drive Billing subscriptions, orders wait for their
//! account's link, Billing status changes flow back to the CRM order without ping-pong.

mod common;

use common::world::World;
use common::Inbound;
use common::{crm_order, t0, Log};
use projections::commands::{BillingCommand, Call, CrmCommand, PlanLine};
use projections::order_sync::{OrderAccountView, OrderSync, OrderSyncView};
use projections::{DomainEvent, Projection, Source};

fn linked_view() -> OrderSyncView {
    OrderSyncView::Account(OrderAccountView {
        billing_account: Some("8a8b01".into()),
        orders: Default::default(),
    })
}

fn steps(world: &World) -> Vec<String> {
    world
        .fakes
        .calls
        .iter()
        .map(|c| c.meta.step.clone())
        .collect()
}

/// Every event on an order stream must route to its account's item, or the per-stream
/// ordering guard of that item would wait forever for the missing version.
fn assert_order_streams_route(world: &World) {
    for event in &world.log.events {
        if event.stream_id.as_str().starts_with("crm-order-") {
            assert!(OrderSync::key(event).is_some(), "unroutable: {event:?}");
        }
    }
}

#[test]
fn an_activated_order_of_a_linked_account_creates_a_subscription_keyed_by_the_order_event() {
    let mut log = Log::default();
    let order = crm_order("801A", "001A", "Activated", &[("SKU-GOLD", 3.0)]);
    let event = log.inbound(
        "crm-order-801A",
        Source::Crm,
        DomainEvent::CrmOrderActivated(order),
    );
    let decision = OrderSync::decide(&linked_view(), &event, t0());
    let [command] = decision.commands.as_slice() else {
        panic!("{decision:?}")
    };
    assert_eq!(
        command.call,
        Call::Billing(BillingCommand::CreateSubscription {
            billing_account_id: "8a8b01".into(),
            crm_order_id: "801A".into(),
            order_number: Some("0000801A".into()),
            term_start_date: Some("2026-12-01".into()),
            currency: Some("EUR".into()),
            lines: vec![PlanLine {
                product_code: "SKU-GOLD".into(),
                quantity: 3.0,
                unit_price: Some(10.0)
            }],
        })
    );
    assert_eq!(
        command.meta.idempotency_key,
        format!("{}:billing-create-subscription", event.event_id)
    );
}

#[test]
fn an_order_of_an_unlinked_account_waits_and_goes_out_when_the_account_is_synced() {
    let mut world = World::new();
    let order = world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.run();
    let deferred = world.log.of_type("SyncDeferred");
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].payload["waiting_for"], "account-link:crm:001A");
    assert!(world.fakes.subscriptions.is_empty());

    world.crm_account_saved("001A", "Acme");
    world.run();

    assert_eq!(world.fakes.subscriptions.len(), 1);
    let sub = world.fakes.subscriptions.values().next().unwrap();
    assert_eq!(sub.crm_order_id.as_deref(), Some("801A"));
    let billing_id = world.fakes.billing_accounts.keys().next().unwrap();
    assert_eq!(&sub.account_id, billing_id);
    let create = world
        .fakes
        .calls
        .iter()
        .find(|c| c.meta.step == "billing-create-subscription")
        .unwrap();
    assert_eq!(
        create.meta.idempotency_key,
        format!("{}:billing-create-subscription", order.event_id)
    );
    assert_eq!(
        create.meta.correlation_id, order.correlation_id,
        "the order's trace continues"
    );
    let synced = world.log.of_type("OrderSynced");
    assert!(synced.iter().all(|e| e.payload["unblocked_by"].is_string()));
    assert_order_streams_route(&world);
}

fn world_with_synced_order() -> World {
    let mut world = World::with_synced_account("001A", "Acme");
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.run();
    world
}

#[test]
fn amend_and_cancel_of_a_synced_order_amend_and_cancel_the_subscription_once() {
    let mut world = world_with_synced_order();
    world.gold_order(DomainEvent::CrmOrderAmended, "Activated", 5.0);
    world.run();
    world.gold_order(DomainEvent::CrmOrderCancelled, "Cancelled", 5.0);
    world.run();
    assert_eq!(
        steps(&world),
        [
            "billing-create-account",
            "crm-link-account",
            "billing-create-subscription",
            "billing-amend-subscription",
            "billing-cancel-subscription",
        ]
    );
    assert_eq!(
        world.fakes.subscriptions.values().next().unwrap().status,
        "Cancelled"
    );
    // the Billing echoes of create/amend/cancel never turn into CRM status writes
    assert!(world
        .fakes
        .calls
        .iter()
        .all(|c| !matches!(c.call, Call::Crm(CrmCommand::UpdateOrderStatus { .. }))));
    assert_order_streams_route(&world);
}

#[test]
fn the_same_order_delivered_again_with_a_new_id_changes_nothing() {
    let mut world = world_with_synced_order();
    let calls = world.fakes.calls.len();
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.run();
    assert_eq!(world.fakes.calls.len(), calls);
}

#[test]
fn a_subscription_cancelled_in_billing_cancels_the_crm_order_without_ping_pong() {
    for echo_carries_origin in [true, false] {
        let mut world = world_with_synced_order();
        world.fakes.echo_carries_origin = echo_carries_origin;
        let (number, sub) = world
            .fakes
            .subscriptions
            .iter()
            .next()
            .map(|(n, s)| (n.clone(), s.clone()))
            .unwrap();
        let mut cancelled = sub.clone();
        cancelled.status = "Cancelled".into();
        cancelled.origin = None;
        world.user_changes(
            &format!("billing-subscription-{number}"),
            Source::Billing,
            DomainEvent::BillingSubscriptionCancelled(cancelled),
        );
        world.run();
        let status_writes: Vec<_> = world
            .fakes
            .calls
            .iter()
            .filter_map(|c| match &c.call {
                Call::Crm(CrmCommand::UpdateOrderStatus { order_id, status }) => {
                    Some((order_id.clone(), status.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            status_writes,
            [("801A".to_string(), "Cancelled".to_string())]
        );
        assert_eq!(world.fakes.crm_orders["801A"].status, "Cancelled");
        assert!(
            !steps(&world).contains(&"billing-cancel-subscription".to_string()),
            "the CRM echo must not cancel back (origin marker: {echo_carries_origin})"
        );
        assert_order_streams_route(&world);
    }
}

#[test]
fn an_order_changed_while_its_subscription_is_being_created_is_amended_after() {
    let mut world = World::with_synced_account("001A", "Acme");
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.gold_order(DomainEvent::CrmOrderAmended, "Activated", 7.0);
    world.run();
    assert_eq!(
        world.fakes.subscriptions.len(),
        1,
        "never a second subscription"
    );
    let s = steps(&world);
    assert_eq!(
        &s[2..],
        ["billing-create-subscription", "billing-amend-subscription"]
    );
    let amend = world.fakes.calls.last().unwrap();
    assert!(
        matches!(&amend.call, Call::Billing(BillingCommand::AmendSubscription { lines, .. }) if lines[0].quantity == 7.0)
    );
}

#[test]
fn an_order_cancelled_before_its_account_is_linked_never_reaches_billing() {
    let mut world = World::new();
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.gold_order(DomainEvent::CrmOrderCancelled, "Cancelled", 3.0);
    world.crm_account_saved("001A", "Acme");
    world.run();
    assert!(world.fakes.subscriptions.is_empty());
}

#[test]
fn a_subscription_not_made_from_a_crm_order_is_left_alone() {
    let mut world = World::new();
    world.user_changes(
        "billing-subscription-A-S77",
        Source::Billing,
        DomainEvent::BillingSubscriptionCreated(projections::catalogue::BillingSubscription {
            subscription_id: "2c92x".into(),
            subscription_number: Some("A-S77".into()),
            account_id: "8a8b01".into(),
            status: "Active".into(),
            term_start_date: None,
            crm_order_id: None,
            rate_plans: Vec::new(),
            origin: None,
            extra: Default::default(),
        }),
    );
    world.run();
    assert!(world.fakes.calls.is_empty());
}

#[test]
fn orders_route_to_their_account_item_and_subscriptions_to_their_own() {
    let mut log = Log::default();
    let order = log.crm_order_event(
        DomainEvent::CrmOrderActivated,
        "801A",
        "001A",
        "Activated",
        &[],
    );
    let account = log.crm_account_saved("001A", "Acme");
    let billing =
        log.billing_account_event(DomainEvent::BillingAccountCreated, "8a8b01", "Acme", None);
    assert_eq!(OrderSync::key(&order).as_deref(), Some("crm-account#001A"));
    assert_eq!(
        OrderSync::key(&account).as_deref(),
        Some("crm-account#001A")
    );
    assert_eq!(OrderSync::key(&billing), None);
}

#[test]
fn an_order_cancelled_while_its_subscription_is_being_created_is_cancelled_after() {
    let mut world = World::with_synced_account("001A", "Acme");
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.gold_order(DomainEvent::CrmOrderCancelled, "Cancelled", 3.0);
    world.run();
    assert_eq!(
        &steps(&world)[2..],
        ["billing-create-subscription", "billing-cancel-subscription"]
    );
    assert_eq!(
        world.fakes.subscriptions.values().next().unwrap().status,
        "Cancelled"
    );
}

#[test]
fn a_failed_subscription_create_is_made_again_by_the_next_order_change() {
    let mut world = World::with_synced_account("001A", "Acme");
    world
        .fakes
        .fail_once
        .push("billing-create-subscription".into());
    world.gold_order(DomainEvent::CrmOrderActivated, "Activated", 3.0);
    world.run();
    let failed = world.log.of_type("SyncFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].payload["crm_order_id"], "801A");
    assert!(world.fakes.subscriptions.is_empty());

    let amend = world.gold_order(DomainEvent::CrmOrderAmended, "Activated", 4.0);
    world.run();
    assert_eq!(world.fakes.subscriptions.len(), 1);
    let create = world.fakes.calls.last().unwrap();
    assert_eq!(
        create.meta.idempotency_key,
        format!("{}:billing-create-subscription", amend.event_id)
    );
}

#[test]
fn a_status_write_records_no_mirror_when_the_order_s_account_is_unknown() {
    let mut log = Log::default();
    let event = log.inbound(
        "billing-subscription-A-S9",
        Source::Billing,
        DomainEvent::BillingSubscriptionCancelled(projections::catalogue::BillingSubscription {
            subscription_id: "2c92x".into(),
            subscription_number: Some("A-S9".into()),
            account_id: "8a8b01".into(),
            status: "Cancelled".into(),
            term_start_date: None,
            crm_order_id: Some("801Z".into()),
            rate_plans: Vec::new(),
            origin: None,
            extra: Default::default(),
        }),
    );
    let decision = OrderSync::decide(&OrderSyncView::default(), &event, t0());
    let [command] = decision.commands.as_slice() else {
        panic!("{decision:?}")
    };
    assert_eq!(
        command.call,
        Call::Crm(CrmCommand::UpdateOrderStatus {
            order_id: "801Z".into(),
            status: "Cancelled".into()
        })
    );
    let done = projections::commands::CallResult::Succeeded {
        id: "801Z".into(),
        created: false,
    };
    let outcomes = projections::commands::complete(command, &done, t0());
    let streams: Vec<_> = outcomes.iter().map(|o| o.stream_id.as_str()).collect();
    // without the account id the order stream's events could not be routed: no mirror there
    assert_eq!(streams, ["billing-subscription-A-S9"]);
}

#[test]
fn a_cancel_in_billing_reaches_the_crm_order_although_the_subscription_keeps_our_origin_field() {
    let mut world = world_with_synced_order();
    let (number, sub) = world
        .fakes
        .subscriptions
        .iter()
        .next()
        .map(|(n, s)| (n.clone(), s.clone()))
        .unwrap();
    let mut cancelled = sub.clone();
    cancelled.status = "Cancelled".into();
    cancelled.origin = Some(projections::commands::ORIGIN.into());
    world.user_changes(
        &format!("billing-subscription-{number}"),
        Source::Billing,
        DomainEvent::BillingSubscriptionCancelled(cancelled),
    );
    world.run();
    assert_eq!(world.fakes.crm_orders["801A"].status, "Cancelled");
}
