//! The ingest Lambda handler: one function behind three triggers (an SQS queue fed by the
//! Salesforce EventBridge rule, EventBridge invoking directly, and the Billing callout
//! Function URL / HTTP API). It maps with `crate::ingest` and records through the `EventLog`
//! port; it must not hold business rules, and never logs a secret or a raw body.
//!
//! Failure contract: a record whose content is wrong is recorded as `IngestRejected` and the
//! batch goes on; a record whose outcome could not be recorded (store throttled,
//! unavailable, refusing) is returned for redelivery: an SQS `batchItemFailure`, a 503 to
//! the callout sender, an error to the asynchronous EventBridge invocation.

mod callout_auth;
mod config;
mod secret;

pub use callout_auth::{CalloutAuth, REFRESH_AFTER};
pub use config::{IngestConfig, BASIC_AUTH_PARAM_ENV, DEFAULT_SECRET_PARAM, SECRET_PARAM_ENV};
pub use secret::{SecretError, SecretSource, StaticSecret, TokenSecret};

use super::emf::Metrics;
use crate::ingest::basic_auth;
use crate::ingest::signature::{CalloutSecret, SIGNATURE_HEADER};
use crate::ingest::{self as mapping, Channel, Ingested, Rejection};
use crate::ledger::{EventLog, LedgerError};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Zuora's id of a notification, the same on every retry of it (`Zuora-Request-Id` changes).
pub const NOTIFICATION_ID_HEADER: &str = "zuora-notification-id";
pub const AUTHORIZATION_HEADER: &str = "authorization";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The outcome of an EventBridge event could not be recorded; Lambda retries the
    /// asynchronous invocation, then sends it to the on-failure destination.
    #[error("event {id} was not recorded: {source}")]
    NotRecorded { id: String, source: LedgerError },
    /// The event is bigger than the ledger keeps: its head is recorded as `IngestRejected`,
    /// and failing the invocation sends the whole event to the on-failure destination.
    #[error("event {id} was rejected ({reason}) and is larger than the ledger keeps; failing so the on-failure destination keeps it whole")]
    RejectedOversized { id: String, reason: String },
    #[error("invocation is not a valid {trigger} event: {reason}")]
    BadInvocation {
        trigger: &'static str,
        reason: String,
    },
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    fn from(e: IngestError) -> Self {
        let error_type = match &e {
            IngestError::NotRecorded { .. } => "Ingest.NotRecorded",
            IngestError::RejectedOversized { .. } => "Ingest.RejectedOversized",
            IngestError::BadInvocation { .. } => "Ingest.BadInvocation",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The handler, built once per container (cold start) and shared by invocations.
pub struct IngestHandler {
    log: Arc<dyn EventLog>,
    /// The `X-Zuora-Signature` HMAC scheme.
    auth: CalloutAuth,
    /// Basic auth (`user:password`), when configured; accepted beside the HMAC scheme.
    basic: Option<CalloutAuth>,
}

impl IngestHandler {
    /// A handler with a fixed callout secret.
    pub fn new(log: Arc<dyn EventLog>, secret: CalloutSecret) -> Self {
        Self {
            log,
            auth: CalloutAuth::fixed(secret),
            basic: None,
        }
    }

    /// A handler authenticating callouts with `auth`.
    pub fn with_auth(log: Arc<dyn EventLog>, auth: CalloutAuth) -> Self {
        Self {
            log,
            auth,
            basic: None,
        }
    }

    /// Also accepts callouts carrying `Authorization: Basic` credentials checked by `basic`.
    pub fn with_basic_auth(self, basic: CalloutAuth) -> Self {
        Self {
            basic: Some(basic),
            ..self
        }
    }

    /// `init`, plus Basic auth credentials read from `basic` at init (re-read like the
    /// HMAC secret when credentials do not match) when it is given.
    pub async fn init_with_basic(
        log: Arc<dyn EventLog>,
        secrets: Arc<dyn SecretSource>,
        basic: Option<Arc<dyn SecretSource>>,
    ) -> Result<Self, SecretError> {
        let handler = Self::init(log, secrets).await?;
        Ok(match basic {
            Some(source) => {
                handler.with_basic_auth(CalloutAuth::load(source, REFRESH_AFTER).await?)
            }
            None => handler,
        })
    }

    /// Reads the callout secret from `secrets` at init (not per request); it is re-read
    /// only when a signature does not match, at most once per `REFRESH_AFTER`.
    pub async fn init(
        log: Arc<dyn EventLog>,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, SecretError> {
        Ok(Self::with_auth(
            log,
            CalloutAuth::load(secrets, REFRESH_AFTER).await?,
        ))
    }

    /// Entry point for any invocation: recognises the trigger by the event's shape.
    pub async fn handle(&self, event: Value) -> Result<Value, IngestError> {
        if is_sqs(&event) {
            let sqs: SqsEvent =
                serde_json::from_value(event).map_err(|e| IngestError::BadInvocation {
                    trigger: "SQS",
                    reason: e.to_string(),
                })?;
            Ok(to_json(&self.handle_sqs(sqs).await))
        } else if event.pointer("/requestContext/http").is_some() {
            let request: ApiGatewayV2httpRequest =
                serde_json::from_value(event).map_err(|e| IngestError::BadInvocation {
                    trigger: "HTTP API v2",
                    reason: e.to_string(),
                })?;
            Ok(to_json(&self.handle_callout(request).await))
        } else if mapping::eventbridge::looks_like(&event) {
            self.handle_eventbridge(event).await
        } else {
            // Nothing we know invokes us like this; keep it so it can be looked at.
            let raw = serde_json::to_vec(&event).unwrap_or_default();
            let rejection = Rejection::whole(
                "invocation is neither an SQS batch, an HTTP API v2 request nor an EventBridge event",
            );
            let outcome = self
                .record(Channel::Invoke, &raw, Err(rejection), None)
                .await;
            match outcome {
                Ok(ingested) => Ok(json!({"outcome": ingested.label()})),
                Err(source) => Err(IngestError::NotRecorded {
                    id: "invocation".to_string(),
                    source,
                }),
            }
        }
    }

    /// An SQS batch of EventBridge events. Only records whose outcome could not be recorded
    /// are listed as failures (ReportBatchItemFailures), so only those are redelivered.
    /// Records are handled in batch order; a standard queue does not order them, so the
    /// ledger's per-stream version order is arrival order and `occurred_at` keeps the
    /// source's own time (Salesforce `commitTimestamp` / `CreatedDate`).
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.unwrap_or_default();
            let mapped = if body.is_empty() {
                Err(Rejection::missing("body"))
            } else {
                mapping::map_body(&body, Utc::now())
            };
            let keep = match self
                .record(Channel::Sqs, body.as_bytes(), mapped, Some(&id))
                .await
            {
                Ok(Ingested::Rejected { truncated, .. }) => !truncated,
                Ok(_) => true,
                Err(_) => false,
            };
            if !keep {
                // Safe to redeliver: SQS delivers at least once anyway, and the ledger's
                // dedupe marker (`dedupe#<source>#<id>`, written in the same DynamoDB
                // transaction as the event) makes an already-recorded event a no-op.
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// An EventBridge event delivered directly (asynchronous invocation).
    pub async fn handle_eventbridge(&self, event: Value) -> Result<Value, IngestError> {
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // The runtime already parsed the bytes; with `preserve_order` re-encoding keeps the
        // sender's field order, so the kept raw reads like what was sent.
        let raw = serde_json::to_vec(&event).unwrap_or_default();
        let mapped = mapping::eventbridge::map_event(&event, Utc::now());
        match self
            .record(Channel::EventBridge, &raw, mapped, Some(&id))
            .await
        {
            Ok(Ingested::Rejected {
                truncated: true,
                rejection,
                ..
            }) => Err(IngestError::RejectedOversized {
                id,
                reason: rejection.to_string(),
            }),
            Ok(ingested) => Ok(json!({"outcome": ingested.label()})),
            Err(source) => Err(IngestError::NotRecorded { id, source }),
        }
    }

    /// A Billing callout over HTTPS: authenticate, map, record, answer.
    pub async fn handle_callout(
        &self,
        request: ApiGatewayV2httpRequest,
    ) -> ApiGatewayV2httpResponse {
        if request.request_context.http.method != Method::POST {
            return response(405, json!({"error": "only POST is accepted"}));
        }
        let body = match request_body(&request) {
            Ok(body) => body,
            Err(reason) => return response(400, json!({"error": reason, "field": "body"})),
        };
        let now = Utc::now();
        if let Err(reason) = self
            .authenticate(&request.headers, &body, now.timestamp())
            .await
        {
            tracing::warn!(reason, "billing callout refused");
            return response(401, json!({"error": reason}));
        }
        let correlation = header(&request.headers, CORRELATION_HEADER);
        let notification = header(&request.headers, NOTIFICATION_ID_HEADER);
        let mapped = serde_json::from_slice::<Value>(&body)
            .map_err(|e| Rejection::whole(format!("body is not JSON: {e}")))
            .and_then(|value| {
                mapping::zuora::map_notification(&value, notification, correlation, now)
            });
        let request_id = request.request_context.request_id.clone();
        match self
            .record(
                Channel::BillingCallout,
                &body,
                mapped,
                request_id.as_deref(),
            )
            .await
        {
            Ok(Ingested::Rejected { rejection, .. }) => response(
                400,
                json!({"error": rejection.reason, "field": rejection.field}),
            ),
            Ok(ingested @ (Ingested::Appended { .. } | Ingested::AlreadyRecorded { .. })) => {
                response(200, json!({"outcome": ingested.label()}))
            }
            Err(e) if e.is_transient() => {
                let mut r = response(503, json!({"error": "the ledger is unavailable; retry"}));
                r.headers
                    .insert("retry-after", HeaderValue::from_static("5"));
                r
            }
            Err(_) => response(500, json!({"error": "the ledger refused the event"})),
        }
    }

    /// Basic auth when the callout carries `Authorization: Basic ...`, else the HMAC
    /// signature. The reason never holds what was sent.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), String> {
        match header(headers, AUTHORIZATION_HEADER).filter(|h| basic_auth::is_basic(h)) {
            Some(authorization) => match &self.basic {
                Some(basic) => basic
                    .verify_basic(Some(authorization))
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("Basic auth is not configured for callouts".to_string()),
            },
            None => self
                .auth
                .verify(header(headers, SIGNATURE_HEADER), body, now_unix)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn record(
        &self,
        channel: Channel,
        raw: &[u8],
        mapped: mapping::Mapped,
        record_id: Option<&str>,
    ) -> Result<Ingested, LedgerError> {
        // Every log line of a record names what it maps to, so a trace can be followed from
        // the logs as well as from the ledger.
        let (event_id, stream_id, correlation_id) = match &mapped {
            Ok(events) => (
                join(events.iter().map(|e| e.event_id.to_string())),
                join(events.iter().map(|e| e.stream_id.to_string())),
                join(events.iter().map(|e| e.correlation_id.to_string())),
            ),
            Err(_) => Default::default(),
        };
        let outcome = mapping::record(self.log.as_ref(), channel, raw, mapped, Utc::now()).await;
        let record_id = record_id.unwrap_or("-");
        let mut metrics = Metrics::new(&[("Function", "ingest"), ("Channel", channel.as_str())]);
        match &outcome {
            Ok(Ingested::Rejected {
                rejection,
                newly_recorded,
                truncated,
            }) => {
                metrics.count("RecordsRejected", 1);
                tracing::warn!(
                    channel = channel.as_str(), record_id, field = rejection.field.as_deref(),
                    reason = %rejection.reason, newly_recorded, truncated, "record rejected"
                )
            }
            Ok(ingested) => {
                let (appended, already) = match ingested {
                    Ingested::Appended {
                        appended,
                        already_recorded,
                    } => (*appended, *already_recorded),
                    Ingested::AlreadyRecorded { events } => (0, *events),
                    Ingested::Rejected { .. } => (0, 0),
                };
                metrics.count("EventsAppended", appended as u64);
                metrics.count("EventsAlreadyRecorded", already as u64);
                tracing::info!(
                    channel = channel.as_str(),
                    record_id,
                    correlation_id,
                    event_id,
                    stream_id,
                    outcome = ingested.label(),
                    "record ingested"
                )
            }
            Err(e) => {
                metrics.count("RecordsNotRecorded", 1);
                tracing::error!(
                    channel = channel.as_str(), record_id, correlation_id, event_id, stream_id,
                    transient = e.is_transient(), error = %e, "record not recorded; left for redelivery"
                )
            }
        }
        metrics.flush();
        outcome
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

fn is_sqs(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

fn request_body(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, String> {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("isBase64Encoded body is not base64: {e}"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn response(status: i64, body: Value) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = status;
    r.headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    r.body = Some(Body::Text(body.to_string()));
    r
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("Lambda event types serialize to JSON")
}

impl super::bootstrap::Handler for IngestHandler {
    type Event = Value;
    type Response = Value;
    type Error = IngestError;

    async fn handle(&self, event: Value) -> Result<Value, IngestError> {
        IngestHandler::handle(self, event).await
    }
}

/// The callout secret is read at init.
impl From<SecretError> for super::bootstrap::InitError {
    fn from(e: SecretError) -> Self {
        Self::secret(e)
    }
}
