//! Account sync, both ways: a CRM account change creates/updates the linked Billing account
//! (with the CRM id stored on it), a Billing account change upserts the CRM account (with the
//! Billing id stored on it). Pure fold + decisions; one view item per account per side.
//!
//! Each item folds one account stream (`crm-account-<id>` or `billing-account-<id>`): the
//! inbound changes and the outcomes recorded there, including the mirrors of writes made to
//! this account from the other side, which is how an item knows its link and its echo.

use crate::catalogue::{
    AccountObserved, BillingAccount, CrmAccountUpserted, DomainEvent, SyncOutcome,
};
use crate::commands::{
    origin_proves_echo, undecodable, BillingCommand, Call, Cause, Command, CommandMeta,
    CrmAccountTarget, CrmCommand, Notes, OutcomeKind, PendingOutcome,
};
use crate::envelope::RecordedEvent;
use crate::ids::EventId;
use crate::projection::{entity, Decision, EntityStream, Projection, Side};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const PROJECTION: &str = "account";
pub const CRM_TO_BILLING: &str = "crm->billing";
pub const BILLING_TO_CRM: &str = "billing->crm";

/// The synced fields of an account as one side holds them. `linked_id` is the other side's
/// id stored on the record (`Billing_Account_Id__c` in CRM, `CrmId` in Billing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFields {
    pub name: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub linked_id: Option<String>,
}

impl AccountFields {
    /// Whether an inbound change shows exactly what we wrote (a source may omit the link).
    fn echoes(&self, written: &AccountFields) -> bool {
        self.name == written.name
            && self.currency == written.currency
            && (self.linked_id.is_none() || self.linked_id == written.linked_id)
    }
}

/// The state of one account on one side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    /// The other side's id, once known.
    pub link: Option<String>,
    /// The synced fields as this side last reported them.
    pub last_seen: Option<AccountFields>,
    /// What we last wrote to this account and have not yet seen come back.
    pub pending_echo: Option<AccountFields>,
    /// A Billing account is being created for this CRM account by this event (CRM side):
    /// later changes wait for it instead of creating a second one.
    pub creating: Option<EventId>,
    /// A change arrived while `creating`: send the latest values once the create finishes.
    pub resync_after_create: bool,
}

