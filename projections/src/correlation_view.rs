//! The correlation view: which CRM id is linked to which Billing id (account, order <->
//! subscription, product <-> product, rate plan <-> pricebook entry), the event that made each
//! link, its history, and every correlation id seen on the entity. A pure fold, no decisions.
//!
//! Items `link#crm#<id>` and `link#billing#<id>` each fold their entity's stream; a link made
//! by a sync is recorded on both streams (the outcome and its mirror), so both ids resolve.
//!
//! Bounded items: the history and the traces grow with every event of the entity, so the
//! item keeps only their latest entries (fewer than a page) and spills each full page to its
//! own write-once item: `link#<side>#<id>#history#<n>` ([`HISTORY_PAGE`] changes) and
//! `link#<side>#<id>#traces#<n>` ([`TRACES_PAGE`] correlation ids), numbered from 0 in
//! order; `history_pages` / `trace_pages` on the item say how many exist. Readers page
//! through them by number (no scan); the ledger keeps the full history anyway.

use crate::catalogue::{BillingAccount, BillingSubscription, CrmAccountUpserted, DomainEvent};
use crate::envelope::RecordedEvent;
use crate::ids::{CorrelationId, EventId};
use crate::projection::{entity, Decision, EntityStream, Page, Projection, Side, Views};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Entities that take part in links; other streams (prices, tokens, ...) are ignored.
const LINKED_ENTITIES: &[&str] = &[
    entity::ACCOUNT,
    entity::ORDER,
    entity::SUBSCRIPTION,
    entity::PRODUCT,
    entity::RATE_PLAN,
    entity::PRICEBOOK_ENTRY,
];

/// A current link from this id to an id on the other side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub counterpart_side: Side,
    pub counterpart_id: String,
    /// The recorded event that established the link (a sync outcome, or an inbound record
    /// carrying the other side's id).
    pub made_by: EventId,
    pub made_by_type: String,
    pub caused_by: Option<EventId>,
    pub correlation_id: CorrelationId,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChangeKind {
    Linked,
    /// The id is now linked to a different counterpart (`previous`).
    Relinked,
    /// The entity was deleted at its source.
    Unlinked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkChange {
    pub change: LinkChangeKind,
    pub counterpart_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub event_id: EventId,
    pub event_type: String,
    pub correlation_id: CorrelationId,
    pub at: DateTime<Utc>,
}

/// Link changes per history page: ~300 bytes each, so a page or the item's tail stays near
/// 10 KB whatever the entity's age.
pub const HISTORY_PAGE: usize = 32;
/// Correlation ids per traces page (~40 bytes each).
pub const TRACES_PAGE: usize = 128;

/// The view item of one id on one side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkItem {
    pub entity: Option<String>,
    /// Current links: one, or one per currency for a rate plan (bounded by the catalog).
    pub links: Vec<Link>,
    /// The latest link changes, after those in the `history_pages` pages.
    pub history: Vec<LinkChange>,
    /// Full pages of older link changes: `history_page_key(key, 0..history_pages)`.
    #[serde(default)]
    pub history_pages: u64,
    /// The latest traces that touched this entity, first seen first, after those in the
    /// `trace_pages` pages: where an audit query that starts from an entity id continues.
    /// Repeats are dropped within the tail only (earlier pages are not read by the fold), so
    /// a reader dedupes across pages.
    pub correlation_ids: Vec<CorrelationId>,
    /// Full pages of older traces: `traces_page_key(key, 0..trace_pages)`.
    #[serde(default)]
    pub trace_pages: u64,
}

/// A full page of link changes spilled out of a [`LinkItem`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub page_of: String,
    pub history: Vec<LinkChange>,
}

/// A full page of correlation ids spilled out of a [`LinkItem`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracesPage {
    pub page_of: String,
    pub correlation_ids: Vec<CorrelationId>,
}

/// Key of history page `n` of the item `item_key` (`link#<side>#<id>`).
pub fn history_page_key(item_key: &str, n: u64) -> String {
    format!("{item_key}#history#{n}")
}

/// Key of traces page `n` of the item `item_key`.
pub fn traces_page_key(item_key: &str, n: u64) -> String {
    format!("{item_key}#traces#{n}")
}

impl LinkItem {
    /// The single counterpart of a one-to-one link (all but rate plans).
    pub fn counterpart(&self) -> Option<&str> {
        self.links.first().map(|l| l.counterpart_id.as_str())
    }
}

pub struct CorrelationView;

/// `link#<side>#<id>`: the view item key of an id.
pub fn link_key(side: Side, id: &str) -> String {
    format!("link#{}#{}", side.as_str(), id)
}

pub fn lookup_crm<'a>(views: &'a Views<LinkItem>, crm_id: &str) -> Option<&'a LinkItem> {
    views.state(&link_key(Side::Crm, crm_id))
}

pub fn lookup_billing<'a>(views: &'a Views<LinkItem>, billing_id: &str) -> Option<&'a LinkItem> {
    views.state(&link_key(Side::Billing, billing_id))
}

enum Evidence {
    Link(String),
    Deleted,
    Nothing,
}

