//! The simulated Billing system (Zuora v1 REST shape): accounts, subscriptions (create,
//! amend, cancel; multi-currency), the product catalog (list, or one product by id or SKU),
//! `Idempotency-Key` replay, and the callout notifications a real tenant would send.
//! In-memory only.
//! Shapes: Zuora v1 API reference (accounts, subscriptions, catalog: "List all products",
//! "Retrieve a product" by id or SKU), "Idempotent requests" guide (same key -> the saved
//! answer; 409 while the first request with that key is still in progress; same key with
//! another request -> 422). The guide names POST and PATCH; we also honour the key on the
//! mutating PUTs (account update, amend, cancel), so a client that sends it there is protected
//! and one that relies on it alone is tested. Callout bodies follow the callout template
//! `ingest::zuora` reads (see `callout` below).

use super::state::{Inner, SharedState, System};
use super::SandboxConfig;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

mod catalog;
pub(crate) mod query;
pub(crate) use catalog::{get_product, list_products};
mod subscriptions;
pub(crate) use subscriptions::{
    amend_subscription, cancel_subscription, create_subscription, get_subscription,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRecord {
    pub id: String,
    pub account_number: String,
    pub name: String,
    pub currency: String,
    pub crm_id: Option<String>,
    pub status: String,
    pub bill_cycle_day: u64,
    /// Custom fields (`*__c`), e.g. `Origin__c`.
    pub custom: Map<String, Value>,
    /// Zuora `UpdatedDate`: stamped by every write (RFC 3339, ms, strictly increasing).
    #[serde(default)]
    pub updated_date: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRecord {
    pub id: String,
    pub subscription_number: String,
    pub account_id: String,
    pub status: String,
    pub contract_effective_date: String,
    pub cancelled_date: Option<String>,
    pub rate_plans: Vec<SubscriptionRatePlanRecord>,
    pub custom: Map<String, Value>,
    /// ISO 4217; the account's unless the create named one (Multiple Currencies).
    #[serde(default)]
    pub currency: String,
    /// 1 at creation, +1 per amendment or cancellation, as Zuora versions subscriptions:
    /// how a test counts the amendments a subscription went through.
    #[serde(default)]
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRatePlanRecord {
    pub id: String,
    pub product_rate_plan_id: String,
    pub product_id: String,
    pub rate_plan_name: String,
    pub charges: Vec<SubscriptionChargeRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionChargeRecord {
    pub id: String,
    pub product_rate_plan_charge_id: String,
    pub quantity: f64,
}

/// A catalog product as `GET /v1/catalog/products` lists it. Also the input of
/// `Sandbox::upsert_product` (ids may be left empty: they are assigned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    #[serde(default)]
    pub id: String,
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub effective_end_date: Option<String>,
    #[serde(default)]
    pub product_rate_plans: Vec<RatePlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RatePlan {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub product_rate_plan_charges: Vec<Charge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub pricing: Vec<Price>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub currency: String,
    pub price: f64,
}

struct SavedAnswer {
    fingerprint: String,
    status: StatusCode,
    body: Value,
}

#[derive(Default)]
pub(crate) struct BillingState {
    pub accounts: BTreeMap<String, AccountRecord>,
    pub subscriptions: BTreeMap<String, SubscriptionRecord>,
    pub products: Vec<Product>,
    idempotency: HashMap<String, SavedAnswer>,
    /// Keys whose first request is still in progress, with that request's fingerprint.
    in_flight: HashMap<String, String>,
    counter: u64,
    /// Last `UpdatedDate` handed out (ms since the epoch).
    last_updated: i64,
    /// Open ZOQL query cursors (`query.rs`).
    pub(crate) cursors: crate::query::Cursors,
}

impl BillingState {
    /// The next `UpdatedDate`: strictly increasing, so `WHERE UpdatedDate > :since` never
    /// misses a write made in the same millisecond.
    fn next_updated_date(&mut self) -> String {
        let now = chrono::Utc::now().timestamp_millis();
        self.last_updated = now.max(self.last_updated + 1);
        chrono::DateTime::from_timestamp_millis(self.last_updated)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("8ad0{:028x}", self.counter)
    }

    fn account_key(&self, key: &str) -> Option<String> {
        if self.accounts.contains_key(key) {
            return Some(key.to_string());
        }
        self.accounts
            .values()
            .find(|a| a.account_number == key)
            .map(|a| a.id.clone())
    }

    fn subscription_key(&self, key: &str) -> Option<String> {
        if self.subscriptions.contains_key(key) {
            return Some(key.to_string());
        }
        self.subscriptions
            .values()
            .find(|s| s.subscription_number == key)
            .map(|s| s.id.clone())
    }

    fn find_product(&self, key: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == key || p.sku == key)
    }

    fn find_rate_plan(&self, id: &str) -> Option<(&Product, &RatePlan)> {
        self.products.iter().find_map(|p| {
            p.product_rate_plans
                .iter()
                .find(|r| r.id == id)
                .map(|r| (p, r))
        })
    }
}

/// A Zuora-shaped error: `{success: false, processId, reasons: [{code, message}]}`.
#[derive(Debug, Clone)]
pub(crate) struct BillingError {
    pub status: StatusCode,
    pub code: u64,
    pub message: String,
}

impl BillingError {
    pub(crate) fn new(status: StatusCode, code: u64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(what: &str, key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            50000040,
            format!("Cannot find entity by key: '{key}' ({what})."),
        )
    }

    fn invalid(field: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            53100020,
            format!("'{field}' {reason}"),
        )
    }

    fn body(&self) -> Value {
        json!({
            "success": false,
            "processId": &uuid::Uuid::new_v4().simple().to_string()[..16],
            "reasons": [{"code": self.code, "message": self.message}],
        })
    }
}

impl IntoResponse for BillingError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

type Answer = Result<(StatusCode, Value), BillingError>;

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, BillingError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(BillingError::new(
            StatusCode::BAD_REQUEST,
            50000090,
            "Malformed request: the body must be a JSON object",
        )),
    }
}

