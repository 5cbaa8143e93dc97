//! A pure, single-threaded stand-in for the projector shell and the two external systems:
//! it feeds every recorded event to the projections in log order, executes their commands
//! against in-memory CRM/Billing fakes that emit the events a real system would (including
//! the echo of our own writes), and appends the outcomes through `commands::complete`.
//! The fakes honour idempotency keys and external-id upserts like the sandbox does.
#![allow(dead_code)]

use super::{billing_account, crm_account, t0, Inbound, Log};
use projections::account_sync::{AccountSync, AccountView};
use projections::catalogue::{BillingSubscription, CrmOrder};
use projections::commands::{
    complete, BillingCommand, Call, CallResult, Command, CrmAccountTarget, CrmCommand,
};
use projections::correlation_view::{CorrelationView, LinkItem};
use projections::order_sync::{OrderSync, OrderSyncView};
use projections::product_sync::{ProductSync, ProductSyncView};
use projections::Decision;
use projections::{DomainEvent, Handled, RecordedEvent, Source, Views};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct FakeAccount {
    pub name: String,
    pub linked_id: Option<String>,
}

#[derive(Default)]
pub struct Fakes {
    pub billing_accounts: BTreeMap<String, FakeAccount>,
    pub crm_accounts: BTreeMap<String, FakeAccount>,
    /// Subscriptions by number, with the CRM order they were made from.
    pub subscriptions: BTreeMap<String, BillingSubscription>,
    pub crm_orders: BTreeMap<String, CrmOrder>,
    /// CRM Product2 by `Billing_Product_Id__c`: (record id, the upsert call).
    pub crm_products: BTreeMap<String, (String, CrmCommand)>,
    /// CRM PricebookEntry by external id: (record id, the upsert call).
    pub crm_pricebook: BTreeMap<String, (String, CrmCommand)>,
    pub calls: Vec<Command>,
    /// Replies already given per idempotency key (Billing `Idempotency-Key` semantics).
    replies: BTreeMap<String, CallResult>,
    /// When false, echoes come back without the origin marker (a system that cannot carry it).
    pub echo_carries_origin: bool,
    /// Steps (`billing-create-account`, ...) that fail permanently once.
    pub fail_once: Vec<String>,
    next_id: u32,
}

pub type Emitted = Vec<(String, Source, DomainEvent)>;

