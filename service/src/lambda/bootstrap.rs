//! What every Lambda main does around its handler, written once: JSON tracing for
//! CloudWatch, the process's one AWS configuration (`AwsConfig`, loaded on first use), the
//! init step run once per cold start, an init failure (bad config, unreachable store,
//! unreadable secret) reported to the Runtime API's `/init/error` with its category so it
//! reaches Lambda with its reason, then every invocation handed to the handler. A main is
//! `bootstrap::run(init)`; this module holds no handler logic.

use crate::config::{AwsConfig, ConfigError};
use crate::ledger::StoreError;
use crate::views::ViewError;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;

/// A Lambda function's handler: one event type in, one response (or error) out. Built once
/// per cold start by the main's init step, shared by every invocation.
pub trait Handler: Send + Sync + 'static {
    type Event: DeserializeOwned + Send + 'static;
    type Response: Serialize + Send + 'static;
    type Error: Into<Diagnostic> + Debug + Send + 'static;

    fn handle(
        &self,
        event: Self::Event,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// Why init failed, with the `errorType` Lambda reports for it: `Runtime.ConfigError` (a
/// variable missing or invalid), `Runtime.StoreError` (ledger or views not reachable or not
/// migrated), `Runtime.SecretError` (a secret that could not be read). The `?` operator picks
/// the category from the error's type (each handler module adds the `From` of its own
/// init errors).
#[derive(Debug)]
pub struct InitError {
    error_type: &'static str,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl InitError {
    pub fn config(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new("Runtime.ConfigError", error)
    }

    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new("Runtime.StoreError", error)
    }

    pub fn secret(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new("Runtime.SecretError", error)
    }

    fn new(
        error_type: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            error_type,
            error: Box::new(error),
        }
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
    }
}

impl Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.error, f)
    }
}

impl From<ConfigError> for InitError {
    fn from(e: ConfigError) -> Self {
        Self::config(e)
    }
}

impl From<StoreError> for InitError {
    fn from(e: StoreError) -> Self {
        Self::store(e)
    }
}

impl From<ViewError> for InitError {
    fn from(e: ViewError) -> Self {
        Self::store(e)
    }
}

/// Runs a Lambda function: tracing, then `init` once with the process's AWS configuration;
/// an init failure is reported to `/init/error` and returned (the process exits with it);
/// otherwise every invocation goes to the handler `init` built.
pub async fn run<H, I, F>(init: I) -> Result<(), lambda_runtime::Error>
where
    H: Handler,
    I: FnOnce(AwsConfig) -> F,
    F: Future<Output = Result<H, InitError>>,
{
    init_tracing();
    let handler = match init(AwsConfig::lazy()).await {
        Ok(handler) => Arc::new(handler),
        Err(e) => {
            report_init_error(e.error_type, &e).await;
            return Err(e.error);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<H::Event>| {
        let handler = handler.clone();
        async move { handler.handle(event.payload).await }
    }))
    .await
}

/// JSON log lines (one per event, fields flattened) filtered by `RUST_LOG` (default `info`).
/// Lambda stamps time itself, so lines carry none.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .try_init();
}

/// Posts `error` to `/2018-06-01/runtime/init/error` (when running under a Runtime API) and
/// logs it. `error_type` is a short category such as `Runtime.ConfigError`. The message must
/// already be free of secrets: config and secret errors name variables, never values.
async fn report_init_error(error_type: &str, error: &dyn Display) {
    let message = error.to_string();
    tracing::error!(error_type, error = %message, "init failed");
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({"errorMessage": message, "errorType": error_type});
    let result = reqwest::Client::new()
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .json(&body)
        .send()
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not report the init failure to the Runtime API");
    }
}
