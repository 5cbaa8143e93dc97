//! Drives replays: reads the log in the global order `(recorded_at, event_id)` page by page,
//! feeds the selected projections' folds (all from one read when nothing caps the run),
//! flushes and checkpoints every N events (in the target's view store), and resumes from a
//! running checkpoint. Also `verify` and `switch`.

use super::digest::{diff, snapshot, stream_digest, Difference, ViewDigest};
use super::fold::{commit, Offered, Replayer, CACHE_LIMIT};
use super::pages::Pages;
use super::registry::{rebuilder, view_name, PROJECTIONS};
use super::ReplayError;
use crate::ledger::EventLog;
use crate::views::{ExpectedRevision, ViewNamespace, ViewStore, ViewWrite, MAX_WRITES_PER_COMMIT};
use chrono::{DateTime, Utc};
use projections::envelope::format_timestamp;
use projections::{Partition, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What to rebuild and where.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Projection names; empty means every projection.
    pub projections: Vec<String>,
    /// `None`: wipe the target's items and rebuild from the first event. `Some(t)`: keep the
    /// target's items and fold the events recorded at or after `t` on top (a stream's earlier
    /// events are read from the log where an item lacks them), e.g. after restoring a backup.
    pub from: Option<DateTime<Utc>>,
    /// The live views (in place) or a named namespace (`--into`).
    pub target: ViewNamespace,
    /// Stop after reading this many events in total, leaving a checkpoint to resume from.
    pub max_events: Option<u64>,
    /// Flush items and save the checkpoint after this many events.
    pub checkpoint_every: u64,
    /// Events per `read_all` page.
    pub page_size: usize,
    /// Whether to read and write checkpoints (off for scratch rebuilds that are thrown away).
    pub checkpoints: bool,
    /// Rebuild only the view keys this partition owns (`--partition i/N`): N runs, one per
    /// partition, rebuild a projection in parallel, each with its own checkpoint and wipe.
    pub partition: Partition,
    /// Items each projection keeps cached between flushes: memory against store reads.
    pub cache_items: usize,
}

impl ReplayRequest {
    pub fn new(target: ViewNamespace) -> Self {
        Self {
            projections: Vec::new(),
            from: None,
            target,
            max_events: None,
            checkpoint_every: 500,
            page_size: 500,
            checkpoints: true,
            partition: Partition::ALL,
            cache_items: CACHE_LIMIT,
        }
    }

    /// The selected projection names, checked, in rebuild order.
    pub fn selected(&self) -> Result<Vec<&'static str>, ReplayError> {
        if self.projections.is_empty() {
            return Ok(PROJECTIONS.to_vec());
        }
        self.projections
            .iter()
            .map(|name| view_name(name))
            .collect()
    }
}

/// Receives progress; the CLI draws a bar or prints lines. All methods default to nothing.
pub trait Progress: Send {
    fn start(&mut self, _projection: &str, _resumed_at: u64) {}
    fn advance(&mut self, _events: u64) {}
    fn finish(&mut self, _report: &ProjectionReport) {}
}

/// Progress nobody watches.
pub struct Silent;
impl Progress for Silent {}

/// What a replay did for one projection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProjectionReport {
    pub projection: String,
    pub target: String,
    /// Resumed from a checkpoint of an interrupted run (so nothing was wiped).
    pub resumed: bool,
    pub wiped: usize,
    /// Events read by this run.
    pub events_read: u64,
    /// Events read by this rebuild including the runs it resumed.
    pub events_total: u64,
    pub applied: u64,
    pub already_applied: u64,
    pub ignored: u64,
    pub gap_filled: u64,
    pub items_written: u64,
    /// Reached the end of the log (otherwise stopped by `max_events`).
    pub finished: bool,
    /// The partition rebuilt (`0/1`: every key).
    pub partition: Option<String>,
    /// The target's items after a finished run (of the partition's keys only, for a
    /// partitioned run: the digests of every partition combine into the whole's).
    pub digest: Option<ViewDigest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Running,
    Done,
}

/// The checkpoint of one projection's replay into one namespace, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReplayCheckpoint {
    status: Status,
    from: Option<String>,
    /// Global order key of the last event folded and flushed.
    after: Option<String>,
    events: u64,
}

