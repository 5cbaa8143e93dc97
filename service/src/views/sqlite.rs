//! `ViewStore` on the embedded SQLite file (`views` and `checkpoints` tables of
//! `migrations/sqlite/`). It opens its own connection to the ledger file (WAL lets it sit
//! beside the event log's) and never creates or alters tables: `ledger migrate` does.

use super::{
    check_batch, check_checkpoint_name, check_commit, check_item_size, check_projection,
    Checkpoint, ExpectedRevision, LastVersions, ViewError, ViewKey, ViewNamespace, ViewPage,
    ViewRow, ViewStore, ViewWrite,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::envelope::format_timestamp;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a writer waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SqliteViewStore {
    conn: Arc<Mutex<Connection>>,
    namespace: ViewNamespace,
}

impl SqliteViewStore {
    /// Opens the views of the ledger file at `path` (live namespace).
    pub fn open(path: &Path) -> Result<Self, ViewError> {
        // Never creates the file: a missing store is a configuration error, not an empty one.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| ViewError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(store_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_err)?;
        // As on the ledger's connections: synchronous=NORMAL cannot corrupt a WAL database
        // (an OS crash may drop the last commits, which projection re-derives from the log);
        // the default FULL fsyncs every commit, which dominated a replay's time.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(store_err)?;
        let has_revision: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('views') WHERE name = 'revision'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_err(store_err)?
            > 0;
        let has_checkpoints: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_err(store_err)?
            > 0;
        if !has_revision || !has_checkpoints {
            return Err(ViewError::NotMigrated(format!(
                "{} has no views.revision / checkpoints table",
                path.display()
            )));
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            namespace: ViewNamespace::live(),
        })
    }

    /// Runs `f` on the connection off the async threads (rusqlite blocks).
    async fn with_conn<T, F>(&self, f: F) -> Result<T, ViewError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ViewError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection usable (SQLite rolls back
            // the open transaction when it is dropped), so a poisoned lock is recovered.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| ViewError::Store(format!("view store task failed: {e}")))?
    }
}

fn store_err(e: rusqlite::Error) -> ViewError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            ViewError::Unavailable(format!("database is busy: {e}"))
        }
        _ if e.to_string().contains("no such table") => ViewError::NotMigrated(e.to_string()),
        _ => ViewError::Store(e.to_string()),
    }
}

/// `[lower, upper)` bounds of every stored key starting with `prefix` (which ends in `#`):
/// `$` is the character after `#`, so the range is an index scan of the primary key.
fn prefix_range(prefix: &str) -> (String, String) {
    debug_assert!(prefix.ends_with('#'));
    let upper = format!("{}$", &prefix[..prefix.len() - 1]);
    (prefix.to_string(), upper)
}

fn encode_last_versions(lv: &LastVersions) -> String {
    serde_json::to_string(lv).expect("a map of stream ids to integers serializes")
}

fn parse_time(pk: &str, text: &str) -> Result<DateTime<Utc>, ViewError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ViewError::Corrupt {
            pk: pk.to_string(),
            reason: format!("updated_at {text:?}: {e}"),
        })
}

struct Row {
    stored_pk: String,
    body: String,
    last_versions: String,
    updated_at: String,
    revision: i64,
}

impl Row {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            stored_pk: row.get(0)?,
            body: row.get(1)?,
            last_versions: row.get(2)?,
            updated_at: row.get(3)?,
            revision: row.get(4)?,
        })
    }

    fn decode(self, prefix: &str) -> Result<ViewRow, ViewError> {
        let pk = &self.stored_pk;
        let corrupt = |reason: String| ViewError::Corrupt {
            pk: pk.clone(),
            reason,
        };
        let key = ViewKey::from_pk(&pk[prefix.len()..])?;
        let state = serde_json::from_str(&self.body).map_err(|e| corrupt(format!("body: {e}")))?;
        let last_version = serde_json::from_str(&self.last_versions)
            .map_err(|e| corrupt(format!("last_versions: {e}")))?;
        let revision = u64::try_from(self.revision)
            .map_err(|_| corrupt(format!("revision {} is negative", self.revision)))?;
        Ok(ViewRow {
            key,
            revision,
            last_version,
            state,
            updated_at: parse_time(pk, &self.updated_at)?,
        })
    }
}

