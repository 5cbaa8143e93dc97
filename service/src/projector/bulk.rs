//! Bulk CRM writes (issue 17 item 3): the CRM upserts by external id that the independent
//! streams of one batch decide on go out as sObject Collections calls, up to 200 records a
//! call, instead of one call each. This module groups the commands and holds their results
//! until the runner, applying each event in its usual order, asks for them; the runner then
//! records each result as that event's own outcome, exactly as after a single call.
//!
//! Only the first undecided event of each stream is gathered: a later event's decision
//! depends on the state the earlier one leaves. A result nobody asks for (the view changed
//! in between and the decision with it) is dropped; the runner then makes the call itself,
//! which repeats nothing because upserts by external id are idempotent.

use super::effects::{Effects, TransientCallFailure};
use super::runner::domain_item;
use crate::connectors::crm::COLLECTION_LIMIT;
use crate::views::{ViewKey, ViewStore};
use chrono::Utc;
use projections::commands::{Call, CallResult, Command, CrmAccountTarget, CrmCommand};
use projections::projection::{Handled, Projection};
use projections::RecordedEvent;
use std::collections::HashMap;
use std::sync::Mutex;

/// Decides, for the first event of each stream in `groups` (indices into `events`, each
/// stream's in version order) that is not applied yet, what it would call; when two or more
/// of those decisions consist only of collection upserts, makes them in bulk and answers the
/// results for the runner to take. Best effort: anything it cannot read or decide here it
/// leaves to the runner's per-event pass, which reports it properly.
pub async fn prefetch<P: Projection>(
    views: &dyn ViewStore,
    effects: &dyn Effects,
    events: &[RecordedEvent],
    groups: &[Vec<usize>],
) -> Prefetched {
    let mut commands = Vec::new();
    for group in groups {
        if let Some(decided) = first_decision::<P>(views, events, group).await {
            commands.extend(decided);
        }
    }
    if commands.len() < 2 {
        return Prefetched::default();
    }
    let results = effects.execute_many(&commands).await;
    tracing::info!(
        projection = P::NAME,
        records = commands.len(),
        "CRM upserts of independent streams made in bulk"
    );
    Prefetched::new(&commands, results)
}

/// The commands of the first undecided event of one stream, if all can go in collections.
async fn first_decision<P: Projection>(
    views: &dyn ViewStore,
    events: &[RecordedEvent],
    group: &[usize],
) -> Option<Vec<Command>> {
    let first = &events[*group.first()?];
    let key = P::key(first)?;
    let view_key = ViewKey::new(P::NAME, &key).ok()?;
    let stored = views.get(&view_key).await.ok()?;
    let mut item = domain_item::<P>(&key, stored.as_ref()).ok()?;
    for &i in group {
        match item.handle::<P>(&events[i], Utc::now()) {
            Handled::AlreadyApplied => continue,
            Handled::Gap { .. } => return None,
            Handled::Decided(decision) => {
                let bulkable = !decision.commands.is_empty()
                    && decision
                        .commands
                        .iter()
                        .all(|c| collection_sobject(&c.call).is_some());
                return bulkable.then_some(decision.commands);
            }
        }
    }
    None
}

/// The sObject a command upserts by external id, if it can travel in a collection. Record-id
/// updates (linked accounts, orders) cannot: collections upsert by external id only.
pub fn collection_sobject(call: &Call) -> Option<&'static str> {
    match call {
        Call::Crm(CrmCommand::UpsertAccount {
            target: CrmAccountTarget::BillingAccountId,
            ..
        }) => Some("Account"),
        Call::Crm(CrmCommand::UpsertProduct { .. }) => Some("Product2"),
        Call::Crm(CrmCommand::UpsertPricebookEntry { .. }) => Some("PricebookEntry"),
        _ => None,
    }
}

/// Indices of `commands` that can go in collections, grouped per sObject and cut into calls
/// of at most 200. Products go before price book entries, which name their product by its
/// external id and so need it to exist; within a group, command order is kept.
pub fn plan_collections(commands: &[Command]) -> Vec<Vec<usize>> {
    const ORDER: [&str; 3] = ["Account", "Product2", "PricebookEntry"];
    let mut calls = Vec::new();
    for sobject in ORDER {
        let group: Vec<usize> = commands
            .iter()
            .enumerate()
            .filter(|(_, c)| collection_sobject(&c.call) == Some(sobject))
            .map(|(i, _)| i)
            .collect();
        calls.extend(group.chunks(COLLECTION_LIMIT).map(<[usize]>::to_vec));
    }
    calls
}

type Result = std::result::Result<CallResult, TransientCallFailure>;

/// Results made ahead of the runner's per-event pass, each handed out once to the command
/// it belongs to (same idempotency key, same call).
#[derive(Default)]
pub struct Prefetched {
    results: Mutex<HashMap<String, (Call, Result)>>,
}

impl Prefetched {
    pub fn new(commands: &[Command], results: Vec<Result>) -> Self {
        let results = commands
            .iter()
            .zip(results)
            .map(|(c, r)| (c.meta.idempotency_key.clone(), (c.call.clone(), r)))
            .collect();
        Self {
            results: Mutex::new(results),
        }
    }

    /// The result made for `command`, if one was and it is still the same call.
    pub fn take(&self, command: &Command) -> Option<Result> {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        match results.remove(&command.meta.idempotency_key) {
            Some((call, result)) if call == command.call => Some(result),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.results.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