/// What an inbound change of one side leads to.
#[derive(Debug, Clone, PartialEq)]
enum Reaction {
    Echo(&'static str),
    NoChange,
    Defer(EventId),
    CreateBilling,
    UpdateBilling(String),
    UpsertCrm(CrmAccountTarget),
}

/// An inbound account change, reduced to what sync needs.
struct Inbound {
    side: Side,
    id: String,
    fields: AccountFields,
    origin: Option<String>,
    /// A reconciliation observed this state and found the other side differs: act on it
    /// even when it equals what this side last reported (never an echo, never "no change").
    observed: bool,
    /// The view's link points at a record that no longer exists: do not write to it.
    forget_link: bool,
    /// Both sides already agree (a reconciliation found the pair unlinked only): learn the
    /// link and the values, call nothing.
    adopt: bool,
}

fn inbound(event: &RecordedEvent, domain: &DomainEvent) -> Option<Inbound> {
    let stream = EntityStream::parse(&event.stream_id)?;
    match domain {
        DomainEvent::CrmAccountUpserted(CrmAccountUpserted {
            account_id,
            name,
            billing_account_id,
            currency,
            origin,
            ..
        }) if stream.is(Side::Crm, entity::ACCOUNT) => Some(Inbound {
            side: Side::Crm,
            id: account_id.clone(),
            fields: AccountFields {
                name: name.clone(),
                currency: currency.clone(),
                linked_id: billing_account_id.clone(),
            },
            origin: origin.clone(),
            observed: false,
            forget_link: false,
            adopt: false,
        }),
        DomainEvent::CrmAccountObserved(o) if stream.is(Side::Crm, entity::ACCOUNT) => {
            Some(observed(Side::Crm, o))
        }
        DomainEvent::BillingAccountObserved(o) if stream.is(Side::Billing, entity::ACCOUNT) => {
            Some(observed(Side::Billing, o))
        }
        DomainEvent::BillingAccountCreated(a) | DomainEvent::BillingAccountUpdated(a)
            if stream.is(Side::Billing, entity::ACCOUNT) =>
        {
            let BillingAccount {
                account_id,
                name,
                crm_id,
                currency,
                origin,
                ..
            } = a;
            Some(Inbound {
                side: Side::Billing,
                id: account_id.clone(),
                fields: AccountFields {
                    name: name.clone(),
                    currency: currency.clone(),
                    linked_id: crm_id.clone(),
                },
                origin: origin.clone(),
                observed: false,
                forget_link: false,
                adopt: false,
            })
        }
        _ => None,
    }
}

fn observed(side: Side, o: &AccountObserved) -> Inbound {
    Inbound {
        side,
        id: o.account_id.clone(),
        fields: AccountFields {
            name: o.name.clone(),
            currency: o.currency.clone(),
            linked_id: o.linked_id.clone(),
        },
        origin: None,
        observed: true,
        forget_link: o.forget_link,
        adopt: o.adopt,
    }
}

fn react(view: &AccountView, change: &Inbound) -> Reaction {
    let (awaiting, first_sight) = (view.pending_echo.is_some(), view.last_seen.is_none());
    if change.observed && change.adopt {
        return Reaction::NoChange;
    }
    if change.observed {
        return react_to_change(view, change);
    }
    if origin_proves_echo(change.origin.as_deref(), awaiting, first_sight) {
        return Reaction::Echo("the change carries our origin marker");
    }
    if let Some(written) = &view.pending_echo {
        if change.fields.echoes(written) {
            return Reaction::Echo("the values equal what we last wrote");
        }
    }
    if view.last_seen.as_ref() == Some(&change.fields) {
        return Reaction::NoChange;
    }
    react_to_change(view, change)
}

/// A real change of one side: write it to the other.
fn react_to_change(view: &AccountView, change: &Inbound) -> Reaction {
    // The record's own link field wins: it is what the source says now.
    let link = change
        .fields
        .linked_id
        .clone()
        .or_else(|| view.link.clone().filter(|_| !change.forget_link));
    match (change.side, link) {
        (Side::Crm, Some(billing_id)) => Reaction::UpdateBilling(billing_id),
        (Side::Crm, None) => match view.creating {
            Some(create) => Reaction::Defer(create),
            None => Reaction::CreateBilling,
        },
        (Side::Billing, Some(crm_id)) => Reaction::UpsertCrm(CrmAccountTarget::RecordId(crm_id)),
        (Side::Billing, None) => Reaction::UpsertCrm(CrmAccountTarget::BillingAccountId),
    }
}

/// Account sync over both sides' account streams.
pub struct AccountSync;

impl Projection for AccountSync {
    type State = AccountView;
    const NAME: &'static str = "account-sync";

    fn key(event: &RecordedEvent) -> Option<String> {
        let stream = EntityStream::parse(&event.stream_id)?;
        (stream.entity == entity::ACCOUNT)
            .then(|| format!("{}#{}", stream.side.as_str(), stream.id))
    }

    fn evolve(view: &mut AccountView, event: &RecordedEvent) {
        let Ok(domain) = event.decode() else { return };
        if let Some(change) = inbound(event, &domain) {
            match react(view, &change) {
                Reaction::CreateBilling => view.creating = Some(event.event_id),
                Reaction::Defer(_) => view.resync_after_create = true,
                _ => {}
            }
            if change.forget_link {
                view.link = None;
            }
            if let Some(linked) = &change.fields.linked_id {
                view.link = Some(linked.clone());
            }
            view.last_seen = Some(change.fields);
            view.pending_echo = None;
            return;
        }
        let Some(side) = EntityStream::parse(&event.stream_id).map(|s| s.side) else {
            return;
        };
        match &domain {
            DomainEvent::AccountSynced(outcome) => {
                let other = match side {
                    Side::Crm => &outcome.billing_id,
                    Side::Billing => &outcome.crm_id,
                };
                if let Some(other) = other {
                    view.link = Some(other.clone());
                }
                if target_side(outcome) == Some(side) {
                    view.pending_echo = outcome
                        .written
                        .clone()
                        .and_then(|w| serde_json::from_value(w).ok());
                }
                if !outcome.mirror && view.creating.is_some() && view.creating == event.causation_id
                {
                    view.creating = None;
                    view.resync_after_create = false;
                }
            }
            DomainEvent::SyncFailed(_)
                if view.creating.is_some() && view.creating == event.causation_id =>
            {
                // Mirrors `decide`: a change that waited on the failed create retries it.
                view.creating = view.resync_after_create.then_some(event.event_id);
                view.resync_after_create = false;
            }
            _ => {}
        }
    }

