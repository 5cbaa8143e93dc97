//! The HTTP plumbing both clients share: timeouts, bounded retries with jittered exponential
//! backoff on 429/5xx/connection failures, `Retry-After`, one token refresh on 401, and the
//! `X-Correlation-Id` header on every call. It knows no API shapes (`crm.rs`, `billing.rs` do).

use super::error::{is_transient_status, ConnectorError, TransportFailure};
use super::token::{ServiceName, TokenSource};
use projections::{CorrelationId, EventId};
use rand::Rng;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub const CORRELATION_HEADER: &str = "X-Correlation-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Bounded retries with full-jitter exponential backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out in-process: the call fails as
    /// transient and the caller's own retry (the event source mapping) comes back later.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): uniform in `[0, min(max, base * 2^(retry-1))]`
    /// ("full jitter"), so many clients throttled together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let cap = exp.min(self.max_delay);
        if cap.is_zero() {
            return cap;
        }
        let millis = rand::rng().random_range(0..=cap.as_millis() as u64);
        Duration::from_millis(millis)
    }

    /// The wait before the next attempt: at least the server's `Retry-After` when it sent one.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            // Honour the server's wait, plus a little jitter so clients spread out.
            Some(wait) => wait + self.backoff(1).min(Duration::from_millis(250)),
            None => self.backoff(retry),
        }
    }
}

/// Where and how a client talks to its API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://acme.my.salesforce.com/` or `https://rest.zuora.com/`.
    pub base_url: Url,
    /// The service whose token is used (`/apiTokens/<service>`).
    pub service: ServiceName,
    /// Whole-request timeout per attempt.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(base_url: Url, service: ServiceName) -> Self {
        Self {
            base_url,
            service,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry: RetryPolicy::default(),
        }
    }
}

