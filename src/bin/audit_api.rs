//! `audit_api` Lambda entry point: reads LEDGER_STORE and opens the ledger and the views once
//! at init, then answers every HTTP API v2 request with `AuditApi::handle`.
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use sync_ledger::config::StoreUrl;
use sync_ledger::lambda::audit_api::AuditApi;
use sync_ledger::lambda::bootstrap::{init_failure, init_tracing};
use sync_ledger::ledger::open_store;
use sync_ledger::views::open_views;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let store = match StoreUrl::from_env() {
        Ok(store) => store,
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let log = match open_store(&store).await {
        Ok(log) => log,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let views = match open_views(&store).await {
        Ok(views) => views,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let api = Arc::new(AuditApi::new(log, views));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| {
            let api = api.clone();
            async move { Ok::<_, lambda_runtime::Error>(api.handle(event.payload).await) }
        },
    ))
    .await
}