    fn decide(view: &AccountView, event: &RecordedEvent, now: DateTime<Utc>) -> Decision {
        let cause = Cause::of(event);
        let domain = match event.decode() {
            Ok(domain) => domain,
            Err(e) if AccountSync::key(event).is_some() => {
                return Decision::outcome(undecodable(PROJECTION, &cause, now, e.to_string()))
            }
            Err(_) => return Decision::none(),
        };
        if let Some(change) = inbound(event, &domain) {
            return decide_inbound(view, &change, &cause, now);
        }
        let Some(side) = EntityStream::parse(&event.stream_id).map(|s| s.side) else {
            return Decision::none();
        };
        match &domain {
            DomainEvent::AccountSynced(outcome) if !outcome.mirror => {
                after_sync(view, side, outcome, event, &cause)
            }
            DomainEvent::SyncFailed(_)
                if view.creating.is_some()
                    && view.creating == event.causation_id
                    && view.resync_after_create =>
            {
                match (&view.last_seen, side) {
                    (Some(fields), Side::Crm) => {
                        Decision::command(create_billing(&cause, crm_id_of(event), fields))
                    }
                    _ => Decision::none(),
                }
            }
            _ => Decision::none(),
        }
    }
}

fn crm_id_of(event: &RecordedEvent) -> &str {
    EntityStream::parse(&event.stream_id).map_or("", |s| s.id)
}

fn target_side(outcome: &SyncOutcome) -> Option<Side> {
    match outcome.direction.as_str() {
        CRM_TO_BILLING => Some(Side::Billing),
        BILLING_TO_CRM => Some(Side::Crm),
        _ => None,
    }
}

fn decide_inbound(
    view: &AccountView,
    change: &Inbound,
    cause: &Cause,
    now: DateTime<Utc>,
) -> Decision {
    let notes = Notes::new(PROJECTION, cause, now);
    match react(view, change) {
        Reaction::Echo(reason) => notes.echo(reason),
        Reaction::NoChange => Decision::none(),
        Reaction::Defer(create) => notes.deferred(
            "a Billing account is being created for this CRM account",
            format!("billing-account-create:{create}"),
        ),
        Reaction::CreateBilling => {
            Decision::command(create_billing(cause, &change.id, &change.fields))
        }
        Reaction::UpdateBilling(billing_id) => Decision::command(update_billing(
            cause,
            "billing-update-account",
            "updated",
            &billing_id,
            &change.id,
            &change.fields,
        )),
        Reaction::UpsertCrm(target) => {
            let crm_id = match &target {
                CrmAccountTarget::RecordId(id) => Some(id.clone()),
                CrmAccountTarget::BillingAccountId => None,
            };
            Decision::command(upsert_crm(
                cause,
                "crm-upsert-account",
                ("created", "updated"),
                target,
                crm_id,
                &change.id,
                &change.fields,
            ))
        }
    }
}

/// Follow-ups to our own sync outcomes: store the new id on the originating record, and send
/// changes that arrived while the Billing account was being created.
fn after_sync(
    view: &AccountView,
    side: Side,
    outcome: &SyncOutcome,
    event: &RecordedEvent,
    cause: &Cause,
) -> Decision {
    let Some(seen) = &view.last_seen else {
        return Decision::none();
    };
    let own_id = crm_id_of(event).to_string();
    let mut decision = Decision::none();
    match (
        side,
        outcome.direction.as_str(),
        &outcome.billing_id,
        &outcome.crm_id,
    ) {
        (Side::Crm, CRM_TO_BILLING, Some(billing_id), _) if outcome.action == "created" => {
            decision.commands.push(upsert_crm(
                cause,
                "crm-link-account",
                ("linked", "linked"),
                CrmAccountTarget::RecordId(own_id.clone()),
                Some(own_id.clone()),
                billing_id,
                seen,
            ));
            let created: Option<AccountFields> = outcome
                .written
                .clone()
                .and_then(|w| serde_json::from_value(w).ok());
            let changed_meanwhile =
                created.is_some_and(|c| c.name != seen.name || c.currency != seen.currency);
            if view.resync_after_create && changed_meanwhile {
                decision.commands.push(update_billing(
                    cause,
                    "billing-update-account",
                    "updated",
                    billing_id,
                    &own_id,
                    seen,
                ));
            }
        }
        (Side::Billing, BILLING_TO_CRM, _, Some(crm_id))
            if seen.linked_id.as_deref() != Some(crm_id.as_str()) =>
        {
            decision.commands.push(update_billing(
                cause,
                "billing-link-account",
                "linked",
                &own_id,
                crm_id,
                seen,
            ));
        }
        _ => {}
    }
    decision
}

/// A write of `fields` to one side's account; `linked_id` is the other side's id it stores.
fn account_write(
    cause: &Cause,
    step: &str,
    call: Call,
    (action_created, action_existing): (&str, &str),
    (target_side, target_id): (Side, Option<String>),
    linked_id: &str,
    fields: &AccountFields,
) -> Command {
    let (direction, crm_id, billing_id) = match target_side {
        Side::Billing => (CRM_TO_BILLING, Some(linked_id.to_string()), target_id),
        Side::Crm => (BILLING_TO_CRM, target_id, Some(linked_id.to_string())),
    };
    let written = AccountFields {
        linked_id: Some(linked_id.to_string()),
        ..fields.clone()
    };
    Command {
        meta: CommandMeta::new(cause, step),
        call,
        on_success: PendingOutcome {
            kind: OutcomeKind::AccountSynced,
            projection: PROJECTION.into(),
            direction: direction.into(),
            action_created: action_created.into(),
            action_existing: action_existing.into(),
            crm_id,
            billing_id,
            target_side,
            target_entity: Some(entity::ACCOUNT.into()),
            written: serde_json::to_value(written).expect("account fields serialize"),
            extra: Default::default(),
            stream: cause.stream_id.clone(),
        },
    }
}

fn create_billing(cause: &Cause, crm_id: &str, fields: &AccountFields) -> Command {
    let call = Call::Billing(BillingCommand::CreateAccount {
        crm_account_id: crm_id.to_string(),
        name: fields.name.clone(),
        currency: fields.currency.clone(),
    });
    let actions = ("created", "created");
    account_write(
        cause,
        "billing-create-account",
        call,
        actions,
        (Side::Billing, None),
        crm_id,
        fields,
    )
}

fn update_billing(
    cause: &Cause,
    step: &str,
    action: &str,
    billing_id: &str,
    crm_id: &str,
    fields: &AccountFields,
) -> Command {
    let call = Call::Billing(BillingCommand::UpdateAccount {
        billing_account_id: billing_id.to_string(),
        crm_account_id: crm_id.to_string(),
        name: fields.name.clone(),
        currency: fields.currency.clone(),
    });
    let target = (Side::Billing, Some(billing_id.to_string()));
    account_write(cause, step, call, (action, action), target, crm_id, fields)
}

fn upsert_crm(
    cause: &Cause,
    step: &str,
    actions: (&str, &str),
    target: CrmAccountTarget,
    crm_id: Option<String>,
    billing_id: &str,
    fields: &AccountFields,
) -> Command {
    let call = Call::Crm(CrmCommand::UpsertAccount {
        target,
        billing_account_id: billing_id.to_string(),
        name: fields.name.clone(),
        currency: fields.currency.clone(),
    });
    account_write(
        cause,
        step,
        call,
        actions,
        (Side::Crm, crm_id),
        billing_id,
        fields,
    )
}