fn custom_fields(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| k.ends_with("__c"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn text(body: &Map<String, Value>, field: &str) -> Option<String> {
    body.get(field).and_then(Value::as_str).map(str::to_string)
}

/// Runs a mutating request under Zuora idempotency rules. Without a key it just runs. With
/// one: a key whose answer is saved replays it (success or failure) when the request is the
/// same, and answers 422 when it is another; a key whose first request is still in progress
/// answers 409 (`Faults::idempotency_hold_ms` keeps a request in progress after its work is
/// done, as a slow Zuora commit would).
async fn idempotent(
    state: &SharedState,
    headers: &HeaderMap,
    route: &str,
    raw: &[u8],
    op: impl FnOnce(&mut Inner) -> Answer,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(key) = key else {
        return answer(op(&mut state.lock()));
    };
    let fingerprint = hex::encode(Sha256::digest([route.as_bytes(), b"\n", raw].concat()));
    let (result, hold) = {
        let mut inner = state.lock();
        let billing = &inner.billing;
        let seen = billing
            .idempotency
            .get(&key)
            .map(|saved| saved.fingerprint.as_str())
            .or_else(|| billing.in_flight.get(&key).map(String::as_str));
        if seen.is_some_and(|f| f != fingerprint) {
            return BillingError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                50000020,
                "The idempotency key was used with a different request",
            )
            .into_response();
        }
        if let Some(saved) = billing.idempotency.get(&key) {
            return reply((saved.status, saved.body.clone()));
        }
        if billing.in_flight.contains_key(&key) {
            return BillingError::new(
                StatusCode::CONFLICT,
                50000090,
                "A request with this idempotency key is still in progress",
            )
            .into_response();
        }
        inner
            .billing
            .in_flight
            .insert(key.clone(), fingerprint.clone());
        let result = op(&mut inner).unwrap_or_else(|e| (e.status, e.body()));
        let hold = inner.faults.billing.idempotency_hold_ms;
        (result, hold)
    };
    // The request finishes even when its caller is gone (a killed client): the work is
    // done, so its answer must be saved, as Zuora's would be.
    let state = state.clone();
    let finish = tokio::spawn(async move {
        if hold > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
        }
        let mut inner = state.lock();
        inner.billing.in_flight.remove(&key);
        inner.billing.idempotency.insert(
            key,
            SavedAnswer {
                fingerprint,
                status: result.0,
                body: result.1.clone(),
            },
        );
        result
    });
    match finish.await {
        Ok(result) => reply(result),
        Err(e) => BillingError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50000060,
            format!("the request did not finish: {e}"),
        )
        .into_response(),
    }
}

