//! `give_up_consumer` Lambda entry point: reads its configuration once (`LEDGER_STORE`,
//! `PROJECTOR_FUNCTION_PREFIX`), opens the ledger and a DynamoDB Streams client at init, and
//! hands every batch of the projectors' on-failure queue to `GiveUpHandler::handle_sqs`.
use std::sync::Arc;
use sync_ledger::lambda::bootstrap;
use sync_ledger::lambda::give_up::config::GiveUpConfig;
use sync_ledger::lambda::give_up::stream_range::DynamoStreamRange;
use sync_ledger::lambda::give_up::GiveUpHandler;
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bootstrap::run(|aws| async move {
        let config = GiveUpConfig::from_env()?;
        let log = open_store(&config.store, &aws).await?;
        let stream = Arc::new(DynamoStreamRange::from_config(aws.get().await));
        Ok(GiveUpHandler::new(log, stream, config.function_prefix))
    })
    .await
}
