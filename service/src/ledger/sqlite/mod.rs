//! `SqliteLedger`: the embedded event log (`ledger.db`) — `EventLog` and `ChangeFeed` on
//! rusqlite in WAL mode, with the rowid as the change-feed position. This file holds the
//! connections (one writer, a few readers, all I/O on the blocking pool) and the port; the
//! work is in `append` (one transaction per call), `read`, `feed` (rowid order) and `migrate`
//! (the compiled-in `migrations/sqlite/*.sql`), like the DynamoDB adapter's files. It owns
//! only storage mechanics; it must not decide anything about the events it stores
//! (`append_rules` does).

mod append;
mod feed;
mod migrate;
mod read;

pub use migrate::{migrate, Migration, MigrationReport, MIGRATIONS};

use super::{
    AppendFault, AppendOutcome, BatchOutcomes, ChangeFeed, EventLog, ExpectedVersion, FeedStart,
    LedgerError, StreamAppend,
};
use crate::ledger::append_rules;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use projections::{CorrelationId, NewEvent, RecordedEvent, StreamId};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Reader connections per ledger: enough for the worker, replay and audit reads of one
/// process to proceed side by side.
const READERS: usize = 4;

/// How long a writer waits for another process's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const EVENT_COLUMNS: &str = "position, event_id, stream_id, version, event_type, schema_version, \
     source, source_event_id, correlation_id, causation_id, occurred_at, recorded_at, payload";

/// The embedded ledger. Cheap to clone; all clones share one writer connection (SQLite has
/// one writer at a time anyway) and a few reader connections (WAL lets reads run in parallel
/// with each other and with the write in progress).
#[derive(Clone)]
pub struct SqliteLedger {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    append_fault: AppendFault,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens a migrated store. Blocking (file open + schema check); call it before serving or
    /// from `spawn_blocking`. A store with pending migrations is refused with `NotMigrated`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(LedgerError::NotMigrated(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let writer = connect(&path)?;
        let pending = migrate::pending_migrations(&writer)?;
        if !pending.is_empty() {
            return Err(LedgerError::NotMigrated(format!(
                "{} has pending migrations: {}",
                path.display(),
                pending.join(", ")
            )));
        }
        let readers = (0..READERS)
            .map(|_| connect(&path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                append_fault: AppendFault::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The test seam that stops an append part-way (see `ledger::fault`); the append's
    /// transaction then rolls back whatever it inserted.
    pub fn append_fault(&self) -> &AppendFault {
        &self.inner.append_fault
    }

    /// Runs `f` on the writer connection on the blocking pool, so async callers never block
    /// the runtime while SQLite does I/O or waits for a lock.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&mut lock(&inner.writer))).await
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&mut inner.reader())).await
    }
}

impl Inner {
    /// A free reader if there is one, else the next in turn (waiting for it).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for conn in &self.readers {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[turn])
    }
}

async fn blocking<T, F>(f: F) -> Result<T, LedgerError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LedgerError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LedgerError::Store(format!("sqlite worker task failed: {e}")))?
}

/// A panic while holding the lock leaves the connection usable (an open transaction is
/// rolled back when it is dropped during unwinding), so a poisoned lock is not fatal.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens a connection with the settings every ledger connection needs.
fn connect(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| store_error(&format!("opening {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| store_error("setting busy_timeout", e))?;
    // WAL: readers never block the writer and vice versa. synchronous=NORMAL is safe from
    // corruption in WAL mode; an OS crash may drop the last commits, which the embedded
    // (local/demo) store accepts for throughput — production durability is DynamoDB's.
    // Checkpointing every ~40 MB instead of 4 MB writes a hot index page back once per
    // checkpoint rather than ten times (measured: +15-40% appends/s on this VM's disk).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -32768;
         PRAGMA wal_autocheckpoint = 10000;",
    )
    .map_err(|e| store_error("configuring the connection", e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn store_error(context: &str, e: rusqlite::Error) -> LedgerError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            LedgerError::Unavailable(format!("{context}: the database is locked: {e}"))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            LedgerError::Unavailable(format!("{context}: {e}"))
        }
        _ => LedgerError::Store(format!("{context}: {e}")),
    }
}

#[async_trait]
impl EventLog for SqliteLedger {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AppendOutcome>, LedgerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        append_rules::check_one_stream(stream, &events)?;
        let stream = stream.clone();
        let inner = self.inner.clone();
        self.with_writer(move |conn| {
            append::append_blocking(conn, &inner.append_fault, &stream, expected, &events)
        })
        .await
    }

    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<BatchOutcomes, LedgerError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        self.with_writer(move |conn| {
            append::append_batch_blocking(conn, &inner.append_fault, appends)
        })
        .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let stream = stream.clone();
        self.with_reader(move |conn| read::stream_events(conn, &stream, from_version))
            .await
    }

    async fn read_all(
        &self,
        from: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = after.map(str::to_string);
        self.with_reader(move |conn| read::all_events(conn, from, after.as_deref(), limit))
            .await
    }

    async fn by_correlation(
        &self,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let correlation_id = *correlation_id;
        self.with_reader(move |conn| read::correlated_events(conn, &correlation_id))
            .await
    }

    async fn change_feed(&self, start: FeedStart) -> Result<Box<dyn ChangeFeed>, LedgerError> {
        feed::open(self, start).await
    }
}

// ------------------------------------------------------------------------ conversions

fn corrupt(key: &str, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn to_version(v: i64, key: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| corrupt(key, format!("version {v} is negative")))
}

fn to_sql_int(v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::Store(format!("version {v} exceeds SQLite range")))
}

fn parse_time(text: &str, field: &str, key: &str) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(key, format!("{field} {text:?}: {e}")))
}

/// Full precision (nanoseconds when present) so `occurred_at` reads back exactly as given.
fn exact_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
