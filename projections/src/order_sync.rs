//! Order sync: a CRM order activated / amended / cancelled creates / amends / cancels its
//! Billing subscription; an order whose account has no Billing link yet waits (`SyncDeferred`)
//! and goes out by itself once the link is recorded; a Billing subscription status change
//! updates the CRM order status. Pure fold + decisions, no I/O.
//!
//! Items: `crm-account#<id>` folds the CRM account's stream and the streams of all its orders
//! (so the link and the waiting orders meet in one place); `billing-subscription#<number>`
//! folds one subscription stream. Every event on a `crm-order-*` stream names its account
//! (`account_id` inbound, [`ACCOUNT_ROUTE`] on our outcomes), which is how it is routed.

use crate::catalogue::{BillingSubscription, CrmOrder, DomainEvent, Extra, SyncOutcome};
use crate::commands::{
    origin_proves_echo, undecodable, BillingCommand, Call, Cause, Command, CommandMeta, CrmCommand,
    Notes, OutcomeKind, PendingOutcome, PlanLine,
};
use crate::envelope::RecordedEvent;
use crate::ids::EventId;
use crate::projection::{entity, Decision, EntityStream, Projection, Side};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const PROJECTION: &str = "order";
/// Payload field every order-sync outcome on an order stream carries: the CRM account id.
pub const ACCOUNT_ROUTE: &str = "crm_account_id";

/// Names the order on outcomes whose `crm_id` is not the order (a failure).
const ORDER_FIELD: &str = "crm_order_id";
const CREATE_STEP: &str = "billing-create-subscription";
const CRM_TO_BILLING: &str = "crm->billing";
const BILLING_TO_CRM: &str = "billing->crm";

/// The parts of a CRM order that decide what Billing gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub status: String,
    pub order_number: Option<String>,
    pub effective_date: Option<String>,
    pub currency: Option<String>,
    pub lines: Vec<PlanLine>,
    pub cancelled: bool,
}

impl OrderSnapshot {
    fn of(order: &CrmOrder, cancelled: bool) -> Self {
        Self {
            status: order.status.clone(),
            order_number: order.order_number.clone(),
            effective_date: order.effective_date.clone(),
            currency: order.currency.clone(),
            lines: order
                .items
                .iter()
                .map(|i| PlanLine {
                    product_code: i.product_code.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                })
                .collect(),
            cancelled,
        }
    }
}

/// One CRM order as the account item knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    /// Billing subscription number, once created.
    pub subscription: Option<String>,
    /// The order as CRM last reported it.
    pub last_seen: Option<OrderSnapshot>,
    /// What Billing was last told, from our recorded outcomes (never from a decision, so
    /// the fold does not depend on how the account's and the order's streams interleave).
    pub synced: Option<Synced>,
    /// Waiting for the account's Billing link: the activation to create from.
    pub waiting: Option<Cause>,
    /// A subscription create in flight, by the order event it is keyed by.
    pub creating: Option<EventId>,
    /// The CRM status we last wrote and have not seen come back.
    pub pending_echo_status: Option<String>,
}

/// What a subscription was last written with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Synced {
    pub lines: Vec<PlanLine>,
    pub cancelled: bool,
}

impl Synced {
    fn from_outcome(outcome: &SyncOutcome) -> Option<Self> {
        let written = outcome.written.as_ref()?;
        Some(Self {
            lines: serde_json::from_value(written.get("lines").cloned().unwrap_or(json!([])))
                .ok()?,
            cancelled: written.get("status").and_then(Value::as_str) == Some("Cancelled"),
        })
    }

    fn matches(&self, order: &OrderSnapshot) -> bool {
        self.cancelled == order.cancelled && (self.cancelled || self.lines == order.lines)
    }
}

/// A CRM account with its orders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderAccountView {
    pub billing_account: Option<String>,
    pub orders: BTreeMap<String, OrderState>,
}

