//! The store-agnostic `ledger migrate` driver: picks the store from a `StoreUrl` and runs
//! its migrator. Each adapter owns its migrations (`sqlite::migrate`, `dynamodb::migrate`);
//! this module only dispatches and must not know any schema.

use super::open::StoreError;
use super::sqlite;
use crate::config::{AwsConfig, StoreUrl};

pub use sqlite::MigrationReport;

/// Applies every pending migration of the selected store, idempotently, and reports what it
/// applied and what was already there.
pub async fn migrate(store: &StoreUrl, aws: &AwsConfig) -> Result<MigrationReport, StoreError> {
    match store {
        StoreUrl::Sqlite(path) => {
            let path = path.clone();
            let report = tokio::task::spawn_blocking(move || sqlite::migrate(&path))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            Ok(report)
        }
        StoreUrl::DynamoDb { table_prefix } => {
            let report = super::dynamodb::migrate_with(aws.get().await, table_prefix).await?;
            Ok(MigrationReport {
                applied: report.applied,
                already_applied: report.already_applied,
            })
        }
    }
}
