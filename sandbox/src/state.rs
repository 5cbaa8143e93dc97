//! The sandbox's in-memory world: issued tokens, CRM records, Billing objects, the outbox
//! of emitted events and the call log. One mutex, never held across an await.

use super::billing::BillingState;
use super::crm::CrmState;
use super::faults::FaultSettings;
use super::SandboxConfig;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which simulated system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Crm,
    Billing,
}

impl System {
    pub fn as_str(&self) -> &'static str {
        match self {
            System::Crm => "crm",
            System::Billing => "billing",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "crm" => Some(System::Crm),
            "billing" => Some(System::Billing),
            _ => None,
        }
    }
}

/// One event the simulated system sent out: an EventBridge event from the Salesforce partner
/// source (CRM) or a callout notification (Billing). `body` is delivered serialized compactly
/// (`serde_json::to_string`); the callout signature, when configured, is over those bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Position in the outbox (a duplicate delivery gets its own position, same body).
    pub seq: u64,
    pub system: System,
    /// EventBridge `detail-type` (`AccountChangeEvent`, `OrderEvent__e`, ...) or the Billing
    /// event type (`AccountCreated`, `SubscriptionCreated`, ...).
    pub event_type: String,
    pub body: Value,
    /// HTTP headers of a callout delivery (`X-Zuora-Signature`, `X-Correlation-Id`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl OutboxEvent {
    /// The exact bytes a receiver gets.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

/// One call the sandbox answered (admin calls are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub system: System,
    pub method: String,
    /// The route pattern, e.g. `/v1/accounts/{key}`.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Milliseconds since the sandbox started, when the call arrived.
    pub arrived_ms: u64,
}

impl CallRecord {
    /// `"<METHOD> <route>"`, the key of `CallStats::by_route`.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.route)
    }
}

/// Call counters: per system and per route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub total: u64,
    pub crm: u64,
    pub billing: u64,
    pub by_route: BTreeMap<String, u64>,
}

impl CallStats {
    /// Calls to one route, e.g. `count("POST /v1/accounts")`, `count("POST /oauth/token")`.
    pub fn count(&self, label: &str) -> u64 {
        self.by_route.get(label).copied().unwrap_or(0)
    }
}

pub(crate) struct IssuedToken {
    pub system: System,
    pub expires_at: Instant,
}

pub(crate) struct Inner {
    pub faults: FaultSettings,
    pub tokens: HashMap<String, IssuedToken>,
    pub calls: Vec<CallRecord>,
    /// Bumped by a reset, so answers to calls from before it do not touch the new log.
    pub calls_generation: u64,
    pub outbox: Vec<OutboxEvent>,
    pub next_seq: u64,
    pub crm: CrmState,
    pub billing: BillingState,
    pub usage: crate::limits::ApiUsage,
}

pub(crate) struct StateData {
    pub config: SandboxConfig,
    pub addr: std::net::SocketAddr,
    pub started: Instant,
    inner: Mutex<Inner>,
}

pub(crate) type SharedState = Arc<StateData>;

impl StateData {
    pub fn new(config: SandboxConfig, addr: std::net::SocketAddr) -> SharedState {
        let inner = Inner {
            faults: config.faults.clone(),
            tokens: HashMap::new(),
            calls: Vec::new(),
            calls_generation: 0,
            outbox: Vec::new(),
            next_seq: 1,
            crm: CrmState::default(),
            billing: BillingState::default(),
            usage: crate::limits::ApiUsage::new(config.limits.clone()),
        };
        Arc::new(StateData {
            config,
            addr,
            started: Instant::now(),
            inner: Mutex::new(inner),
        })
    }

    /// `host:port` the sandbox answers on (for URLs it hands out).
    pub fn public_host(&self) -> String {
        self.addr.to_string()
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not wedge the whole sandbox.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Queue an emitted event (twice when duplicate delivery is on).
    pub fn emit(
        &mut self,
        config: &SandboxConfig,
        system: System,
        event_type: &str,
        body: Value,
        correlation_id: Option<&str>,
    ) {
        let mut headers = BTreeMap::new();
        if system == System::Billing {
            if let Some(secret) = &config.callout_secret {
                let now = chrono::Utc::now().timestamp();
                headers.insert(
                    super::CALLOUT_SIGNATURE_HEADER.to_string(),
                    secret.sign(body.to_string().as_bytes(), now),
                );
            }
        }
        if let Some(id) = correlation_id {
            headers.insert("X-Correlation-Id".into(), id.to_string());
        }
        let copies = if self.faults.get(system).duplicate_deliveries {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let seq = self.next_seq;
            self.next_seq += 1;
            let event = OutboxEvent {
                seq,
                system,
                event_type: event_type.to_string(),
                body: body.clone(),
                headers: headers.clone(),
            };
            if system == System::Billing {
                if let Some(url) = &config.callout_url {
                    push_callout(url.clone(), &event);
                }
            }
            self.outbox.push(event);
        }
    }

    pub fn issue_token(&mut self, system: System, ttl: Duration) -> String {
        let token = format!("{}-{}", system.as_str(), uuid::Uuid::new_v4().simple());
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                system,
                expires_at: Instant::now() + ttl,
            },
        );
        token
    }

    pub fn token_valid(&self, system: System, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|t| t.system == system && t.expires_at > Instant::now())
    }

    pub fn stats(&self) -> CallStats {
        let mut stats = CallStats::default();
        for call in &self.calls {
            stats.total += 1;
            match call.system {
                System::Crm => stats.crm += 1,
                System::Billing => stats.billing += 1,
            }
            *stats.by_route.entry(call.label()).or_default() += 1;
        }
        stats
    }
}

/// An error answer in the system's own shape: Salesforce `[{message, errorCode}]`, Zuora
/// `{success: false, reasons: [{code, message}]}`.
pub(crate) fn api_error(
    system: System,
    status: StatusCode,
    crm_code: &str,
    billing_code: &str,
    message: &str,
) -> Response {
    let body = match system {
        System::Crm => json!([{ "message": message, "errorCode": crm_code, "fields": [] }]),
        System::Billing => json!({
            "success": false,
            "processId": uuid::Uuid::new_v4().simple().to_string()[..16],
            "reasons": [{ "code": billing_code.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(billing_code)), "message": message }],
        }),
    };
    (status, Json(body)).into_response()
}

/// Delivers a Billing callout by HTTP POST, as the real tenant would, on its own task (so
/// deliveries may arrive in any order, like real ones). A failed delivery is logged, never
/// retried here: the outbox still holds the event for a redrive.
fn push_callout(url: url::Url, event: &OutboxEvent) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            seq = event.seq,
            "no async runtime: callout kept in the outbox only"
        );
        return;
    };
    let body = event.body_text();
    let headers = event.headers.clone();
    let seq = event.seq;
    runtime.spawn(async move {
        let mut request = reqwest::Client::new()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(seq, status = response.status().as_u16(), "callout refused")
            }
            Err(e) => tracing::warn!(seq, error = %e.without_url(), "callout not delivered"),
        }
    });
}
