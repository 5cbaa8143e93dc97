//! `audit_api` Lambda entry point: reads its configuration (`LEDGER_STORE`) and opens the
//! ledger and the views once at init, then answers every HTTP API v2 request with
//! `AuditApi::handle`.
use sync_ledger::lambda::audit_api::{AuditApi, AuditApiConfig};
use sync_ledger::lambda::bootstrap;
use sync_ledger::ledger::open_store;
use sync_ledger::views::open_views;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bootstrap::run(|aws| async move {
        let config = AuditApiConfig::from_env()?;
        let log = open_store(&config.store, &aws).await?;
        let views = open_views(&config.store, &aws).await?;
        Ok(AuditApi::new(log, views))
    })
    .await
}