fn checkpoint_name(projection: &str, partition: Partition) -> String {
    if partition.is_all() {
        format!("replay#{projection}")
    } else {
        format!(
            "replay#{projection}#partition-{}-of-{}",
            partition.index(),
            partition.count()
        )
    }
}

async fn load_checkpoint(
    views: &dyn ViewStore,
    projection: &str,
    partition: Partition,
) -> Result<Option<ReplayCheckpoint>, ReplayError> {
    let Some(saved) = views
        .checkpoint(&checkpoint_name(projection, partition))
        .await?
    else {
        return Ok(None);
    };
    // An unreadable checkpoint (an older format) only costs a fresh start, never a wrong resume.
    Ok(serde_json::from_str(&saved.position).ok())
}

async fn save_checkpoint(
    views: &dyn ViewStore,
    projection: &str,
    partition: Partition,
    checkpoint: &ReplayCheckpoint,
) -> Result<(), ReplayError> {
    let json = serde_json::to_string(checkpoint).expect("checkpoints serialize");
    views
        .save_checkpoint(&checkpoint_name(projection, partition), &json)
        .await?;
    Ok(())
}

/// Items per page when a partition's wipe lists a projection's items.
const WIPE_PAGE: usize = 1000;

/// Deletes the items of `projection` that `partition` owns (every item for `Partition::ALL`),
/// leaving the other partitions' items to their own runs; returns how many went.
async fn wipe(
    views: &dyn ViewStore,
    projection: &str,
    partition: Partition,
) -> Result<usize, ReplayError> {
    if partition.is_all() {
        return Ok(views.delete_projection(projection).await?);
    }
    let mut wiped = 0;
    let mut after = None;
    loop {
        let page = views.list_page(projection, after.take(), WIPE_PAGE).await?;
        let owned: Vec<_> = page
            .items
            .into_iter()
            .filter(|item| partition.owns(item.key.projection(), item.key.key()))
            .map(|item| item.key)
            .collect();
        views.delete_items(&owned).await?;
        wiped += owned.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(wiped),
        }
    }
}

/// One projection's rebuild in progress: its fold, report and checkpoint.
struct Lane {
    name: &'static str,
    fold: Box<dyn Replayer>,
    report: ProjectionReport,
    checkpoint: ReplayCheckpoint,
    since_checkpoint: u64,
    /// Events at or before this global order key were folded by the run this one resumes
    /// (only set while a joint pass reads events this lane has already seen).
    skip_until: Option<String>,
    /// Whether this run offered the lane any event.
    offered: bool,
}

impl Lane {
    /// Resumes the projection's running checkpoint, or wipes its items and starts afresh.
    async fn open(
        name: &'static str,
        log: &Arc<dyn EventLog>,
        target: &Arc<dyn ViewStore>,
        request: &ReplayRequest,
        from_text: &Option<String>,
    ) -> Result<Self, ReplayError> {
        let mut fold = rebuilder(name, log.clone(), target.clone())?;
        fold.restrict_to(request.partition);
        fold.cache_items(request.cache_items);
        let mut report = ProjectionReport {
            projection: name.to_string(),
            target: request.target.to_string(),
            partition: (!request.partition.is_all()).then(|| request.partition.to_string()),
            ..Default::default()
        };
        let saved = if request.checkpoints {
            load_checkpoint(target.as_ref(), name, request.partition).await?
        } else {
            None
        };
        let resume = saved.filter(|c| c.status == Status::Running && &c.from == from_text);
        let checkpoint = match resume {
            Some(c) => {
                report.resumed = true;
                c
            }
            None => {
                if request.from.is_none() {
                    report.wiped = wipe(target.as_ref(), name, request.partition).await?;
                    fold.assume_empty();
                }
                ReplayCheckpoint {
                    status: Status::Running,
                    from: from_text.clone(),
                    after: None,
                    events: 0,
                }
            }
        };
        if request.checkpoints && !report.resumed {
            // Recorded before the first event so a run killed early resumes instead of
            // wiping again (a second wipe would be harmless, but the count would restart).
            save_checkpoint(target.as_ref(), name, request.partition, &checkpoint).await?;
        }
        Ok(Self {
            name,
            fold,
            report,
            checkpoint,
            since_checkpoint: 0,
            skip_until: None,
            offered: false,
        })
    }

