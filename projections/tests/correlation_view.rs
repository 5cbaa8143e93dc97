//! The correlation view: links resolvable from either side, with the event that made them,
//! their history and the traces that touched each entity.

mod common;

use common::{crm_account, t0, Inbound, Log};
use projections::catalogue::{CrmAccountDeleted, SyncOutcome};
use projections::commands::Cause;
use projections::correlation_view::{
    lookup_billing, lookup_crm, CorrelationView, LinkChangeKind, LinkItem,
};
use projections::{DomainEvent, Projection, RecordedEvent, Source, StreamId, Views};

fn synced(crm: &str, billing: &str, mirror: bool) -> DomainEvent {
    DomainEvent::AccountSynced(SyncOutcome {
        projection: "account".into(),
        direction: "crm->billing".into(),
        action: "created".into(),
        crm_id: Some(crm.into()),
        billing_id: Some(billing.into()),
        written: None,
        mirror,
        extra: Default::default(),
    })
}

/// Records the outcome of `cause` on `stream`, as the shell would.
fn outcome(
    log: &mut Log,
    cause: &RecordedEvent,
    stream: &str,
    step: &str,
    event: DomainEvent,
) -> RecordedEvent {
    let new = Cause::of(cause).outcome(StreamId::parse(stream).unwrap(), step, t0(), &event);
    log.append(new).unwrap()
}

fn fold(log: &Log) -> Views<LinkItem> {
    let mut views = Views::default();
    for event in &log.events {
        views.apply::<CorrelationView>(event);
    }
    views
}

#[test]
fn a_synced_link_resolves_from_both_sides_with_the_event_that_made_it() {
    let mut log = Log::default();
    let inbound = log.crm_account_saved("001A", "Acme");
    let made = outcome(
        &mut log,
        &inbound,
        "crm-account-001A",
        "s",
        synced("001A", "8a8b01", false),
    );
    let mirror = outcome(
        &mut log,
        &inbound,
        "billing-account-8a8b01",
        "s:m",
        synced("001A", "8a8b01", true),
    );
    let views = fold(&log);

    let crm = lookup_crm(&views, "001A").unwrap();
    assert_eq!(crm.counterpart(), Some("8a8b01"));
    assert_eq!(crm.links[0].made_by, made.event_id);
    assert_eq!(crm.links[0].caused_by, Some(inbound.event_id));
    assert_eq!(crm.links[0].correlation_id, inbound.correlation_id);
    assert_eq!(crm.entity.as_deref(), Some("account"));
    let billing = lookup_billing(&views, "8a8b01").unwrap();
    assert_eq!(billing.counterpart(), Some("001A"));
    assert_eq!(billing.links[0].made_by, mirror.event_id);
    assert!(
        lookup_crm(&views, "8a8b01").is_none(),
        "ids resolve only on their own side"
    );
}

#[test]
fn a_relink_keeps_the_previous_link_in_the_history() {
    let mut log = Log::default();
    log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", Some("8a8b01"), None),
    );
    log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", Some("8a8b01"), None),
    );
    log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", Some("8a8b02"), None),
    );
    let views = fold(&log);
    let item = lookup_crm(&views, "001A").unwrap();
    assert_eq!(item.counterpart(), Some("8a8b02"));
    let changes: Vec<_> = item
        .history
        .iter()
        .map(|h| (h.change, h.counterpart_id.clone(), h.previous.clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (LinkChangeKind::Linked, Some("8a8b01".into()), None),
            (
                LinkChangeKind::Relinked,
                Some("8a8b02".into()),
                Some("8a8b01".into())
            ),
        ]
    );
    assert_eq!(
        item.correlation_ids.len(),
        3,
        "each inbound event started its own trace"
    );
}

#[test]
fn a_deleted_account_is_unlinked_but_its_history_stays() {
    let mut log = Log::default();
    log.billing_account_event(
        DomainEvent::BillingAccountCreated,
        "8a8b01",
        "Acme",
        Some("001A"),
    );
    log.inbound(
        "crm-account-001A",
        Source::Crm,
        crm_account("001A", "Acme", Some("8a8b01"), None),
    );
    log.inbound(
        "crm-account-001A",
        Source::Crm,
        DomainEvent::CrmAccountDeleted(CrmAccountDeleted {
            account_id: "001A".into(),
            extra: Default::default(),
        }),
    );
    let views = fold(&log);
    let item = lookup_crm(&views, "001A").unwrap();
    assert_eq!(item.counterpart(), None);
    assert_eq!(
        item.history.last().unwrap().change,
        LinkChangeKind::Unlinked
    );
    assert_eq!(
        lookup_billing(&views, "8a8b01").unwrap().counterpart(),
        Some("001A")
    );
}

