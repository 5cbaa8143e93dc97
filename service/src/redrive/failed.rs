//! `--failed`: the unfinished syncs across the whole ledger, not one trace at a time. The log
//! is paged (`read_all`, `PAGE` events at a time, from `since`) and only the correlation ids
//! of `SyncFailed` / `SyncDeferred` outcomes are kept — memory grows with the failed traces,
//! never with the log; each trace is then planned (and redriven) on its own, as
//! `--correlation` does.

use super::{plan, RedriveError, Target};
use crate::ledger::EventLog;
use crate::projector::names::view_name;
use crate::views::ViewStore;
use chrono::{DateTime, Utc};
use projections::{CorrelationId, RecordedEvent};
use std::collections::{BTreeMap, HashSet};

/// Events read per page of the log.
pub const PAGE: usize = 500;

/// Which unfinished syncs an operator asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedQuery {
    /// Only outcomes recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this projection's syncs (view name, `account-sync`).
    pub projection: Option<&'static str>,
}

impl FailedQuery {
    /// Whether `target` is one of the asked-for syncs.
    pub fn selects(&self, target: &Target) -> bool {
        self.projection.is_none_or(|p| target.projection == p)
    }

    fn selects_outcome(&self, event: &RecordedEvent) -> bool {
        if !matches!(event.event_type.as_str(), "SyncFailed" | "SyncDeferred") {
            return false;
        }
        let Some(wanted) = self.projection else {
            return true;
        };
        event
            .payload
            .get("projection")
            .and_then(|p| p.as_str())
            .and_then(view_name)
            .is_some_and(|named| named == wanted)
    }
}

/// The correlation ids carrying a `SyncFailed` or `SyncDeferred` the query selects, in the
/// order of their first such outcome.
pub async fn failed_correlations(
    log: &dyn EventLog,
    query: &FailedQuery,
) -> Result<Vec<CorrelationId>, RedriveError> {
    let mut found = Vec::new();
    let mut seen: HashSet<CorrelationId> = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = log.read_all(query.since, after.as_deref(), PAGE).await?;
        for event in &page {
            if query.selects_outcome(event) && seen.insert(event.correlation_id) {
                found.push(event.correlation_id);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.global_order_key()),
            _ => return Ok(found),
        }
    }
}

/// The pending syncs of every selected trace (traces with nothing pending left out).
pub async fn plan_failed(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    query: &FailedQuery,
) -> Result<Vec<(CorrelationId, Vec<Target>)>, RedriveError> {
    let mut traces = Vec::new();
    for correlation in failed_correlations(log, query).await? {
        let (_, mut targets) = plan(log, views, &correlation).await?;
        targets.retain(|t| query.selects(t));
        if !targets.is_empty() {
            traces.push((correlation, targets));
        }
    }
    Ok(traces)
}

/// Counts of pending syncs by projection and by reason, for the summary printed first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedSummary {
    pub traces: usize,
    pub syncs: usize,
    pub by_projection: BTreeMap<&'static str, usize>,
    /// `<what>: <reason>` (`delivery: gave up after 11 deliveries`, `deferred`, ...).
    pub by_reason: BTreeMap<String, usize>,
}

impl FailedSummary {
    pub fn of(traces: &[(CorrelationId, Vec<Target>)]) -> Self {
        let mut summary = Self {
            traces: traces.len(),
            ..Self::default()
        };
        for target in traces.iter().flat_map(|(_, t)| t) {
            summary.syncs += 1;
            *summary.by_projection.entry(target.projection).or_default() += 1;
            *summary.by_reason.entry(reason_of(target)).or_default() += 1;
        }
        summary
    }
}

/// The reason a summary groups by: the kind of re-run and the recorded reason (a deferral's
/// `waiting_for` names one entity, so deferrals group by kind alone).
fn reason_of(target: &Target) -> String {
    use super::Pending;
    match &target.pending {
        Pending::FailedCall { last_reason, .. } | Pending::GaveUp { last_reason } => {
            format!("{}: {last_reason}", target.what())
        }
        Pending::NotRedrivable { reason } => format!("{}: {reason}", target.what()),
        Pending::Waiting { .. } => target.what(),
    }
}
