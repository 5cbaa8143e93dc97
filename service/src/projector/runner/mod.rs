//! Applies recorded events to one projection's view items in per-stream version order
//! (DESIGN §4): never trusts arrival order, fills gaps from the log, skips what was applied,
//! and for each new event runs decide -> external calls -> outcome appends -> view update.
//! It holds no domain logic (that is `projections`) and knows no storage engine.

use super::bulk::{self, Prefetched};
use super::effects::Effects;
use super::schedule::{independent_groups, Group, StreamRun};
use crate::ledger::{EventLog, LedgerError, StreamAppend};
use crate::views::{
    page_writes, ExpectedRevision, ViewError, ViewKey, ViewRow, ViewStore, ViewWrite,
};
use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use projections::commands::{complete, CallResult};
use projections::projection::{Handled, Projection, ViewItem as DomainItem};
use projections::{NewEvent, RecordedEvent, StreamId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// What happened to one delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    /// Decided on, its calls made, outcomes recorded and the view updated.
    Applied,
    /// Applied before (a redelivery, or filled from the log for a later version).
    AlreadyApplied,
    /// The projection does not follow this event's stream.
    Ignored,
    /// Not applied; the delivery must be retried from here. `transient` failures are expected
    /// to pass (throttling, an unavailable store or API); the others need a person.
    Failed { reason: String, transient: bool },
}

impl EventStatus {
    pub fn is_failed(&self) -> bool {
        matches!(self, EventStatus::Failed { .. })
    }
}

/// The result of one batch, one status per delivered event in delivery order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub statuses: Vec<EventStatus>,
    /// Events read from the log to fill gaps (applied although not delivered in this batch).
    pub gap_filled: usize,
    /// Billing catalog reads the batch's calls made (0 in steady state: the catalog cache).
    pub catalog_lookups: u64,
}

impl BatchOutcome {
    /// Index (in delivery order) of the first event that was not applied: where a shard must
    /// resume. Everything after it is redelivered too, and is a no-op where already applied.
    pub fn first_failure(&self) -> Option<usize> {
        self.statuses.iter().position(EventStatus::is_failed)
    }

    pub fn count(&self, wanted: fn(&EventStatus) -> bool) -> usize {
        self.statuses.iter().filter(|s| wanted(s)).count()
    }
}

/// A projection the shell can run without knowing its state type.
#[async_trait]
pub trait Projector: Send + Sync {
    fn name(&self) -> &'static str;

    /// Applies a batch as delivered (any order, duplicates allowed).
    async fn process(&self, events: Vec<RecordedEvent>) -> BatchOutcome;
}

/// Limits of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerSettings {
    /// Deliveries of one event whose call failed transiently before it is given up as
    /// `SyncFailed` (so a poison event never blocks its stream forever).
    pub max_deliveries: u32,
    /// Re-reads of a view item that another writer changed under us, per event.
    pub conflict_retries: u32,
    /// Send the CRM upserts of a batch's independent streams as sObject Collections
    /// (`bulk`); off, every upsert is its own call (the sequential baseline of the bench).
    pub bulk_crm_writes: bool,
    /// Independent groups of a batch (streams sharing no view item) applied at once. The
    /// external calls are bounded per system by the effects layer (`CallLimits`); this
    /// bounds the store round trips and memory of one batch.
    pub max_concurrent_groups: usize,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            max_deliveries: 3,
            conflict_retries: 5,
            bulk_crm_writes: true,
            // Sequential by default until token refreshes are single-flight: with 12 groups
            // in flight, a Billing token expiring mid-batch was fetched 24 times (each call
            // refreshed on its own 401; `faults_tokens` expects one refresh). The concurrent
            // path is proven equal to this one by `tests/projector_concurrency.rs`.
            max_concurrent_groups: 1,
        }
    }
}