/// Puts every write in one IMMEDIATE transaction, each only if its item is still at the
/// expected revision; on a conflict nothing is written.
fn put_all(
    conn: &mut Connection,
    prefix: &str,
    writes: &[ViewWrite],
) -> Result<Vec<u64>, ViewError> {
    // IMMEDIATE takes the write lock up front, so the revision checks below and the
    // writes are one atomic step against every other connection.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_err)?;
    let now = format_timestamp(&Utc::now());
    let mut revisions = Vec::with_capacity(writes.len());
    for w in writes {
        let stored_pk = format!("{prefix}{}", w.key.pk());
        let body = serde_json::to_string(&w.state)
            .map_err(|e| ViewError::Store(format!("state of {}: {e}", w.key)))?;
        let last_versions = encode_last_versions(&w.last_version);
        check_item_size(&w.key, body.len() + last_versions.len())?;
        let next = w.expected.next();
        let changed = match w.expected {
            ExpectedRevision::Absent => tx
                .prepare_cached(
                    "INSERT INTO views (pk, body, last_versions, updated_at, revision) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pk) DO NOTHING",
                )
                .and_then(|mut insert| {
                    insert.execute(params![stored_pk, body, last_versions, now, next as i64])
                }),
            ExpectedRevision::Exact(current) => tx
                .prepare_cached(
                    "UPDATE views SET body = ?2, last_versions = ?3, updated_at = ?4, \
                     revision = ?5 WHERE pk = ?1 AND revision = ?6",
                )
                .and_then(|mut update| {
                    update.execute(params![
                        stored_pk,
                        body,
                        last_versions,
                        now,
                        next as i64,
                        current as i64
                    ])
                }),
        }
        .map_err(store_err)?;
        if changed != 1 {
            // Dropping `tx` rolls back the writes already made in this commit.
            return Err(ViewError::Conflict {
                pk: w.key.pk(),
                expected: w.expected,
            });
        }
        revisions.push(next);
    }
    tx.commit().map_err(store_err)?;
    Ok(revisions)
}

const SELECT_ITEM: &str = "SELECT pk, body, last_versions, updated_at, revision FROM views";

#[async_trait]
impl ViewStore for SqliteViewStore {
    fn namespace(&self) -> &ViewNamespace {
        &self.namespace
    }

    fn in_namespace(&self, namespace: ViewNamespace) -> Arc<dyn ViewStore> {
        Arc::new(Self {
            conn: self.conn.clone(),
            namespace,
        })
    }

    async fn get(&self, key: &ViewKey) -> Result<Option<ViewRow>, ViewError> {
        let prefix = self.namespace.key_prefix();
        let stored_pk = format!("{prefix}{}", key.pk());
        self.with_conn(move |conn| {
            conn.query_row(
                &format!("{SELECT_ITEM} WHERE pk = ?1"),
                [&stored_pk],
                Row::read,
            )
            .optional()
            .map_err(store_err)?
            .map(|row| row.decode(&prefix))
            .transpose()
        })
        .await
    }

