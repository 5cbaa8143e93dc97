//! `projector` Lambda entry point: reads the typed config once (`PROJECTION`, `LEDGER_STORE`,
//! `CRM_BASE_URL`, `BILLING_BASE_URL`, ...; tokens from `/apiTokens/crm` and
//! `/apiTokens/billing`), builds the ledger, views, connectors and the projection's runner at
//! init, and hands every DynamoDB Streams batch to `ProjectorHandler::handle_stream_event`.
use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use sync_ledger::lambda::bootstrap::{init_failure, init_tracing};
use sync_ledger::lambda::projector::ProjectorHandler;
use sync_ledger::ledger::open_store;
use sync_ledger::projector::config::ProjectorConfig;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{build, ProjectorDeps, RunnerSettings};
use sync_ledger::views::open_views;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = match ProjectorConfig::from_env() {
        Ok(config) => config,
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let log = match open_store(&config.store).await {
        Ok(log) => log,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let views = match open_views(&config.store).await {
        Ok(views) => views,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let effects = match ConnectorEffects::from_config(&config.connectors, Some(&aws)) {
        Ok(effects) => Arc::new(effects),
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let deps = ProjectorDeps {
        log,
        views,
        effects,
        settings: RunnerSettings::default(),
    };
    let handler = match build(&config.projection, &deps) {
        Ok(projector) => Arc::new(ProjectorHandler::new(projector)),
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let handler = handler.clone();
        async move {
            Ok::<_, std::convert::Infallible>(handler.handle_stream_event(event.payload).await)
        }
    }))
    .await
}
