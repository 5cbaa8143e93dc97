//! The contract between the pure process managers and the projector shell: a `Projection`
//! names the view item an event touches, folds recorded events into it (`evolve`) and reacts
//! to them (`decide`). `ViewItem` adds the per-stream ordering guard. Nothing here does I/O.
//!
//! How a shell runs a projection `P` for one delivered event `e` (live):
//! 1. `key = P::key(&e)`; `None`: skip. Load the item `pk = <P::NAME>#<key>` (or
//!    `ViewItem::new(key)`).
//! 2. `item.handle::<P>(&e, now)`:
//!    - `AlreadyApplied`: done (a redelivery).
//!    - `Gap { stream, expected, .. }`: read `stream` from `expected` (strongly consistent),
//!      handle those events first, then `e` again.
//!    - `Decided(decision)`: append `decision.outcomes`; for each command, call the system named
//!      by `command.call` with `command.meta` (idempotency key, correlation id, origin marker),
//!      then append `commands::complete(&command, &result, now)`. Transient errors: retry or fail
//!      the batch item *without* storing the item, so the redrive decides again with the same
//!      keys. Only then store the item, conditioned on the `last_version` values it was loaded
//!      with.
//! 3. Appending outcomes uses their deterministic `source_event_id`, so a repeat records nothing.
//!
//! Replay is step 1 + `item.apply::<P>(&e)` over the log in any per-stream order: no calls.
//! Outcome events land on entity streams (the cause's, and a `mirror` on the target's), so
//! every projection sees them through its ordinary stream feed.

use crate::commands::Command;
use crate::envelope::{NewEvent, RecordedEvent};
use crate::ids::StreamId;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// What a reaction to one event asks the shell to do: call the external systems, and record
/// the outcome events that do not depend on a call result (echo, deferral, failure to decode).
/// Outcomes that depend on a call result come from [`crate::commands::complete`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub commands: Vec<Command>,
    pub outcomes: Vec<NewEvent>,
}

impl Decision {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn command(command: Command) -> Self {
        Self {
            commands: vec![command],
            outcomes: Vec::new(),
        }
    }

    pub fn outcome(outcome: NewEvent) -> Self {
        Self {
            commands: Vec::new(),
            outcomes: vec![outcome],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.outcomes.is_empty()
    }
}

/// A projection: a family of view items, each a fold over the events of the streams that
/// map to it. Every event of one stream must map to the same item (or to none), because the
/// ordering guard below works per stream.
pub trait Projection {
    type State: Default + Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    /// Used as the view item prefix: `pk = <NAME>#<key>`.
    const NAME: &'static str;

    /// Which view item this event touches, `None` when the projection ignores the stream.
    fn key(event: &RecordedEvent) -> Option<String>;

    /// Fold one recorded event (inbound or outcome) into the state. Must not look at anything
    /// but the state and the event, so replaying the log rebuilds the view exactly.
    fn evolve(state: &mut Self::State, event: &RecordedEvent);

    /// React to one event, given the state *before* it was applied.
    fn decide(state: &Self::State, event: &RecordedEvent, now: DateTime<Utc>) -> Decision;

    /// Called after every `evolve` of the item `key`: moves full pages of the state's
    /// append-only collections out, returning them as [`Page`]s to store beside the item.
    /// Must be a function of the state only (replay spills the same pages), and a page once
    /// returned is never returned again with other contents.
    fn spill(_key: &str, _state: &mut Self::State) -> Vec<Page> {
        Vec::new()
    }
}

/// A full page of a collection moved out of a view item: stored under
/// `<projection>#<key>`, written once (in the commit of the item that spilled it) and never
/// changed, so it needs no ordering guard of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub key: String,
    pub state: serde_json::Value,
}

/// Result of offering an event to a view item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// The event was the next one of its stream and is now folded in.
    Applied,
    /// The event's version was applied before (a redelivery): nothing changed.
    AlreadyApplied,
    /// Versions are missing before this one: the shell must read the stream from `expected`
    /// and offer those events first. Nothing changed.
    Gap {
        stream: StreamId,
        expected: u64,
        got: u64,
    },
}

