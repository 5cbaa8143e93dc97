//! Product sync decisions: the Billing catalog becomes CRM products and pricebook entries,
//! and the mapping is resolvable from either side.

mod common;

use common::world::World;
use common::{t0, Log};
use projections::catalogue::{BillingPriceChanged, BillingProductChanged, BillingRatePlanChanged};
use projections::commands::{Call, CrmCommand};
use projections::correlation_view::{lookup_billing, lookup_crm};
use projections::product_sync::{ProductSync, ProductSyncView};
use projections::{DomainEvent, Projection, Source};

fn product(id: &str, name: &str, end: Option<&str>) -> DomainEvent {
    DomainEvent::BillingProductChanged(BillingProductChanged {
        product_id: id.into(),
        sku: "SKU-GOLD".into(),
        name: name.into(),
        effective_end_date: end.map(Into::into),
        extra: Default::default(),
    })
}

fn rate_plan(id: &str, product: &str) -> DomainEvent {
    DomainEvent::BillingRatePlanChanged(BillingRatePlanChanged {
        rate_plan_id: id.into(),
        product_id: product.into(),
        name: "Gold Monthly".into(),
        extra: Default::default(),
    })
}

fn price(plan: &str, charge: &str, currency: &str, price: f64) -> DomainEvent {
    DomainEvent::BillingPriceChanged(BillingPriceChanged {
        rate_plan_id: plan.into(),
        charge_id: charge.into(),
        currency: currency.into(),
        price,
        extra: Default::default(),
    })
}

fn entry_prices(world: &World) -> Vec<(String, f64, String)> {
    world
        .fakes
        .crm_pricebook
        .iter()
        .map(|(key, (_, call))| match call {
            CrmCommand::UpsertPricebookEntry {
                unit_price,
                billing_product_id,
                ..
            } => (key.clone(), *unit_price, billing_product_id.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_billing_product_becomes_a_crm_product_linked_both_ways() {
    let mut world = World::new();
    world.user_changes(
        "billing-product-2c92p",
        Source::Billing,
        product("2c92p", "Gold", None),
    );
    world.run();
    let (crm_id, call) = &world.fakes.crm_products["2c92p"];
    assert_eq!(
        call,
        &CrmCommand::UpsertProduct {
            billing_product_id: "2c92p".into(),
            product_code: "SKU-GOLD".into(),
            name: "Gold".into(),
            active: true,
        }
    );
    assert_eq!(
        lookup_billing(&world.links, "2c92p").unwrap().counterpart(),
        Some(crm_id.as_str())
    );
    assert_eq!(
        lookup_crm(&world.links, crm_id).unwrap().counterpart(),
        Some("2c92p")
    );
    assert_eq!(
        world.log.of_type("ProductSynced").len(),
        2,
        "outcome + mirror"
    );
}

#[test]
fn a_product_past_its_end_date_is_inactive_and_a_bad_date_is_reported() {
    let mut log = Log::default();
    let ended = log.inbound(
        "billing-product-2c92p",
        Source::Billing,
        product("2c92p", "Gold", Some("2026-01-31")),
    );
    let decision = ProductSync::decide(&ProductSyncView::default(), &ended, t0());
    assert!(matches!(
        &decision.commands[0].call,
        Call::Crm(CrmCommand::UpsertProduct { active: false, .. })
    ));

    let bad = log.inbound(
        "billing-product-2c92q",
        Source::Billing,
        product("2c92q", "Gold", Some("31/01/2026")),
    );
    let decision = ProductSync::decide(&ProductSyncView::default(), &bad, t0());
    assert!(decision.commands.is_empty());
    let reason = decision.outcomes[0].payload["reason"].as_str().unwrap();
    assert!(reason.starts_with("effective_end_date:"), "{reason}");
}

#[test]
fn prices_become_one_pricebook_entry_per_currency_summing_the_charges() {
    let mut world = World::new();
    world.user_changes(
        "billing-rateplan-2c92rp",
        Source::Billing,
        rate_plan("2c92rp", "2c92p"),
    );
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 10.0),
    );
    world.user_changes(
        "billing-charge-c2",
        Source::Billing,
        price("2c92rp", "c2", "EUR", 2.5),
    );
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "USD", 12.0),
    );
    world.run();
    assert_eq!(
        entry_prices(&world),
        [
            ("2c92rp:EUR".to_string(), 12.5, "2c92p".to_string()),
            ("2c92rp:USD".to_string(), 12.0, "2c92p".to_string()),
        ]
    );
    let item = lookup_billing(&world.links, "2c92rp").unwrap();
    assert_eq!(item.links.len(), 2, "one pricebook entry per currency");
    // outcomes of charge events are recorded on the rate plan's stream
    assert!(world
        .log
        .of_type("ProductSynced")
        .iter()
        .all(|e| !e.stream_id.as_str().starts_with("billing-charge-")));
}

#[test]
fn a_price_before_its_rate_plan_waits_and_goes_out_with_the_rate_plan() {
    let mut world = World::new();
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 10.0),
    );
    world.run();
    assert!(world.fakes.crm_pricebook.is_empty());
    let deferred = world.log.of_type("SyncDeferred");
    assert_eq!(deferred[0].payload["waiting_for"], "rateplan:2c92rp");

    world.user_changes(
        "billing-rateplan-2c92rp",
        Source::Billing,
        rate_plan("2c92rp", "2c92p"),
    );
    world.run();
    assert_eq!(
        entry_prices(&world),
        [("2c92rp:EUR".to_string(), 10.0, "2c92p".to_string())]
    );
}

#[test]
fn an_unchanged_catalog_redelivered_under_new_ids_makes_no_calls() {
    let mut world = World::new();
    world.user_changes(
        "billing-product-2c92p",
        Source::Billing,
        product("2c92p", "Gold", None),
    );
    world.user_changes(
        "billing-rateplan-2c92rp",
        Source::Billing,
        rate_plan("2c92rp", "2c92p"),
    );
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 10.0),
    );
    world.run();
    let calls = world.fakes.calls.len();
    world.user_changes(
        "billing-product-2c92p",
        Source::Billing,
        product("2c92p", "Gold", None),
    );
    world.user_changes(
        "billing-rateplan-2c92rp",
        Source::Billing,
        rate_plan("2c92rp", "2c92p"),
    );
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 10.0),
    );
    world.run();
    assert_eq!(world.fakes.calls.len(), calls);
    world.user_changes(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 11.0),
    );
    world.run();
    assert_eq!(world.fakes.calls.len(), calls + 1);
}

#[test]
fn charge_events_route_to_their_rate_plan_item() {
    let mut log = Log::default();
    let charge = log.inbound(
        "billing-charge-c1",
        Source::Billing,
        price("2c92rp", "c1", "EUR", 10.0),
    );
    let plan = log.inbound(
        "billing-rateplan-2c92rp",
        Source::Billing,
        rate_plan("2c92rp", "2c92p"),
    );
    assert_eq!(ProductSync::key(&charge), ProductSync::key(&plan));
    let crm = log.inbound(
        "crm-product-01t1",
        Source::Crm,
        DomainEvent::Unknown {
            event_type: "CrmProductChanged".into(),
            payload: serde_json::json!({}),
        },
    );
    assert_eq!(
        ProductSync::key(&crm),
        None,
        "CRM products are not synced to Billing"
    );
}