/// A caller-chosen idempotency key (the projector derives it from the causing event id).
/// Zuora accepts up to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: impl Into<String>) -> Result<Self, ConnectorError> {
        let value = value.into();
        let invalid = |reason: &str| ConnectorError::InvalidRequest {
            operation: "idempotency key",
            field: "Idempotency-Key",
            reason: reason.to_string(),
        };
        if value.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if value.len() > 255 {
            return Err(invalid("must be at most 255 characters"));
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("must be printable ASCII without spaces"));
        }
        Ok(Self(value))
    }

    /// `<event id>:<step>`: one key per effect of one causing event.
    pub fn for_event(event_id: &EventId, step: &str) -> Result<Self, ConnectorError> {
        Self::parse(format!("{event_id}:{step}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One logical call, re-sent as-is on each attempt.
pub(crate) struct ApiRequest<'a> {
    pub operation: &'static str,
    pub method: Method,
    /// Relative to the base URL, without a leading slash.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<&'a Value>,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    pub headers: Vec<(&'static str, &'static str)>,
    pub correlation_id: CorrelationId,
}

pub(crate) struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub attempts: u32,
}

/// How a service's JSON error bodies are read: `(code, message)`.
pub(crate) type ErrorParser = fn(&Value) -> (Option<String>, String);

/// An error body as `(code, message)`: the service's reader for JSON, else the start of the
/// text (gateways and load balancers answer in HTML or plain text).
pub(crate) fn read_error_body(text: &str, read: ErrorParser) -> (Option<String>, String) {
    match serde_json::from_str::<Value>(text) {
        Ok(body) => read(&body),
        Err(_) => (None, text.chars().take(200).collect()),
    }
}

pub(crate) struct ApiTransport {
    http: reqwest::Client,
    base_url: Url,
    service: ServiceName,
    retry: RetryPolicy,
    tokens: Arc<dyn TokenSource>,
    parse_error: ErrorParser,
    /// The API usage the latest answer reported (`limits`).
    usage: super::limits::UsageGauge,
}

impl ApiTransport {
    pub fn new(
        config: ClientConfig,
        tokens: Arc<dyn TokenSource>,
        parse_error: ErrorParser,
    ) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ConnectorError::InvalidRequest {
                operation: "client setup",
                field: "http",
                reason: e.to_string(),
            })?;
        let mut base_url = config.base_url;
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        Ok(Self {
            http,
            base_url,
            service: config.service,
            retry: RetryPolicy {
                max_attempts: config.retry.max_attempts.max(1),
                ..config.retry
            },
            tokens,
            parse_error,
            usage: Default::default(),
        })
    }

    /// The API usage the system reported on its latest answer.
    pub fn api_usage(&self) -> Option<super::limits::ApiUsage> {
        self.usage.latest()
    }

    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    pub fn url(&self, path: &str) -> Result<Url, url::ParseError> {
        self.base_url.join(path)
    }

    /// Sends the request, retrying transient failures within the policy. Every call this
    /// transport makes is idempotent by construction (GET/PUT/PATCH, POST with an
    /// idempotency key or upsert semantics), so a retry after a timeout cannot duplicate.
    pub async fn send(&self, req: ApiRequest<'_>) -> Result<ApiResponse, ConnectorError> {
        let service = self.service.to_string();
        let mut url = self
            .url(&req.path)
            .map_err(|e| ConnectorError::InvalidRequest {
                operation: req.operation,
                field: "path",
                reason: e.to_string(),
            })?;
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                pairs.append_pair(k, v);
            }
        }
        let token_err = |source| ConnectorError::Token {
            service: service.clone(),
            operation: req.operation,
            source,
        };
        let mut token = self.tokens.token(&self.service).await.map_err(token_err)?;
        let mut refreshed = false;
        let mut attempts = 0u32;
        // Retries used by transient failures; the single 401 refresh does not consume one.
        let mut retries = 0u32;
        loop {
            attempts += 1;
            let mut builder = self
                .http
                .request(req.method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(CORRELATION_HEADER, req.correlation_id.to_string())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(key) = req.idempotency_key {
                builder = builder.header(IDEMPOTENCY_HEADER, key.as_str());
            }
            for (name, value) in &req.headers {
                builder = builder.header(*name, *value);
            }
            if let Some(body) = req.body {
                builder = builder.json(body);
            }
            let (failure, retry_after) = match self.attempt(builder, &req, attempts).await {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Unauthorized if refreshed => {
                    return Err(ConnectorError::Unauthorized {
                        service,
                        operation: req.operation,
                        attempts,
                    })
                }
                Attempt::Unauthorized => {
                    tracing::info!(
                        service = %self.service,
                        operation = req.operation,
                        correlation_id = %req.correlation_id,
                        "token rejected; re-reading it once"
                    );
                    self.tokens.invalidate(&self.service);
                    token = self.tokens.token(&self.service).await.map_err(token_err)?;
                    refreshed = true;
                    continue;
                }
                Attempt::Retryable(error, retry_after) => (error, retry_after),
            };
            retries += 1;
            if retries >= self.retry.max_attempts {
                return Err(failure);
            }
            if let Some(wait) = retry_after {
                if wait > self.retry.max_retry_after {
                    return Err(with_retry_after(failure, wait));
                }
            }
            let delay = self.retry.delay(retries, retry_after);
            tracing::warn!(
                service = %self.service,
                operation = req.operation,
                correlation_id = %req.correlation_id,
                attempt = attempts,
                status = failure.status(),
                delay_ms = delay.as_millis() as u64,
                error = %failure,
                "transient failure; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

enum Attempt {
    Done(ApiResponse),
    Unauthorized,
    /// Worth another try, after the server's `Retry-After` if it sent one.
    Retryable(ConnectorError, Option<Duration>),
    Fatal(ConnectorError),
}

impl ApiTransport {
    async fn attempt(
        &self,
        builder: reqwest::RequestBuilder,
        req: &ApiRequest<'_>,
        attempts: u32,
    ) -> Attempt {
        let service = self.service.to_string();
        let transport = |e: reqwest::Error| ConnectorError::Transport {
            service: service.clone(),
            operation: req.operation,
            failure: classify_transport(&e),
            detail: e.without_url().to_string(),
            attempts,
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return Attempt::Retryable(transport(e), None),
        };
        let status = response.status().as_u16();
        // Every answer, errors included, says how much of the allowance is left.
        self.usage.observe(response.headers());
        if status == 401 {
            return Attempt::Unauthorized;
        }
        let retry_after = parse_retry_after(response.headers());
        let text = match response.text().await {
            Ok(text) => text,
            // The body was cut off: as good as a dropped connection.
            Err(e) => return Attempt::Retryable(transport(e), None),
        };
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Attempt::Done(ApiResponse {
                    status,
                    body: Value::Null,
                    attempts,
                });
            }
            return match serde_json::from_str(&text) {
                Ok(body) => Attempt::Done(ApiResponse {
                    status,
                    body,
                    attempts,
                }),
                Err(e) => Attempt::Fatal(ConnectorError::Decode {
                    service,
                    operation: req.operation,
                    status,
                    reason: format!("body is not JSON: {e}"),
                }),
            };
        }
        let (code, message) = read_error_body(&text, self.parse_error);
        let error = ConnectorError::Api {
            service,
            operation: req.operation,
            status,
            code,
            message,
            attempts,
            retry_after: None,
        };
        if is_transient_status(status) {
            Attempt::Retryable(error, retry_after)
        } else {
            Attempt::Fatal(error)
        }
    }
}

fn with_retry_after(error: ConnectorError, wait: Duration) -> ConnectorError {
    match error {
        ConnectorError::Api {
            service,
            operation,
            status,
            code,
            message,
            attempts,
            ..
        } => ConnectorError::Api {
            service,
            operation,
            status,
            code,
            message,
            attempts,
            retry_after: Some(wait),
        },
        other => other,
    }
}

fn classify_transport(e: &reqwest::Error) -> TransportFailure {
    if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() {
        TransportFailure::Connect
    } else {
        TransportFailure::Other
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_exponential_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(2) <= Duration::from_millis(200));
            assert!(policy.backoff(3) <= Duration::from_millis(350));
            assert!(policy.backoff(30) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn retry_after_is_never_shortened() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            assert!(policy.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse("x".repeat(256)).is_err());
        let id = EventId::new();
        assert_eq!(
            IdempotencyKey::for_event(&id, "create-account")
                .unwrap()
                .as_str(),
            format!("{id}:create-account")
        );
    }
}
