//! One reconciliation run of accounts: index Billing, compare CRM page by page, classify
//! what no CRM record claimed, record it all, and save a checkpoint after every CRM page so a
//! run stopped by its call budget resumes where it stopped (same run id) on the next call.
//!
//! A resumed leg reads Billing again (the index is not persisted) and CRM from the
//! checkpoint's last Id; Billing records that name, or are linked to, a CRM id at or before
//! that Id were compared in an earlier leg and are skipped.

use super::read::{billing_account, crm_account, soql, Budget, Pager};
use super::record::{drift_detected, observed, RunIds};
use super::{ReconcileError, CHECKPOINT};
use crate::connectors::{BillingClient, CrmClient};
use crate::ledger::{EventLog, ExpectedVersion, StreamAppend};
use crate::views::{ViewKey, ViewStore};
use futures::stream::{self, StreamExt, TryStreamExt};
use projections::account_sync::AccountSync;
use projections::catalogue::{ReconciliationCompleted, ReconciliationStarted};
use projections::projection::entity;
use projections::reconcile::{BillingIndex, Drift, DriftKind, Prefer};
use projections::{CorrelationId, DomainEvent, EventId, NewEvent, Projection, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// View reads in flight at once while comparing a page.
const VIEW_READS: usize = 16;
/// Drifts recorded per append when classifying what no CRM record claimed.
const RECORD_CHUNK: usize = 500;
/// Drifts a report keeps to show (the counts cover all of them).
const SHOWN: usize = 20;

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Compare and report; record nothing, keep no checkpoint.
    pub dry_run: bool,
    /// Append an observed-state event per repairable drift for the projectors.
    pub repair: bool,
    pub prefer: Prefer,
    /// Read calls allowed to this run, both systems together.
    pub max_api_calls: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    /// Stopped at `max_api_calls`; the same command resumes it.
    BudgetExhausted,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// What a run found and did (over all its legs, when resumed).
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    pub run_id: CorrelationId,
    pub resumed: bool,
    pub dry_run: bool,
    pub scanned_crm: u64,
    pub scanned_billing: u64,
    pub drift: BTreeMap<DriftKind, u64>,
    pub repaired: u64,
    pub calls_crm: u64,
    pub calls_billing: u64,
    pub duration: Duration,
    pub status: RunStatus,
    /// The first drifts found in this leg, to show.
    pub shown: Vec<Drift>,
}

impl ReconcileReport {
    pub fn drift_total(&self) -> u64 {
        self.drift.values().sum()
    }
}

/// The checkpoint: the run and how far its CRM pass got, with the counts so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Position {
    run_id: Option<CorrelationId>,
    done: bool,
    crm_after: Option<String>,
    scanned_crm: u64,
    drift: BTreeMap<String, u64>,
    repaired: u64,
    calls_crm: u64,
    calls_billing: u64,
}

