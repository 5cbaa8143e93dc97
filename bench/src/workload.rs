//! Generated workloads for the benchmarks: "account stories" shaped like production traffic
//! (a CRM account created, synced to Billing, echoed back, renamed, synced again), with the
//! catalogue's event types and payload shapes. Pure data; nothing here touches a store.

use chrono::{DateTime, TimeDelta, Utc};
use projections::{
    CorrelationId, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use serde_json::{json, Value};

/// Events per story: 6 on the CRM account's stream, 4 on the Billing account's.
pub const EVENTS_PER_STORY: usize = 10;

/// One account's events, per stream, in version order.
#[derive(Debug, Clone)]
pub struct Story {
    pub crm_stream: StreamId,
    pub crm: Vec<NewEvent>,
    pub billing_stream: StreamId,
    pub billing: Vec<NewEvent>,
}

impl Story {
    /// Both streams' events as the ledger would record them (versions from 1, recorded one
    /// microsecond apart from `at`), CRM stream first.
    pub fn recorded(&self, at: DateTime<Utc>) -> Vec<RecordedEvent> {
        let mut tick = 0;
        let mut out = Vec::with_capacity(EVENTS_PER_STORY);
        for events in [&self.crm, &self.billing] {
            for (i, event) in events.iter().enumerate() {
                tick += 1;
                out.push(RecordedEvent::from_new(
                    event.clone(),
                    i as u64 + 1,
                    at + TimeDelta::microseconds(tick),
                ));
            }
        }
        out
    }
}

/// Salesforce 18-character Account Id of story `n`.
fn crm_id(n: usize) -> String {
    format!("001Dn{n:013}")
}

/// Zuora 32-hex-character account id of story `n`.
fn billing_id(n: usize) -> String {
    format!("2c92a0f{n:025x}")
}

fn event(
    stream: &StreamId,
    event_type: &str,
    source: Source,
    source_event_id: String,
    correlation_id: CorrelationId,
    cause: Option<EventId>,
    payload: Value,
) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        stream_id: stream.clone(),
        event_type: event_type.to_string(),
        schema_version: 1,
        source,
        source_event_id: SourceEventId::parse(source_event_id)
            .expect("generated source event ids are valid"),
        correlation_id,
        causation_id: cause,
        occurred_at: Utc::now(),
        payload,
    }
}

/// An outcome recorded by the projector because of `cause` (same correlation, derived id).
fn outcome(
    stream: &StreamId,
    event_type: &str,
    cause: &NewEvent,
    tag: &str,
    payload: Value,
) -> NewEvent {
    event(
        stream,
        event_type,
        Source::System,
        format!("{}:{tag}", cause.event_id),
        cause.correlation_id,
        Some(cause.event_id),
        payload,
    )
}