/// What [`ViewItem::handle`] did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Decided(Decision),
    AlreadyApplied,
    Gap {
        stream: StreamId,
        expected: u64,
        got: u64,
    },
}

/// One stored view item: the projection state plus the last applied version of every
/// stream folded into it. The shell stores it under `pk = <projection>#<key>`, updated with a
/// condition on the versions it read, so a concurrent or repeated update cannot apply twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "S: Serialize + DeserializeOwned")]
pub struct ViewItem<S> {
    pub key: String,
    pub last_version: BTreeMap<StreamId, u64>,
    pub state: S,
    /// Pages spilled since the item was loaded, not stored yet (see [`Projection::spill`]).
    #[serde(skip)]
    pub spilled: Vec<Page>,
}

impl<S: Default> ViewItem<S> {
    pub fn new(key: impl Into<String>) -> Self {
        Self::stored(key, BTreeMap::new(), S::default())
    }
}

impl<S> ViewItem<S> {
    /// An item as a store holds it (nothing spilled yet).
    pub fn stored(key: impl Into<String>, last_version: BTreeMap<StreamId, u64>, state: S) -> Self {
        Self {
            key: key.into(),
            last_version,
            state,
            spilled: Vec::new(),
        }
    }

    /// The pages to store with this item's next write; the shell writes them in the same
    /// commit, so a page exists exactly when the item state that spilled it does.
    pub fn take_spilled(&mut self) -> Vec<Page> {
        std::mem::take(&mut self.spilled)
    }

    /// Where `event` stands relative to this item, without changing it.
    /// DynamoDB Streams order records per item only and deliver at least once, so arrival
    /// order is never trusted: version v of a stream is applied only right after v-1.
    pub fn position_of(&self, event: &RecordedEvent) -> Apply {
        let last = self
            .last_version
            .get(&event.stream_id)
            .copied()
            .unwrap_or(0);
        if event.version <= last {
            Apply::AlreadyApplied
        } else if event.version > last + 1 {
            Apply::Gap {
                stream: event.stream_id.clone(),
                expected: last + 1,
                got: event.version,
            }
        } else {
            Apply::Applied
        }
    }

    /// Fold `event` in if it is the next of its stream (replay and live projection both use
    /// this; replay never calls `decide`).
    pub fn apply<P: Projection<State = S>>(&mut self, event: &RecordedEvent) -> Apply {
        let position = self.position_of(event);
        if position == Apply::Applied {
            P::evolve(&mut self.state, event);
            self.spilled.extend(P::spill(&self.key, &mut self.state));
            // Only a stream new to the item needs its id copied (once, not per event).
            match self.last_version.get_mut(&event.stream_id) {
                Some(last) => *last = event.version,
                None => {
                    self.last_version
                        .insert(event.stream_id.clone(), event.version);
                }
            }
        }
        position
    }

    /// Live projection: decide on the state before the event, then fold it in. The shell
    /// executes the decision before storing the item, so a crash in between re-decides and the
    /// idempotency keys make the repeat harmless.
    pub fn handle<P: Projection<State = S>>(
        &mut self,
        event: &RecordedEvent,
        now: DateTime<Utc>,
    ) -> Handled {
        match self.position_of(event) {
            Apply::AlreadyApplied => Handled::AlreadyApplied,
            Apply::Gap {
                stream,
                expected,
                got,
            } => Handled::Gap {
                stream,
                expected,
                got,
            },
            Apply::Applied => {
                let decision = P::decide(&self.state, event, now);
                self.apply::<P>(event);
                Handled::Decided(decision)
            }
        }
    }
}

/// All items of one projection held in memory, routed by [`Projection::key`]: what the
/// embedded store and the tests use; the DynamoDB shell keeps the same items as view rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "S: Serialize + DeserializeOwned")]
pub struct Views<S> {
    pub items: BTreeMap<String, ViewItem<S>>,
    /// Pages the items spilled, by key (what a store holds beside the items).
    #[serde(default)]
    pub pages: BTreeMap<String, serde_json::Value>,
}

impl<S> Default for Views<S> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            pages: BTreeMap::new(),
        }
    }
}

