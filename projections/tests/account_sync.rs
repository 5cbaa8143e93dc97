//! Account sync decisions, one behaviour per test, plus whole round trips through the pure
//! world (fakes of both systems that echo our writes back).

mod common;

use common::world::World;
use common::Inbound;
use common::{billing_account, crm_account, t0, Log};
use projections::account_sync::{AccountSync, AccountView};
use projections::commands::{
    complete, BillingCommand, Call, CallResult, CrmAccountTarget, CrmCommand, ORIGIN,
};
use projections::correlation_view::{lookup_billing, lookup_crm};
use projections::{Apply, DomainEvent, Handled, Projection, Source, ViewItem};

#[test]
fn unlinked_crm_account_creates_a_billing_account_carrying_the_crm_id() {
    let mut log = Log::default();
    let event = log.crm_account_saved("001A", "Acme");
    let decision = AccountSync::decide(&AccountView::default(), &event, t0());
    assert!(decision.outcomes.is_empty());
    let [command] = decision.commands.as_slice() else {
        panic!("{decision:?}")
    };
    assert_eq!(
        command.call,
        Call::Billing(BillingCommand::CreateAccount {
            crm_account_id: "001A".into(),
            name: "Acme".into(),
            currency: Some("EUR".into()),
        })
    );
    assert_eq!(
        command.meta.idempotency_key,
        format!("{}:billing-create-account", event.event_id)
    );
    assert_eq!(command.meta.correlation_id, event.correlation_id);
    assert_eq!(command.meta.origin, ORIGIN);
}

#[test]
fn a_created_billing_account_is_recorded_on_both_account_streams() {
    let mut log = Log::default();
    let event = log.crm_account_saved("001A", "Acme");
    let decision = AccountSync::decide(&AccountView::default(), &event, t0());
    let result = CallResult::Succeeded {
        id: "8a8b01".into(),
        created: true,
    };
    let outcomes = complete(&decision.commands[0], &result, t0());
    assert_eq!(outcomes.len(), 2);
    let streams: Vec<_> = outcomes.iter().map(|o| o.stream_id.as_str()).collect();
    assert_eq!(streams, ["crm-account-001A", "billing-account-8a8b01"]);
    for o in &outcomes {
        assert_eq!(o.event_type, "AccountSynced");
        assert_eq!(o.correlation_id, event.correlation_id);
        assert_eq!(o.causation_id, Some(event.event_id));
        assert_eq!(o.payload["crm_id"], "001A");
        assert_eq!(o.payload["billing_id"], "8a8b01");
        assert_eq!(o.payload["direction"], "crm->billing");
    }
    assert_eq!(
        outcomes[0].source_event_id.as_str(),
        format!("{}:billing-create-account", event.event_id)
    );
    assert_eq!(outcomes[1].payload["mirror"], true);
    // Completing the same call again yields the same dedupe keys: recorded once.
    let again = complete(&decision.commands[0], &result, t0());
    assert_eq!(again[0].source_event_id, outcomes[0].source_event_id);
    assert_eq!(again[1].source_event_id, outcomes[1].source_event_id);
}

#[test]
fn a_failed_call_records_sync_failed_with_the_reason_on_the_cause_stream() {
    let mut log = Log::default();
    let event = log.crm_account_saved("001A", "Acme");
    let decision = AccountSync::decide(&AccountView::default(), &event, t0());
    let failed = CallResult::Failed {
        reason: "INVALID_VALUE: currency".into(),
        attempts: 3,
    };
    let [outcome] = complete(&decision.commands[0], &failed, t0())
        .try_into()
        .unwrap();
    assert_eq!(outcome.event_type, "SyncFailed");
    assert_eq!(outcome.stream_id.as_str(), "crm-account-001A");
    assert_eq!(outcome.payload["reason"], "INVALID_VALUE: currency");
    assert_eq!(outcome.payload["attempts"], 3);
    assert_eq!(outcome.payload["step"], "billing-create-account");
}

#[test]
fn crm_account_round_trip_links_both_records_and_suppresses_every_echo() {
    let world = World::with_synced_account("001A", "Acme");

    assert_eq!(
        world.fakes.billing_accounts.len(),
        1,
        "exactly one Billing account"
    );
    let (billing_id, billing) = world.fakes.billing_accounts.iter().next().unwrap();
    assert_eq!(billing.linked_id.as_deref(), Some("001A"));
    assert_eq!(
        world.fakes.crm_accounts["001A"].linked_id.as_deref(),
        Some(billing_id.as_str())
    );
    assert_eq!(world.fakes.crm_accounts.len(), 1, "no second CRM account");
    // create in Billing, store the Billing id on the CRM record: nothing else
    let steps: Vec<_> = world
        .fakes
        .calls
        .iter()
        .map(|c| c.meta.step.as_str())
        .collect();
    assert_eq!(steps, ["billing-create-account", "crm-link-account"]);
    assert_eq!(world.log.of_type("EchoSuppressed").len(), 2);
    assert_eq!(
        lookup_crm(&world.links, "001A").unwrap().counterpart(),
        Some(billing_id.as_str())
    );
    assert_eq!(
        lookup_billing(&world.links, billing_id)
            .unwrap()
            .counterpart(),
        Some("001A")
    );
}

