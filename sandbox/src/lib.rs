//! The sandbox: in-memory CRM (Salesforce REST shape) and Billing (Zuora v1 shape) servers on
//! one local port, with OAuth token endpoints, fault injection, per-route call counters and
//! an outbox of the events those systems would emit. For the demo, tests and benchmarks —
//! it must never be pointed at by production configuration.

mod admin;
pub mod billing;
pub mod crm;
pub mod faults;
pub mod limits;
mod oauth;
mod query;
pub mod runtime_api;
mod secret;
mod state;

pub use billing::{Charge, Price, Product, RatePlan};
pub use crm::STANDARD_PRICEBOOK_ID;
pub use faults::{FaultSettings, Faults};
pub use secret::{CalloutSigner, Secret};
pub use state::{CallRecord, CallStats, OutboxEvent, System};

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, patch, post, put};
use axum::Router;
use serde_json::{Map, Value};
use state::{SharedState, StateData};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use url::Url;

/// Header carrying the callout signature (scheme: `secret::CalloutSigner`).
pub const CALLOUT_SIGNATURE_HEADER: &str = "X-Zuora-Signature";

/// An OAuth client registered with a simulated system: the id and secret its token endpoint
/// accepts. (The caller-side credentials, with the token URL, are
/// `connectors::oauth::ClientCredentials`.)
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_secret: Secret,
}

impl RegisteredClient {
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            client_secret: Secret::new(client_secret).expect("non-empty secret"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    pub crm_client: RegisteredClient,
    pub billing_client: RegisteredClient,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
    pub faults: FaultSettings,
    /// When set, Billing callouts carry `X-Zuora-Signature` made with this secret.
    pub callout_secret: Option<CalloutSigner>,
    /// When set, every Billing callout is also POSTed here (duplicates included), as a
    /// tenant's callout notification would be; the outbox keeps them either way.
    pub callout_url: Option<Url>,
    /// Salesforce org and channel in the EventBridge partner source name.
    pub org_id: String,
    pub channel_id: String,
    pub tenant_id: String,
    /// The CRM's daily API allocation and Billing's rate limit (`limits`).
    pub limits: limits::ApiLimits,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            crm_client: RegisteredClient::new("sandbox-crm-client", "sandbox-crm-secret"),
            billing_client: RegisteredClient::new(
                "sandbox-billing-client",
                "sandbox-billing-secret",
            ),
            token_ttl: Duration::from_secs(3600),
            faults: FaultSettings::default(),
            callout_secret: None,
            callout_url: None,
            org_id: "00DSB0000000001AAA".into(),
            channel_id: "0YLSB0000000001AAA".into(),
            tenant_id: "sandbox".into(),
            limits: limits::ApiLimits::default(),
        }
    }
}