/// One Billing subscription.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub crm_order: Option<String>,
    pub crm_account: Option<String>,
    pub status: Option<String>,
    pub pending_echo_status: Option<String>,
}

/// The state of an order-sync item: which kind depends on the key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderSyncView {
    #[default]
    Empty,
    Account(OrderAccountView),
    Subscription(SubscriptionView),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderChange {
    Activated,
    Amended,
    Cancelled,
}

fn order_change(domain: &DomainEvent) -> Option<(OrderChange, &CrmOrder)> {
    match domain {
        DomainEvent::CrmOrderActivated(o) => Some((OrderChange::Activated, o)),
        DomainEvent::CrmOrderAmended(o) => Some((OrderChange::Amended, o)),
        DomainEvent::CrmOrderCancelled(o) => Some((OrderChange::Cancelled, o)),
        _ => None,
    }
}

fn subscription_change(domain: &DomainEvent) -> Option<&BillingSubscription> {
    match domain {
        DomainEvent::BillingSubscriptionCreated(s)
        | DomainEvent::BillingSubscriptionAmended(s)
        | DomainEvent::BillingSubscriptionCancelled(s) => Some(s),
        _ => None,
    }
}

/// CRM Order `Status` for a Billing subscription status.
pub fn crm_status(billing_status: &str) -> String {
    match billing_status {
        "Active" => "Activated".into(),
        other => other.into(),
    }
}

/// What a CRM order change leads to.
#[derive(Debug, Clone, PartialEq)]
enum OrderReaction {
    Echo(&'static str),
    NoChange,
    WaitForLink,
    WaitForCreate,
    Create(String),
    Amend(String),
    Cancel(String),
    DropWaiting,
}

fn react_order(view: &OrderAccountView, change: OrderChange, order: &CrmOrder) -> OrderReaction {
    let state = view.orders.get(&order.order_id);
    let awaiting = state.is_some_and(|s| s.pending_echo_status.is_some());
    let first_sight = state.is_none_or(|s| s.last_seen.is_none());
    if origin_proves_echo(order.origin.as_deref(), awaiting, first_sight) {
        return OrderReaction::Echo("the change carries our origin marker");
    }
    if state.and_then(|s| s.pending_echo_status.as_deref()) == Some(order.status.as_str()) {
        return OrderReaction::Echo("the values equal what we last wrote");
    }
    let snapshot = OrderSnapshot::of(order, change == OrderChange::Cancelled);
    if state.and_then(|s| s.last_seen.as_ref()) == Some(&snapshot) {
        return OrderReaction::NoChange;
    }
    let subscription = state.and_then(|s| s.subscription.clone());
    let creating = state.is_some_and(|s| s.creating.is_some());
    let waiting = state.is_some_and(|s| s.waiting.is_some());
    match (change, subscription) {
        (OrderChange::Cancelled, Some(sub)) => OrderReaction::Cancel(sub),
        (OrderChange::Cancelled, None) if creating => OrderReaction::WaitForCreate,
        (OrderChange::Cancelled, None) if waiting => OrderReaction::DropWaiting,
        (OrderChange::Cancelled, None) => OrderReaction::NoChange,
        (_, Some(sub)) => {
            let synced = state.and_then(|s| s.synced.as_ref());
            if synced.is_some_and(|s| s.matches(&snapshot)) {
                OrderReaction::NoChange
            } else {
                OrderReaction::Amend(sub)
            }
        }
        (_, None) if creating => OrderReaction::WaitForCreate,
        (_, None) => match &view.billing_account {
            Some(billing) => OrderReaction::Create(billing.clone()),
            None => OrderReaction::WaitForLink,
        },
    }
}

/// Order sync over CRM accounts + orders and Billing subscriptions.
pub struct OrderSync;

impl Projection for OrderSync {
    type State = OrderSyncView;
    const NAME: &'static str = "order-sync";

