//! Appends on the embedded store: one `BEGIN IMMEDIATE` transaction per call (per batch,
//! with a savepoint per stream), so an append is all-or-nothing however many events it has.
//! The `UNIQUE(source, source_event_id)` conflict target is the dedupe check. What an append
//! must do (one stream, the expected-version check, `recorded_at`) is `append_rules`.

use chrono::{DateTime, Utc};
use projections::envelope::format_timestamp;
use projections::{EventId, NewEvent, Source, SourceEventId, StreamId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{corrupt, exact_timestamp, parse_time, store_error, to_sql_int, to_version};
use crate::ledger::{
    append_rules, AppendFault, AppendOutcome, BatchOutcomes, ExistingEvent, ExpectedVersion,
    LedgerError, StreamAppend,
};

/// The stream's last version and its `recorded_at` (0 / None for a new stream).
fn stream_head(
    conn: &Connection,
    stream: &StreamId,
) -> Result<(u64, Option<DateTime<Utc>>), LedgerError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, recorded_at FROM events WHERE stream_id = ?1
             ORDER BY version DESC LIMIT 1",
        )
        .map_err(|e| store_error("preparing the stream head query", e))?;
    let head = stmt
        .query_row([stream.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(|e| store_error("reading the stream head", e))?;
    match head {
        None => Ok((0, None)),
        Some((version, at)) => Ok((
            to_version(version, stream.as_str())?,
            Some(parse_time(&at, "recorded_at", stream.as_str())?),
        )),
    }
}

fn find_recorded(
    conn: &Connection,
    source: Source,
    source_event_id: &SourceEventId,
) -> Result<Option<ExistingEvent>, LedgerError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT stream_id, version, event_id FROM events
             WHERE source = ?1 AND source_event_id = ?2",
        )
        .map_err(|e| store_error("preparing the dedupe query", e))?;
    let found = stmt
        .query_row(params![source.as_str(), source_event_id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()
        .map_err(|e| store_error("looking up a source event id", e))?;
    let Some((stream_id, version, event_id)) = found else {
        return Ok(None);
    };
    let key = format!("dedupe#{source}#{source_event_id}");
    Ok(Some(ExistingEvent {
        stream_id: StreamId::parse(stream_id).map_err(|e| corrupt(&key, e))?,
        version: to_version(version, &key)?,
        event_id: EventId::parse(&event_id).map_err(|e| corrupt(&key, e))?,
    }))
}

pub(super) fn append_blocking(
    conn: &mut Connection,
    fault: &AppendFault,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<Vec<AppendOutcome>, LedgerError> {
    // BEGIN IMMEDIATE takes the write lock up front: the head we read cannot move before
    // commit, so versions are gapless without retries.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| store_error("starting an append", e))?;
    // An error returns before commit: dropping the transaction rolls the inserts back.
    let (outcomes, wrote) = append_rows(&tx, fault, stream, expected, events)?;
    if wrote {
        tx.commit()
            .map_err(|e| store_error("committing an append", e))?;
    }
    Ok(outcomes)
}

/// Every append of a batch in one IMMEDIATE transaction, each inside its own savepoint so a
/// refused stream rolls back alone. One commit per batch instead of one per stream is what
/// makes the embedded append fast: a commit writes every page it dirtied (the table and its
/// five indexes) to the WAL, so small transactions rewrite the same hot pages over and over.
pub(super) fn append_batch_blocking(
    conn: &mut Connection,
    fault: &AppendFault,
    appends: Vec<StreamAppend>,
) -> Result<BatchOutcomes, LedgerError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| store_error("starting a batched append", e))?;
    let mut results = Vec::with_capacity(appends.len());
    for a in appends {
        if let Err(e) = append_rules::check_one_stream(&a.stream, &a.events) {
            results.push(Err(e));
            continue;
        }
        if a.events.is_empty() {
            results.push(Ok(Vec::new()));
            continue;
        }
        let sp = tx
            .savepoint()
            .map_err(|e| store_error("starting a stream's append", e))?;
        match append_rows(&sp, fault, &a.stream, a.expected, &a.events) {
            Ok((outcomes, _)) => {
                sp.commit()
                    .map_err(|e| store_error("releasing a stream's append", e))?;
                results.push(Ok(outcomes));
            }
            // Dropping the savepoint rolls back this stream's inserts only.
            Err(e) => results.push(Err(e)),
        }
    }
    tx.commit()
        .map_err(|e| store_error("committing a batched append", e))?;
    Ok(results)
}