fn correlation(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Inner {
    /// Emits a callout notification. Zuora callouts are templated; ours (the one
    /// `ingest::zuora` reads, see tests/fixtures/README.md) is
    /// `{"eventId", "eventType", "eventTime", "tenantId", "correlationId"?, "<object>": {..}}`
    /// with `<object>` one of `account`, `subscription`, `product`, `productRatePlan`,
    /// `productRatePlanCharge` in Zuora REST field names, custom fields (`*__c`) included.
    fn callout(
        &mut self,
        config: &SandboxConfig,
        event_type: &str,
        object: &str,
        data: Value,
        correlation_id: Option<&str>,
    ) {
        let mut body = Map::new();
        body.insert(
            "eventId".into(),
            json!(uuid::Uuid::new_v4().simple().to_string()),
        );
        body.insert("eventType".into(), json!(event_type));
        body.insert(
            "eventTime".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        body.insert("tenantId".into(), json!(config.tenant_id));
        if let Some(id) = correlation_id {
            body.insert("correlationId".into(), json!(id));
        }
        body.insert(object.into(), data);
        self.emit(
            config,
            System::Billing,
            event_type,
            Value::Object(body),
            correlation_id,
        );
    }

    fn account_callout_data(account: &AccountRecord) -> Value {
        let mut data = json!({
            "id": account.id,
            "accountNumber": account.account_number,
            "name": account.name,
            "crmId": account.crm_id,
            "currency": account.currency,
            "status": account.status,
        });
        for (k, v) in &account.custom {
            data[k] = v.clone();
        }
        data
    }

    fn subscription_callout_data(sub: &SubscriptionRecord) -> Value {
        let plans: Vec<Value> = sub
            .rate_plans
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "productRatePlanId": p.product_rate_plan_id,
                    "productId": p.product_id,
                    "ratePlanName": p.rate_plan_name,
                    "quantity": p.charges.first().map(|c| c.quantity),
                    "ratePlanCharges": p.charges.iter().map(|c| json!({
                        "id": c.id, "productRatePlanChargeId": c.product_rate_plan_charge_id, "quantity": c.quantity,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut data = json!({
            "id": sub.id,
            "subscriptionNumber": sub.subscription_number,
            "accountId": sub.account_id,
            "status": sub.status,
            "termStartDate": sub.contract_effective_date,
            "cancelledDate": sub.cancelled_date,
            "ratePlans": plans,
        });
        for (k, v) in &sub.custom {
            data[k] = v.clone();
        }
        data
    }

    pub(crate) fn billing_create_account(
        &mut self,
        config: &SandboxConfig,
        body: &Map<String, Value>,
        correlation_id: Option<&str>,
    ) -> Answer {
        let name = text(body, "name").filter(|n| !n.trim().is_empty());
        let name = name.ok_or_else(|| BillingError::invalid("name", "may not be empty"))?;
        let currency = text(body, "currency")
            .filter(|c| c.len() == 3)
            .ok_or_else(|| BillingError::invalid("currency", "must be a 3-letter currency code"))?;
        let id = self.billing.next_id();
        let account = AccountRecord {
            account_number: format!("A{:08}", self.billing.accounts.len() + 1),
            id: id.clone(),
            name,
            currency,
            crm_id: text(body, "crmId"),
            status: "Active".into(),
            bill_cycle_day: body
                .get("billCycleDay")
                .and_then(Value::as_u64)
                .unwrap_or(1),
            custom: custom_fields(body),
            updated_date: self.billing.next_updated_date(),
        };
        let answer = json!({
            "success": true,
            "accountId": account.id,
            "accountNumber": account.account_number,
            "billToContactId": self.billing.next_id(),
        });
        let data = Self::account_callout_data(&account);
        self.billing.accounts.insert(id, account);
        self.callout(config, "AccountCreated", "account", data, correlation_id);
        Ok((StatusCode::OK, answer))
    }

    pub(crate) fn billing_update_account(
        &mut self,
        config: &SandboxConfig,
        key: &str,
        body: &Map<String, Value>,
        correlation_id: Option<&str>,
    ) -> Answer {
        let id = self
            .billing
            .account_key(key)
            .ok_or_else(|| BillingError::not_found("account", key))?;
        let updated_date = self.billing.next_updated_date();
        let account = self
            .billing
            .accounts
            .get_mut(&id)
            .expect("key resolved above");
        if let Some(name) = text(body, "name") {
            if name.trim().is_empty() {
                return Err(BillingError::invalid("name", "may not be empty"));
            }
            account.name = name;
        }
        if let Some(crm_id) = text(body, "crmId") {
            account.crm_id = Some(crm_id);
        }
        account.custom.extend(custom_fields(body));
        account.updated_date = updated_date;
        let data = Self::account_callout_data(account);
        self.callout(config, "AccountUpdated", "account", data, correlation_id);
        Ok((StatusCode::OK, json!({"success": true})))
    }

    fn billing_get_account(&self, key: &str) -> Answer {
        let id = self
            .billing
            .account_key(key)
            .ok_or_else(|| BillingError::not_found("account", key))?;
        let a = &self.billing.accounts[&id];
        let mut basic = json!({
            "id": a.id, "name": a.name, "accountNumber": a.account_number,
            "crmId": a.crm_id, "status": a.status, "batch": "Batch1",
        });
        for (k, v) in &a.custom {
            basic[k] = v.clone();
        }
        Ok((
            StatusCode::OK,
            json!({
                "basicInfo": basic,
                "billingAndPayment": {"billCycleDay": a.bill_cycle_day, "currency": a.currency, "paymentTerm": "Due Upon Receipt"},
                "success": true,
            }),
        ))
    }
}

fn reply((status, body): (StatusCode, Value)) -> Response {
    (status, Json(body)).into_response()
}

fn answer(result: Answer) -> Response {
    reply(result.unwrap_or_else(|e| (e.status, e.body())))
}

/// `POST /v1/accounts`.
pub(crate) async fn create_account(
    State(state): State<SharedState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let cid = correlation(&headers);
    idempotent(&state, &headers, "POST /v1/accounts", &raw, |inner| {
        let body = parse_body(&raw)?;
        inner.billing_create_account(&state.config, &body, cid.as_deref())
    })
    .await
}

/// `GET /v1/accounts/{key}` (id or account number).
pub(crate) async fn get_account(
    State(state): State<SharedState>,
    Path(key): Path<String>,
) -> Response {
    answer(state.lock().billing_get_account(&key))
}

/// `PUT /v1/accounts/{key}`.
pub(crate) async fn update_account(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let cid = correlation(&headers);
    let route = format!("PUT /v1/accounts/{key}");
    idempotent(&state, &headers, &route, &raw, |inner| {
        let body = parse_body(&raw)?;
        inner.billing_update_account(&state.config, &key, &body, cid.as_deref())
    })
    .await
}