fn evidence(side: Side, domain: &DomainEvent) -> Evidence {
    let other = |crm: &Option<String>, billing: &Option<String>| match side {
        Side::Crm => billing.clone(),
        Side::Billing => crm.clone(),
    };
    let found = match domain {
        DomainEvent::AccountSynced(o)
        | DomainEvent::OrderSynced(o)
        | DomainEvent::ProductSynced(o) => other(&o.crm_id, &o.billing_id),
        DomainEvent::CrmAccountUpserted(CrmAccountUpserted {
            billing_account_id, ..
        }) if side == Side::Crm => billing_account_id.clone(),
        DomainEvent::BillingAccountCreated(BillingAccount { crm_id, .. })
        | DomainEvent::BillingAccountUpdated(BillingAccount { crm_id, .. })
            if side == Side::Billing =>
        {
            crm_id.clone()
        }
        DomainEvent::BillingSubscriptionCreated(BillingSubscription { crm_order_id, .. })
        | DomainEvent::BillingSubscriptionAmended(BillingSubscription { crm_order_id, .. })
        | DomainEvent::BillingSubscriptionCancelled(BillingSubscription { crm_order_id, .. })
            if side == Side::Billing =>
        {
            crm_order_id.clone()
        }
        DomainEvent::CrmAccountObserved(o) if side == Side::Crm => o.linked_id.clone(),
        DomainEvent::BillingAccountObserved(o) if side == Side::Billing => o.linked_id.clone(),
        DomainEvent::CrmAccountDeleted(_) => return Evidence::Deleted,
        _ => None,
    };
    match found {
        Some(id) if !id.trim().is_empty() => Evidence::Link(id),
        _ => Evidence::Nothing,
    }
}

impl Projection for CorrelationView {
    type State = LinkItem;
    const NAME: &'static str = "correlation";

    fn key(event: &RecordedEvent) -> Option<String> {
        let stream = EntityStream::parse(&event.stream_id)?;
        LINKED_ENTITIES
            .contains(&stream.entity)
            .then(|| link_key(stream.side, stream.id))
    }

    fn evolve(item: &mut LinkItem, event: &RecordedEvent) {
        let Some(stream) = EntityStream::parse(&event.stream_id) else {
            return;
        };
        item.entity.get_or_insert_with(|| stream.entity.to_string());
        if !item.correlation_ids.contains(&event.correlation_id) {
            item.correlation_ids.push(event.correlation_id);
        }
        let Ok(domain) = event.decode() else { return };
        let change = |kind, counterpart: Option<String>, previous| LinkChange {
            change: kind,
            counterpart_id: counterpart,
            previous,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            correlation_id: event.correlation_id,
            at: event.recorded_at,
        };
        match evidence(stream.side, &domain) {
            Evidence::Nothing => {}
            Evidence::Deleted => {
                for link in std::mem::take(&mut item.links) {
                    item.history.push(change(
                        LinkChangeKind::Unlinked,
                        Some(link.counterpart_id),
                        None,
                    ));
                }
            }
            Evidence::Link(counterpart) => {
                if item.links.iter().any(|l| l.counterpart_id == counterpart) {
                    return;
                }
                let link = Link {
                    counterpart_side: stream.side.other(),
                    counterpart_id: counterpart.clone(),
                    made_by: event.event_id,
                    made_by_type: event.event_type.clone(),
                    caused_by: event.causation_id,
                    correlation_id: event.correlation_id,
                    since: event.recorded_at,
                };
                // A rate plan has one pricebook entry per currency; every other id has one
                // counterpart, and a new one replaces the old.
                let previous = if stream.entity == entity::RATE_PLAN {
                    None
                } else {
                    item.links.pop().map(|l| l.counterpart_id)
                };
                let kind = if previous.is_some() {
                    LinkChangeKind::Relinked
                } else {
                    LinkChangeKind::Linked
                };
                item.links.push(link);
                item.history.push(change(kind, Some(counterpart), previous));
            }
        }
    }

    fn decide(_: &LinkItem, _: &RecordedEvent, _: DateTime<Utc>) -> Decision {
        Decision::none()
    }

    fn spill(key: &str, item: &mut LinkItem) -> Vec<Page> {
        let mut pages = Vec::new();
        // `evolve` adds at most one entry per link (one per currency for a rate plan) and one
        // trace per event, so "while" moves everything that fills a page.
        while item.history.len() >= HISTORY_PAGE {
            let history: Vec<LinkChange> = item.history.drain(..HISTORY_PAGE).collect();
            let page = HistoryPage {
                page_of: key.to_string(),
                history,
            };
            pages.push(Page {
                key: history_page_key(key, item.history_pages),
                state: serde_json::to_value(page).expect("a history page serializes"),
            });
            item.history_pages += 1;
        }
        while item.correlation_ids.len() >= TRACES_PAGE {
            let correlation_ids: Vec<CorrelationId> =
                item.correlation_ids.drain(..TRACES_PAGE).collect();
            let page = TracesPage {
                page_of: key.to_string(),
                correlation_ids,
            };
            pages.push(Page {
                key: traces_page_key(key, item.trace_pages),
                state: serde_json::to_value(page).expect("a traces page serializes"),
            });
            item.trace_pages += 1;
        }
        pages
    }
}
