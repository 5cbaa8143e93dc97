//! `token_rotator` Lambda entry point (EventBridge Scheduler): reads its configuration, opens
//! the ledger and builds the SSM/HTTP clients once at init, then hands every scheduled
//! invocation to `TokenRotator::handle`.
use sync_ledger::lambda::bootstrap;
use sync_ledger::lambda::token_rotator::{RotatorConfig, TokenRotator};
use sync_ledger::ledger::open_store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bootstrap::run(|aws| async move {
        let config = RotatorConfig::from_env()?;
        let log = open_store(&config.store, &aws).await?;
        let ssm = aws_sdk_ssm::Client::new(aws.get().await);
        Ok(TokenRotator::init(&config, log, ssm, reqwest::Client::new()).await?)
    })
    .await
}