impl SandboxConfig {
    pub fn credentials(&self, system: System) -> &RegisteredClient {
        match system {
            System::Crm => &self.crm_client,
            System::Billing => &self.billing_client,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("crm {code}: {message}")]
    Crm { code: &'static str, message: String },
    #[error("billing {code}: {message}")]
    Billing { code: u64, message: String },
}

/// A running sandbox (a tokio task); it stops when this handle is dropped.
pub struct Sandbox {
    addr: SocketAddr,
    state: SharedState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.bind,
            source,
        })?;
        let state = StateData::new(config, addr);
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of both APIs, e.g. `http://127.0.0.1:41234/`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).expect("a socket address makes a URL")
    }

    /// The client-credentials token endpoint of `system`.
    pub fn token_url(&self, system: System) -> Url {
        let path = match system {
            System::Crm => "services/oauth2/token",
            System::Billing => "oauth/token",
        };
        self.url().join(path).expect("static path")
    }

    /// The connectors' environment that points `ledger worker` / `ledger redrive` (or an
    /// in-process runner) at this sandbox, client secrets included: for a child process's
    /// environment, never for output.
    pub fn connectors_env(&self) -> Vec<(&'static str, String)> {
        let url = self.url().to_string();
        let crm = self.config().credentials(System::Crm);
        let billing = self.config().credentials(System::Billing);
        vec![
            ("CRM_BASE_URL", url.clone()),
            ("BILLING_BASE_URL", url),
            ("CRM_PRICEBOOK_ID", STANDARD_PRICEBOOK_ID.to_string()),
            ("CRM_CLIENT_ID", crm.client_id.clone()),
            (
                "CRM_CLIENT_SECRET",
                crm.client_secret.expose_secret().to_string(),
            ),
            ("BILLING_CLIENT_ID", billing.client_id.clone()),
            (
                "BILLING_CLIENT_SECRET",
                billing.client_secret.expose_secret().to_string(),
            ),
        ]
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.state.config
    }

    /// Issue an access token directly (as if obtained through OAuth).
    pub fn issue_token(&self, system: System) -> Secret {
        let token = self
            .state
            .lock()
            .issue_token(system, self.state.config.token_ttl);
        Secret::new(token).expect("issued tokens are non-empty")
    }

    /// Make `CurrencyIsoCode` a restricted picklist of `crm::ORG_CURRENCIES`, as in a
    /// multi-currency org: any other code is refused with `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`.
    pub fn restrict_crm_currencies(&self) {
        self.state.lock().crm.restricted_currencies = true;
    }

    /// Invalidate every issued token (of one system, or all): the next API call gets 401.
    pub fn expire_tokens(&self, system: Option<System>) {
        self.state
            .lock()
            .tokens
            .retain(|_, t| system.is_some_and(|s| s != t.system));
    }

    /// Invalidate every token except the newest of each system: what a rotation that
    /// revokes the superseded tokens looks like to a client still holding one.
    pub fn revoke_superseded_tokens(&self) {
        let mut state = self.state.lock();
        let mut newest: std::collections::HashMap<System, (String, std::time::Instant)> =
            std::collections::HashMap::new();
        for (token, issued) in &state.tokens {
            let entry = newest
                .entry(issued.system)
                .or_insert_with(|| (token.clone(), issued.expires_at));
            // Every token of a system gets the same TTL: the latest expiry is the newest.
            if issued.expires_at > entry.1 {
                *entry = (token.clone(), issued.expires_at);
            }
        }
        state
            .tokens
            .retain(|token, issued| newest.get(&issued.system).is_some_and(|(t, _)| t == token));
    }

    pub fn faults(&self) -> FaultSettings {
        self.state.lock().faults.clone()
    }

    pub fn set_faults(&self, system: System, faults: Faults) {
        *self.state.lock().faults.get_mut(system) = faults;
    }

    pub fn calls(&self) -> CallStats {
        self.state.lock().stats()
    }

    pub fn call_log(&self) -> Vec<CallRecord> {
        self.state.lock().calls.clone()
    }

    pub fn reset_calls(&self) {
        admin::reset_calls(&self.state);
    }

    /// The emitted events not drained yet, oldest first.
    pub fn outbox(&self) -> Vec<OutboxEvent> {
        self.state.lock().outbox.clone()
    }

    /// Takes the emitted events out of the outbox, oldest first.
    pub fn drain_outbox(&self) -> Vec<OutboxEvent> {
        std::mem::take(&mut self.state.lock().outbox)
    }

    /// A person creates a CRM record in the UI: the change event is emitted (no origin marker).
    pub fn crm_user_create(
        &self,
        sobject: &str,
        fields: Map<String, Value>,
    ) -> Result<String, SandboxError> {
        crm::user_create(&self.state, sobject, fields).map_err(crm_error)
    }

    /// A person edits a CRM record in the UI.
    pub fn crm_user_update(
        &self,
        sobject: &str,
        id: &str,
        fields: Map<String, Value>,
    ) -> Result<(), SandboxError> {
        crm::user_update(&self.state, sobject, id, fields).map_err(crm_error)
    }

    /// A person creates an account in the Billing UI: its callout is emitted (no origin
    /// marker, no CRM id). Returns the Billing account id.
    pub fn billing_user_create_account(
        &self,
        name: &str,
        currency: &str,
    ) -> Result<String, SandboxError> {
        let body = serde_json::json!({"name": name, "currency": currency, "billCycleDay": 1});
        let body = body.as_object().cloned().unwrap_or_default();
        let (_, answer) = self
            .state
            .lock()
            .billing_create_account(&self.state.config, &body, None)
            .map_err(|e| SandboxError::Billing {
                code: e.code,
                message: e.message,
            })?;
        Ok(answer["accountId"].as_str().unwrap_or_default().to_string())
    }

    /// Sets the CRM API calls used today (as if other integrations had spent them).
    pub fn set_crm_api_used(&self, used: u64) {
        self.state.lock().usage.crm_used = used;
    }

    /// CRM API calls used today.
    pub fn crm_api_used(&self) -> u64 {
        self.state.lock().usage.crm_used
    }

    /// All CRM records of one sObject type (with `Id`).
    pub fn crm_records(&self, sobject: &str) -> Vec<Map<String, Value>> {
        self.state
            .lock()
            .crm
            .records
            .get(sobject)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn billing_accounts(&self) -> Vec<billing::AccountRecord> {
        self.state
            .lock()
            .billing
            .accounts
            .values()
            .cloned()
            .collect()
    }

    pub fn billing_subscriptions(&self) -> Vec<billing::SubscriptionRecord> {
        self.state
            .lock()
            .billing
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    /// A person creates a Billing account in the Zuora UI (emits its callout); its id. For
    /// seeding large tenants (benchmarks) without an HTTP call per account.
    pub fn billing_user_create(
        &self,
        name: &str,
        currency: &str,
        crm_id: Option<&str>,
    ) -> Result<String, SandboxError> {
        let mut body = Map::new();
        body.insert("name".into(), Value::from(name));
        body.insert("currency".into(), Value::from(currency));
        if let Some(crm) = crm_id {
            body.insert("crmId".into(), Value::from(crm));
        }
        let (_, answer) = self
            .state
            .lock()
            .billing_create_account(&self.state.config, &body, None)
            .map_err(|e| SandboxError::Billing {
                code: e.code,
                message: e.message,
            })?;
        Ok(answer["accountId"].as_str().unwrap_or_default().to_string())
    }

    /// A person renames a Billing account in the Zuora UI (emits its callout).
    pub fn billing_user_update(&self, id: &str, name: &str) -> Result<(), SandboxError> {
        let mut body = Map::new();
        body.insert("name".into(), Value::from(name));
        self.state
            .lock()
            .billing_update_account(&self.state.config, id, &body, None)
            .map(|_| ())
            .map_err(|e| SandboxError::Billing {
                code: e.code,
                message: e.message,
            })
    }

    /// Adds or changes a catalog product (by SKU) and emits its callouts; returns it with ids.
    pub fn upsert_product(&self, product: Product) -> Product {
        self.state
            .lock()
            .billing_upsert_product(&self.state.config, product)
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the task is stopped or fails (for `ledger sandbox`).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn crm_error(e: crm::CrmError) -> SandboxError {
    SandboxError::Crm {
        code: e.code,
        message: e.message,
    }
}

fn router(state: SharedState) -> Router {
    let crm_api = Router::new()
        .route(
            "/services/data/{version}/sobjects/{sobject}",
            post(crm::create),
        )
        .route(
            "/services/data/{version}/sobjects/{sobject}/{id}",
            get(crm::get).patch(crm::update).delete(crm::delete),
        )
        .route(
            "/services/data/{version}/sobjects/{sobject}/{field}/{value}",
            patch(crm::upsert).get(crm::get_by_external_id),
        )
        .route("/services/data/{version}/composite", post(crm::composite))
        .route(
            "/services/data/{version}/composite/sobjects/{sobject}/{field}",
            patch(crm::collections::upsert),
        )
        .route("/services/data/{version}/query", get(crm::query::query))
        .route(
            "/services/data/{version}/query/{locator}",
            get(crm::query::query_more),
        )
        .with_state(state.clone())
        .route_layer(from_fn_with_state(
            (state.clone(), System::Crm),
            oauth::require_token,
        ));
    let crm_oauth = Router::new()
        .route("/services/oauth2/token", post(oauth::token))
        .with_state((state.clone(), System::Crm));
    let billing_api = Router::new()
        .route("/v1/accounts", post(billing::create_account))
        .route(
            "/v1/accounts/{key}",
            get(billing::get_account).put(billing::update_account),
        )
        .route("/v1/subscriptions", post(billing::create_subscription))
        .route(
            "/v1/subscriptions/{key}",
            get(billing::get_subscription).put(billing::amend_subscription),
        )
        .route(
            "/v1/subscriptions/{key}/cancel",
            put(billing::cancel_subscription),
        )
        .route("/v1/catalog/products", get(billing::list_products))
        .route("/v1/catalog/products/{key}", get(billing::get_product))
        .route("/v1/action/query", post(billing::query::query))
        .route("/v1/action/queryMore", post(billing::query::query_more))
        .with_state(state.clone())
        .route_layer(from_fn_with_state(
            (state.clone(), System::Billing),
            oauth::require_token,
        ));
    let billing_oauth = Router::new()
        .route("/oauth/token", post(oauth::token))
        .with_state((state.clone(), System::Billing));
    // Faults hit the APIs only: token endpoints stay healthy so a fault test exercises
    // exactly the call under test. Every call, token requests included, is recorded.
    // Limits count the calls that pass the faults (a refused call is not counted).
    let faulted = |router: Router, system: System| {
        router
            .route_layer(from_fn_with_state((state.clone(), system), limits::apply))
            .route_layer(from_fn_with_state((state.clone(), system), faults::apply))
    };
    let recorded = |router: Router, system: System| {
        router.route_layer(from_fn_with_state((state.clone(), system), record_call))
    };
    Router::new()
        .merge(recorded(
            faulted(crm_api, System::Crm).merge(crm_oauth),
            System::Crm,
        ))
        .merge(recorded(
            faulted(billing_api, System::Billing).merge(billing_oauth),
            System::Billing,
        ))
        .merge(admin::router(state))
}

/// Middleware: records every API call (counted on arrival, status filled in on answer).
async fn record_call(
    State((state, system)): State<(SharedState, System)>,
    request: Request,
    next: Next,
) -> Response {
    // Built in its own scope: the request body is not `Sync`, so no borrow of the request
    // may live across the await below.
    let record = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        CallRecord {
            system,
            method: request.method().to_string(),
            route: route_label(request.uri().path()),
            path: request.uri().path().to_string(),
            status: 0,
            correlation_id: header("x-correlation-id"),
            idempotency_key: header("idempotency-key"),
            arrived_ms: state.started.elapsed().as_millis() as u64,
        }
    };
    let (index, generation) = {
        let mut inner = state.lock();
        inner.calls.push(record);
        (inner.calls.len() - 1, inner.calls_generation)
    };
    let response = next.run(request).await;
    let mut inner = state.lock();
    if inner.calls_generation == generation {
        if let Some(call) = inner.calls.get_mut(index) {
            call.status = response.status().as_u16();
        }
    }
    response
}

/// The path with its ids replaced by placeholders, keeping the sObject type and external id
/// field: `/v1/accounts/{key}`, `/services/data/{version}/sobjects/Account/Billing_Account_Id__c/{value}`.
fn route_label(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let labelled: Vec<String> = match segments.as_slice() {
        ["services", "data", _, "sobjects", sobject] => {
            vec![
                "services".into(),
                "data".into(),
                "{version}".into(),
                "sobjects".into(),
                sobject.to_string(),
            ]
        }
        ["services", "data", _, "sobjects", sobject, _id] => vec![
            "services".into(),
            "data".into(),
            "{version}".into(),
            "sobjects".into(),
            sobject.to_string(),
            "{id}".into(),
        ],
        ["services", "data", _, "sobjects", sobject, field, _value] => vec![
            "services".into(),
            "data".into(),
            "{version}".into(),
            "sobjects".into(),
            sobject.to_string(),
            field.to_string(),
            "{value}".into(),
        ],
        ["services", "data", _, "query", _locator] => vec![
            "services".into(),
            "data".into(),
            "{version}".into(),
            "query".into(),
            "{locator}".into(),
        ],
        ["services", "data", _, rest @ ..] => {
            let mut v = vec!["services".to_string(), "data".into(), "{version}".into()];
            v.extend(rest.iter().map(|s| s.to_string()));
            v
        }
        ["v1", kind @ ("accounts" | "subscriptions"), _key, rest @ ..] => {
            let mut v = vec!["v1".to_string(), kind.to_string(), "{key}".into()];
            v.extend(rest.iter().map(|s| s.to_string()));
            v
        }
        ["v1", "catalog", "products", _key] => {
            vec![
                "v1".into(),
                "catalog".into(),
                "products".into(),
                "{key}".into(),
            ]
        }
        _ => segments.iter().map(|s| s.to_string()).collect(),
    };
    format!("/{}", labelled.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_hide_ids_but_keep_object_types() {
        assert_eq!(route_label("/v1/accounts/8ad0x"), "/v1/accounts/{key}");
        assert_eq!(
            route_label("/v1/catalog/products/SKU-1"),
            "/v1/catalog/products/{key}"
        );
        assert_eq!(
            route_label("/v1/subscriptions/A-S1/cancel"),
            "/v1/subscriptions/{key}/cancel"
        );
        assert_eq!(
            route_label("/services/data/v60.0/sobjects/Account/Billing_Account_Id__c/A1"),
            "/services/data/{version}/sobjects/Account/Billing_Account_Id__c/{value}"
        );
        assert_eq!(
            route_label("/services/data/v60.0/composite"),
            "/services/data/{version}/composite"
        );
        assert_eq!(route_label("/v1/catalog/products"), "/v1/catalog/products");
    }
}
