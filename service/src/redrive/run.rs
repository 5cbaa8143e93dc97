//! Running a redrive: records the operator's request before any call, re-runs each failed
//! call (or redelivers a given-up event), then hands the trace's new events to the projectors.

use super::plan::plan;
use super::rederive::rerun_call;
use super::{invalid, Pending, RedriveError, RedriveReport, RedriveRequest, RedriveResult};
use super::{Redriven, Target};
use crate::ledger::{EventLog, ExpectedVersion};
use crate::projector::registry::{build_selected, ProjectorDeps};
use crate::projector::{Effects, EventStatus, Projector, RunnerSettings, TransientCallFailure};
use crate::views::ViewStore;
use async_trait::async_trait;
use chrono::Utc;
use projections::catalogue::RedriveRequested;
use projections::commands::{CallResult, Command};
use projections::{DomainEvent, EventId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Rounds of handing new events of the trace to the projectors (outcomes of one round can
/// cause follow-up calls whose outcomes the next round applies).
const VIEW_ROUNDS: usize = 5;

struct Counting {
    inner: Arc<dyn Effects>,
    calls: AtomicUsize,
}

#[async_trait]
impl Effects for Counting {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.execute(command).await
    }
}

/// Plans and (unless `dry_run`) re-runs the pending syncs of the request's trace, then lets
/// the projectors apply what was recorded.
pub async fn redrive(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    effects: Arc<dyn Effects>,
    request: &RedriveRequest,
) -> Result<RedriveReport, RedriveError> {
    let (events, mut targets) = plan(log.as_ref(), views.as_ref(), &request.correlation).await?;
    targets.retain(|t| request.projection.is_none_or(|p| t.projection == p));
    let mut report = RedriveReport {
        correlation: request.correlation,
        dry_run: request.dry_run,
        items: Vec::new(),
        calls: 0,
        view_updates: 0,
        view_failures: Vec::new(),
    };
    if request.dry_run {
        report.items = targets
            .into_iter()
            .map(|target| Redriven {
                target,
                result: RedriveResult::Planned,
            })
            .collect();
        return Ok(report);
    }
    let counting = Arc::new(Counting {
        inner: effects,
        calls: AtomicUsize::new(0),
    });
    let deps = ProjectorDeps {
        log: log.clone(),
        views: views.clone(),
        effects: counting.clone(),
        settings: RunnerSettings::default(),
    };
    let projectors = build_selected("all", &deps).map_err(|e| RedriveError::UnknownProjection {
        name: e.given,
        known: e.known,
    })?;
    let run = EventId::new();
    for target in targets {
        let result = match &target.pending {
            Pending::Waiting { waiting_for } => RedriveResult::StillWaiting {
                waiting_for: waiting_for.clone(),
            },
            Pending::NotRedrivable { reason } => RedriveResult::Skipped {
                reason: format!("the event cannot be synced as recorded: {reason}"),
            },
            Pending::FailedCall {
                step, decided_by, ..
            } => {
                record_request(log.as_ref(), request, run, &target, Some(step)).await?;
                rerun_call(
                    log.as_ref(),
                    views.as_ref(),
                    counting.as_ref(),
                    &events,
                    &target,
                    step,
                    *decided_by,
                    run,
                )
                .await?
            }
            Pending::GaveUp { .. } => {
                record_request(log.as_ref(), request, run, &target, None).await?;
                redeliver(&projectors, &target).await
            }
        };
        report.items.push(Redriven { target, result });
    }
    // The outcomes (and the request) are new events of the trace: the projectors apply them
    // exactly as the live feed delivers them; the live projector later finds them applied.
    let mut seen: HashSet<EventId> = events.iter().map(|e| e.event_id).collect();
    for _ in 0..VIEW_ROUNDS {
        let new: Vec<RecordedEvent> = log
            .by_correlation(&request.correlation)
            .await?
            .into_iter()
            .filter(|e| !seen.contains(&e.event_id))
            .collect();
        if new.is_empty() {
            break;
        }
        seen.extend(new.iter().map(|e| e.event_id));
        for projector in &projectors {
            let outcome = projector.process(new.clone()).await;
            report.view_updates += outcome.count(|s| *s == EventStatus::Applied);
            for status in &outcome.statuses {
                if let EventStatus::Failed { reason, .. } = status {
                    report
                        .view_failures
                        .push(format!("{}: {reason}", projector.name()));
                }
            }
        }
    }
    report.calls = counting.calls.load(Ordering::Relaxed);
    Ok(report)
}

/// Records who asked to re-run which sync, before anything is called. One event per run and
/// target, on the trace's own system stream (projectors do not follow system streams).
async fn record_request(
    log: &dyn EventLog,
    request: &RedriveRequest,
    run: EventId,
    target: &Target,
    step: Option<&String>,
) -> Result<(), RedriveError> {
    let stream = StreamId::parse(format!("system-redrive-{}", request.correlation))
        .map_err(|e| invalid("correlation", e))?;
    let source_event_id = SourceEventId::parse(format!(
        "redrive:{run}:{}:{}:{}",
        target.cause.event_id,
        target.projection,
        target.what()
    ))
    .map_err(|e| invalid("requested_by", e))?;
    let projection = crate::projector::registry::PROJECTIONS
        .iter()
        .find(|(_, view)| *view == target.projection)
        .map_or(target.projection, |(deployed, _)| *deployed);
    let event = DomainEvent::RedriveRequested(RedriveRequested {
        projection: projection.to_string(),
        cause_event_id: target.cause.event_id.to_string(),
        step: step.cloned(),
        requested_by: request.requested_by.clone(),
        reason: request.reason.clone(),
        extra: Default::default(),
    });
    let new = NewEvent::from_domain(
        stream.clone(),
        Source::System,
        source_event_id,
        request.correlation,
        Some(target.cause.event_id),
        Utc::now(),
        &event,
    );
    log.append(&stream, ExpectedVersion::Any, vec![new]).await?;
    Ok(())
}

/// Delivers a given-up event to its projector again (decide, calls, outcomes, view update).
async fn redeliver(projectors: &[Arc<dyn Projector>], target: &Target) -> RedriveResult {
    let Some(projector) = projectors.iter().find(|p| p.name() == target.projection) else {
        return RedriveResult::Skipped {
            reason: format!("no projector {}", target.projection),
        };
    };
    let outcome = projector.process(vec![target.cause.clone()]).await;
    match outcome.statuses.first() {
        Some(EventStatus::Failed { reason, .. }) => RedriveResult::FailedAgain {
            reason: reason.clone(),
        },
        _ => RedriveResult::Synced {
            recorded: Vec::new(),
        },
    }
}