/// Runs (or resumes) a reconciliation of accounts. `progress` is told the records compared
/// so far and the CRM total after every page.
pub async fn reconcile(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    crm: &CrmClient,
    billing: &BillingClient,
    options: &ReconcileOptions,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<ReconcileReport, ReconcileError> {
    let started = Instant::now();
    let saved = match options.dry_run {
        true => None,
        false => views
            .checkpoint(CHECKPOINT)
            .await?
            .and_then(|c| serde_json::from_str::<Position>(&c.position).ok())
            .filter(|p| !p.done && p.run_id.is_some()),
    };
    let resumed = saved.is_some();
    let mut position = saved.unwrap_or_default();
    let run = position.run_id.unwrap_or_default();
    position.run_id = Some(run);
    let ids = RunIds { run };
    let stream = ids.stream().map_err(|e| invalid("run_id", e))?;
    let earlier_legs_until = position.crm_after.clone();
    let mut budget = Budget {
        max: options.max_api_calls,
        ..Budget::default()
    };
    let mut recorder = Run {
        log,
        views,
        options,
        ids: &ids,
        stream: stream.clone(),
        cause: None,
        shown: vec![],
    };
    if !options.dry_run {
        let start = DomainEvent::ReconciliationStarted(ReconciliationStarted {
            run_id: run.to_string(),
            entities: vec![entity::ACCOUNT.to_string()],
            dry_run: false,
            repair: options.repair,
            prefer: options.prefer.as_str().to_string(),
            max_api_calls: options.max_api_calls,
            resumed,
            extra: Default::default(),
        });
        let key = format!(
            "started:{}",
            earlier_legs_until.as_deref().unwrap_or("beginning")
        );
        let event = ids
            .event(stream.clone(), &key, None, &start)
            .map_err(|e| invalid("run_id", e))?;
        recorder.cause = Some(event.event_id);
        log.append(&stream, ExpectedVersion::Any, vec![event])
            .await?;
    }

    // 1. Billing, whole, into the compact index.
    let mut index = BillingIndex::default();
    let mut pager = Pager::billing(billing, run);
    while let Some(page) = pager.next_page(&mut budget).await? {
        for record in &page.records {
            index.insert(billing_account(record)?);
        }
    }
    let mut status = match pager.exhausted {
        true => RunStatus::BudgetExhausted,
        false => RunStatus::Completed,
    };

    // 2. CRM, page by page, each record against the index and its view link.
    if status == RunStatus::Completed {
        let mut pager = Pager::crm(crm, soql(position.crm_after.as_deref()), run);
        let mut compared = 0u64;
        while let Some(page) = pager.next_page(&mut budget).await? {
            let accounts = page
                .records
                .iter()
                .map(crm_account)
                .collect::<Result<Vec<_>, _>>()?;
            let links = view_links(views, "crm", accounts.iter().map(|a| a.id.clone())).await?;
            let drifts: Vec<Drift> = accounts
                .iter()
                .zip(links)
                .filter_map(|(account, link)| {
                    index.compare_crm(account, link.as_deref(), options.prefer)
                })
                .collect();
            recorder.record(&drifts, &mut position).await?;
            compared += accounts.len() as u64;
            position.scanned_crm += accounts.len() as u64;
            position.crm_after = accounts.last().map(|a| a.id.clone()).or(position.crm_after);
            recorder.save(&position, &budget).await?;
            progress(compared, page.total);
        }
        if pager.exhausted {
            status = RunStatus::BudgetExhausted;
        }
    }

    // 3. What no CRM record claimed.
    if status == RunStatus::Completed {
        let unclaimed = index.unclaimed();
        let links = view_links(views, "billing", unclaimed.iter().cloned()).await?;
        let earlier = |crm: Option<&str>| matches!((crm, &earlier_legs_until), (Some(c), Some(until)) if c <= until.as_str());
        let drifts: Vec<Drift> = unclaimed
            .iter()
            .zip(links)
            .filter_map(|(id, link)| index.classify_unclaimed(id, link.as_deref()))
            .filter(|d| {
                let billing = d.billing.as_ref();
                let named = billing.and_then(|b| b.crm_id.as_deref());
                !earlier(d.view_link.as_deref()) && !earlier(named)
            })
            .collect();
        for chunk in drifts.chunks(RECORD_CHUNK) {
            recorder.record(chunk, &mut position).await?;
        }
    }

    position.calls_crm += budget.crm;
    position.calls_billing += budget.billing;
    position.done = status == RunStatus::Completed;
    let duration = started.elapsed();
    if !options.dry_run {
        let mut drift: BTreeMap<String, u64> = BTreeMap::new();
        for kind in DriftKind::ALL {
            let n = position.drift.get(kind.as_str()).copied().unwrap_or(0);
            drift.insert(kind.as_str().to_string(), n);
        }
        let completed = DomainEvent::ReconciliationCompleted(ReconciliationCompleted {
            run_id: run.to_string(),
            scanned: BTreeMap::from([
                ("crm".to_string(), position.scanned_crm),
                ("billing".to_string(), index.len() as u64),
            ]),
            drift,
            repaired: position.repaired,
            api_calls: BTreeMap::from([
                ("crm".to_string(), position.calls_crm),
                ("billing".to_string(), position.calls_billing),
            ]),
            duration_ms: duration.as_millis() as u64,
            status: status.as_str().to_string(),
            extra: Default::default(),
        });
        let key = format!(
            "completed:{}:{}",
            status.as_str(),
            position.crm_after.as_deref().unwrap_or("beginning")
        );
        let event = ids
            .event(stream.clone(), &key, recorder.cause, &completed)
            .map_err(|e| invalid("run_id", e))?;
        log.append(&stream, ExpectedVersion::Any, vec![event])
            .await?;
        views
            .save_checkpoint(CHECKPOINT, &position_json(&position))
            .await?;
    }
    Ok(ReconcileReport {
        run_id: run,
        resumed,
        dry_run: options.dry_run,
        scanned_crm: position.scanned_crm,
        scanned_billing: index.len() as u64,
        drift: DriftKind::ALL
            .iter()
            .map(|k| (*k, position.drift.get(k.as_str()).copied().unwrap_or(0)))
            .collect(),
        repaired: position.repaired,
        calls_crm: position.calls_crm,
        calls_billing: position.calls_billing,
        duration,
        status,
        shown: recorder.shown,
    })
}

fn invalid(field: &'static str, e: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Invalid {
        field,
        reason: e.to_string(),
    }
}

