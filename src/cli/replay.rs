//! `ledger replay`: rebuilds projections from the log (in place, `--into` a namespace with an
//! optional `--switch`, or `--verify` against the live views). Progress is a bar with
//! events/s and ETA on a terminal, plain lines otherwise. No external system is ever called.

use super::CliError;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use projections::Partition;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::open_store;
use sync_ledger::replay::{self, ProjectionReport, ReplayRequest};
use sync_ledger::views::{open_views, ViewNamespace};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Projection to rebuild (repeatable); all when omitted.
    #[arg(long = "projection", value_name = "NAME")]
    pub projections: Vec<String>,
    /// Fold the events recorded at or after this RFC 3339 time onto the kept views (no wipe),
    /// e.g. after restoring views from a backup; without it the views are rebuilt from the start.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Rebuild into this namespace instead of the live views.
    #[arg(long, value_name = "NAME", conflicts_with = "verify")]
    pub into: Option<String>,
    /// After a finished `--into` rebuild, make it the live views.
    #[arg(long, requires = "into", conflicts_with = "partition")]
    pub switch: bool,
    /// Rebuild into scratch and compare with the live views; exits 1 listing differing keys.
    #[arg(long, conflicts_with_all = ["from", "max_events"])]
    pub verify: bool,
    /// Stop after reading this many events (the checkpoint lets the same command resume).
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
    /// Rebuild only the view keys of partition I of N (0-based, e.g. 2/4): the stable FNV-1a
    /// hash of each item's key picks its partition, so N processes rebuild the projections in
    /// parallel, each with its own checkpoint; their digests add up to one run's.
    #[arg(long, value_name = "I/N", conflicts_with = "verify")]
    pub partition: Option<Partition>,
    /// Items each projection keeps in memory between checkpoints (a bigger cache reads the
    /// store less and holds more memory).
    #[arg(long, value_name = "N", default_value_t = sync_ledger::replay::fold::CACHE_LIMIT as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_items: u64,
    /// Save the checkpoint every N events.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("--from must be an RFC 3339 time like 2026-11-26T08:00:00Z: {e}"))
}

pub async fn run(store: &StoreUrl, args: &ReplayArgs) -> Result<ExitCode, CliError> {
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    let mut progress = Reporter::new(std::io::stderr().is_terminal());

    if args.verify {
        let reports = replay::verify(log, views, &args.projections, &mut progress).await?;
        let mut identical = true;
        for report in &reports {
            if report.identical() {
                println!("{}: identical, {}", report.projection, report.live);
            } else {
                identical = false;
                println!(
                    "{}: {} differing keys (live {}, rebuilt {}):",
                    report.projection,
                    report.differences.len(),
                    report.live,
                    report.rebuilt
                );
                for d in &report.differences {
                    println!("  {}  {}", d.pk, d.kind);
                }
            }
        }
        return Ok(if identical {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let target = match &args.into {
        Some(name) => ViewNamespace::named(name)?,
        None => ViewNamespace::live(),
    };
    let mut request = ReplayRequest::new(target.clone());
    request.projections = args.projections.clone();
    request.from = args.from;
    request.max_events = args.max_events;
    request.checkpoint_every = args.checkpoint_every;
    request.partition = args.partition.unwrap_or(Partition::ALL);
    request.cache_items = usize::try_from(args.cache_items).unwrap_or(usize::MAX);
    if progress.terminal {
        progress.total = Some(replay::count_events(log.as_ref(), args.from).await?);
    }
    let reports = replay::replay(log, views.clone(), &request, &mut progress).await?;
    for report in &reports {
        println!("{}", summary(report));
    }
    let finished = reports.iter().all(|r| r.finished) && reports.len() == request.selected()?.len();
    if !finished {
        println!("stopped early: checkpoint saved; run the same command again to resume");
        return Ok(ExitCode::SUCCESS);
    }
    if args.switch {
        let names = request.selected()?;
        for (projection, items) in replay::switch(views, &target, &names).await? {
            println!("{projection}: switched {items} items from {target} to the live views");
        }
    } else if args.into.is_some() {
        println!(
            "to make it live: ledger replay --into {target} --switch (stop the projectors first)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per projection: what the run read, and the digest of what it built.
pub fn summary(r: &ProjectionReport) -> String {
    let start = if r.resumed {
        "resumed from its checkpoint".to_string()
    } else if r.wiped > 0 {
        format!("wiped {} items", r.wiped)
    } else {
        "started".to_string()
    };
    let partition = r
        .partition
        .as_ref()
        .map(|p| format!(" (partition {p})"))
        .unwrap_or_default();
    let mut line = format!(
        "{} -> {}{partition}: {start}; {} events read ({} applied, {} already applied, {} ignored, {} filled from streams), {} item writes",
        r.projection, r.target, r.events_read, r.applied, r.already_applied, r.ignored, r.gap_filled, r.items_written
    );
    match &r.digest {
        // In full: the digests of a projection's partitions add up to one run's.
        Some(digest) => line.push_str(&format!(
            "; digest sha256-sum:{} ({} items)",
            digest.sha256_sum, digest.items
        )),
        None => line.push_str(&format!("; stopped after {} events", r.events_total)),
    }
    line
}

/// Draws progress: an indicatif bar on a terminal, a plain line per page otherwise.
struct Reporter {
    terminal: bool,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    started: Instant,
    projection: String,
    done: u64,
}

impl Reporter {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            total: None,
            bar: None,
            started: Instant::now(),
            projection: String::new(),
            done: 0,
        }
    }
}

impl replay::Progress for Reporter {
    fn start(&mut self, projection: &str, resumed_at: u64) {
        self.projection = projection.to_string();
        self.started = Instant::now();
        self.done = resumed_at;
        if self.terminal {
            let bar = ProgressBar::new(self.total.unwrap_or(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>14} [{bar:30}] {pos}/{len} events  {per_sec}  ETA {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(projection.to_string());
            bar.set_position(resumed_at);
            self.bar = Some(bar);
        }
    }

    fn advance(&mut self, events: u64) {
        self.done += events;
        match &self.bar {
            Some(bar) => bar.inc(events),
            None => {
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                eprintln!(
                    "replay {}: {} events ({:.0} events/s)",
                    self.projection,
                    self.done,
                    events as f64 / secs
                );
                self.started = Instant::now();
            }
        }
    }

    fn finish(&mut self, _report: &ProjectionReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
