//! The worker over the ledger's own change feed (the embedded store's rowid order): one loop
//! per projection with its own checkpoint `worker#<projection>`, like one ESM per function.
//! It must not interpret events; it batches, delivers, retries and checkpoints.

use super::{
    on_failure, sleep_or_stop, Shutdown, StopWhen, WorkerError, WorkerReport, WorkerSettings,
};
use crate::ledger::{ChangeFeed, EventLog, FeedItem, FeedStart};
use crate::projector::Projector;
use crate::views::ViewStore;
use std::sync::Arc;

/// The checkpoint a feed worker keeps for one projection.
pub fn checkpoint_name(projection: &str) -> String {
    format!("worker#{projection}")
}

/// Runs one projection over the change feed until `settings.stop` or a stop request.
pub async fn run(
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    projector: Arc<dyn Projector>,
    settings: WorkerSettings,
    mut shutdown: Shutdown,
) -> Result<WorkerReport, WorkerError> {
    let name = checkpoint_name(projector.name());
    let start = match views.checkpoint(&name).await? {
        Some(checkpoint) => FeedStart::After(checkpoint.position),
        None => FeedStart::Beginning,
    };
    let mut feed = log.change_feed(start).await?;
    let mut report = WorkerReport::new(projector.name());
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch = next_batch(feed.as_mut(), &settings, &mut shutdown).await?;
        if batch.is_empty() {
            if settings.stop != StopWhen::Never
                || sleep_or_stop(settings.idle_poll, &mut shutdown).await
            {
                break;
            }
            continue;
        }
        let finished = deliver(
            log.as_ref(),
            views.as_ref(),
            projector.as_ref(),
            &name,
            &batch,
            &settings,
            &mut shutdown,
            &mut report,
        )
        .await?;
        if !finished || settings.stop == StopWhen::Once {
            break;
        }
    }
    Ok(report)
}

/// Up to `batch_size` items; when the first poll returns fewer, waits up to the batching
/// window for more, as the ESM does with `MaximumBatchingWindowInSeconds`.
async fn next_batch(
    feed: &mut dyn ChangeFeed,
    settings: &WorkerSettings,
    shutdown: &mut Shutdown,
) -> Result<Vec<FeedItem>, WorkerError> {
    let mut batch = feed.poll(settings.batch_size).await?;
    if !batch.is_empty()
        && batch.len() < settings.batch_size
        && !settings.batch_window.is_zero()
        && !sleep_or_stop(settings.batch_window, shutdown).await
    {
        batch.extend(feed.poll(settings.batch_size - batch.len()).await?);
    }
    Ok(batch)
}

/// Delivers one batch until every record is applied or given up. Returns `false` when a stop
/// request interrupted the retries (the checkpoint then stays before the failed record).
#[allow(clippy::too_many_arguments)]
async fn deliver(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    projector: &dyn Projector,
    checkpoint: &str,
    batch: &[FeedItem],
    settings: &WorkerSettings,
    shutdown: &mut Shutdown,
    report: &mut WorkerReport,
) -> Result<bool, WorkerError> {
    let mut pending = batch;
    let mut retries = 0;
    while let Some(last) = pending.last() {
        let outcome = projector
            .process(pending.iter().map(|item| item.event.clone()).collect())
            .await;
        report.add(&outcome);
        let Some(failed) = outcome.first_failure() else {
            views.save_checkpoint(checkpoint, &last.position).await?;
            return Ok(true);
        };
        if failed > 0 {
            // Like a batch item failure: everything before the failed record is done.
            views
                .save_checkpoint(checkpoint, &pending[failed - 1].position)
                .await?;
            pending = &pending[failed..];
            retries = 0;
        }
        retries += 1;
        report.retried += 1;
        if retries > settings.max_retries {
            let reason = match &outcome.statuses[failed] {
                crate::projector::EventStatus::Failed { reason, .. } => reason.clone(),
                _ => "unknown".to_string(),
            };
            on_failure(log, projector.name(), &pending[0].event, &reason).await;
            report.gave_up += 1;
            views
                .save_checkpoint(checkpoint, &pending[0].position)
                .await?;
            pending = &pending[1..];
            retries = 0;
            continue;
        }
        if sleep_or_stop(settings.backoff(retries), shutdown).await {
            return Ok(false);
        }
    }
    Ok(true)
}