impl Fakes {
    fn origin(&self) -> Option<&'static str> {
        self.echo_carries_origin
            .then_some(projections::commands::ORIGIN)
    }

    pub fn execute(&mut self, command: &Command) -> (CallResult, Emitted) {
        self.calls.push(command.clone());
        if let Some(reply) = self.replies.get(&command.meta.idempotency_key) {
            return (reply.clone(), Vec::new());
        }
        if let Some(i) = self.fail_once.iter().position(|s| *s == command.meta.step) {
            self.fail_once.remove(i);
            return (
                CallResult::Failed {
                    reason: "INVALID_VALUE: currency".into(),
                    attempts: 1,
                },
                Vec::new(),
            );
        }
        let origin = self.origin();
        let (result, emitted) = match &command.call {
            Call::Billing(BillingCommand::CreateAccount {
                crm_account_id,
                name,
                ..
            }) => {
                self.next_id += 1;
                let id = format!("8a8b{:04}", self.next_id);
                self.billing_accounts.insert(
                    id.clone(),
                    FakeAccount {
                        name: name.clone(),
                        linked_id: Some(crm_account_id.clone()),
                    },
                );
                let event = DomainEvent::BillingAccountCreated(billing_account(
                    &id,
                    name,
                    Some(crm_account_id),
                    origin,
                ));
                (
                    CallResult::Succeeded {
                        id: id.clone(),
                        created: true,
                    },
                    vec![(format!("billing-account-{id}"), Source::Billing, event)],
                )
            }
            Call::Billing(BillingCommand::UpdateAccount {
                billing_account_id,
                crm_account_id,
                name,
                ..
            }) => {
                let account = FakeAccount {
                    name: name.clone(),
                    linked_id: Some(crm_account_id.clone()),
                };
                self.billing_accounts
                    .insert(billing_account_id.clone(), account);
                let event = DomainEvent::BillingAccountUpdated(billing_account(
                    billing_account_id,
                    name,
                    Some(crm_account_id),
                    origin,
                ));
                (
                    CallResult::Succeeded {
                        id: billing_account_id.clone(),
                        created: false,
                    },
                    vec![(
                        format!("billing-account-{billing_account_id}"),
                        Source::Billing,
                        event,
                    )],
                )
            }
            Call::Crm(CrmCommand::UpsertAccount {
                target,
                billing_account_id,
                name,
                ..
            }) => {
                let existing = match target {
                    CrmAccountTarget::RecordId(id) => Some(id.clone()),
                    CrmAccountTarget::BillingAccountId => self
                        .crm_accounts
                        .iter()
                        .find(|(_, a)| a.linked_id.as_deref() == Some(billing_account_id))
                        .map(|(id, _)| id.clone()),
                };
                let created = existing.is_none();
                let id = existing.unwrap_or_else(|| {
                    self.next_id += 1;
                    format!("001Dn{:04}", self.next_id)
                });
                self.crm_accounts.insert(
                    id.clone(),
                    FakeAccount {
                        name: name.clone(),
                        linked_id: Some(billing_account_id.clone()),
                    },
                );
                let event = crm_account(&id, name, Some(billing_account_id), origin);
                (
                    CallResult::Succeeded {
                        id: id.clone(),
                        created,
                    },
                    vec![(format!("crm-account-{id}"), Source::Crm, event)],
                )
            }
            Call::Billing(BillingCommand::CreateSubscription {
                billing_account_id,
                crm_order_id,
                ..
            }) => {
                self.next_id += 1;
                let number = format!("A-S{:05}", self.next_id);
                let sub = BillingSubscription {
                    subscription_id: format!("2c92sub{}", self.next_id),
                    subscription_number: Some(number.clone()),
                    account_id: billing_account_id.clone(),
                    status: "Active".into(),
                    term_start_date: None,
                    crm_order_id: Some(crm_order_id.clone()),
                    rate_plans: Vec::new(),
                    origin: origin.map(Into::into),
                    extra: Default::default(),
                };
                self.subscriptions.insert(number.clone(), sub.clone());
                (
                    CallResult::Succeeded {
                        id: number.clone(),
                        created: true,
                    },
                    vec![(
                        format!("billing-subscription-{number}"),
                        Source::Billing,
                        DomainEvent::BillingSubscriptionCreated(sub),
                    )],
                )
            }
            Call::Billing(BillingCommand::AmendSubscription {
                subscription_id, ..
            })
            | Call::Billing(BillingCommand::CancelSubscription {
                subscription_id, ..
            }) => {
                let cancel = matches!(
                    &command.call,
                    Call::Billing(BillingCommand::CancelSubscription { .. })
                );
                let sub = self
                    .subscriptions
                    .get_mut(subscription_id)
                    .expect("amend/cancel of a known subscription");
                sub.status = if cancel { "Cancelled" } else { "Active" }.into();
                sub.origin = origin.map(Into::into);
                let sub = sub.clone();
                let event = if cancel {
                    DomainEvent::BillingSubscriptionCancelled(sub)
                } else {
                    DomainEvent::BillingSubscriptionAmended(sub)
                };
                (
                    CallResult::Succeeded {
                        id: subscription_id.clone(),
                        created: false,
                    },
                    vec![(
                        format!("billing-subscription-{subscription_id}"),
                        Source::Billing,
                        event,
                    )],
                )
            }
            Call::Crm(CrmCommand::UpdateOrderStatus { order_id, status }) => {
                let order = self
                    .crm_orders
                    .get_mut(order_id)
                    .expect("status update of a known order");
                order.status = status.clone();
                order.origin = origin.map(Into::into);
                let order = order.clone();
                let event = if status == "Cancelled" {
                    DomainEvent::CrmOrderCancelled(order)
                } else {
                    DomainEvent::CrmOrderAmended(order)
                };
                (
                    CallResult::Succeeded {
                        id: order_id.clone(),
                        created: false,
                    },
                    vec![(format!("crm-order-{order_id}"), Source::Crm, event)],
                )
            }
            Call::Crm(
                upsert @ CrmCommand::UpsertProduct {
                    billing_product_id, ..
                },
            ) => {
                let existing = self
                    .crm_products
                    .get(billing_product_id)
                    .map(|(id, _)| id.clone());
                let created = existing.is_none();
                let id = existing.unwrap_or_else(|| {
                    self.next_id += 1;
                    format!("01tDn{:04}", self.next_id)
                });
                self.crm_products
                    .insert(billing_product_id.clone(), (id.clone(), upsert.clone()));
                (CallResult::Succeeded { id, created }, Vec::new())
            }
            Call::Crm(upsert @ CrmCommand::UpsertPricebookEntry { external_id, .. }) => {
                let existing = self
                    .crm_pricebook
                    .get(external_id)
                    .map(|(id, _)| id.clone());
                let created = existing.is_none();
                let id = existing.unwrap_or_else(|| {
                    self.next_id += 1;
                    format!("01uDn{:04}", self.next_id)
                });
                self.crm_pricebook
                    .insert(external_id.clone(), (id.clone(), upsert.clone()));
                (CallResult::Succeeded { id, created }, Vec::new())
            }
        };
        self.replies
            .insert(command.meta.idempotency_key.clone(), result.clone());
        (result, emitted)
    }
}