    async fn get_many(&self, keys: &[ViewKey]) -> Result<Vec<Option<ViewRow>>, ViewError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.namespace.key_prefix();
        let stored: Vec<String> = keys.iter().map(|k| format!("{prefix}{}", k.pk())).collect();
        self.with_conn(move |conn| {
            // One statement (a single read snapshot) over the distinct keys, then answered
            // in the caller's order.
            let mut distinct = stored.clone();
            distinct.sort();
            distinct.dedup();
            let placeholders = vec!["?"; distinct.len()].join(", ");
            let mut stmt = conn
                .prepare(&format!("{SELECT_ITEM} WHERE pk IN ({placeholders})"))
                .map_err(store_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(distinct.iter()), Row::read)
                .map_err(store_err)?;
            let mut found = std::collections::HashMap::new();
            for row in rows {
                let row = row.map_err(store_err)?;
                found.insert(row.stored_pk.clone(), row.decode(&prefix)?);
            }
            Ok(stored.iter().map(|pk| found.get(pk).cloned()).collect())
        })
        .await
    }

    async fn commit(&self, writes: Vec<ViewWrite>) -> Result<Vec<u64>, ViewError> {
        check_commit(&writes)?;
        let prefix = self.namespace.key_prefix();
        self.with_conn(move |conn| put_all(conn, &prefix, &writes))
            .await
    }

    async fn list(&self, projection: &str) -> Result<Vec<ViewRow>, ViewError> {
        check_projection(projection)?;
        let prefix = self.namespace.key_prefix();
        let (lower, upper) = prefix_range(&format!("{prefix}{projection}#"));
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "{SELECT_ITEM} WHERE pk >= ?1 AND pk < ?2 ORDER BY pk"
                ))
                .map_err(store_err)?;
            let rows = stmt
                .query_map([&lower, &upper], Row::read)
                .map_err(store_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            rows.into_iter().map(|r| r.decode(&prefix)).collect()
        })
        .await
    }

    async fn delete_projection(&self, projection: &str) -> Result<usize, ViewError> {
        check_projection(projection)?;
        let prefix = self.namespace.key_prefix();
        let (lower, upper) = prefix_range(&format!("{prefix}{projection}#"));
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM views WHERE pk >= ?1 AND pk < ?2",
                [&lower, &upper],
            )
            .map_err(store_err)
        })
        .await
    }

    async fn list_page(
        &self,
        projection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<ViewPage, ViewError> {
        check_projection(projection)?;
        let prefix = self.namespace.key_prefix();
        let (lower, upper) = prefix_range(&format!("{prefix}{projection}#"));
        // The cursor is the last stored pk of the previous page: pages are primary-key ranges.
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{SELECT_ITEM} WHERE pk > ?1 AND pk >= ?2 AND pk < ?3 ORDER BY pk LIMIT ?4"
                ))
                .map_err(store_err)?;
            let rows = stmt
                .query_map(
                    params![after.unwrap_or_default(), lower, upper, limit_sql],
                    Row::read,
                )
                .map_err(store_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            let next = (rows.len() == limit && limit > 0)
                .then(|| rows.last().map(|r| r.stored_pk.clone()))
                .flatten();
            let items = rows
                .into_iter()
                .map(|r| r.decode(&prefix))
                .collect::<Result<_, _>>()?;
            Ok(ViewPage { items, next })
        })
        .await
    }

    async fn commit_batch(&self, groups: Vec<Vec<ViewWrite>>) -> Result<(), ViewError> {
        // One transaction for the whole batch: each commit rewrites the B-tree pages it
        // dirtied to the WAL, so a replay's flush in chunks of 100 wrote the same pages
        // again and again.
        check_batch(&groups)?;
        let writes: Vec<ViewWrite> = groups.into_iter().flatten().collect();
        let prefix = self.namespace.key_prefix();
        self.with_conn(move |conn| put_all(conn, &prefix, &writes).map(|_| ()))
            .await
    }

    async fn delete_items(&self, keys: &[ViewKey]) -> Result<(), ViewError> {
        let prefix = self.namespace.key_prefix();
        let stored: Vec<String> = keys.iter().map(|k| format!("{prefix}{}", k.pk())).collect();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(store_err)?;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM views WHERE pk = ?1")
                    .map_err(store_err)?;
                for pk in &stored {
                    delete.execute([pk]).map_err(store_err)?;
                }
            }
            tx.commit().map_err(store_err)
        })
        .await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, ViewError> {
        check_checkpoint_name(name)?;
        let stored = format!("{}{name}", self.namespace.key_prefix());
        let name = name.to_string();
        self.with_conn(move |conn| {
            let row = conn
                .query_row(
                    "SELECT position, updated_at FROM checkpoints WHERE name = ?1",
                    [&stored],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(store_err)?;
            row.map(|(position, updated_at)| {
                Ok(Checkpoint {
                    updated_at: parse_time(&stored, &updated_at)?,
                    name,
                    position,
                })
            })
            .transpose()
        })
        .await
    }

    async fn save_checkpoint(&self, name: &str, position: &str) -> Result<(), ViewError> {
        check_checkpoint_name(name)?;
        let stored = format!("{}{name}", self.namespace.key_prefix());
        let position = position.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                 updated_at = excluded.updated_at",
                params![stored, position, format_timestamp(&Utc::now())],
            )
            .map(|_| ())
            .map_err(store_err)
        })
        .await
    }
}
