//! `token_rotator` Lambda entry point (EventBridge Scheduler): reads config, opens the
//! ledger and builds the SSM/HTTP clients once at init, then hands every scheduled
//! invocation to `TokenRotator::handle`.
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use sync_ledger::lambda::bootstrap::{init_tracing, report_init_error};
use sync_ledger::lambda::token_rotator::{RotatorConfig, TokenRotator};
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = match RotatorConfig::from_env() {
        Ok(config) => config,
        Err(e) => return Err(fail("Runtime.ConfigError", e).await),
    };
    let log = match open_store(&config.store).await {
        Ok(log) => log,
        Err(e) => return Err(fail("Runtime.StoreError", e).await),
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ssm = aws_sdk_ssm::Client::new(&aws);
    let rotator = match TokenRotator::init(&config, log, ssm, reqwest::Client::new()).await {
        Ok(rotator) => Arc::new(rotator),
        Err(e) => return Err(fail("Runtime.SecretError", e).await),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let rotator = rotator.clone();
        async move { rotator.handle(event.payload).await }
    }))
    .await
}

async fn fail<E: std::error::Error + Send + Sync + 'static>(
    kind: &str,
    e: E,
) -> lambda_runtime::Error {
    report_init_error(kind, &e).await;
    Box::new(e)
}
