//! Outcome events are functions of their cause: the same decision made twice (a redelivery,
//! a crash before the view write) proposes byte-identical envelopes, ids included, so the
//! store dedupes them and nothing in the core reads the clock. Redrive's attempts are the one
//! explicit exception: a failure is recorded once per run.

mod common;

use common::{crm_account, crm_order, t0, Log};
use projections::account_sync::{AccountSync, AccountView};
use projections::commands::{complete, complete_attempt, Attempt, CallResult};
use projections::order_sync::{OrderAccountView, OrderSync, OrderSyncView};
use projections::{DomainEvent, EventId, NewEvent, Projection, Source, SourceEventId};

fn assert_ids_derive_from_dedupe_keys(outcomes: &[NewEvent]) {
    for o in outcomes {
        assert_eq!(o.source, Source::System);
        assert_eq!(o.event_id, EventId::derived(o.source, &o.source_event_id));
    }
}

#[test]
fn the_same_decision_twice_makes_identical_outcome_envelopes() {
    let mut log = Log::default();
    let order = log.inbound(
        "crm-order-801A",
        Source::Crm,
        DomainEvent::CrmOrderActivated(crm_order("801A", "001A", "Activated", &[("SKU", 1.0)])),
    );
    let unlinked = OrderSyncView::Account(OrderAccountView {
        billing_account: None,
        orders: Default::default(),
    });
    let first = OrderSync::decide(&unlinked, &order, t0());
    let again = OrderSync::decide(&unlinked, &order, t0());
    assert_eq!(first.outcomes.len(), 1, "{first:?}");
    assert_eq!(first.outcomes[0].event_type, "SyncDeferred");
    assert_eq!(again, first);
    assert_ids_derive_from_dedupe_keys(&first.outcomes);

    let account = log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", None, None),
    );
    let decision = AccountSync::decide(&AccountView::default(), &account, t0());
    assert_eq!(
        AccountSync::decide(&AccountView::default(), &account, t0()),
        decision
    );
    let command = &decision.commands[0];
    let synced = CallResult::Succeeded {
        id: "8a8b01".into(),
        created: true,
    };
    let failed = CallResult::Failed {
        reason: "INVALID_VALUE: currency".into(),
        attempts: 3,
    };
    for result in [synced, failed] {
        let outcomes = complete(command, &result, t0());
        assert!(!outcomes.is_empty());
        assert_eq!(complete(command, &result, t0()), outcomes);
        assert_ids_derive_from_dedupe_keys(&outcomes);
    }
}

#[test]
fn different_causes_make_different_outcome_ids() {
    let mut log = Log::default();
    let a = log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", None, None),
    );
    let b = log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme Ltd", None, None),
    );
    let result = CallResult::Succeeded {
        id: "8a8b01".into(),
        created: false,
    };
    let of = |event| {
        let decision = AccountSync::decide(&AccountView::default(), event, t0());
        complete(&decision.commands[0], &result, t0())
    };
    let (from_a, from_b) = (of(&a), of(&b));
    for (x, y) in from_a.iter().zip(&from_b) {
        assert_ne!(x.event_id, y.event_id);
        assert_ne!(x.source_event_id, y.source_event_id);
    }
    // The outcome and its mirror of one call are two events: two ids.
    assert_ne!(from_a[0].event_id, from_a[1].event_id);
}

#[test]
fn a_redriven_failure_is_recorded_per_run_and_a_redriven_success_as_decided() {
    let mut log = Log::default();
    let account = log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", None, None),
    );
    let decision = AccountSync::decide(&AccountView::default(), &account, t0());
    let command = &decision.commands[0];
    let failed = CallResult::Failed {
        reason: "503".into(),
        attempts: 5,
    };
    let run_1 = EventId::parse("0193a1b2-0000-7000-8000-00000000000a").unwrap();
    let run_2 = EventId::parse("0193a1b2-0000-7000-8000-00000000000b").unwrap();
    let [decided] = complete(command, &failed, t0()).try_into().unwrap();
    let [first] = complete_attempt(command, &failed, Attempt::Redrive(run_1), t0())
        .try_into()
        .unwrap();
    let [second] = complete_attempt(command, &failed, Attempt::Redrive(run_2), t0())
        .try_into()
        .unwrap();
    assert_eq!(
        first.source_event_id,
        SourceEventId::parse(format!(
            "{}:billing-create-account:failed:redrive:{run_1}",
            account.event_id
        ))
        .unwrap()
    );
    let ids = [decided.event_id, first.event_id, second.event_id];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_ids_derive_from_dedupe_keys(&[decided, first.clone(), second]);
    // The same run completing twice (a retried append) is still one event.
    assert_eq!(
        complete_attempt(command, &failed, Attempt::Redrive(run_1), t0()),
        vec![first]
    );

    let synced = CallResult::Succeeded {
        id: "8a8b01".into(),
        created: true,
    };
    assert_eq!(
        complete_attempt(command, &synced, Attempt::Redrive(run_1), t0()),
        complete(command, &synced, t0())
    );
}