    fn key(event: &RecordedEvent) -> Option<String> {
        let stream = EntityStream::parse(&event.stream_id)?;
        match (stream.side, stream.entity) {
            (Side::Crm, entity::ACCOUNT) => Some(format!("crm-account#{}", stream.id)),
            (Side::Crm, entity::ORDER) => {
                let account = event
                    .payload
                    .get("account_id")
                    .or_else(|| event.payload.get(ACCOUNT_ROUTE))
                    .and_then(Value::as_str)?;
                Some(format!("crm-account#{account}"))
            }
            (Side::Billing, entity::SUBSCRIPTION) => {
                Some(format!("billing-subscription#{}", stream.id))
            }
            _ => None,
        }
    }

    fn evolve(view: &mut OrderSyncView, event: &RecordedEvent) {
        let Some(stream) = EntityStream::parse(&event.stream_id) else {
            return;
        };
        let Ok(domain) = event.decode() else { return };
        if stream.is(Side::Billing, entity::SUBSCRIPTION) {
            if !matches!(view, OrderSyncView::Subscription(_)) {
                *view = OrderSyncView::Subscription(SubscriptionView::default());
            }
            if let OrderSyncView::Subscription(sub) = view {
                evolve_subscription(sub, &domain);
            }
            return;
        }
        if !matches!(view, OrderSyncView::Account(_)) {
            *view = OrderSyncView::Account(OrderAccountView::default());
        }
        if let OrderSyncView::Account(account) = view {
            evolve_account(account, event, &domain);
        }
    }

