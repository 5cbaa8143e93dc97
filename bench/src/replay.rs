//! Replay: generated events seeded into a fresh embedded store, then every projection rebuilt
//! with `replay::replay` exactly as `ledger replay` does — wall time, events/s, peak memory,
//! and the per-event time at a tenth of the events (linear growth keeps it the same).

use super::append::ledger_append;
use super::workload::{story, EVENTS_PER_STORY};
use super::{
    peak_rss_bytes, process_cpu_seconds, reset_peak_rss, Bound, Measurement, Outcome, Scale,
    ScratchDir, Target,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_ledger::ledger::sqlite::{migrate, SqliteLedger};
use sync_ledger::ledger::EventLog;
use sync_ledger::replay::{replay, ReplayRequest, Silent, PROJECTIONS};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::{ViewNamespace, ViewStore};

pub const NAME: &str = "replay";
pub const TITLE: &str = "Replay: every projection rebuilt on the embedded store";

/// Events replayed in a full run (the 1,000,000).
pub const FULL_EVENTS: usize = 1_000_000;

/// Events replayed in a quick run: small enough for the unoptimised build the test runs
/// `--quick` with to stay well inside its two minutes (seeding included).
pub const QUICK_EVENTS: usize = 50_000;

/// Stories appended per ledger call batch while seeding (bounds the generator's memory).
const SEED_CHUNK: usize = 1000;

/// One replay of `events` events.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub events: usize,
    pub seed: Duration,
    pub wall: Duration,
    /// CPU time of the replay (user + system, every thread of the process).
    pub cpu: Option<f64>,
    pub peak_rss: Option<u64>,
}

/// Seeds a fresh store at `path` with `events` generated events (whole stories).
async fn seed(path: &Path, events: usize) -> Result<(SqliteLedger, usize), String> {
    migrate(path).map_err(|e| e.to_string())?;
    let ledger = SqliteLedger::open(path).map_err(|e| e.to_string())?;
    let stories = events.div_ceil(EVENTS_PER_STORY);
    let mut appended = 0;
    for first in (0..stories).step_by(SEED_CHUNK) {
        let chunk = (first..(first + SEED_CHUNK).min(stories))
            .map(story)
            .collect();
        appended += ledger_append(&ledger, chunk).await?;
    }
    Ok((ledger, appended))
}

pub async fn replay_once(dir: &Path, events: usize) -> Result<Run, String> {
    let path = dir.join(format!("replay-{events}.db"));
    let start = Instant::now();
    let (ledger, events) = seed(&path, events).await?;
    let seeded = start.elapsed();
    let log: Arc<dyn EventLog> = Arc::new(ledger);
    let views: Arc<dyn ViewStore> =
        Arc::new(SqliteViewStore::open(&path).map_err(|e| e.to_string())?);
    let peak_resettable = reset_peak_rss();
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let reports = replay(
        log,
        views,
        &ReplayRequest::new(ViewNamespace::live()),
        &mut Silent,
    )
    .await
    .map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    for report in &reports {
        if !report.finished || report.events_read != events as u64 {
            return Err(format!(
                "{} read {} of {events} events (finished: {})",
                report.projection, report.events_read, report.finished
            ));
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(Run {
        events,
        seed: seeded,
        wall,
        cpu,
        peak_rss: peak_rss_bytes().filter(|_| peak_resettable),
    })
}

pub async fn run(scale: Scale) -> Outcome {
    match measure(scale).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Skipped { reason },
    }
}

async fn measure(scale: Scale) -> Result<Outcome, String> {
    let dir = ScratchDir::new()?;
    let events = if scale.quick {
        QUICK_EVENTS
    } else {
        FULL_EVENTS
    };
    let small = replay_once(dir.path(), events / 10).await?;
    let large = replay_once(dir.path(), events).await?;
    let per_event_us = |r: &Run| r.wall.as_secs_f64() * 1e6 / r.events as f64;
    let mut wall = Measurement::new(
        NAME,
        format!("wall time, {} events", large.events),
        large.wall.as_secs_f64(),
        "s",
    );
    if large.events >= FULL_EVENTS {
        wall = wall.target(Target::Value(Bound::AtMost(10.0)));
    }
    let mut measurements = vec![
        wall,
        Measurement::new(
            NAME,
            format!("throughput, {} events", large.events),
            large.events as f64 / large.wall.as_secs_f64(),
            "events/s",
        ),
        Measurement::new(
            NAME,
            format!("per-event time, {} events", large.events),
            per_event_us(&large),
            "µs",
        )
        .against(format!("{} events", small.events), per_event_us(&small))
        .target(Target::Ratio(Bound::AtMost(1.5))),
    ];
    if let Some(cpu) = large.cpu {
        measurements.push(Measurement::new(
            NAME,
            format!(
                "CPU time (user + system, both threads), {} events",
                large.events
            ),
            cpu,
            "s",
        ));
    }
    if let Some(peak) = large.peak_rss {
        measurements.push(
            Measurement::new(
                NAME,
                format!("peak RSS during replay, {} events", large.events),
                peak as f64 / (1024.0 * 1024.0),
                "MiB",
            )
            .target(Target::Value(Bound::AtMost(256.0))),
        );
    }
    Ok(Outcome::Measured {
        measurements,
        notes: vec![
            format!(
                "projections rebuilt: {} (one pass over the log in the global order, pages of \
                 500 read ahead on a second thread, every projection's changed items written in \
                 one transaction + checkpoints every 500 events, streaming digests at the end, \
                 into a fresh ledger.db); seeding (not timed into replay) took {:.1} s and \
                 {:.1} s via the ledger's append",
                PROJECTIONS.join(", "),
                small.seed.as_secs_f64(),
                large.seed.as_secs_f64()
            ),
            "growth: per-event time at N over per-event time at N/10 (1.0 = linear; target \
             <= 1.5 leaves room for a shared machine's noise); peak RSS is the process's VmHWM \
             reset just before the replay; CPU time is the process's user + system time over the \
             replay (the reader thread included): on a loaded machine the wall time is mostly \
             the wait for a core, the CPU time is not"
                .to_string(),
        ],
    })
}
