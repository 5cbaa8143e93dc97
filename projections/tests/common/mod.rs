//! The one fixture module of the projections tests (each test binary declares `mod common;`):
//! an in-memory ledger that assigns versions and dedupes by `(source, source_event_id)` the
//! way the real stores do (DESIGN §3), builders for inbound events shaped like the catalogue
//! payloads, `Inbound` (the usual inbound events, on a `Log` or a `World`), and in `world`
//! the pure projector shell with CRM/Billing fakes.
#![allow(dead_code)]

pub mod world;

use chrono::{DateTime, Duration, TimeZone, Utc};
use projections::catalogue::{BillingAccount, CrmAccountUpserted, CrmOrder};
use projections::{
    CorrelationId, DomainEvent, NewEvent, RecordedEvent, Source, SourceEventId, StreamId,
};
use std::collections::{BTreeMap, BTreeSet};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
}

/// An append-only log with the ledger's guarantees: gapless versions per stream, one record
/// per `(source, source_event_id)`, `recorded_at` monotonic.
#[derive(Default)]
pub struct Log {
    pub events: Vec<RecordedEvent>,
    versions: BTreeMap<StreamId, u64>,
    dedupe: BTreeSet<(Source, SourceEventId)>,
    ticks: i64,
    inbound_seq: u64,
}

impl Log {
    /// Appends unless already recorded; returns the recorded event when it was new.
    pub fn append(&mut self, event: NewEvent) -> Option<RecordedEvent> {
        if !self
            .dedupe
            .insert((event.source, event.source_event_id.clone()))
        {
            return None;
        }
        let version = self.versions.entry(event.stream_id.clone()).or_insert(0);
        *version += 1;
        self.ticks += 1;
        let recorded =
            RecordedEvent::from_new(event, *version, t0() + Duration::milliseconds(self.ticks));
        self.events.push(recorded.clone());
        Some(recorded)
    }

    /// Records an inbound event from `source` on `stream` with a fresh trace.
    pub fn inbound(&mut self, stream: &str, source: Source, event: DomainEvent) -> RecordedEvent {
        self.inbound_seq += 1;
        let new = NewEvent::from_domain(
            StreamId::parse(stream).unwrap(),
            source,
            SourceEventId::parse(format!("src-{}", self.inbound_seq)).unwrap(),
            CorrelationId::new(),
            None,
            t0(),
            &event,
        );
        self.append(new)
            .expect("fresh source ids are never duplicates")
    }

    pub fn stream(&self, stream: &str) -> Vec<&RecordedEvent> {
        self.events
            .iter()
            .filter(|e| e.stream_id.as_str() == stream)
            .collect()
    }

    pub fn of_type(&self, event_type: &str) -> Vec<&RecordedEvent> {
        self.events
            .iter()
            .filter(|e| e.event_type == event_type)
            .collect()
    }
}

/// What every test records most: the usual inbound events on the streams their ids name.
/// `Log` records them as they are; `World` also lets its fakes learn them (a user change).
pub trait Inbound {
    /// Records `event` from `source` on `stream`.
    fn record(&mut self, stream: &str, source: Source, event: DomainEvent) -> RecordedEvent;

    /// A CRM user saves account `id` (no Billing link, no origin marker).
    fn crm_account_saved(&mut self, id: &str, name: &str) -> RecordedEvent {
        self.record(
            &format!("crm-account-{id}"),
            Source::Crm,
            crm_account(id, name, None, None),
        )
    }

    /// An order event (`DomainEvent::CrmOrderActivated`, ...) on `crm-order-<id>`.
    fn crm_order_event(
        &mut self,
        kind: fn(CrmOrder) -> DomainEvent,
        id: &str,
        account: &str,
        status: &str,
        lines: &[(&str, f64)],
    ) -> RecordedEvent {
        self.record(
            &format!("crm-order-{id}"),
            Source::Crm,
            kind(crm_order(id, account, status, lines)),
        )
    }

    /// The usual order: `crm-order-801A` of account `001A`, for `quantity` of `SKU-GOLD`.
    fn gold_order(
        &mut self,
        kind: fn(CrmOrder) -> DomainEvent,
        status: &str,
        quantity: f64,
    ) -> RecordedEvent {
        self.crm_order_event(kind, "801A", "001A", status, &[("SKU-GOLD", quantity)])
    }

    /// A Billing account event (`DomainEvent::BillingAccountCreated`, ...) with no origin
    /// marker, on `billing-account-<id>`.
    fn billing_account_event(
        &mut self,
        kind: fn(BillingAccount) -> DomainEvent,
        id: &str,
        name: &str,
        crm: Option<&str>,
    ) -> RecordedEvent {
        self.record(
            &format!("billing-account-{id}"),
            Source::Billing,
            kind(billing_account(id, name, crm, None)),
        )
    }
}

impl Inbound for Log {
    fn record(&mut self, stream: &str, source: Source, event: DomainEvent) -> RecordedEvent {
        self.inbound(stream, source, event)
    }
}

pub fn crm_account(
    id: &str,
    name: &str,
    billing: Option<&str>,
    origin: Option<&str>,
) -> DomainEvent {
    DomainEvent::CrmAccountUpserted(CrmAccountUpserted {
        account_id: id.into(),
        name: name.into(),
        billing_account_id: billing.map(Into::into),
        currency: Some("EUR".into()),
        origin: origin.map(Into::into),
        extra: Default::default(),
    })
}

pub fn billing_account(
    id: &str,
    name: &str,
    crm: Option<&str>,
    origin: Option<&str>,
) -> BillingAccount {
    BillingAccount {
        account_id: id.into(),
        account_number: Some(format!("A-{id}")),
        name: name.into(),
        crm_id: crm.map(Into::into),
        currency: Some("EUR".into()),
        status: Some("Active".into()),
        origin: origin.map(Into::into),
        extra: Default::default(),
    }
}

/// An `OrderEvent__e`-shaped order with one line per `(product code, quantity)`.
pub fn crm_order(id: &str, account: &str, status: &str, lines: &[(&str, f64)]) -> CrmOrder {
    CrmOrder {
        order_id: id.into(),
        account_id: account.into(),
        order_number: Some(format!("0000{id}")),
        status: status.into(),
        effective_date: Some("2026-12-01".into()),
        currency: Some("EUR".into()),
        items: lines
            .iter()
            .map(|(code, quantity)| projections::catalogue::OrderItem {
                product_code: (*code).into(),
                quantity: *quantity,
                unit_price: Some(10.0),
                extra: Default::default(),
            })
            .collect(),
        origin: None,
        extra: Default::default(),
    }
}
