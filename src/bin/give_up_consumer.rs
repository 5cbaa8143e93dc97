//! `give_up_consumer` Lambda entry point: reads its configuration once (`LEDGER_STORE`,
//! `PROJECTOR_FUNCTION_PREFIX`), opens the ledger and a DynamoDB Streams client at init, and
//! hands every batch of the projectors' on-failure queue to `GiveUpHandler::handle_sqs`.
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use sync_ledger::lambda::bootstrap::{init_failure, init_tracing};
use sync_ledger::lambda::give_up::config::GiveUpConfig;
use sync_ledger::lambda::give_up::stream_range::DynamoStreamRange;
use sync_ledger::lambda::give_up::GiveUpHandler;
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = match GiveUpConfig::from_env() {
        Ok(config) => config,
        Err(e) => return Err(init_failure("Runtime.ConfigError", e).await),
    };
    let log = match open_store(&config.store).await {
        Ok(log) => log,
        Err(e) => return Err(init_failure("Runtime.StoreError", e).await),
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let stream = Arc::new(DynamoStreamRange::from_config(&aws));
    let handler = Arc::new(GiveUpHandler::new(log, stream, config.function_prefix));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.handle_sqs(event.payload).await) }
    }))
    .await
}
