//! The correlation view: which CRM id is linked to which Billing id (account, order <->
//! subscription, product <-> product, rate plan <-> pricebook entry), the event that made each
//! link, its history, and every correlation id seen on the entity. A pure fold, no decisions.
//!
//! Items `link#crm#<id>` and `link#billing#<id>` each fold their entity's stream; a link made
//! by a sync is recorded on both streams (the outcome and its mirror), so both ids resolve.

use crate::catalogue::{BillingAccount, BillingSubscription, CrmAccountUpserted, DomainEvent};
use crate::envelope::RecordedEvent;
use crate::ids::{CorrelationId, EventId};
use crate::projection::{entity, Decision, EntityStream, Projection, Side, Views};
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

/// The view item of one id on one side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkItem {
    pub entity: Option<String>,
    pub links: Vec<Link>,
    pub history: Vec<LinkChange>,
    /// Every trace that touched this entity, first seen first: where an audit query that
    /// starts from an entity id continues.
    pub correlation_ids: Vec<CorrelationId>,
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
}
