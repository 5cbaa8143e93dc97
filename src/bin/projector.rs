//! `projector` Lambda entry point: reads its configuration once (`PROJECTION`,
//! `LEDGER_STORE`, `CRM_BASE_URL`, `BILLING_BASE_URL`, ...; tokens from `/apiTokens/crm` and
//! `/apiTokens/billing`), builds the ledger, views, connectors and the projection's runner at
//! init, and hands every DynamoDB Streams batch to `ProjectorHandler::handle_stream_event`.
use std::sync::Arc;
use sync_ledger::lambda::bootstrap;
use sync_ledger::lambda::projector::{ProjectorConfig, ProjectorHandler};
use sync_ledger::ledger::open_store;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{build, ProjectorDeps, RunnerSettings};
use sync_ledger::views::open_views;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bootstrap::run(|aws| async move {
        let config = ProjectorConfig::from_env()?;
        let deps = ProjectorDeps {
            log: open_store(&config.store, &aws).await?,
            views: open_views(&config.store, &aws).await?,
            effects: Arc::new(ConnectorEffects::from_config(
                &config.connectors,
                Some(aws.get().await),
            )?),
            settings: RunnerSettings::default(),
        };
        Ok(ProjectorHandler::new(build(&config.projection, &deps)?))
    })
    .await
}
