//! How SDK failures become `LedgerError`s, and the bounded, jittered backoff used for the
//! retryable ones. Never turns a throttle into a generic error, and never retries forever.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;
use rand::Rng;

use crate::ledger::LedgerError;

/// Error codes that mean "the same request may succeed later" (DynamoDB throttling, a
/// concurrent transaction on the same items, or a server-side hiccup).
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionConflict",
    "TransactionInProgressException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

pub fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// A failed call: either worth retrying (with what to say if the retries run out) or final.
#[derive(Debug)]
pub enum Failure {
    Retry(String),
    Fatal(LedgerError),
}

/// Classifies any SDK error (DynamoDB or DynamoDB Streams). `what` names the call.
pub fn classify<E, R>(what: &str, err: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{what}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return Failure::Retry(detail)
        }
        _ => {}
    }
    match err.code() {
        Some(code) if is_retryable_code(code) => Failure::Retry(detail),
        Some("ResourceNotFoundException") => Failure::Fatal(LedgerError::NotMigrated(detail)),
        _ => Failure::Fatal(LedgerError::Store(detail)),
    }
}

/// Exponential backoff with full jitter, bounded in attempts.
#[derive(Debug)]
pub struct Backoff {
    attempts: u32,
    max_attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(max_attempts: u32, base: Duration, cap: Duration) -> Self {
        Self {
            attempts: 0,
            max_attempts,
            base,
            cap,
        }
    }

    /// For throttling and transaction conflicts.
    pub fn throttling() -> Self {
        Self::new(10, Duration::from_millis(50), Duration::from_secs(2))
    }

    /// For optimistic-concurrency losses on one stream (`ExpectedVersion::Any`): many short
    /// waits, because each loss means another writer made progress.
    pub fn contention() -> Self {
        Self::new(100, Duration::from_millis(5), Duration::from_millis(250))
    }

    /// Sleeps before the next attempt; `false` once the attempts are used up.
    pub async fn wait(&mut self) -> bool {
        if self.attempts >= self.max_attempts {
            return false;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.cap);
        self.attempts += 1;
        let millis = rand::rng().random_range(0..=ceiling.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        true
    }

    /// Waits, or gives up with `Throttled` naming the attempts and the last failure.
    pub async fn wait_or_throttled(&mut self, detail: String) -> Result<(), LedgerError> {
        if self.wait().await {
            Ok(())
        } else {
            Err(LedgerError::Throttled {
                attempts: self.attempts + 1,
                detail,
            })
        }
    }
}

/// Runs `call` until it succeeds, fails for good, or the throttling budget is spent.
pub async fn with_retries<T, F, Fut>(call: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    retry_with(Backoff::throttling(), call).await
}

pub async fn retry_with<T, F, Fut>(mut backoff: Backoff, mut call: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry(detail)) => backoff.wait_or_throttled(detail).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backoff_gives_up_as_throttled_after_its_attempts() {
        let mut calls = 0;
        let backoff = Backoff::new(10, Duration::from_millis(1), Duration::from_millis(1));
        let result: Result<(), LedgerError> = retry_with(backoff, || {
            calls += 1;
            async { Err(Failure::Retry("PutItem: ThrottlingException".to_string())) }
        })
        .await;
        match result {
            Err(LedgerError::Throttled { attempts, detail }) => {
                assert_eq!(attempts, 11);
                assert!(detail.contains("ThrottlingException"));
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
        assert_eq!(calls, 11);
    }

    #[tokio::test]
    async fn a_fatal_failure_is_not_retried() {
        let mut calls = 0;
        let result: Result<(), LedgerError> = with_retries(|| {
            calls += 1;
            async {
                Err(Failure::Fatal(LedgerError::Store(
                    "ValidationException".into(),
                )))
            }
        })
        .await;
        assert!(matches!(result, Err(LedgerError::Store(_))));
        assert_eq!(calls, 1);
    }
}