    /// Folds one event; flushes and saves the checkpoint every `checkpoint_every` events.
    async fn offer(
        &mut self,
        event: &RecordedEvent,
        target: &dyn ViewStore,
        request: &ReplayRequest,
    ) -> Result<(), ReplayError> {
        self.fold_one(event).await?;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= request.checkpoint_every {
            self.checkpoint.after = Some(event.global_order_key());
            self.report.items_written += self.fold.flush().await? as u64;
            self.save(target, request).await?;
            self.since_checkpoint = 0;
        }
        Ok(())
    }

    /// Folds one event into the lane's items (in memory until a flush) and counts it.
    async fn fold_one(&mut self, event: &RecordedEvent) -> Result<(), ReplayError> {
        match self.fold.offer(event).await? {
            Offered::Applied { gap_filled } => {
                self.report.applied += 1;
                self.report.gap_filled += gap_filled as u64;
            }
            Offered::AlreadyApplied => self.report.already_applied += 1,
            Offered::Ignored => self.report.ignored += 1,
        }
        self.offered = true;
        self.checkpoint.events += 1;
        self.report.events_read += 1;
        Ok(())
    }

    async fn save(
        &self,
        target: &dyn ViewStore,
        request: &ReplayRequest,
    ) -> Result<(), ReplayError> {
        if request.checkpoints {
            save_checkpoint(
                target,
                &self.report.projection,
                request.partition,
                &self.checkpoint,
            )
            .await?;
        }
        Ok(())
    }

    /// Writes what is left, saves the final checkpoint (`last`: the global order key of the
    /// last event read, which a lane that was offered anything has folded) and the digest.
    async fn close(
        mut self,
        last: Option<String>,
        finished: bool,
        target: &dyn ViewStore,
        request: &ReplayRequest,
    ) -> Result<ProjectionReport, ReplayError> {
        if self.offered {
            if let Some(last) = last {
                self.checkpoint.after = Some(last);
            }
        }
        self.report.items_written += self.fold.flush().await? as u64;
        self.report.finished = finished;
        if finished {
            self.checkpoint.status = Status::Done;
        }
        self.save(target, request).await?;
        self.report.events_total = self.checkpoint.events;
        if finished {
            self.report.digest =
                Some(stream_digest(target, &self.report.projection, request.partition).await?);
        }
        Ok(self.report)
    }
}

/// Replays the selected projections into `request.target` of `views`. Without `max_events`
/// one pass over the log feeds every projection (each event read and decoded once, not once
/// per projection); with it they run one after the other, and every report after the last
/// has `finished = false` when the budget runs out.
pub async fn replay(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    request: &ReplayRequest,
    progress: &mut dyn Progress,
) -> Result<Vec<ProjectionReport>, ReplayError> {
    if request.page_size == 0 || request.checkpoint_every == 0 {
        return Err(ReplayError::Invalid {
            field: "checkpoint_every",
            reason: "page size and checkpoint interval must be at least 1".to_string(),
        });
    }
    let target = views.in_namespace(request.target.clone());
    let from_text = request.from.as_ref().map(format_timestamp);
    let names = request.selected()?;
    if request.max_events.is_none() {
        return replay_together(&log, &target, request, &from_text, &names, progress).await;
    }
    let mut budget = request.max_events;
    let mut reports = Vec::new();
    for name in names {
        let mut lane = Lane::open(name, &log, &target, request, &from_text).await?;
        progress.start(name, lane.checkpoint.events);
        let mut after = lane.checkpoint.after.clone();
        let mut finished = false;
        loop {
            let limit = match budget {
                Some(0) => break,
                Some(left) => request
                    .page_size
                    .min(usize::try_from(left).unwrap_or(usize::MAX)),
                None => request.page_size,
            };
            let page = log.read_all(request.from, after.as_deref(), limit).await?;
            let Some(last) = page.last() else {
                finished = true;
                break;
            };
            after = Some(last.global_order_key());
            for event in &page {
                lane.offer(event, target.as_ref(), request).await?;
            }
            if let Some(left) = budget.as_mut() {
                *left -= page.len() as u64;
            }
            progress.advance(page.len() as u64);
        }
        let report = lane
            .close(after, finished, target.as_ref(), request)
            .await?;
        progress.finish(&report);
        reports.push(report);
        if !finished {
            break;
        }
    }
    Ok(reports)
}

