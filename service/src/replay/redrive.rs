//! Redrive: re-runs, on purpose, the syncs of one trace that ended `SyncFailed` or are still
//! `SyncDeferred` — the only path besides live projection that calls external systems. It
//! records the operator's request first, re-derives each failed call from the state its
//! decision saw (so it goes out with the SAME idempotency key), appends the outcomes and hands
//! every new event of the trace to the projectors, which update the views. It never invents a
//! call: what it cannot re-derive it reports.

use super::ReplayError;
use crate::ledger::{EventLog, ExpectedVersion, StreamAppend};
use crate::projector::registry::{build_selected, view_name as projector_view, ProjectorDeps};
use crate::projector::{Effects, EventStatus, Projector, RunnerSettings, TransientCallFailure};
use crate::views::{ViewKey, ViewStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::account_sync::AccountSync;
use projections::catalogue::RedriveRequested;
use projections::commands::{complete_attempt, Attempt, CallResult, Command};
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::projection::ViewItem as DomainItem;
use projections::{
    CorrelationId, DomainEvent, EventId, NewEvent, Projection, RecordedEvent, Source,
    SourceEventId, StreamId,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Rounds of handing new events of the trace to the projectors (outcomes of one round can
/// cause follow-up calls whose outcomes the next round applies).
const VIEW_ROUNDS: usize = 5;

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveRequest {
    pub correlation: CorrelationId,
    /// Recorded in the ledger with the request (a name, never a credential).
    pub requested_by: String,
    pub reason: Option<String>,
    /// List what would be re-run; record nothing, call nothing.
    pub dry_run: bool,
}

/// Why one event's sync is not done.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// A call failed (a permanent error, or transient ones until given up). The call is
    /// re-derived from the event that decided it (`decided_by`: the cause itself, or the
    /// event that released a waiting cause) and repeated.
    FailedCall {
        step: String,
        decided_by: EventId,
        last_reason: String,
    },
    /// The projector gave up delivering the event: it is delivered to it again.
    GaveUp { last_reason: String },
    /// Deferred, and what it waits for has not been recorded: nothing to call yet.
    Waiting { waiting_for: String },
    /// The event itself cannot be synced (it does not decode): fix the data, re-ingest.
    NotRedrivable { reason: String },
}

/// One sync of the trace that is not done.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub cause: RecordedEvent,
    /// View name of the projection whose sync it is (`account-sync`, ...).
    pub projection: &'static str,
    pub pending: Pending,
}

impl Target {
    /// `billing-create-account`, or what kind of re-run it is.
    pub fn what(&self) -> String {
        match &self.pending {
            Pending::FailedCall { step, .. } => step.clone(),
            Pending::GaveUp { .. } => "delivery".to_string(),
            Pending::Waiting { .. } => "deferred".to_string(),
            Pending::NotRedrivable { .. } => "undecodable".to_string(),
        }
    }
}

/// What the redrive did with one target.
#[derive(Debug, Clone, PartialEq)]
pub enum RedriveResult {
    /// `--dry-run`: would be re-run.
    Planned,
    /// Re-run and succeeded; the event types it newly recorded.
    Synced { recorded: Vec<String> },
    /// Re-run and failed again (recorded as a `SyncFailed` of this redrive).
    FailedAgain { reason: String },
    /// Still deferred: nothing was called.
    StillWaiting { waiting_for: String },
    /// Not re-run, with the reason.
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redriven {
    pub target: Target,
    pub result: RedriveResult,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct RedriveReport {
    pub correlation: CorrelationId,
    pub dry_run: bool,
    pub items: Vec<Redriven>,
    /// External calls made (re-runs and the follow-ups the projectors made on their outcomes).
    pub calls: usize,
    /// Events the projectors applied to the views after the re-runs.
    pub view_updates: usize,
    /// Events a projector could not apply now (the live projector retries them).
    pub view_failures: Vec<String>,
}

impl RedriveReport {
    /// Whether anything re-run failed again or was left unapplied.
    pub fn has_failures(&self) -> bool {
        !self.view_failures.is_empty()
            || self.items.iter().any(|i| {
                matches!(
                    i.result,
                    RedriveResult::FailedAgain { .. } | RedriveResult::Skipped { .. }
                )
            })
    }
}

/// Finds the syncs of `correlation` that are not done: failed calls without a later success
/// under the same idempotency key, given-up deliveries the view never applied, and deferrals
/// nothing has resolved. Errors with `UnknownCorrelation` when no event carries the id.
pub async fn plan(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    correlation: &CorrelationId,
) -> Result<(Vec<RecordedEvent>, Vec<Target>), ReplayError> {
    let events = log.by_correlation(correlation).await?;
    if events.is_empty() {
        return Err(ReplayError::UnknownCorrelation(*correlation));
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
) -> Result<bool, ReplayError> {
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
) -> Result<bool, ReplayError> {
    let Some(key) = item_key(projection, event) else {
        return Ok(true);
    };
    let item = views.get(&ViewKey::new(projection, &key)?).await?;
    Ok(item.is_some_and(|i| i.applied(&event.stream_id) >= event.version))
}

fn item_key(projection: &str, event: &RecordedEvent) -> Option<String> {
    match projection {
        AccountSync::NAME => AccountSync::key(event),
        OrderSync::NAME => OrderSync::key(event),
        ProductSync::NAME => ProductSync::key(event),
        _ => None,
    }
}

/// Counts the calls made through it.
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
) -> Result<RedriveReport, ReplayError> {
    let (events, targets) = plan(log.as_ref(), views.as_ref(), &request.correlation).await?;
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
    let projectors = build_selected("all", &deps).map_err(|e| ReplayError::UnknownProjection {
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
) -> Result<(), ReplayError> {
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

fn invalid(field: &'static str, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Invalid {
        field,
        reason: e.to_string(),
    }
}

/// Re-derives the failed call, makes it and records its outcome.
#[allow(clippy::too_many_arguments)]
async fn rerun_call(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    effects: &dyn Effects,
    trace: &[RecordedEvent],
    target: &Target,
    step: &str,
    decided_by: EventId,
    run: EventId,
) -> Result<RedriveResult, ReplayError> {
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
) -> Result<Option<RecordedEvent>, ReplayError> {
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
) -> Result<Vec<StreamId>, ReplayError> {
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
) -> Result<Option<Command>, ReplayError> {
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

/// Appends per stream in decision order; returns the types of what was new.
async fn append(log: &dyn EventLog, outcomes: Vec<NewEvent>) -> Result<Vec<String>, ReplayError> {
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

#[cfg(test)]
mod tests {
    //! The paths the binary tests do not reach: a record the worker gave up on is delivered
    //! to its projector again; a dry run records and calls nothing. Embedded store, and a
    //! scripted `Effects` (our own port) standing in for the connectors.
    use super::*;
    use crate::ledger::sqlite::{migrate, SqliteLedger};
    use crate::views::sqlite::SqliteViewStore;
    use projections::catalogue::SyncFailed;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Scripted {
        calls: Mutex<Vec<Command>>,
    }

    #[async_trait]
    impl Effects for Scripted {
        async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
            self.calls.lock().unwrap().push(command.clone());
            Ok(CallResult::Succeeded {
                id: "2c92a0fd0000000000000000000000e1".into(),
                created: true,
            })
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        log: Arc<dyn EventLog>,
        views: Arc<dyn ViewStore>,
        effects: Arc<Scripted>,
        cause: RecordedEvent,
    }

    /// A CRM account change the account projector gave up on (as `worker::on_failure`
    /// records it), never applied to its view.
    async fn given_up() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        migrate(&path).unwrap();
        let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).unwrap());
        let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(&path).unwrap());
        let stream = StreamId::parse("crm-account-001GaveUpIAH").unwrap();
        let inbound = NewEvent {
            event_id: EventId::new(),
            stream_id: stream.clone(),
            event_type: "CrmAccountUpserted".into(),
            schema_version: 1,
            source: Source::Crm,
            source_event_id: SourceEventId::parse("AccountChangeEvent:77").unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
            payload: serde_json::json!({"account_id": "001GaveUpIAH", "name": "Gave Up Inc"}),
        };
        log.append(&stream, ExpectedVersion::Any, vec![inbound])
            .await
            .unwrap();
        let cause = log.read_stream(&stream, 1).await.unwrap().remove(0);
        let failed = DomainEvent::SyncFailed(SyncFailed {
            projection: AccountSync::NAME.to_string(),
            reason: "worker gave up after retries: views unavailable".into(),
            attempts: 0,
            extra: Default::default(),
        });
        let outcome = NewEvent::caused_by(
            &cause,
            stream.clone(),
            &format!("on-failure:{}", AccountSync::NAME),
            Utc::now(),
            &failed,
        );
        log.append(&stream, ExpectedVersion::Any, vec![outcome])
            .await
            .unwrap();
        World {
            _dir: dir,
            log,
            views,
            effects: Arc::new(Scripted::default()),
            cause,
        }
    }

    fn request(w: &World, dry_run: bool) -> RedriveRequest {
        RedriveRequest {
            correlation: w.cause.correlation_id,
            requested_by: "tester".into(),
            reason: None,
            dry_run,
        }
    }

    async fn run(w: &World, dry_run: bool) -> RedriveReport {
        redrive(
            w.log.clone(),
            w.views.clone(),
            w.effects.clone(),
            &request(w, dry_run),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_given_up_record_is_delivered_to_its_projector_again() {
        let w = given_up().await;
        let report = run(&w, false).await;
        assert_eq!(report.items.len(), 1, "{report:?}");
        assert!(matches!(
            report.items[0].target.pending,
            Pending::GaveUp { .. }
        ));
        assert_eq!(
            report.items[0].result,
            RedriveResult::Synced { recorded: vec![] }
        );
        // The create, then the follow-up the projector decides on its outcome.
        let steps: Vec<String> = w
            .effects
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.meta.step.clone())
            .collect();
        assert_eq!(steps, ["billing-create-account", "crm-link-account"]);
        assert_eq!(report.calls, 2);
        assert!(!report.has_failures());
        let key = ViewKey::new(AccountSync::NAME, "crm#001GaveUpIAH").unwrap();
        let item = w.views.get(&key).await.unwrap().expect("the view item");
        assert!(item.applied(&w.cause.stream_id) >= w.cause.version);
        let types: Vec<String> = w
            .log
            .by_correlation(&w.cause.correlation_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(types.contains(&"RedriveRequested".to_string()), "{types:?}");
        assert!(types.contains(&"AccountSynced".to_string()), "{types:?}");

        let again = run(&w, false).await;
        assert!(again.items.is_empty(), "{again:?}");
        assert_eq!(again.calls, 0);
    }

    #[tokio::test]
    async fn a_dry_run_records_and_calls_nothing() {
        let w = given_up().await;
        let before = w.log.by_correlation(&w.cause.correlation_id).await.unwrap();
        let report = run(&w, true).await;
        assert_eq!(report.items.len(), 1);
        assert_eq!(report.items[0].result, RedriveResult::Planned);
        assert!(w.effects.calls.lock().unwrap().is_empty());
        let after = w.log.by_correlation(&w.cause.correlation_id).await.unwrap();
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn an_unknown_correlation_id_is_an_error() {
        let w = given_up().await;
        let mut unknown = request(&w, false);
        unknown.correlation = CorrelationId::new();
        let err = redrive(w.log.clone(), w.views.clone(), w.effects.clone(), &unknown)
            .await
            .unwrap_err();
        assert!(matches!(err, ReplayError::UnknownCorrelation(_)), "{err}");
    }
}