impl Inbound for World {
    fn record(&mut self, stream: &str, source: Source, event: DomainEvent) -> RecordedEvent {
        self.user_changes(stream, source, event)
    }
}

/// The log, the views and the fakes, driven to quiescence by `run`.
#[derive(Default)]
pub struct World {
    pub log: Log,
    pub accounts: Views<AccountView>,
    pub links: Views<LinkItem>,
    pub orders: Views<OrderSyncView>,
    pub products: Views<ProductSyncView>,
    pub fakes: Fakes,
    /// When true the system's echo is recorded before our outcome (the ingest path won).
    pub echo_before_outcome: bool,
    cursor: usize,
}

impl World {
    pub fn new() -> Self {
        let mut world = Self::default();
        world.fakes.echo_carries_origin = true;
        world
    }

    /// A world in which CRM account `id` was saved and synced (so it is linked to Billing).
    pub fn with_synced_account(id: &str, name: &str) -> Self {
        let mut world = Self::new();
        world.crm_account_saved(id, name);
        world.run();
        world
    }

    /// A user change in one of the systems (the fakes learn it too).
    pub fn user_changes(
        &mut self,
        stream: &str,
        source: Source,
        event: DomainEvent,
    ) -> RecordedEvent {
        match &event {
            DomainEvent::CrmAccountUpserted(a) => {
                self.fakes.crm_accounts.insert(
                    a.account_id.clone(),
                    FakeAccount {
                        name: a.name.clone(),
                        linked_id: a.billing_account_id.clone(),
                    },
                );
            }
            DomainEvent::BillingAccountCreated(a) | DomainEvent::BillingAccountUpdated(a) => {
                self.fakes.billing_accounts.insert(
                    a.account_id.clone(),
                    FakeAccount {
                        name: a.name.clone(),
                        linked_id: a.crm_id.clone(),
                    },
                );
            }
            DomainEvent::CrmOrderActivated(o)
            | DomainEvent::CrmOrderAmended(o)
            | DomainEvent::CrmOrderCancelled(o) => {
                self.fakes.crm_orders.insert(o.order_id.clone(), o.clone());
            }
            DomainEvent::BillingSubscriptionCreated(s)
            | DomainEvent::BillingSubscriptionAmended(s)
            | DomainEvent::BillingSubscriptionCancelled(s) => {
                let number = s.subscription_number.clone().unwrap_or_default();
                self.fakes.subscriptions.insert(number, s.clone());
            }
            _ => {}
        }
        self.log.inbound(stream, source, event)
    }

    /// Process everything recorded so far and everything that causes, in log order.
    pub fn run(&mut self) {
        while self.cursor < self.log.events.len() {
            assert!(self.cursor < 500, "the sync does not settle (ping-pong?)");
            let event = self.log.events[self.cursor].clone();
            self.cursor += 1;
            self.links.apply::<CorrelationView>(&event);
            let decisions = [
                self.accounts.handle::<AccountSync>(&event, t0()),
                self.orders.handle::<OrderSync>(&event, t0()),
                self.products.handle::<ProductSync>(&event, t0()),
            ];
            for handled in decisions.into_iter().flatten() {
                let Handled::Decided(decision) = handled else {
                    panic!("in-order delivery never gaps or repeats: {handled:?}");
                };
                self.execute(decision);
            }
        }
    }

    fn execute(&mut self, decision: Decision) {
        for outcome in decision.outcomes {
            self.log.append(outcome);
        }
        for command in decision.commands {
            let (result, emitted) = self.fakes.execute(&command);
            let outcomes = complete(&command, &result, t0());
            if !self.echo_before_outcome {
                for outcome in outcomes.iter().cloned() {
                    self.log.append(outcome);
                }
            }
            for (stream, source, event) in emitted {
                self.log.inbound(&stream, source, event);
            }
            if self.echo_before_outcome {
                for outcome in outcomes {
                    self.log.append(outcome);
                }
            }
        }
    }
}
