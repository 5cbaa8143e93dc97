//! A pure, single-threaded stand-in for the projector shell and the two external systems:
//! it feeds every recorded event to the projections in log order, executes their commands
//! against in-memory CRM/Billing fakes that emit the events a real system would (including
//! the echo of our own writes), and appends the outcomes through `commands::complete`.
//! The fakes honour idempotency keys and external-id upserts like the sandbox does.
#![allow(dead_code)]

use super::{billing_account, crm_account, t0, Log};
use projections::account_sync::{AccountSync, AccountView};
use projections::commands::{
    complete, BillingCommand, Call, CallResult, Command, CrmAccountTarget, CrmCommand,
};
use projections::correlation_view::{CorrelationView, LinkItem};
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
            other => panic!("the account world does not model {other:?}"),
        };
        self.replies
            .insert(command.meta.idempotency_key.clone(), result.clone());
        (result, emitted)
    }
}

/// The log, the views and the fakes, driven to quiescence by `run`.
#[derive(Default)]
pub struct World {
    pub log: Log,
    pub accounts: Views<AccountView>,
    pub links: Views<LinkItem>,
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
            let Some(handled) = self.accounts.handle::<AccountSync>(&event, t0()) else {
                continue;
            };
            let Handled::Decided(decision) = handled else {
                panic!("in-order delivery never gaps or repeats: {handled:?}");
            };
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
}
