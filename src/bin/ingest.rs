//! `ingest` Lambda entry point: reads its configuration, opens the ledger and reads the
//! callout secret (and the Basic auth credentials, when configured) once at init, then hands
//! every invocation (SQS batch, EventBridge event, callout HTTP request) to
//! `IngestHandler::handle`.
use std::sync::Arc;
use sync_ledger::connectors::token::TokenProvider;
use sync_ledger::lambda::bootstrap;
use sync_ledger::lambda::ingest::{IngestConfig, IngestHandler, SecretSource, TokenSecret};
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bootstrap::run(|aws| async move {
        let config = IngestConfig::from_env()?;
        let log = open_store(&config.store, &aws).await?;
        let ssm = aws_sdk_ssm::Client::new(aws.get().await);
        let tokens = Arc::new(TokenProvider::for_lambda(ssm));
        let basic = config.callout_basic_auth.map(|service| {
            Arc::new(TokenSecret::new(tokens.clone(), service)) as Arc<dyn SecretSource>
        });
        let secrets = Arc::new(TokenSecret::new(tokens, config.callout_secret));
        Ok(IngestHandler::init_with_basic(log, secrets, basic).await?)
    })
    .await
}
