//! `ingest` Lambda entry point: reads config, opens the ledger and reads the callout secret
//! (and the Basic auth credentials, when configured) once at init, then hands every invocation (SQS batch, EventBridge event, callout HTTP
//! request) to `IngestHandler::handle`.
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use sync_ledger::connectors::TokenProvider;
use sync_ledger::lambda::bootstrap::{init_failure, init_tracing};
use sync_ledger::lambda::ingest::{IngestConfig, IngestHandler, SecretSource, TokenSecret};
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = match IngestConfig::from_env() {
        Ok(config) => config,
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let log = match open_store(&config.store).await {
        Ok(log) => log,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let tokens = Arc::new(TokenProvider::for_lambda(aws_sdk_ssm::Client::new(&aws)));
    let basic = config.callout_basic_auth.map(|service| {
        Arc::new(TokenSecret::new(tokens.clone(), service)) as Arc<dyn SecretSource>
    });
    let secrets = Arc::new(TokenSecret::new(tokens, config.callout_secret));
    let handler = match IngestHandler::init_with_basic(log, secrets, basic).await {
        Ok(handler) => Arc::new(handler),
        Err(e) => return Err(init_failure("Runtime.SecretError", e).await),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(event.payload).await }
    }))
    .await
}