impl<S: Default> Views<S> {
    /// Replay: fold `event` into its item (no decisions). `None` when the projection ignores
    /// the event's stream.
    pub fn apply<P: Projection<State = S>>(&mut self, event: &RecordedEvent) -> Option<Apply> {
        let key = P::key(event)?;
        let item = self
            .items
            .entry(key.clone())
            .or_insert_with(|| ViewItem::new(key));
        let applied = item.apply::<P>(event);
        let pages = item.take_spilled();
        self.keep(pages);
        Some(applied)
    }

    fn keep(&mut self, pages: Vec<Page>) {
        for page in pages {
            self.pages.insert(page.key, page.state);
        }
    }

    /// Live: decide and fold. `None` when the projection ignores the event's stream.
    pub fn handle<P: Projection<State = S>>(
        &mut self,
        event: &RecordedEvent,
        now: DateTime<Utc>,
    ) -> Option<Handled> {
        let key = P::key(event)?;
        let item = self
            .items
            .entry(key.clone())
            .or_insert_with(|| ViewItem::new(key));
        let handled = item.handle::<P>(event, now);
        let pages = item.take_spilled();
        self.keep(pages);
        Some(handled)
    }

    /// A spilled page, by key.
    pub fn page(&self, key: &str) -> Option<&serde_json::Value> {
        self.pages.get(key)
    }

    pub fn state(&self, key: &str) -> Option<&S> {
        self.items.get(key).map(|item| &item.state)
    }
}

/// Which external system an id or object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Crm,
    Billing,
}

impl Side {
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Crm => "crm",
            Side::Billing => "billing",
        }
    }

    pub fn other(&self) -> Side {
        match self {
            Side::Crm => Side::Billing,
            Side::Billing => Side::Crm,
        }
    }
}

/// Entity names used in stream ids `<source>-<entity>-<id>` (see `StreamId::for_entity`).
/// Entity names never contain `-`, so the id is everything after the second `-`.
pub mod entity {
    pub const ACCOUNT: &str = "account";
    pub const ORDER: &str = "order";
    /// CRM Product2 and Billing catalog product.
    pub const PRODUCT: &str = "product";
    pub const PRICEBOOK_ENTRY: &str = "pricebookentry";
    /// Billing subscription, by subscription *number* (`billing-subscription-A-S00001`).
    pub const SUBSCRIPTION: &str = "subscription";
    pub const RATE_PLAN: &str = "rateplan";
    /// Billing rate plan charge (prices), streams `billing-charge-<charge id>`.
    pub const CHARGE: &str = "charge";
}

/// A stream id of an external entity, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityStream<'a> {
    pub side: Side,
    pub entity: &'a str,
    pub id: &'a str,
}

impl<'a> EntityStream<'a> {
    /// `crm-account-001X` -> (Crm, "account", "001X"); `None` for system streams.
    pub fn parse(stream: &'a StreamId) -> Option<Self> {
        let (source, rest) = stream.as_str().split_once('-')?;
        let side = match source {
            "crm" => Side::Crm,
            "billing" => Side::Billing,
            _ => return None,
        };
        let (entity, id) = rest.split_once('-')?;
        (!entity.is_empty() && !id.is_empty()).then_some(Self { side, entity, id })
    }

    pub fn is(&self, side: Side, entity: &str) -> bool {
        self.side == side && self.entity == entity
    }
}

/// The stream of an external entity.
pub fn entity_stream(side: Side, entity: &str, id: &str) -> Option<StreamId> {
    let source = match side {
        Side::Crm => crate::ids::Source::Crm,
        Side::Billing => crate::ids::Source::Billing,
    };
    StreamId::for_entity(source, entity, id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_streams_split_on_the_first_two_dashes() {
        let s = StreamId::parse("billing-subscription-A-S0001").unwrap();
        let e = EntityStream::parse(&s).unwrap();
        assert_eq!(
            (e.side, e.entity, e.id),
            (Side::Billing, "subscription", "A-S0001")
        );
        let sys = StreamId::parse("system-token-crm").unwrap();
        assert_eq!(EntityStream::parse(&sys), None);
    }
}