fn position_json(position: &Position) -> String {
    serde_json::to_string(position).expect("a position serializes")
}

/// The link the account-sync view holds for each id of one side (`None`: no item/link).
async fn view_links(
    views: &dyn ViewStore,
    side: &str,
    ids: impl Iterator<Item = String>,
) -> Result<Vec<Option<String>>, ReconcileError> {
    let keys = ids
        .map(|id| ViewKey::new(AccountSync::NAME, &format!("{side}#{id}")))
        .collect::<Result<Vec<_>, _>>()?;
    stream::iter(keys)
        .map(|key| async move {
            let item = views.get(&key).await?;
            Ok::<_, ReconcileError>(item.and_then(|i| {
                i.state
                    .get("link")
                    .and_then(|l| l.as_str())
                    .map(str::to_string)
            }))
        })
        .buffered(VIEW_READS)
        .try_collect()
        .await
}

/// What recording needs, for the whole run.
struct Run<'a> {
    log: &'a dyn EventLog,
    views: &'a dyn ViewStore,
    options: &'a ReconcileOptions,
    ids: &'a RunIds,
    stream: StreamId,
    /// The run's `ReconciliationStarted` (the cause of its drift events).
    cause: Option<EventId>,
    shown: Vec<Drift>,
}

impl Run<'_> {
    /// Counts, records and (with `repair`) hands to the projectors one page's drifts.
    async fn record(
        &mut self,
        drifts: &[Drift],
        position: &mut Position,
    ) -> Result<(), ReconcileError> {
        for drift in drifts {
            *position
                .drift
                .entry(drift.kind.as_str().to_string())
                .or_default() += 1;
            if self.shown.len() < SHOWN {
                self.shown.push(drift.clone());
            }
        }
        if self.options.dry_run || drifts.is_empty() {
            return Ok(());
        }
        let mut detected = Vec::with_capacity(drifts.len());
        let mut repairs: Vec<NewEvent> = Vec::new();
        for drift in drifts {
            let (key, event) = drift_detected(&self.ids.run, drift);
            let event = self
                .ids
                .event(self.stream.clone(), &key, self.cause, &event)
                .map_err(|e| invalid("drift", e))?;
            if self.options.repair {
                for (stream, key, observed) in observed(&self.ids.run, drift) {
                    let repair = self
                        .ids
                        .event(stream, &key, Some(event.event_id), &observed)
                        .map_err(|e| invalid("observed", e))?;
                    repairs.push(repair);
                }
            }
            detected.push(event);
        }
        self.log
            .append(&self.stream, ExpectedVersion::Any, detected)
            .await?;
        if !repairs.is_empty() {
            // `repaired` counts drifts handed to the projectors (an adopted pair is one drift
            // with an event on each side): the distinct causes among the new events.
            let appends = StreamAppend::per_stream_at_any_version(repairs);
            let causes: Vec<Vec<Option<EventId>>> = appends
                .iter()
                .map(|a| a.events.iter().map(|e| e.causation_id).collect())
                .collect();
            let mut handed = std::collections::BTreeSet::new();
            for (outcomes, causes) in self
                .log
                .append_batch(appends)
                .await?
                .into_iter()
                .zip(causes)
            {
                for (outcome, cause) in outcomes?.iter().zip(causes) {
                    if outcome.is_appended() {
                        handed.insert(cause);
                    }
                }
            }
            position.repaired += handed.len() as u64;
        }
        Ok(())
    }

    async fn save(&self, position: &Position, budget: &Budget) -> Result<(), ReconcileError> {
        if self.options.dry_run {
            return Ok(());
        }
        // `position` counts the calls of earlier legs, `budget` this leg's.
        let mut saved = position.clone();
        saved.calls_crm += budget.crm;
        saved.calls_billing += budget.billing;
        self.views
            .save_checkpoint(CHECKPOINT, &position_json(&saved))
            .await?;
        Ok(())
    }
}
