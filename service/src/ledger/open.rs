//! Opens the event log a `StoreUrl` names, as the `EventLog` port, so callers never name
//! an adapter. It must not migrate: an unmigrated store is refused with a clear error.

use super::sqlite::SqliteLedger;
use super::{EventLog, LedgerError};
use crate::config::{AwsConfig, StoreUrl};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store worker task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The ledger behind `store`, ready to use. `aws` is only loaded for a DynamoDB store.
pub async fn open_store(
    store: &StoreUrl,
    aws: &AwsConfig,
) -> Result<Arc<dyn EventLog>, StoreError> {
    match store {
        StoreUrl::Sqlite(path) => {
            let path = path.clone();
            let ledger = tokio::task::spawn_blocking(move || SqliteLedger::open(path))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            Ok(Arc::new(ledger))
        }
        StoreUrl::DynamoDb { table_prefix } => Ok(Arc::new(
            super::dynamodb::DynamoDbLedger::open_with(aws.get().await, table_prefix).await?,
        )),
    }
}
