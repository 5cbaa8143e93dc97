//! Embedded append: events/s of `SqliteLedger::append` (per-stream batches, dedupe on, the
//! `EventLog` port as callers use it) against raw rusqlite INSERTs of the same rows in one
//! transaction, each into a fresh migrated `ledger.db`. It measures; it changes no store code.

use super::workload::{story, Story, EVENTS_PER_STORY};
use super::{median, Bound, Measurement, Outcome, Scale, ScratchDir, Target};
use chrono::Utc;
use projections::envelope::format_timestamp;
use projections::NewEvent;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::{Duration, Instant};
use sync_ledger::ledger::sqlite::{migrate, SqliteLedger};
use sync_ledger::ledger::{EventLog, ExpectedVersion, StreamAppend};

pub const NAME: &str = "append";
pub const TITLE: &str = "Embedded append: ledger vs raw rusqlite INSERT";

/// Events appended per round in a full run.
pub const FULL_EVENTS: usize = 100_000;

/// Stories per `append_batch` call: 1,000 events over 200 streams, the size of one full
/// DynamoDB Streams / SQS delivery to ingest.
pub const BATCH_STORIES: usize = 100;

/// Appends every story through the ledger: one `append_batch` per [`BATCH_STORIES`] stories,
/// one stream append (with its dedupe) per story stream inside it.
pub async fn ledger_append(ledger: &SqliteLedger, stories: Vec<Story>) -> Result<usize, String> {
    let mut appended = 0;
    let mut stories = stories.into_iter().peekable();
    while stories.peek().is_some() {
        let batch: Vec<StreamAppend> = stories
            .by_ref()
            .take(BATCH_STORIES)
            .flat_map(|s| [(s.crm_stream, s.crm), (s.billing_stream, s.billing)])
            .map(|(stream, events)| StreamAppend {
                stream,
                expected: ExpectedVersion::Any,
                events,
            })
            .collect();
        for outcomes in ledger
            .append_batch(batch)
            .await
            .map_err(|e| e.to_string())?
        {
            let outcomes = outcomes.map_err(|e| e.to_string())?;
            appended += outcomes.iter().filter(|o| o.is_appended()).count();
        }
    }
    Ok(appended)
}

/// One events-table row as text and numbers, rendered before the clock starts so the
/// baseline is the database's work alone.
pub struct Row {
    event_id: String,
    stream_id: String,
    version: i64,
    event_type: String,
    source: &'static str,
    source_event_id: String,
    correlation_id: String,
    causation_id: Option<String>,
    occurred_at: String,
    recorded_at: String,
    payload: String,
}

pub fn rows(stories: &[Story]) -> Vec<Row> {
    let now = format_timestamp(&Utc::now());
    let mut out = Vec::new();
    for s in stories {
        for events in [&s.crm, &s.billing] {
            for (i, e) in events.iter().enumerate() {
                out.push(row(e, i as i64 + 1, &now));
            }
        }
    }
    out
}

fn row(e: &NewEvent, version: i64, recorded_at: &str) -> Row {
    Row {
        event_id: e.event_id.to_string(),
        stream_id: e.stream_id.as_str().to_string(),
        version,
        event_type: e.event_type.clone(),
        source: e.source.as_str(),
        source_event_id: e.source_event_id.as_str().to_string(),
        correlation_id: e.correlation_id.to_string(),
        causation_id: e.causation_id.map(|c| c.to_string()),
        occurred_at: format_timestamp(&e.occurred_at),
        recorded_at: recorded_at.to_string(),
        payload: e.payload.to_string(),
    }
}

/// The baseline: the same rows, one prepared INSERT each, one transaction, on a connection
/// configured like the ledger's.
pub fn raw_insert(path: &Path, rows: &[Row]) -> rusqlite::Result<usize> {
    let mut conn = Connection::open(path)?;
    // The ledger's own connection settings, so the comparison is of the work per row.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 10000;",
    )?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version,
                 source, source_event_id, correlation_id, causation_id, occurred_at,
                 recorded_at, payload)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for r in rows {
            insert.execute(params![
                r.event_id,
                r.stream_id,
                r.version,
                r.event_type,
                r.source,
                r.source_event_id,
                r.correlation_id,
                r.causation_id,
                r.occurred_at,
                r.recorded_at,
                r.payload,
            ])?;
        }
    }
    tx.commit()?;
    Ok(rows.len())
}

/// A freshly migrated `ledger.db` called `name` in `dir`.
pub fn fresh_store(dir: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    let path = dir.join(name);
    migrate(&path).map_err(|e| e.to_string())?;
    Ok(path)
}

pub async fn run(scale: Scale) -> Outcome {
    match measure(scale).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Skipped { reason },
    }
}

async fn measure(scale: Scale) -> Result<Outcome, String> {
    let events = scale.events(FULL_EVENTS);
    let stories: Vec<Story> = (0..events.div_ceil(EVENTS_PER_STORY)).map(story).collect();
    let events = stories.len() * EVENTS_PER_STORY;
    let baseline_rows = rows(&stories);
    let dir = ScratchDir::new()?;
    let rounds = if scale.quick { 3 } else { 5 };
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let path = fresh_store(dir.path(), &format!("ledger-{round}.db"))?;
        let ledger = SqliteLedger::open(&path).map_err(|e| e.to_string())?;
        let batch = stories.clone();
        let start = Instant::now();
        let appended = ledger_append(&ledger, batch).await?;
        ours.push(start.elapsed());
        if appended != events {
            return Err(format!("the ledger appended {appended} of {events} events"));
        }
        drop(ledger);

        let path = fresh_store(dir.path(), &format!("raw-{round}.db"))?;
        let start = Instant::now();
        raw_insert(&path, &baseline_rows).map_err(|e| format!("raw insert: {e}"))?;
        raw.push(start.elapsed());
    }
    let per_sec = |d: Duration| events as f64 / d.as_secs_f64();
    let (ours, raw) = (per_sec(median(&mut ours)), per_sec(median(&mut raw)));
    Ok(Outcome::Measured {
        measurements: vec![
            Measurement::new(NAME, "ledger append throughput", ours, "events/s")
                .against("raw rusqlite INSERT, one transaction", raw)
                .target(Target::Ratio(Bound::AtLeast(0.5))),
            Measurement::new(NAME, "ledger append throughput", ours, "events/s")
                .target(Target::Value(Bound::AtLeast(100_000.0))),
        ],
        notes: vec![format!(
            "{events} events into a fresh migrated ledger.db per round (WAL, \
             synchronous=NORMAL, 32 MiB page cache on both sides), median of {rounds} rounds; \
             ledger: one `append_batch` call per {BATCH_STORIES} account stories (one \
             IMMEDIATE transaction; per stream of 6 CRM or 4 Billing events a savepoint, head \
             read, UNIQUE(source, source_event_id) dedupe, payload encoding); baseline: the \
             same rows pre-rendered, one prepared INSERT each in a single transaction"
        )],
    })
}