/// Inserts one stream's events inside the caller's write transaction and checks the expected
/// version. Returns the outcomes and whether anything was written; on error the caller must
/// roll back what was inserted.
fn append_rows(
    conn: &Connection,
    fault: &AppendFault,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<(Vec<AppendOutcome>, bool), LedgerError> {
    let (current, mut last_at) = stream_head(conn, stream)?;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut next = current;
    {
        // The UNIQUE(source, source_event_id) probe the insert makes anyway is the dedupe
        // check: a duplicate (of the log or of an earlier event in this call, which the
        // transaction already sees) inserts nothing and consumes no version. SQLite checks
        // the upsert target before the other unique constraints, so a retried identical
        // event is a duplicate, not an event_id clash.
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO events (event_id, stream_id, version, event_type, schema_version,
                     source, source_event_id, correlation_id, causation_id, occurred_at,
                     recorded_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (source, source_event_id) DO NOTHING",
            )
            .map_err(|e| store_error("preparing the insert", e))?;
        let now = append_rules::truncate_to_micros(Utc::now());
        let stream_text = stream.as_str();
        let mut payload = Vec::with_capacity(512);
        let mut event_id = uuid::Uuid::encode_buffer();
        let mut correlation_id = uuid::Uuid::encode_buffer();
        for event in events {
            let at = append_rules::next_recorded_at(last_at, now);
            fault.before_write((next - current) as usize)?;
            payload.clear();
            serde_json::to_writer(&mut payload, &event.payload).map_err(|e| {
                LedgerError::Store(format!("encoding payload of {}: {e}", event.event_id))
            })?;
            let payload_text = std::str::from_utf8(&payload).map_err(|e| {
                LedgerError::Store(format!("encoding payload of {}: {e}", event.event_id))
            })?;
            let inserted = insert
                .execute(params![
                    &*event
                        .event_id
                        .as_uuid()
                        .hyphenated()
                        .encode_lower(&mut event_id),
                    stream_text,
                    to_sql_int(next + 1)?,
                    event.event_type,
                    i64::from(event.schema_version),
                    event.source.as_str(),
                    event.source_event_id.as_str(),
                    &*event
                        .correlation_id
                        .as_uuid()
                        .hyphenated()
                        .encode_lower(&mut correlation_id),
                    event.causation_id.map(|c| c.to_string()),
                    exact_timestamp(&event.occurred_at),
                    format_timestamp(&at),
                    payload_text,
                ])
                .map_err(|e| store_error(&format!("appending {}", event.event_id), e))?;
            if inserted == 1 {
                next += 1;
                last_at = Some(at);
                outcomes.push(AppendOutcome::Appended { version: next });
            } else {
                let existing = find_recorded(conn, event.source, &event.source_event_id)?
                    .ok_or_else(|| {
                        LedgerError::Store(format!(
                            "{} was neither appended nor found as already recorded",
                            event.event_id
                        ))
                    })?;
                outcomes.push(AppendOutcome::AlreadyRecorded { existing });
            }
        }
    }

    // Duplicates were resolved by the inserts above, so a retried call that already succeeded
    // writes nothing and is not a conflict.
    let wrote = next > current;
    append_rules::check_expected(stream, expected, current, wrote)?;
    Ok((outcomes, wrote))
}
