//! The embedded store's schema migrations: compiled in (`include_str!`) so the binary
//! migrates any `ledger.db` from any directory, applied once each in id order and recorded in
//! `schema_migrations`. `ledger migrate` runs them; `SqliteLedger::open` refuses a store with
//! pending ones.

use chrono::Utc;
use projections::envelope::format_timestamp;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;

use super::{connect, store_error};
use crate::ledger::LedgerError;

/// One schema migration: applied once, in id order, recorded in `schema_migrations`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub id: &'static str,
    pub sql: &'static str,
}

/// The embedded store's migrations, compiled in so the binary migrates any `ledger.db`.
/// Every file in `migrations/sqlite/` must be listed here (a unit test checks it).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0001_init",
        sql: include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/sqlite/0001_init.sql"
        )),
    },
    Migration {
        id: "0002_view_revision",
        sql: include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/sqlite/0002_view_revision.sql"
        )),
    },
];

fn ensure_migrations_table(conn: &Connection) -> Result<(), LedgerError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             id         TEXT NOT NULL PRIMARY KEY,
             applied_at TEXT NOT NULL
         ) STRICT;",
    )
    .map_err(|e| store_error("creating schema_migrations", e))
}

fn applied_migrations(conn: &Connection) -> Result<Vec<String>, LedgerError> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| store_error("reading the schema", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT id FROM schema_migrations ORDER BY id")
        .map_err(|e| store_error("reading schema_migrations", e))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| store_error("reading schema_migrations", e))?;
    Ok(ids)
}

pub(super) fn pending_migrations(conn: &Connection) -> Result<Vec<&'static str>, LedgerError> {
    let applied = applied_migrations(conn)?;
    Ok(MIGRATIONS
        .iter()
        .map(|m| m.id)
        .filter(|id| !applied.iter().any(|a| a == id))
        .collect())
}

/// What one `migrate` run did, by migration id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_applied: Vec<String>,
}

/// Creates the store file if needed and applies every pending migration in id order, each in
/// its own `BEGIN IMMEDIATE` transaction together with its `schema_migrations` row, so
/// concurrent migrators apply each migration exactly once. Blocking.
pub fn migrate(path: &Path) -> Result<MigrationReport, LedgerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            LedgerError::Store(format!("creating directory {}: {e}", dir.display()))
        })?;
    }
    let mut conn = connect(path)?;
    ensure_migrations_table(&conn)?;
    let mut report = MigrationReport::default();
    for migration in MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| store_error("starting a migration", e))?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE id = ?1)",
                [migration.id],
                |r| r.get(0),
            )
            .map_err(|e| store_error("reading schema_migrations", e))?;
        if done {
            report.already_applied.push(migration.id.to_string());
            continue;
        }
        tx.execute_batch(migration.sql)
            .map_err(|e| store_error(&format!("applying migration {}", migration.id), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (id, applied_at) VALUES (?1, ?2)",
            params![migration.id, format_timestamp(&Utc::now())],
        )
        .map_err(|e| store_error("recording a migration", e))?;
        tx.commit()
            .map_err(|e| store_error(&format!("committing migration {}", migration.id), e))?;
        report.applied.push(migration.id.to_string());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_registered_in_id_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .map(|name| name.trim_end_matches(".sql").to_string())
            .collect();
        files.sort();
        let registered: Vec<String> = MIGRATIONS.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(
            registered, files,
            "list each migrations/sqlite/*.sql in MIGRATIONS"
        );
    }
}