/// Every selected projection fed from one read of the log, starting at the earliest of their
/// checkpoints; a lane resumed further on skips the events its earlier run folded.
async fn replay_together(
    log: &Arc<dyn EventLog>,
    target: &Arc<dyn ViewStore>,
    request: &ReplayRequest,
    from_text: &Option<String>,
    names: &[&'static str],
    progress: &mut dyn Progress,
) -> Result<Vec<ProjectionReport>, ReplayError> {
    let mut lanes = Vec::with_capacity(names.len());
    for name in names {
        lanes.push(Lane::open(name, log, target, request, from_text).await?);
    }
    // `None` (from the first event) sorts before any key, so this is the earliest start.
    let mut after = lanes
        .iter()
        .map(|l| l.checkpoint.after.clone())
        .min()
        .flatten();
    for lane in &mut lanes {
        if lane.checkpoint.after > after {
            lane.skip_until = lane.checkpoint.after.clone();
        }
    }
    progress.start(
        &names.join(", "),
        lanes.iter().map(|l| l.checkpoint.events).min().unwrap_or(0),
    );
    let mut pages = Pages::read_ahead(log.clone(), request.from, after.clone(), request.page_size);
    let mut since_checkpoint = 0;
    let mut in_flight = None;
    while let Some(page) = pages.next().await {
        let page = page?;
        let Some(last) = page.last() else {
            continue;
        };
        after = Some(last.global_order_key());
        for event in &page {
            // Keys are compared only while some lane is still catching up to its checkpoint.
            let key = lanes
                .iter()
                .any(|l| l.skip_until.is_some())
                .then(|| event.global_order_key());
            for lane in &mut lanes {
                if let (Some(until), Some(key)) = (&lane.skip_until, &key) {
                    // Global order keys sort as text in the global order.
                    if key <= until {
                        continue;
                    }
                    lane.skip_until = None;
                }
                lane.fold_one(event).await?;
            }
            since_checkpoint += 1;
            if since_checkpoint >= request.checkpoint_every {
                // Write-behind: this batch is written while the folds go on with the next
                // events (on the other core). Batches land in order, and caches drop items
                // only once every earlier batch has landed, so no fold reads a stale item.
                landed(&mut in_flight).await?;
                for lane in lanes.iter_mut() {
                    lane.fold.evict();
                }
                let batch = take_batch(&mut lanes, event, request)?;
                in_flight = Some(tokio::spawn(write_batch(
                    target.clone(),
                    batch,
                    request.partition,
                )));
                since_checkpoint = 0;
            }
        }
        progress.advance(page.len() as u64);
    }
    // What is left goes in one batch too; each lane's `close` then saves its checkpoint.
    landed(&mut in_flight).await?;
    flush_lanes(&mut lanes, target.as_ref()).await?;
    let mut reports = Vec::with_capacity(lanes.len());
    for lane in lanes {
        let report = lane
            .close(after.clone(), true, target.as_ref(), request)
            .await?;
        progress.finish(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// The batch of one checkpoint: every lane's changed items, then the lanes' checkpoints.
struct Batch {
    /// One group per changed item: the item and the pages it spilled.
    writes: Vec<Vec<ViewWrite>>,
    checkpoints: Vec<(&'static str, ReplayCheckpoint)>,
}

/// Takes every lane's changed items and (at `event`) checkpoints as one batch; a lane still
/// catching up keeps its own checkpoint.
fn take_batch(
    lanes: &mut [Lane],
    event: &RecordedEvent,
    request: &ReplayRequest,
) -> Result<Batch, ReplayError> {
    let key = event.global_order_key();
    let mut batch = Batch {
        writes: Vec::new(),
        checkpoints: Vec::new(),
    };
    for lane in lanes.iter_mut() {
        let drained = lane.fold.drain()?;
        lane.report.items_written += drained.len() as u64;
        batch.writes.extend(drained);
        if lane.skip_until.is_none() {
            lane.checkpoint.after = Some(key.clone());
        }
        if request.checkpoints {
            batch.checkpoints.push((lane.name, lane.checkpoint.clone()));
        }
    }
    Ok(batch)
}

/// Writes a batch (one transaction on the embedded store), then saves its checkpoints: a
/// checkpoint never runs ahead of the items it covers.
async fn write_batch(
    target: Arc<dyn ViewStore>,
    batch: Batch,
    partition: Partition,
) -> Result<(), ReplayError> {
    commit(target.as_ref(), batch.writes).await?;
    for (name, checkpoint) in &batch.checkpoints {
        save_checkpoint(target.as_ref(), name, partition, checkpoint).await?;
    }
    Ok(())
}

/// Waits for the batch being written, if any.
async fn landed(
    in_flight: &mut Option<tokio::task::JoinHandle<Result<(), ReplayError>>>,
) -> Result<(), ReplayError> {
    match in_flight.take() {
        None => Ok(()),
        Some(task) => task.await.map_err(|e| {
            ReplayError::View(crate::views::ViewError::Store(format!(
                "the replay's view writer failed: {e}"
            )))
        })?,
    }
}

/// Commits every lane's pending writes together (at the end of a run).
async fn flush_lanes(lanes: &mut [Lane], target: &dyn ViewStore) -> Result<(), ReplayError> {
    let mut writes = Vec::new();
    for lane in lanes.iter_mut() {
        let drained = lane.fold.drain()?;
        lane.report.items_written += drained.len() as u64;
        writes.extend(drained);
    }
    commit(target, writes).await?;
    Ok(())
}

/// How many events `read_all` yields from `from` (for a progress bar's length and ETA).
pub async fn count_events(
    log: &dyn EventLog,
    from: Option<DateTime<Utc>>,
) -> Result<u64, ReplayError> {
    const PAGE: usize = 1000;
    let mut after: Option<String> = None;
    let mut count = 0u64;
    loop {
        let page = log.read_all(from, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        count += page.len() as u64;
        after = Some(last.global_order_key());
    }
}

/// The result of rebuilding one projection into scratch and comparing it with the live views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub projection: String,
    pub live: ViewDigest,
    pub rebuilt: ViewDigest,
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Rebuilds the selected projections into a scratch namespace (deleted afterwards), then
/// compares each with the live views. The live views are only read.
pub async fn verify(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    projections: &[String],
    progress: &mut dyn Progress,
) -> Result<Vec<VerifyReport>, ReplayError> {
    let scratch_name = format!("verify-{}", uuid::Uuid::now_v7().simple());
    let scratch = ViewNamespace::named(&scratch_name)?;
    let mut request = ReplayRequest::new(scratch.clone());
    request.projections = projections.to_vec();
    request.checkpoints = false;
    let rebuilt_views = views.in_namespace(scratch);
    let live_views = views.in_namespace(ViewNamespace::live());
    let result = async {
        replay(log, views.clone(), &request, progress).await?;
        let mut reports = Vec::new();
        for name in request.selected()? {
            let live = snapshot(live_views.as_ref(), name).await?;
            let rebuilt = snapshot(rebuilt_views.as_ref(), name).await?;
            reports.push(VerifyReport {
                projection: name.to_string(),
                live: ViewDigest::of(&live),
                rebuilt: ViewDigest::of(&rebuilt),
                differences: diff(&live, &rebuilt),
            });
        }
        Ok(reports)
    }
    .await;
    // The scratch copy goes whatever happened; failing to delete it must not hide the result.
    for name in request.selected()? {
        if let Err(e) = rebuilt_views.delete_projection(name).await {
            tracing::warn!(namespace = %scratch_name, projection = name, error = %e, "scratch views left behind");
        }
    }
    result
}

/// Makes a namespace built by `--into` the live views: replaces each projection's live items
/// with copies of the namespace's, then deletes the namespace's. Not atomic across items —
/// stop the projectors while switching.
pub async fn switch(
    views: Arc<dyn ViewStore>,
    from: &ViewNamespace,
    projections: &[&str],
) -> Result<Vec<(String, usize)>, ReplayError> {
    if from.name().is_none() {
        return Err(ReplayError::Invalid {
            field: "into",
            reason: "switching needs a named namespace to take the views from".to_string(),
        });
    }
    let source = views.in_namespace(from.clone());
    let live = views.in_namespace(ViewNamespace::live());
    let mut copied = Vec::new();
    for name in projections {
        let items = source.list(name).await?;
        live.delete_projection(name).await?;
        for chunk in items.chunks(MAX_WRITES_PER_COMMIT) {
            let writes = chunk
                .iter()
                .map(|item| ViewWrite {
                    key: item.key.clone(),
                    expected: ExpectedRevision::Absent,
                    last_version: item.last_version.clone(),
                    state: item.state.clone(),
                })
                .collect();
            live.commit(writes).await?;
        }
        source.delete_projection(name).await?;
        copied.push((name.to_string(), items.len()));
    }
    Ok(copied)
}
