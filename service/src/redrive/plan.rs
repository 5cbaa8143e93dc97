//! Finding what is not done in a trace: failed calls without a later success under the same
//! idempotency key, given-up deliveries the view never applied, deferrals nothing resolved.

use super::{Pending, RedriveError, Target};
use crate::ledger::EventLog;
use crate::projector::registry::view_name as projector_view;
use crate::views::{ViewKey, ViewStore};
use projections::account_sync::AccountSync;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::{CorrelationId, DomainEvent, EventId, Projection, RecordedEvent};

/// Finds the syncs of `correlation` that are not done: failed calls without a later success
/// under the same idempotency key, given-up deliveries the view never applied, and deferrals
/// nothing has resolved. Errors with `UnknownCorrelation` when no event carries the id.
pub async fn plan(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    correlation: &CorrelationId,
) -> Result<(Vec<RecordedEvent>, Vec<Target>), RedriveError> {
    let events = log.by_correlation(correlation).await?;
    if events.is_empty() {
        return Err(RedriveError::UnknownCorrelation(*correlation));
    }
    let mut targets: Vec<Target> = Vec::new();
    for (i, outcome) in events.iter().enumerate() {
        let Some(cause_id) = outcome.causation_id else {
            continue;
        };
        let Some(cause) = events.iter().find(|e| e.event_id == cause_id) else {
            continue; // outcomes carry their cause's correlation id, so this does not happen
        };
        let target = match outcome.decode() {
            Ok(DomainEvent::SyncFailed(failed)) => {
                let Some(projection) = projector_view(&failed.projection) else {
                    continue;
                };
                let prefix = format!("{cause_id}:");
                let rest = outcome
                    .source_event_id
                    .as_str()
                    .strip_prefix(&prefix)
                    .unwrap_or_default();
                if rest.contains(":failed:redrive:") {
                    continue; // a redrive's own failure: the original one is listed already
                }
                let pending = if let Some(step) = rest.strip_suffix(":failed") {
                    // The success outcome of a call is deduplicated by `<cause>:<step>`.
                    let succeeded = format!("{cause_id}:{step}");
                    if events
                        .iter()
                        .any(|e| e.source_event_id.as_str() == succeeded)
                    {
                        continue;
                    }
                    let decided_by = failed
                        .extra
                        .get("unblocked_by")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|id| EventId::parse(id).ok())
                        .unwrap_or(cause_id);
                    Pending::FailedCall {
                        step: step.to_string(),
                        decided_by,
                        last_reason: failed.reason.clone(),
                    }
                } else if rest.starts_with("on-failure:") {
                    if applied(views, projection, cause).await? {
                        continue;
                    }
                    Pending::GaveUp {
                        last_reason: failed.reason.clone(),
                    }
                } else {
                    Pending::NotRedrivable {
                        reason: failed.reason.clone(),
                    }
                };
                Target {
                    cause: cause.clone(),
                    projection,
                    pending,
                }
            }
            Ok(DomainEvent::SyncDeferred(deferred)) => {
                let Some(projection) = projector_view(&deferred.projection) else {
                    continue;
                };
                if resolved(log, cause, &events[i + 1..], &deferred.waiting_for).await? {
                    continue;
                }
                Target {
                    cause: cause.clone(),
                    projection,
                    pending: Pending::Waiting {
                        waiting_for: deferred.waiting_for.clone(),
                    },
                }
            }
            _ => continue,
        };
        let duplicate = targets.iter().any(|t| {
            t.cause.event_id == target.cause.event_id
                && t.projection == target.projection
                && t.what() == target.what()
        });
        if !duplicate {
            targets.push(target);
        }
    }
    Ok((events, targets))
}

/// Whether a deferral was resolved: the cause got a later outcome that is not another
/// deferral, or what it waited for (an in-flight create, named by its event id) finished.
async fn resolved(
    log: &dyn EventLog,
    cause: &RecordedEvent,
    later: &[RecordedEvent],
    waiting_for: &str,
) -> Result<bool, RedriveError> {
    let settles = |e: &RecordedEvent| {
        !matches!(
            e.event_type.as_str(),
            "SyncDeferred" | "RedriveRequested" | "EchoSuppressed"
        )
    };
    if later
        .iter()
        .any(|e| e.causation_id == Some(cause.event_id) && settles(e))
    {
        return Ok(true);
    }
    let Some(awaited) = waiting_for
        .rsplit(':')
        .next()
        .and_then(|id| EventId::parse(id).ok())
    else {
        return Ok(false);
    };
    // In-flight creates are decided on the cause's own stream, and record their outcome there.
    let stream = log.read_stream(&cause.stream_id, cause.version).await?;
    Ok(stream
        .iter()
        .any(|e| e.causation_id == Some(awaited) && e.event_type.ends_with("Synced") && settles(e)))
}

/// Whether the live view of `projection` has applied `event`.
async fn applied(
    views: &dyn ViewStore,
    projection: &str,
    event: &RecordedEvent,
) -> Result<bool, RedriveError> {
    let Some(key) = item_key(projection, event) else {
        return Ok(true);
    };
    let item = views.get(&ViewKey::new(projection, &key)?).await?;
    Ok(item.is_some_and(|i| i.applied(&event.stream_id) >= event.version))
}

pub(super) fn item_key(projection: &str, event: &RecordedEvent) -> Option<String> {
    match projection {
        AccountSync::NAME => AccountSync::key(event),
        OrderSync::NAME => OrderSync::key(event),
        ProductSync::NAME => ProductSync::key(event),
        _ => None,
    }
}