    fn decide(view: &OrderSyncView, event: &RecordedEvent, now: DateTime<Utc>) -> Decision {
        let Some(stream) = EntityStream::parse(&event.stream_id) else {
            return Decision::none();
        };
        let cause = Cause::of(event);
        let domain = match event.decode() {
            Ok(domain) => domain,
            Err(e) if stream.entity != entity::ACCOUNT => {
                let mut failed = undecodable(PROJECTION, &cause, now, e.to_string());
                if let Some(account) = event.payload.get("account_id") {
                    failed.payload[ACCOUNT_ROUTE] = account.clone();
                }
                return Decision::outcome(failed);
            }
            // Account events are account sync's to report.
            Err(_) => return Decision::none(),
        };
        let empty_account = OrderAccountView::default();
        let empty_sub = SubscriptionView::default();
        if stream.is(Side::Billing, entity::SUBSCRIPTION) {
            let sub = match view {
                OrderSyncView::Subscription(s) => s,
                _ => &empty_sub,
            };
            return decide_subscription(sub, stream.id, &domain, &cause, now);
        }
        let account = match view {
            OrderSyncView::Account(a) => a,
            _ => &empty_account,
        };
        let account_id = match stream.entity {
            entity::ACCOUNT => stream.id.to_string(),
            _ => event
                .payload
                .get("account_id")
                .or_else(|| event.payload.get(ACCOUNT_ROUTE))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        if let Some((change, order)) = order_change(&domain) {
            return decide_order(account, change, order, &cause, now);
        }
        match &domain {
            DomainEvent::OrderSynced(outcome) if !outcome.mirror => {
                after_create(account, &account_id, outcome, &cause)
            }
            _ => release_waiting(account, &account_id, &domain, event),
        }
    }
}

/// The Billing account a CRM account event reveals, if any.
fn revealed_link(domain: &DomainEvent) -> Option<&str> {
    match domain {
        DomainEvent::CrmAccountUpserted(a) => a.billing_account_id.as_deref(),
        DomainEvent::AccountSynced(o) => o.billing_id.as_deref(),
        _ => None,
    }
}

fn evolve_account(view: &mut OrderAccountView, event: &RecordedEvent, domain: &DomainEvent) {
    if let Some((change, order)) = order_change(domain) {
        let reaction = react_order(view, change, order);
        let snapshot = OrderSnapshot::of(order, change == OrderChange::Cancelled);
        let state = view.orders.entry(order.order_id.clone()).or_default();
        match reaction {
            OrderReaction::Create(_) => state.creating = Some(event.event_id),
            OrderReaction::WaitForLink => state.waiting = Some(Cause::of(event)),
            OrderReaction::DropWaiting => state.waiting = None,
            OrderReaction::WaitForCreate
            | OrderReaction::Amend(_)
            | OrderReaction::Cancel(_)
            | OrderReaction::Echo(_)
            | OrderReaction::NoChange => {}
        }
        state.last_seen = Some(snapshot);
        state.pending_echo_status = None;
        return;
    }
    match domain {
        DomainEvent::OrderSynced(outcome) => {
            let Some(order_id) = &outcome.crm_id else {
                return;
            };
            let state = view.orders.entry(order_id.clone()).or_default();
            if let Some(sub) = &outcome.billing_id {
                state.subscription = Some(sub.clone());
            }
            if outcome.direction == BILLING_TO_CRM {
                state.pending_echo_status = written_status(outcome);
            } else if !outcome.mirror {
                // Whichever order event it was keyed by: the subscription exists now.
                if outcome.action == "created" {
                    state.creating = None;
                    state.waiting = None;
                }
                if let Some(synced) = Synced::from_outcome(outcome) {
                    state.synced = Some(synced);
                }
            }
        }
        DomainEvent::SyncFailed(failed)
            if failed.extra.get("step") == Some(&json!(CREATE_STEP)) =>
        {
            let order = failed.extra.get(ORDER_FIELD).and_then(Value::as_str);
            if let Some(state) = order.and_then(|o| view.orders.get_mut(o)) {
                state.creating = None;
            }
        }
        other => {
            if let Some(link) = revealed_link(other) {
                if view.billing_account.as_deref() != Some(link) {
                    view.billing_account = Some(link.to_string());
                    // Mirrors `release_waiting`: every waiting order is now being created.
                    for state in view.orders.values_mut() {
                        if let Some(waiting) = state.waiting.take() {
                            if state.subscription.is_none() {
                                state.creating = Some(waiting.event_id);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn written_status(outcome: &SyncOutcome) -> Option<String> {
    outcome
        .written
        .as_ref()
        .and_then(|w| w.get("status"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn route(account_id: &str) -> Extra {
    let mut extra = Extra::new();
    extra.insert(ACCOUNT_ROUTE.into(), Value::String(account_id.to_string()));
    extra
}

fn decide_order(
    view: &OrderAccountView,
    change: OrderChange,
    order: &CrmOrder,
    cause: &Cause,
    now: DateTime<Utc>,
) -> Decision {
    let notes = Notes::new(PROJECTION, cause, now).with(route(&order.account_id));
    let snapshot = OrderSnapshot::of(order, change == OrderChange::Cancelled);
    match react_order(view, change, order) {
        OrderReaction::Echo(reason) => notes.echo(reason),
        OrderReaction::NoChange | OrderReaction::DropWaiting => Decision::none(),
        OrderReaction::WaitForLink => notes.deferred(
            "the order's account has no Billing account yet",
            format!("account-link:crm:{}", order.account_id),
        ),
        OrderReaction::WaitForCreate => {
            let creating = view
                .orders
                .get(&order.order_id)
                .and_then(|s| s.creating)
                .map(|id| id.to_string())
                .unwrap_or_default();
            notes.deferred(
                "the order's subscription is being created",
                format!("subscription-create:{creating}"),
            )
        }
        OrderReaction::Create(billing) => Decision::command(create_subscription(
            cause,
            &billing,
            &order.order_id,
            &order.account_id,
            &snapshot,
            None,
        )),
        OrderReaction::Amend(sub) => Decision::command(amend_subscription(
            cause,
            &sub,
            &order.order_id,
            &order.account_id,
            &snapshot,
        )),
        OrderReaction::Cancel(sub) => Decision::command(cancel_subscription(
            cause,
            &sub,
            &order.order_id,
            &order.account_id,
            &snapshot,
        )),
    }
}

/// The link just became known: every waiting order goes out, keyed by its own order event
/// so a redrive of either event cannot create a second subscription.
fn release_waiting(
    view: &OrderAccountView,
    account_id: &str,
    domain: &DomainEvent,
    event: &RecordedEvent,
) -> Decision {
    let Some(link) = revealed_link(domain) else {
        return Decision::none();
    };
    if view.billing_account.as_deref() == Some(link) {
        return Decision::none();
    }
    let mut decision = Decision::none();
    for (order_id, state) in &view.orders {
        let (Some(waiting), Some(snapshot), None) =
            (&state.waiting, &state.last_seen, &state.subscription)
        else {
            continue;
        };
        decision.commands.push(create_subscription(
            waiting,
            link,
            order_id,
            account_id,
            snapshot,
            Some(event.event_id),
        ));
    }
    decision
}

/// A subscription was created: send what changed on the order while it was in flight
/// (compared with what the create wrote, so it does not matter which event it was keyed by).
fn after_create(
    view: &OrderAccountView,
    account_id: &str,
    outcome: &SyncOutcome,
    cause: &Cause,
) -> Decision {
    let (Some(order_id), Some(sub)) = (&outcome.crm_id, &outcome.billing_id) else {
        return Decision::none();
    };
    if outcome.action != "created" {
        return Decision::none();
    }
    let (Some(latest), Some(sent)) = (
        view.orders.get(order_id).and_then(|s| s.last_seen.as_ref()),
        Synced::from_outcome(outcome),
    ) else {
        return Decision::none();
    };
    if sent.matches(latest) {
        Decision::none()
    } else if latest.cancelled {
        Decision::command(cancel_subscription(
            cause, sub, order_id, account_id, latest,
        ))
    } else {
        Decision::command(amend_subscription(cause, sub, order_id, account_id, latest))
    }
}

fn order_outcome(
    cause: &Cause,
    direction: &str,
    (action_created, action_existing): (&str, &str),
    crm_order: &str,
    account_id: &str,
    subscription: Option<&str>,
    written: Value,
) -> PendingOutcome {
    PendingOutcome {
        kind: OutcomeKind::OrderSynced,
        projection: PROJECTION.into(),
        direction: direction.into(),
        action_created: action_created.into(),
        action_existing: action_existing.into(),
        crm_id: Some(crm_order.to_string()),
        billing_id: subscription.map(str::to_string),
        target_side: Side::Billing,
        target_entity: Some(entity::SUBSCRIPTION.into()),
        written,
        extra: {
            let mut extra = route(account_id);
            extra.insert(ORDER_FIELD.into(), Value::String(crm_order.to_string()));
            extra
        },
        stream: cause.stream_id.clone(),
    }
}

fn create_subscription(
    cause: &Cause,
    billing_account: &str,
    order_id: &str,
    account_id: &str,
    order: &OrderSnapshot,
    unblocked_by: Option<EventId>,
) -> Command {
    let mut on_success = order_outcome(
        cause,
        CRM_TO_BILLING,
        ("created", "created"),
        order_id,
        account_id,
        None,
        json!({"status": "Active", "lines": order.lines}),
    );
    if let Some(unblocked_by) = unblocked_by {
        on_success.extra.insert(
            "unblocked_by".into(),
            Value::String(unblocked_by.to_string()),
        );
    }
    Command {
        meta: CommandMeta::new(cause, CREATE_STEP),
        call: Call::Billing(BillingCommand::CreateSubscription {
            billing_account_id: billing_account.to_string(),
            crm_order_id: order_id.to_string(),
            order_number: order.order_number.clone(),
            term_start_date: order.effective_date.clone(),
            currency: order.currency.clone(),
            lines: order.lines.clone(),
        }),
        on_success,
    }
}

fn amend_subscription(
    cause: &Cause,
    subscription: &str,
    order_id: &str,
    account_id: &str,
    order: &OrderSnapshot,
) -> Command {
    Command {
        meta: CommandMeta::new(cause, "billing-amend-subscription"),
        call: Call::Billing(BillingCommand::AmendSubscription {
            subscription_id: subscription.to_string(),
            crm_order_id: order_id.to_string(),
            effective_date: order.effective_date.clone(),
            currency: order.currency.clone(),
            lines: order.lines.clone(),
        }),
        on_success: order_outcome(
            cause,
            CRM_TO_BILLING,
            ("amended", "amended"),
            order_id,
            account_id,
            Some(subscription),
            json!({"status": "Active", "lines": order.lines}),
        ),
    }
}

fn cancel_subscription(
    cause: &Cause,
    subscription: &str,
    order_id: &str,
    account_id: &str,
    order: &OrderSnapshot,
) -> Command {
    Command {
        meta: CommandMeta::new(cause, "billing-cancel-subscription"),
        call: Call::Billing(BillingCommand::CancelSubscription {
            subscription_id: subscription.to_string(),
            crm_order_id: order_id.to_string(),
            effective_date: order.effective_date.clone(),
        }),
        on_success: order_outcome(
            cause,
            CRM_TO_BILLING,
            ("cancelled", "cancelled"),
            order_id,
            account_id,
            Some(subscription),
            json!({"status": "Cancelled"}),
        ),
    }
}

fn evolve_subscription(view: &mut SubscriptionView, domain: &DomainEvent) {
    if let Some(sub) = subscription_change(domain) {
        if let Some(order) = &sub.crm_order_id {
            view.crm_order = Some(order.clone());
        }
        view.status = Some(sub.status.clone());
        view.pending_echo_status = None;
        return;
    }
    if let DomainEvent::OrderSynced(outcome) = domain {
        if let Some(order) = &outcome.crm_id {
            view.crm_order = Some(order.clone());
        }
        if let Some(account) = outcome.extra.get(ACCOUNT_ROUTE).and_then(Value::as_str) {
            view.crm_account = Some(account.to_string());
        }
        if outcome.direction == CRM_TO_BILLING {
            view.pending_echo_status = written_status(outcome);
        }
    }
}

fn decide_subscription(
    view: &SubscriptionView,
    number: &str,
    domain: &DomainEvent,
    cause: &Cause,
    now: DateTime<Utc>,
) -> Decision {
    let Some(sub) = subscription_change(domain) else {
        return Decision::none();
    };
    let notes = Notes::new(PROJECTION, cause, now);
    let awaiting = view.pending_echo_status.is_some();
    if origin_proves_echo(sub.origin.as_deref(), awaiting, view.status.is_none()) {
        return notes.echo("the change carries our origin marker");
    }
    if view.pending_echo_status.as_deref() == Some(sub.status.as_str()) {
        return notes.echo("the values equal what we last wrote");
    }
    if view.status.as_deref() == Some(sub.status.as_str()) {
        return Decision::none();
    }
    // A subscription not made from a CRM order has no CRM order to update.
    let Some(order_id) = sub.crm_order_id.clone().or_else(|| view.crm_order.clone()) else {
        return Decision::none();
    };
    let status = crm_status(&sub.status);
    let mut on_success = PendingOutcome {
        kind: OutcomeKind::OrderSynced,
        projection: PROJECTION.into(),
        direction: BILLING_TO_CRM.into(),
        action_created: "status-updated".into(),
        action_existing: "status-updated".into(),
        crm_id: None,
        billing_id: Some(number.to_string()),
        target_side: Side::Crm,
        // The mirror on the order stream must name the account it routes by.
        target_entity: view.crm_account.as_ref().map(|_| entity::ORDER.into()),
        written: json!({ "status": status }),
        extra: Extra::new(),
        stream: cause.stream_id.clone(),
    };
    if let Some(account) = &view.crm_account {
        on_success = PendingOutcome {
            extra: route(account),
            ..on_success
        };
    }
    Decision::command(Command {
        meta: CommandMeta::new(cause, "crm-update-order-status"),
        call: Call::Crm(CrmCommand::UpdateOrderStatus { order_id, status }),
        on_success,
    })
}