/// Story number `n` (distinct ids and source event ids for every `n`).
pub fn story(n: usize) -> Story {
    let (crm, billing) = (crm_id(n), billing_id(n));
    let crm_stream = StreamId::for_entity(Source::Crm, "account", &crm).expect("valid stream");
    let billing_stream =
        StreamId::for_entity(Source::Billing, "account", &billing).expect("valid stream");
    let name = format!("Acme Widgets {n} Ltd");
    let renamed = format!("Acme Widgets {n} Group plc");
    let account = |name: &str, linked: Option<&str>, origin: Option<&str>| {
        json!({
            "account_id": crm, "name": name, "billing_account_id": linked, "currency": "USD",
            "origin": origin, "BillingCity": "San Francisco", "BillingCountry": "US",
            "Industry": "Manufacturing", "AnnualRevenue": 12_500_000, "NumberOfEmployees": 240,
            "LastModifiedById": "005Dn000001XyZaIAK"
        })
    };
    let synced = |action: &str, name: &str, mirror: bool| {
        json!({
            "projection": "account", "direction": "crm->billing", "action": action,
            "crm_id": crm, "billing_id": billing,
            "written": {"name": name, "currency": "USD", "CrmId": crm}, "mirror": mirror
        })
    };
    let billing_account = |name: &str| {
        json!({
            "account_id": billing, "account_number": format!("A{n:08}"), "name": name,
            "crm_id": crm, "currency": "USD", "status": "Active", "origin": "sync-ledger",
            "billCycleDay": 1, "paymentTerm": "Net 30", "batch": "Batch1"
        })
    };
    let echo = json!({"projection": "account", "reason": "our own write came back"});

    let created = event(
        &crm_stream,
        "CrmAccountUpserted",
        Source::Crm,
        format!("sf-cdc-{n}-1"),
        CorrelationId::new(),
        None,
        account(&name, None, None),
    );
    let created_synced = outcome(
        &crm_stream,
        "AccountSynced",
        &created,
        "account-synced",
        synced("created", &name, false),
    );
    let linked = event(
        &crm_stream,
        "CrmAccountUpserted",
        Source::Crm,
        format!("sf-cdc-{n}-2"),
        created.correlation_id,
        None,
        account(&name, Some(&billing), Some("sync-ledger")),
    );
    let linked_echo = outcome(&crm_stream, "EchoSuppressed", &linked, "echo", echo.clone());
    let rename = event(
        &crm_stream,
        "CrmAccountUpserted",
        Source::Crm,
        format!("sf-cdc-{n}-3"),
        CorrelationId::new(),
        None,
        account(&renamed, Some(&billing), None),
    );
    let rename_synced = outcome(
        &crm_stream,
        "AccountSynced",
        &rename,
        "account-synced",
        synced("updated", &renamed, false),
    );
    let mirror_created = outcome(
        &billing_stream,
        "AccountSynced",
        &created,
        "account-synced-mirror",
        synced("created", &name, true),
    );
    let billing_created = event(
        &billing_stream,
        "BillingAccountCreated",
        Source::Billing,
        format!("zuora-{n}-1"),
        created.correlation_id,
        None,
        billing_account(&name),
    );
    let billing_echo = outcome(
        &billing_stream,
        "EchoSuppressed",
        &billing_created,
        "echo",
        echo,
    );
    let mirror_renamed = outcome(
        &billing_stream,
        "AccountSynced",
        &rename,
        "account-synced-mirror",
        synced("updated", &renamed, true),
    );
    Story {
        crm: vec![
            created,
            created_synced,
            linked,
            linked_echo,
            rename,
            rename_synced,
        ],
        crm_stream,
        billing: vec![
            mirror_created,
            billing_created,
            billing_echo,
            mirror_renamed,
        ],
        billing_stream,
    }
}

/// `events` recorded events (rounded up to whole stories), stories numbered from `first`.
pub fn recorded_events(first: usize, events: usize, at: DateTime<Utc>) -> Vec<RecordedEvent> {
    // The ledger stores recorded_at with microseconds: generate what it would read back.
    let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    let stories = events.div_ceil(EVENTS_PER_STORY);
    let mut out = Vec::with_capacity(stories * EVENTS_PER_STORY);
    for n in first..first + stories {
        out.extend(story(n).recorded(at + TimeDelta::milliseconds(n as i64)));
    }
    out.truncate(events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::account_sync::AccountSync;
    use projections::correlation_view::CorrelationView;
    use projections::{Projection, Views};

    #[test]
    fn every_story_event_decodes_as_its_catalogue_type_and_feeds_both_projections() {
        let events = recorded_events(7, 2 * EVENTS_PER_STORY, Utc::now());
        assert_eq!(events.len(), 20);
        for e in &events {
            assert!(
                !matches!(
                    e.decode().unwrap(),
                    projections::DomainEvent::Unknown { .. }
                ),
                "{}",
                e.event_type
            );
            assert!(AccountSync::key(e).is_some() && CorrelationView::key(e).is_some());
        }
        let mut links = Views::<<CorrelationView as Projection>::State>::default();
        for e in &events {
            assert_eq!(
                links.apply::<CorrelationView>(e),
                Some(projections::Apply::Applied)
            );
        }
        assert_eq!(
            links.items.len(),
            4,
            "two accounts, each linked from both sides"
        );
    }
}