#[test]
fn echoes_without_origin_marker_are_recognised_by_their_values() {
    let mut world = World::new();
    world.fakes.echo_carries_origin = false;
    world.crm_account_saved("001A", "Acme");
    world.run();
    world.user_changes(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme Ltd", Some("8a8b0001"), None),
    );
    world.run();

    let steps: Vec<_> = world
        .fakes
        .calls
        .iter()
        .map(|c| c.meta.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "billing-create-account",
            "crm-link-account",
            "billing-update-account"
        ]
    );
    assert_eq!(world.fakes.billing_accounts["8a8b0001"].name, "Acme Ltd");
    let reasons: Vec<_> = world
        .log
        .of_type("EchoSuppressed")
        .iter()
        .map(|e| e.payload["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons
        .iter()
        .all(|r| r == "the values equal what we last wrote"));
}

#[test]
fn billing_account_round_trip_creates_the_crm_account_by_external_id_and_links_back() {
    let mut world = World::new();
    world.billing_account_event(
        DomainEvent::BillingAccountCreated,
        "8a8b9999",
        "Globex",
        None,
    );
    world.run();

    let first = &world.fakes.calls[0];
    assert!(matches!(
        &first.call,
        Call::Crm(CrmCommand::UpsertAccount { target: CrmAccountTarget::BillingAccountId, billing_account_id, .. })
            if billing_account_id == "8a8b9999"
    ));
    assert_eq!(world.fakes.crm_accounts.len(), 1);
    let (crm_id, crm) = world.fakes.crm_accounts.iter().next().unwrap();
    assert_eq!(crm.linked_id.as_deref(), Some("8a8b9999"));
    assert_eq!(
        world.fakes.billing_accounts["8a8b9999"]
            .linked_id
            .as_deref(),
        Some(crm_id.as_str())
    );
    let steps: Vec<_> = world
        .fakes
        .calls
        .iter()
        .map(|c| c.meta.step.as_str())
        .collect();
    assert_eq!(steps, ["crm-upsert-account", "billing-link-account"]);
    assert_eq!(
        lookup_billing(&world.links, "8a8b9999")
            .unwrap()
            .counterpart(),
        Some(crm_id.as_str())
    );
}

#[test]
fn a_billing_change_updates_the_crm_record_it_names_by_record_id() {
    let mut log = Log::default();
    let event = log.billing_account_event(
        DomainEvent::BillingAccountUpdated,
        "8a8b01",
        "Acme GmbH",
        Some("001A"),
    );
    let decision = AccountSync::decide(&AccountView::default(), &event, t0());
    assert_eq!(
        decision.commands[0].call,
        Call::Crm(CrmCommand::UpsertAccount {
            target: CrmAccountTarget::RecordId("001A".into()),
            billing_account_id: "8a8b01".into(),
            name: "Acme GmbH".into(),
            currency: Some("EUR".into()),
        })
    );
}

#[test]
fn a_change_outside_the_synced_fields_does_nothing() {
    let mut log = Log::default();
    let mut item: ViewItem<AccountView> = ViewItem::new("crm#001A");
    let first = log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", Some("8a8b01"), None),
    );
    item.handle::<AccountSync>(&first, t0());
    let mut same = crm_account("001A", "Acme", Some("8a8b01"), None);
    if let DomainEvent::CrmAccountUpserted(a) = &mut same {
        a.extra.insert("Industry".into(), "Retail".into());
    }
    let second = log.inbound("crm-account-001A", Source::Crm, same);
    assert_eq!(
        item.handle::<AccountSync>(&second, t0()),
        Handled::Decided(Default::default())
    );
}

#[test]
fn changes_while_the_billing_account_is_being_created_wait_and_are_sent_after() {
    let mut world = World::new();
    world.fakes.echo_carries_origin = false;
    // Two CRM changes recorded before the projector saw the first: the create's outcome lands
    // after the second change in the stream.
    world.crm_account_saved("001A", "Acme");
    world.crm_account_saved("001A", "Acme Ltd");
    world.run();

    assert_eq!(
        world.fakes.billing_accounts.len(),
        1,
        "never a second Billing account"
    );
    assert_eq!(
        world.fakes.billing_accounts.values().next().unwrap().name,
        "Acme Ltd"
    );
    let deferred = world.log.of_type("SyncDeferred");
    assert_eq!(deferred.len(), 1);
    assert!(deferred[0].payload["waiting_for"]
        .as_str()
        .unwrap()
        .starts_with("billing-account-create:"));
}

