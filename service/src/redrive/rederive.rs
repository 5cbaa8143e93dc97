//! Re-deriving a failed call: the call is not in the ledger, only its `SyncFailed`, so the
//! deciding item's streams are folded up to the deciding event (the state that decision saw)
//! and `decide` runs again; the command with the failed step and cause carries the same
//! idempotency key as the first attempt.

use super::plan::item_key;
use super::{RedriveError, RedriveResult, Target};
use crate::ledger::{EventLog, StreamAppend};
use crate::projector::Effects;
use crate::views::{ViewKey, ViewStore};
use chrono::{DateTime, Utc};
use projections::account_sync::AccountSync;
use projections::commands::{complete_attempt, Attempt, CallResult, Command};
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::projection::ViewItem as DomainItem;
use projections::{EventId, NewEvent, Projection, RecordedEvent, StreamId};

/// Re-derives the failed call, makes it and records its outcome.
#[allow(clippy::too_many_arguments)]
pub(super) async fn rerun_call(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    effects: &dyn Effects,
    trace: &[RecordedEvent],
    target: &Target,
    step: &str,
    decided_by: EventId,
    run: EventId,
) -> Result<RedriveResult, RedriveError> {
    let Some(decider) = find_event(log, views, trace, target, decided_by).await? else {
        return Ok(RedriveResult::Skipped {
            reason: format!("the event {decided_by} that decided the call is not in the log"),
        });
    };
    let now = Utc::now();
    let command = match target.projection {
        AccountSync::NAME => {
            rederive::<AccountSync>(log, views, &decider, target, step, now).await?
        }
        OrderSync::NAME => rederive::<OrderSync>(log, views, &decider, target, step, now).await?,
        ProductSync::NAME => {
            rederive::<ProductSync>(log, views, &decider, target, step, now).await?
        }
        _ => None,
    };
    let Some(command) = command else {
        return Ok(RedriveResult::Skipped {
            reason: format!("the decision no longer makes the call {step} (the state moved on)"),
        });
    };
    let result = match effects.execute(&command).await {
        Ok(result) => result,
        Err(transient) => CallResult::Failed {
            reason: transient.reason,
            attempts: transient.attempts,
        },
    };
    // The run is the attempt: a repeated failure is recorded per run (the original one's
    // key is taken), so the audit shows every attempt; a success keeps the decided ids.
    let outcomes = complete_attempt(&command, &result, Attempt::Redrive(run), now);
    let recorded = append(log, outcomes).await?;
    Ok(match result {
        CallResult::Succeeded { .. } => RedriveResult::Synced { recorded },
        CallResult::Failed { reason, .. } => RedriveResult::FailedAgain { reason },
    })
}

/// The event `id`: in the trace, or on a stream the cause's view item follows (an event
/// that released a waiting cause belongs to another trace, on the account's stream).
async fn find_event(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    trace: &[RecordedEvent],
    target: &Target,
    id: EventId,
) -> Result<Option<RecordedEvent>, RedriveError> {
    if let Some(found) = trace.iter().find(|e| e.event_id == id) {
        return Ok(Some(found.clone()));
    }
    for stream in followed_streams(views, target.projection, &target.cause).await? {
        if let Some(found) = log
            .read_stream(&stream, 1)
            .await?
            .into_iter()
            .find(|e| e.event_id == id)
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The event's own stream and every stream its live view item folds.
async fn followed_streams(
    views: &dyn ViewStore,
    projection: &str,
    event: &RecordedEvent,
) -> Result<Vec<StreamId>, RedriveError> {
    let mut streams = vec![event.stream_id.clone()];
    if let Some(key) = item_key(projection, event) {
        if let Some(item) = views.get(&ViewKey::new(projection, &key)?).await? {
            for stream in item.last_version.keys() {
                if !streams.contains(stream) {
                    streams.push(stream.clone());
                }
            }
        }
    }
    Ok(streams)
}

/// The command `step` of `target.cause` as `decider` decided it: the same fold replay uses,
/// over the item's streams up to the decider, then `decide` — the same key as the first time.
async fn rederive<P: Projection>(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    decider: &RecordedEvent,
    target: &Target,
    step: &str,
    now: DateTime<Utc>,
) -> Result<Option<Command>, RedriveError> {
    let Some(key) = P::key(decider) else {
        return Ok(None);
    };
    let mut earlier = Vec::new();
    for stream in followed_streams(views, P::NAME, decider).await? {
        for event in log.read_stream(&stream, 1).await? {
            let before = if event.stream_id == decider.stream_id {
                event.version < decider.version
            } else {
                event.recorded_at < decider.recorded_at
            };
            if before {
                earlier.push(event);
            }
        }
    }
    // recorded_at is monotonic per stream, so this keeps each stream in version order.
    earlier.sort_by(|a, b| {
        (a.recorded_at, a.stream_id.as_str(), a.version).cmp(&(
            b.recorded_at,
            b.stream_id.as_str(),
            b.version,
        ))
    });
    let mut item = DomainItem::<P::State>::new(key);
    for event in &earlier {
        item.apply::<P>(event);
    }
    let decision = P::decide(&item.state, decider, now);
    Ok(decision
        .commands
        .into_iter()
        .find(|c| c.meta.cause.event_id == target.cause.event_id && c.meta.step == step))
}

/// Appends per stream in decision order; returns the types of what was new.
async fn append(log: &dyn EventLog, outcomes: Vec<NewEvent>) -> Result<Vec<String>, RedriveError> {
    let mut recorded = Vec::new();
    for a in StreamAppend::per_stream_at_any_version(outcomes) {
        let types: Vec<String> = a.events.iter().map(|o| o.event_type.clone()).collect();
        // Outcome ids derive from the cause and step, so a repeat is deduped, never doubled.
        let results = log.append(&a.stream, a.expected, a.events).await?;
        for (outcome, event_type) in results.iter().zip(types) {
            if outcome.is_appended() {
                recorded.push(event_type);
            }
        }
    }
    Ok(recorded)
}
