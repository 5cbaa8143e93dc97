//! Redrive: re-runs, on purpose, the syncs of one trace whose outcome was `SyncFailed` or
//! `SyncDeferred` — the only path besides live projection that calls external systems. The
//! decision is re-made from the item's state *before* the causing event (folded from the log),
//! so the same commands go out with the same idempotency keys, and their outcomes are appended.

use super::registry::{view_name, PROJECTIONS};
use super::ReplayError;
use crate::ledger::{EventLog, ExpectedVersion};
use crate::projector::Effects;
use chrono::Utc;
use projections::account_sync::AccountSync;
use projections::commands::{complete, CallResult};
use projections::correlation_view::CorrelationView;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::projection::{Projection, ViewItem as DomainItem};
use projections::{CorrelationId, NewEvent, RecordedEvent, StreamId};

/// What one redriven decision did.
#[derive(Debug, Clone, PartialEq)]
pub struct Redriven {
    pub cause: RecordedEvent,
    pub projection: &'static str,
    pub calls: usize,
    /// Types of the outcome events newly appended (a repeat of an earlier outcome is not).
    pub recorded: Vec<String>,
}

/// Re-runs every failed or deferred sync of `correlation`. Returns one entry per
/// (causing event, projection) re-decided; empty when nothing in the trace failed.
pub async fn redrive(
    log: &dyn EventLog,
    effects: &dyn Effects,
    correlation: &CorrelationId,
) -> Result<Vec<Redriven>, ReplayError> {
    let events = log.by_correlation(correlation).await?;
    let mut causes: Vec<&RecordedEvent> = Vec::new();
    for outcome in events
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "SyncFailed" | "SyncDeferred"))
    {
        let cause = outcome
            .causation_id
            .and_then(|id| events.iter().find(|e| e.event_id == id));
        if let Some(cause) = cause {
            if !causes.iter().any(|c| c.event_id == cause.event_id) {
                causes.push(cause);
            }
        }
    }
    let mut done = Vec::new();
    for cause in causes {
        for name in PROJECTIONS {
            let result = match view_name(name)? {
                AccountSync::NAME => redrive_one::<AccountSync>(log, effects, cause).await?,
                OrderSync::NAME => redrive_one::<OrderSync>(log, effects, cause).await?,
                ProductSync::NAME => redrive_one::<ProductSync>(log, effects, cause).await?,
                CorrelationView::NAME => None, // a pure view: it decides nothing
                _ => None,
            };
            done.extend(result);
        }
    }
    Ok(done)
}

async fn redrive_one<P: Projection>(
    log: &dyn EventLog,
    effects: &dyn Effects,
    cause: &RecordedEvent,
) -> Result<Option<Redriven>, ReplayError> {
    let Some(key) = P::key(cause) else {
        return Ok(None);
    };
    // The state the original decision saw: the same fold replay uses, up to the cause.
    let mut item = DomainItem::<P::State>::new(key);
    for earlier in log.read_stream(&cause.stream_id, 1).await? {
        if earlier.version >= cause.version {
            break;
        }
        item.apply::<P>(&earlier);
    }
    let now = Utc::now();
    let decision = P::decide(&item.state, cause, now);
    let mut outcomes = decision.outcomes;
    for command in &decision.commands {
        let result = match effects.execute(command).await {
            Ok(result) => result,
            Err(transient) => CallResult::Failed {
                reason: format!("redrive: {}", transient.reason),
                attempts: transient.attempts,
            },
        };
        outcomes.extend(complete(command, &result, now));
    }
    let recorded = append(log, outcomes).await?;
    Ok(Some(Redriven {
        cause: cause.clone(),
        projection: P::NAME,
        calls: decision.commands.len(),
        recorded,
    }))
}

/// Appends per stream in decision order; returns the types of what was new.
async fn append(log: &dyn EventLog, outcomes: Vec<NewEvent>) -> Result<Vec<String>, ReplayError> {
    let mut recorded = Vec::new();
    let mut streams: Vec<StreamId> = Vec::new();
    for o in &outcomes {
        if !streams.contains(&o.stream_id) {
            streams.push(o.stream_id.clone());
        }
    }
    for stream in streams {
        let batch: Vec<NewEvent> = outcomes
            .iter()
            .filter(|o| o.stream_id == stream)
            .cloned()
            .collect();
        let types: Vec<String> = batch.iter().map(|o| o.event_type.clone()).collect();
        // Outcome ids derive from the cause and step, so a repeat is deduped, never doubled.
        let results = log.append(&stream, ExpectedVersion::Any, batch).await?;
        for (outcome, event_type) in results.iter().zip(types) {
            if outcome.is_appended() {
                recorded.push(event_type);
            }
        }
    }
    Ok(recorded)
}