/// The places between the steps of applying events where a process can die. Every one must
/// be survivable: the redelivered batch repeats nothing that took effect and loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// An external call returned (and took effect); nothing about it is recorded yet.
    AfterExternalCall,
    /// Every call of the event is made; its outcome events are not appended yet.
    BeforeOutcomeAppend,
    /// The outcomes are in the ledger; the view item is not updated yet.
    BeforeViewUpdate,
    /// The events of one stream of the batch are applied; the next stream's are not started.
    MidBatch,
}

/// A fault-injection seam: the runner awaits `reached` at each `CrashPoint`. A test's hook
/// never resolves there, and drops the `process` future — what a killed process looks like to
/// everything outside it. Production runners have no hook (nothing is awaited).
#[async_trait]
pub trait CrashHook: Send + Sync {
    async fn reached(&self, point: CrashPoint);
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("external call failed (will retry): {0}")]
    Call(String),
    #[error("view item {pk} holds a state this build cannot read: {reason}")]
    UnreadableState { pk: String, reason: String },
    #[error("stream {stream}: version {missing} is not in the log although {got} is")]
    Unfillable {
        stream: StreamId,
        missing: u64,
        got: u64,
    },
    #[error("view item {pk} kept changing under us ({attempts} attempts)")]
    Contended { pk: String, attempts: u32 },
}

impl ApplyError {
    fn is_transient(&self) -> bool {
        match self {
            ApplyError::Ledger(e) => e.is_transient(),
            ApplyError::View(e) => e.is_transient(),
            // A strongly consistent read that misses a version another record proves exists
            // can only be a replica lag or an in-flight append: retrying resolves it.
            ApplyError::Call(_) | ApplyError::Unfillable { .. } | ApplyError::Contended { .. } => {
                true
            }
            ApplyError::UnreadableState { .. } => false,
        }
    }
}

/// One step of offering an event to its item.
enum Step {
    Done(EventStatus),
    Gap { expected: u64, got: u64 },
}

/// Runs projection `P` over the ledger, the views and the external systems.
pub struct Runner<P> {
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    effects: Arc<dyn Effects>,
    settings: RunnerSettings,
    crash_hook: Option<Arc<dyn CrashHook>>,
    _projection: PhantomData<fn() -> P>,
}

