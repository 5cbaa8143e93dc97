//! The embedded change feed: events in rowid order, the rowid as the position. It only reads.

use async_trait::async_trait;
use rusqlite::params;

use super::read::read_rows;
use super::{store_error, SqliteLedger, EVENT_COLUMNS};
use crate::ledger::{ChangeFeed, FeedItem, FeedStart, LedgerError};

/// Opens the feed of `ledger` at `start`.
pub(super) async fn open(
    ledger: &SqliteLedger,
    start: FeedStart,
) -> Result<Box<dyn ChangeFeed>, LedgerError> {
    let after = match start {
        FeedStart::Beginning => 0,
        FeedStart::After(position) => position.parse::<i64>().map_err(|_| {
            LedgerError::Store(format!(
                "change feed position {position:?} is not an embedded-store position (a rowid)"
            ))
        })?,
        FeedStart::Latest => {
            ledger
                .with_reader(|conn| {
                    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(|e| store_error("reading the feed head", e))
                })
                .await?
        }
    };
    Ok(Box::new(SqliteChangeFeed {
        ledger: ledger.clone(),
        after,
    }))
}

/// The embedded change feed: events in rowid order. A transaction's rows become visible
/// together at commit and later transactions get higher rowids (one writer at a time), so
/// reading `position > last` never skips an event; it is exactly-once and globally ordered,
/// which is stronger than the per-stream, at-least-once contract consumers rely on.
struct SqliteChangeFeed {
    ledger: SqliteLedger,
    after: i64,
}

#[async_trait]
impl ChangeFeed for SqliteChangeFeed {
    async fn poll(&mut self, max: usize) -> Result<Vec<FeedItem>, LedgerError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let after = self.after;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .ledger
            .with_reader(move |conn| {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1
                     ORDER BY position LIMIT ?2"
                );
                read_rows(conn, &sql, params![after, limit])
            })
            .await?;
        if let Some((last, _)) = rows.last() {
            self.after = *last;
        }
        Ok(rows
            .into_iter()
            .map(|(position, event)| FeedItem {
                position: position.to_string(),
                event,
            })
            .collect())
    }
}
