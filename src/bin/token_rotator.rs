//! `token_rotator` Lambda entry point (EventBridge Scheduler): reads config, opens the
//! ledger and builds the SSM/HTTP clients once at init, then hands every scheduled
//! invocation to `TokenRotator::handle`.
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use sync_ledger::lambda::bootstrap::{init_failure, init_tracing};
use sync_ledger::lambda::token_rotator::{RotatorConfig, TokenRotator};
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = match RotatorConfig::from_env() {
        Ok(config) => config,
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let log = match open_store(&config.store).await {
        Ok(log) => log,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ssm = aws_sdk_ssm::Client::new(&aws);
    let rotator = match TokenRotator::init(&config, log, ssm, reqwest::Client::new()).await {
        Ok(rotator) => Arc::new(rotator),
        Err(e) => return Err(init_failure("Runtime.SecretError", e).await),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let rotator = rotator.clone();
        async move { rotator.handle(event.payload).await }
    }))
    .await
}