impl<P> Runner<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    pub fn new(
        log: Arc<dyn EventLog>,
        views: Arc<dyn ViewStore>,
        effects: Arc<dyn Effects>,
        settings: RunnerSettings,
    ) -> Self {
        Self {
            log,
            views,
            effects,
            settings,
            crash_hook: None,
            _projection: PhantomData,
        }
    }

    /// The same runner, awaiting `hook` at every `CrashPoint` (fault tests only).
    pub fn with_crash_hook(mut self, hook: Arc<dyn CrashHook>) -> Self {
        self.crash_hook = Some(hook);
        self
    }

    async fn crash_point(&self, point: CrashPoint) {
        if let Some(hook) = &self.crash_hook {
            hook.reached(point).await;
        }
    }

    /// Applies `event` and, first, any earlier versions of its stream this projection has
    /// not seen yet (read from the log).
    async fn apply(
        &self,
        event: &RecordedEvent,
        gap_filled: &mut usize,
        prefetched: &Prefetched,
        cache: &ItemCache,
    ) -> Result<EventStatus, ApplyError> {
        let (expected, got) = match self.try_apply(event, event, prefetched, cache).await? {
            Step::Done(status) => return Ok(status),
            Step::Gap { expected, got } => (expected, got),
        };
        // Streams deliver at least once and order records per item only, so a missing
        // version is read from the log with a strongly consistent query.
        let missing: Vec<RecordedEvent> = self
            .log
            .read_stream(&event.stream_id, expected)
            .await?
            .into_iter()
            .filter(|e| e.version < got)
            .collect();
        for (next, earlier) in (expected..).zip(&missing) {
            if earlier.version != next {
                break;
            }
            // Earlier versions go to the item of the delivered event: one stream feeds one
            // item, even where an earlier event's own key says the projection ignores it.
            match self.try_apply(earlier, event, prefetched, cache).await? {
                Step::Done(_) => *gap_filled += 1,
                Step::Gap { .. } => break,
            }
        }
        match self.try_apply(event, event, prefetched, cache).await? {
            Step::Done(status) => Ok(status),
            Step::Gap { expected, got } => Err(ApplyError::Unfillable {
                stream: event.stream_id.clone(),
                missing: expected,
                got,
            }),
        }
    }

    /// Offers `event` to the view item that `keyed_by` maps to.
    async fn try_apply(
        &self,
        event: &RecordedEvent,
        keyed_by: &RecordedEvent,
        prefetched: &Prefetched,
        cache: &ItemCache,
    ) -> Result<Step, ApplyError> {
        let Some(key) = P::key(keyed_by) else {
            return Ok(Step::Done(EventStatus::Ignored));
        };
        let view_key = ViewKey::new(P::NAME, &key)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The batch read's row, or the row this task last wrote: no other task of this
            // batch writes the item (`schedule`). A conflict drops it and reads afresh.
            let stored = match cache.take(&view_key) {
                Some(known) => known,
                None => self.views.get(&view_key).await?,
            };
            let mut item = domain_item::<P>(&key, stored.as_ref()).map_err(|e| {
                ApplyError::UnreadableState {
                    pk: view_key.pk(),
                    reason: e.to_string(),
                }
            })?;
            let now = Utc::now();
            let decision = match item.handle::<P>(event, now) {
                Handled::AlreadyApplied => return Ok(Step::Done(EventStatus::AlreadyApplied)),
                Handled::Gap { expected, got, .. } => return Ok(Step::Gap { expected, got }),
                Handled::Decided(decision) => decision,
            };
            // Crash-safety order: idempotent calls, then outcomes (deduped by their derived
            // source ids), then the conditional view write. A crash anywhere re-runs this
            // event and repeats nothing that took effect.
            let mut outcomes = decision.outcomes;
            for command in &decision.commands {
                let result = self.call(event, command, prefetched).await?;
                self.crash_point(CrashPoint::AfterExternalCall).await;
                outcomes.extend(complete(command, &result, now));
            }
            self.crash_point(CrashPoint::BeforeOutcomeAppend).await;
            self.append(outcomes).await?;
            let pages = page_writes(P::NAME, item.take_spilled())?;
            let write = ViewWrite {
                key: view_key.clone(),
                expected: ExpectedRevision::of(stored.as_ref()),
                last_version: item.last_version,
                state: serde_json::to_value(&item.state)
                    .expect("projection states serialize to JSON"),
            };
            self.crash_point(CrashPoint::BeforeViewUpdate).await;
            let writes = std::iter::once(write.clone()).chain(pages).collect();
            match self.views.commit(writes).await {
                Ok(revisions) => {
                    // The item's write goes first; its pages are never read back by key.
                    cache.written(write, revisions.first().copied());
                    return Ok(Step::Done(EventStatus::Applied));
                }
                Err(ViewError::Conflict { .. }) if attempt <= self.settings.conflict_retries => {
                    tracing::debug!(pk = %view_key, attempt, "view item changed concurrently; re-reading");
                }
                Err(ViewError::Conflict { .. }) => {
                    return Err(ApplyError::Contended {
                        pk: view_key.pk(),
                        attempts: attempt,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes one call. A transient failure is retried by redelivery until the event has
    /// been delivered `max_deliveries` times; then it is given up and recorded as failed.
    async fn call(
        &self,
        event: &RecordedEvent,
        command: &projections::commands::Command,
        prefetched: &Prefetched,
    ) -> Result<CallResult, ApplyError> {
        let result = match prefetched.take(command) {
            Some(made_in_bulk) => made_in_bulk,
            None => self.effects.execute(command).await,
        };
        match result {
            Ok(result) => Ok(result),
            Err(transient) => {
                let deliveries = self.count_delivery(event, &transient.reason).await?;
                if deliveries >= self.settings.max_deliveries {
                    tracing::warn!(deliveries, reason = %transient.reason, "giving up a call after repeated transient failures");
                    Ok(CallResult::Failed {
                        reason: format!(
                            "gave up after {deliveries} deliveries: {}",
                            transient.reason
                        ),
                        attempts: transient.attempts.max(deliveries),
                    })
                } else {
                    Err(ApplyError::Call(transient.reason))
                }
            }
        }
    }

    /// Counts transiently failed deliveries of `event` in a bookkeeping item
    /// `<projection>-deliveries#<event id>` (kept for ops; it is tiny).
    async fn count_delivery(&self, event: &RecordedEvent, reason: &str) -> Result<u32, ApplyError> {
        let key = ViewKey::new(
            &format!("{}-deliveries", P::NAME),
            &event.event_id.to_string(),
        )?;
        for _ in 0..=self.settings.conflict_retries {
            let stored = self.views.get(&key).await?;
            let count = stored
                .as_ref()
                .and_then(|s| s.state.get("failed_deliveries"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0) as u32
                + 1;
            let write = ViewWrite::replacing(
                key.clone(),
                stored.as_ref(),
                Default::default(),
                serde_json::json!({
                    "stream_id": event.stream_id,
                    "version": event.version,
                    "failed_deliveries": count,
                    "last_reason": reason,
                }),
            );
            match self.views.commit(vec![write]).await {
                Ok(_) => return Ok(count),
                Err(ViewError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApplyError::Contended {
            pk: key.pk(),
            attempts: self.settings.conflict_retries + 1,
        })
    }

    /// Appends outcome events per stream, in decision order.
    async fn append(&self, outcomes: Vec<NewEvent>) -> Result<(), ApplyError> {
        // Other writers append to the same streams: position does not matter, and a
        // repeat of the same outcome is deduped by its derived source event id.
        for a in StreamAppend::per_stream_at_any_version(outcomes) {
            self.log.append(&a.stream, a.expected, a.events).await?;
        }
        Ok(())
    }
}

/// The domain item held in `stored` (a new one under `key` when there is none).
pub(super) fn domain_item<P: Projection>(
    key: &str,
    stored: Option<&crate::views::ViewRow>,
) -> Result<DomainItem<P::State>, serde_json::Error> {
    Ok(match stored {
        None => DomainItem::new(key),
        Some(stored) => DomainItem::stored(
            key.to_string(),
            stored.last_version.clone(),
            serde_json::from_value(stored.state.clone())?,
        ),
    })
}

#[async_trait]
impl<P> Projector for Runner<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    fn name(&self) -> &'static str {
        P::NAME
    }

    /// Applies independent groups (streams sharing no view item) concurrently, at most
    /// `max_concurrent_groups` at a time; the external calls are bounded further per system
    /// by the effects layer. Inside a group streams run one after another, each in version
    /// order, so no two tasks ever write the same view item.
    ///
    /// Batch-item failures: statuses stay in delivery order and the handler reports the
    /// earliest failed record of the whole batch. Records after it in *other* streams may
    /// already be applied here; they are redelivered with it and each comes back
    /// `AlreadyApplied`, because the view item's per-stream last version (written in the same
    /// conditional write as the state) says so, and their calls and outcomes are never
    /// repeated. Nothing after a failure in its own stream is applied.
    async fn process(&self, events: Vec<RecordedEvent>) -> BatchOutcome {
        self.effects.observe(&events);
        let lookups_before = self.effects.catalog_lookups();
        let groups = independent_groups(&events, P::key);
        let prefetched = &if self.settings.bulk_crm_writes {
            let runs: Vec<StreamRun> = groups.iter().flatten().cloned().collect();
            bulk::prefetch::<P>(self.views.as_ref(), self.effects.as_ref(), &events, &runs).await
        } else {
            Prefetched::default()
        };
        let cache = &self.read_items(&events).await;
        let events = &events;
        let done: Vec<GroupResult> = stream::iter(groups.into_iter().enumerate())
            .map(|(n, group)| self.apply_group(events, group, n == 0, prefetched, cache))
            .buffer_unordered(self.settings.max_concurrent_groups.max(1))
            .collect()
            .await;
        let mut outcome = BatchOutcome {
            statuses: vec![EventStatus::Ignored; events.len()],
            ..BatchOutcome::default()
        };
        for group in done {
            outcome.gap_filled += group.gap_filled;
            for (i, status) in group.statuses {
                outcome.statuses[i] = status;
            }
        }
        outcome.catalog_lookups = self.effects.catalog_lookups() - lookups_before;
        outcome
    }
}

/// View items known current for this batch: read together at its start (one batch read
/// instead of a read per event) and replaced by what each write put.
#[derive(Default)]
struct ItemCache(Mutex<HashMap<ViewKey, Option<ViewRow>>>);

impl ItemCache {
    /// The known row of `key` (`Some(None)`: known absent), forgotten once taken: a write
    /// puts the new one back, a failed write leaves the next attempt to read the store.
    fn take(&self, key: &ViewKey) -> Option<Option<ViewRow>> {
        self.0.lock().expect("no panics under the lock").remove(key)
    }

    fn written(&self, write: ViewWrite, revision: Option<u64>) {
        let row = ViewRow {
            key: write.key.clone(),
            revision: revision.unwrap_or_else(|| write.expected.next()),
            last_version: write.last_version,
            state: write.state,
            updated_at: Utc::now(),
        };
        self.0
            .lock()
            .expect("no panics under the lock")
            .insert(write.key, Some(row));
    }
}

/// What applying one group did: a status per delivered index of the group.
struct GroupResult {
    statuses: Vec<(usize, EventStatus)>,
    gap_filled: usize,
}

impl<P> Runner<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    /// The view items the delivered events map to, in one batch read. A failed read only
    /// costs the per-event reads it would have saved.
    async fn read_items(&self, events: &[RecordedEvent]) -> ItemCache {
        let mut keys: Vec<ViewKey> = events
            .iter()
            .filter_map(|e| ViewKey::new(P::NAME, &P::key(e)?).ok())
            .collect();
        keys.sort();
        keys.dedup();
        match self.views.get_many(&keys).await {
            Ok(rows) => ItemCache(Mutex::new(keys.into_iter().zip(rows).collect())),
            Err(e) => {
                tracing::warn!(error = %e, items = keys.len(), "batch read of view items failed; reading per event");
                ItemCache::default()
            }
        }
    }

    /// Applies one group's streams one after another, each stream in version order; a
    /// failure stops its own stream only.
    async fn apply_group(
        &self,
        events: &[RecordedEvent],
        group: Group,
        first_group: bool,
        prefetched: &Prefetched,
        cache: &ItemCache,
    ) -> GroupResult {
        let mut result = GroupResult {
            statuses: Vec::new(),
            gap_filled: 0,
        };
        for (n, run) in group.into_iter().enumerate() {
            if !(first_group && n == 0) {
                self.crash_point(CrashPoint::MidBatch).await;
            }
            let mut failed: Option<(String, bool)> = None;
            for i in run {
                let event = &events[i];
                if let Some((reason, transient)) = &failed {
                    let status = EventStatus::Failed {
                        reason: format!("not applied: an earlier version failed: {reason}"),
                        transient: *transient,
                    };
                    result.statuses.push((i, status));
                    continue;
                }
                let span = tracing::info_span!(
                    "apply",
                    projection = P::NAME,
                    correlation_id = %event.correlation_id,
                    event_id = %event.event_id,
                    stream_id = %event.stream_id,
                    version = event.version,
                );
                let applied = self
                    .apply(event, &mut result.gap_filled, prefetched, cache)
                    .instrument(span.clone())
                    .await;
                let status = match applied {
                    Ok(status) => status,
                    Err(e) => {
                        let transient = e.is_transient();
                        span.in_scope(|| {
                            tracing::warn!(error = %e, transient, "event not applied; its stream stops here")
                        });
                        failed = Some((e.to_string(), transient));
                        EventStatus::Failed {
                            reason: e.to_string(),
                            transient,
                        }
                    }
                };
                result.statuses.push((i, status));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests;