#[test]
fn a_failed_create_is_retried_only_when_a_change_waited_for_it() {
    let mut world = World::new();
    world.fakes.fail_once.push("billing-create-account".into());
    world.crm_account_saved("001A", "Acme");
    world.run();
    assert!(world.fakes.billing_accounts.is_empty());
    assert_eq!(world.log.of_type("SyncFailed").len(), 1);

    let mut world = World::new();
    world.fakes.fail_once.push("billing-create-account".into());
    world.crm_account_saved("001A", "Acme");
    world.crm_account_saved("001A", "Acme 2");
    world.run();
    assert_eq!(world.fakes.billing_accounts.len(), 1);
    assert_eq!(
        world.fakes.billing_accounts.values().next().unwrap().name,
        "Acme 2"
    );
}

#[test]
fn echo_recorded_before_our_outcome_still_settles_without_duplicates() {
    let mut world = World::new();
    world.echo_before_outcome = true;
    world.crm_account_saved("001A", "Acme");
    world.run();
    assert_eq!(world.fakes.billing_accounts.len(), 1);
    assert_eq!(world.fakes.crm_accounts.len(), 1);
}

#[test]
fn redelivery_is_a_no_op_and_a_gap_is_reported() {
    let mut log = Log::default();
    let v1 = log.crm_account_saved("001A", "Acme");
    let v2 = log.crm_account_saved("001A", "Acme 2");
    let v3 = log.crm_account_saved("001A", "Acme 3");
    let mut item: ViewItem<AccountView> = ViewItem::new("crm#001A");
    assert_eq!(item.apply::<AccountSync>(&v1), Apply::Applied);
    let before = item.clone();
    assert_eq!(
        item.handle::<AccountSync>(&v1, t0()),
        Handled::AlreadyApplied
    );
    assert_eq!(item, before);
    assert_eq!(
        item.apply::<AccountSync>(&v3),
        Apply::Gap {
            stream: v3.stream_id.clone(),
            expected: 2,
            got: 3
        }
    );
    assert_eq!(item, before);
    assert_eq!(item.apply::<AccountSync>(&v2), Apply::Applied);
    assert_eq!(item.apply::<AccountSync>(&v3), Apply::Applied);
    assert_eq!(item.state.last_seen.as_ref().unwrap().name, "Acme 3");
}

#[test]
fn an_unreadable_account_payload_is_recorded_as_sync_failed_naming_the_field() {
    let mut log = Log::default();
    let mut bad = log.crm_account_saved("001A", "Acme");
    bad.payload.as_object_mut().unwrap().remove("name");
    let decision = AccountSync::decide(&AccountView::default(), &bad, t0());
    assert!(decision.commands.is_empty());
    let [failed] = decision.outcomes.as_slice() else {
        panic!("{decision:?}")
    };
    assert_eq!(failed.event_type, "SyncFailed");
    assert!(
        failed.payload["reason"].as_str().unwrap().contains("name"),
        "{failed:?}"
    );
}

#[test]
fn view_items_are_keyed_per_side_and_ignore_other_streams() {
    let mut log = Log::default();
    let crm = log.crm_account_saved("001A", "Acme");
    let billing =
        log.billing_account_event(DomainEvent::BillingAccountCreated, "8a8b01", "Acme", None);
    assert_eq!(AccountSync::key(&crm).as_deref(), Some("crm#001A"));
    assert_eq!(
        AccountSync::key(&billing).as_deref(),
        Some("billing#8a8b01")
    );
    let order = log.inbound(
        "crm-order-801X",
        Source::Crm,
        crm_account("001A", "x", None, None),
    );
    assert_eq!(AccountSync::key(&order), None);
}

#[test]
fn a_user_edit_in_billing_is_synced_although_the_record_still_carries_our_origin_field() {
    let mut world = World::with_synced_account("001A", "Acme");
    let billing_id = world.fakes.billing_accounts.keys().next().unwrap().clone();
    // Zuora keeps `Origin__c` on the account: the callout of a later user edit still shows it.
    world.user_changes(
        &format!("billing-account-{billing_id}"),
        Source::Billing,
        DomainEvent::BillingAccountUpdated(billing_account(
            &billing_id,
            "Acme Holding",
            Some("001A"),
            Some(ORIGIN),
        )),
    );
    world.run();
    assert_eq!(world.fakes.crm_accounts["001A"].name, "Acme Holding");
    let last = world.fakes.calls.last().unwrap();
    assert!(matches!(
        &last.call,
        Call::Crm(CrmCommand::UpsertAccount { target: CrmAccountTarget::RecordId(id), .. }) if id == "001A"
    ));
}