#[test]
fn a_rate_plan_links_to_one_pricebook_entry_per_currency() {
    let mut log = Log::default();
    let cause = log.billing_account_event(DomainEvent::BillingAccountCreated, "x", "x", None);
    let product = |crm: &str| {
        DomainEvent::ProductSynced(SyncOutcome {
            projection: "product".into(),
            direction: "billing->crm".into(),
            action: "created".into(),
            crm_id: Some(crm.into()),
            billing_id: Some("2c92rp".into()),
            written: None,
            mirror: false,
            extra: Default::default(),
        })
    };
    outcome(
        &mut log,
        &cause,
        "billing-rateplan-2c92rp",
        "eur",
        product("01uEUR"),
    );
    outcome(
        &mut log,
        &cause,
        "billing-rateplan-2c92rp",
        "usd",
        product("01uUSD"),
    );
    let views = fold(&log);
    let item = lookup_billing(&views, "2c92rp").unwrap();
    let linked: Vec<_> = item
        .links
        .iter()
        .map(|l| l.counterpart_id.as_str())
        .collect();
    assert_eq!(linked, ["01uEUR", "01uUSD"]);
}

#[test]
fn streams_without_links_are_not_part_of_the_view() {
    let mut log = Log::default();
    let token = log.inbound(
        "system-token-crm",
        Source::System,
        DomainEvent::Unknown {
            event_type: "TokenRotated".into(),
            payload: serde_json::json!({}),
        },
    );
    assert_eq!(CorrelationView::key(&token), None);
}

#[test]
fn a_link_relinked_thousands_of_times_keeps_a_small_item_and_full_pages_of_its_history() {
    use projections::correlation_view::{
        history_page_key, link_key, traces_page_key, HistoryPage, TracesPage, HISTORY_PAGE,
        TRACES_PAGE,
    };
    use projections::Side;
    const N: usize = 1_000;
    let mut log = Log::default();
    for i in 0..N {
        log.inbound(
            "crm-account-001A",
            Source::Crm,
            crm_account("001A", "Acme", Some(&format!("8a8b{i:04}")), None),
        );
    }
    let views = fold(&log);
    let key = link_key(Side::Crm, "001A");
    let item = lookup_crm(&views, "001A").unwrap();
    assert_eq!(item.counterpart(), Some(&*format!("8a8b{:04}", N - 1)));
    assert_eq!(item.history_pages, (N / HISTORY_PAGE) as u64);
    assert_eq!(item.history.len(), N % HISTORY_PAGE);
    assert_eq!(item.trace_pages, (N / TRACES_PAGE) as u64);
    assert_eq!(item.correlation_ids.len(), N % TRACES_PAGE);
    let item_bytes = serde_json::to_vec(item).unwrap().len();
    assert!(item_bytes < 16 * 1024, "item is {item_bytes} bytes");

    // Every change is in exactly one place, in order: pages 0.., then the item's tail.
    let mut counterparts = Vec::new();
    for n in 0..item.history_pages {
        let page: HistoryPage =
            serde_json::from_value(views.page(&history_page_key(&key, n)).unwrap().clone())
                .unwrap();
        assert_eq!(page.page_of, key);
        assert_eq!(page.history.len(), HISTORY_PAGE);
        counterparts.extend(page.history.into_iter().map(|h| h.counterpart_id.unwrap()));
    }
    counterparts.extend(
        item.history
            .iter()
            .map(|h| h.counterpart_id.clone().unwrap()),
    );
    let expected: Vec<String> = (0..N).map(|i| format!("8a8b{i:04}")).collect();
    assert_eq!(counterparts, expected);

    let mut traces = Vec::new();
    for n in 0..item.trace_pages {
        let page: TracesPage =
            serde_json::from_value(views.page(&traces_page_key(&key, n)).unwrap().clone()).unwrap();
        traces.extend(page.correlation_ids);
    }
    traces.extend(item.correlation_ids.iter().copied());
    let expected: Vec<_> = log.events.iter().map(|e| e.correlation_id).collect();
    assert_eq!(traces, expected, "every trace, first seen first");
    assert_eq!(
        views.pages.len() as u64,
        item.history_pages + item.trace_pages
    );
}
