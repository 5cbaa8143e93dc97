//! What every Lambda main does around its handler: JSON tracing for CloudWatch, and reporting
//! an init failure (bad config, unreadable secret) to the Runtime API's `/init/error` so the
//! failure reaches Lambda with its reason. It holds no handler logic.

use std::fmt::Display;

/// JSON log lines (one per event, fields flattened) filtered by `RUST_LOG` (default `info`).
/// Lambda stamps time itself, so lines carry none.
pub fn init_tracing() {
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
pub async fn report_init_error(error_type: &str, error: &dyn Display) {
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

/// Reports an init failure (see [`report_init_error`]) and turns it into the error a Lambda
/// main returns, so the runtime exits with it.
pub async fn init_failure<E>(error_type: &str, error: E) -> lambda_runtime::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    report_init_error(error_type, &error).await;
    Box::new(error)
}
