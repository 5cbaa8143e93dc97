//! Reads of the embedded store: one stream in version order, everything in the global order
//! `(recorded_at, event_id)` (the replay read), one correlation id, and the row decoding the
//! change feed shares. Blocking functions on a reader connection; `SqliteLedger` runs them on
//! the blocking pool.

use chrono::{DateTime, Utc};
use projections::envelope::format_timestamp;
use projections::{CorrelationId, EventId, RecordedEvent, Source, SourceEventId, StreamId};
use rusqlite::{params, Connection, Row};

use super::{corrupt, parse_time, store_error, to_version, EVENT_COLUMNS};
use crate::ledger::{append_rules, LedgerError};

/// Events of `stream` with `version >= from_version`, in version order.
pub(super) fn stream_events(
    conn: &Connection,
    stream: &StreamId,
    from_version: u64,
) -> Result<Vec<RecordedEvent>, LedgerError> {
    let from = i64::try_from(from_version).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND version >= ?2
         ORDER BY version"
    );
    Ok(read_rows(conn, &sql, params![stream.as_str(), from])?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// At most `limit` events recorded at or after `from`, after the global order key `after`,
/// in global order.
pub(super) fn all_events(
    conn: &Connection,
    from: Option<DateTime<Utc>>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<RecordedEvent>, LedgerError> {
    let from = from.map(|f| format_timestamp(&append_rules::ceil_to_micros(f)));
    // A global order key is `<recorded_at>#<event_id>`; comparing the two parts as a
    // pair is the same order as comparing the keys as text, and can use the index.
    let (after_at, after_id) = match after {
        Some(key) => match key.split_once('#') {
            Some((at, id)) => (Some(at.to_string()), id.to_string()),
            None => (Some(key.to_string()), String::new()),
        },
        None => (None, String::new()),
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Each form lets SQLite seek events_by_time to the first row instead of walking
    // the index from its start on every page (which made a paged replay quadratic):
    // a row-value bound is a seekable range, `?2 IS NULL OR ...` is not. (?2 and ?3
    // are bound but unused in the second form: SQLite allows that up to the highest.)
    let sql = match after_at {
        Some(_) => format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE (recorded_at, event_id) > (?2, ?3)
               AND (?1 IS NULL OR recorded_at >= ?1)
             ORDER BY recorded_at, event_id
             LIMIT ?4"
        ),
        None => format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE recorded_at >= coalesce(?1, '')
             ORDER BY recorded_at, event_id
             LIMIT ?4"
        ),
    };
    Ok(
        read_rows(conn, &sql, params![from, after_at, after_id, limit])?
            .into_iter()
            .map(|(_, e)| e)
            .collect(),
    )
}

/// Every event carrying `correlation_id`, in global order.
pub(super) fn correlated_events(
    conn: &Connection,
    correlation_id: &CorrelationId,
) -> Result<Vec<RecordedEvent>, LedgerError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = ?1
         ORDER BY recorded_at, event_id"
    );
    Ok(read_rows(conn, &sql, [correlation_id.to_string()])?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

pub(super) fn read_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(i64, RecordedEvent)>, LedgerError> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| store_error("preparing a read", e))?;
    let mut rows = stmt
        .query(params)
        .map_err(|e| store_error("reading events", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| store_error("reading events", e))? {
        out.push(decode_row(row)?);
    }
    Ok(out)
}

fn decode_row(row: &Row<'_>) -> Result<(i64, RecordedEvent), LedgerError> {
    let get_text = |i: usize| row.get::<_, String>(i);
    let raw = (|| -> rusqlite::Result<_> {
        Ok((
            row.get::<_, i64>(0)?,
            get_text(1)?,
            get_text(2)?,
            row.get::<_, i64>(3)?,
            get_text(4)?,
            row.get::<_, i64>(5)?,
            get_text(6)?,
            get_text(7)?,
            get_text(8)?,
            row.get::<_, Option<String>>(9)?,
            get_text(10)?,
            get_text(11)?,
            get_text(12)?,
        ))
    })()
    .map_err(|e| store_error("decoding an event row", e))?;
    let (
        position,
        event_id,
        stream_id,
        version,
        event_type,
        schema_version,
        source,
        source_event_id,
        correlation_id,
        causation_id,
        occurred_at,
        recorded_at,
        payload,
    ) = raw;
    let key = format!("events/{position}");
    let event = RecordedEvent {
        event_id: EventId::parse(&event_id).map_err(|e| corrupt(&key, e))?,
        stream_id: StreamId::parse(stream_id).map_err(|e| corrupt(&key, e))?,
        version: to_version(version, &key)?,
        event_type,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            corrupt(
                &key,
                format!("schema_version {schema_version} out of range"),
            )
        })?,
        source: Source::parse(&source).map_err(|e| corrupt(&key, e))?,
        source_event_id: SourceEventId::parse(source_event_id).map_err(|e| corrupt(&key, e))?,
        correlation_id: CorrelationId::parse(&correlation_id).map_err(|e| corrupt(&key, e))?,
        causation_id: causation_id
            .map(|c| EventId::parse(&c))
            .transpose()
            .map_err(|e| corrupt(&key, e))?,
        occurred_at: parse_time(&occurred_at, "occurred_at", &key)?,
        recorded_at: parse_time(&recorded_at, "recorded_at", &key)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| corrupt(&key, format!("payload: {e}")))?,
    };
    Ok((position, event))
}
