//! The sandbox's admin API (`/__admin/...`): fault knobs, call counters, the outbox, tokens,
//! simulated user actions and object inspection — for tests, the demo and `ledger sandbox`
//! run as a separate process. Never faulted, never counted.

use super::billing::Product;
use super::crm;
use super::faults::{FaultSettings, Faults};
use super::state::{SharedState, System};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .route("/__admin/faults", get(get_faults).post(set_all_faults))
        .route("/__admin/faults/{system}", put(set_faults))
        .route("/__admin/calls", get(calls))
        .route("/__admin/calls/log", get(call_log))
        .route("/__admin/calls/reset", post(reset))
        .route("/__admin/outbox", get(outbox))
        .route("/__admin/outbox/drain", post(drain))
        .route("/__admin/tokens/{system}", post(issue_token))
        .route("/__admin/tokens/expire", post(expire_tokens))
        .route("/__admin/crm/{sobject}", post(user_create).get(crm_records))
        .route("/__admin/crm/{sobject}/{id}", patch(user_update))
        .route("/__admin/billing/accounts", get(billing_accounts))
        .route("/__admin/billing/subscriptions", get(billing_subscriptions))
        .route("/__admin/billing/products", post(upsert_product))
        .with_state(state)
}

pub(crate) fn reset_calls(state: &SharedState) {
    let mut inner = state.lock();
    inner.calls.clear();
    inner.calls_generation += 1;
}

fn bad_request(field: &str, reason: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": format!("{field}: {reason}")})),
    )
        .into_response()
}

fn system(value: &str) -> Option<System> {
    System::parse(value)
}

fn bad_system() -> Response {
    bad_request("system", "must be crm or billing")
}

async fn get_faults(State(state): State<SharedState>) -> Json<FaultSettings> {
    Json(state.lock().faults.clone())
}

async fn set_all_faults(State(state): State<SharedState>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultSettings>(&body) {
        Ok(faults) => {
            state.lock().faults = faults.clone();
            Json(faults).into_response()
        }
        Err(e) => bad_request("faults", e),
    }
}

async fn set_faults(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(system) = system(&name) else {
        return bad_system();
    };
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *state.lock().faults.get_mut(system) = faults.clone();
            Json(faults).into_response()
        }
        Err(e) => bad_request("faults", e),
    }
}

async fn calls(State(state): State<SharedState>) -> Response {
    Json(state.lock().stats()).into_response()
}

async fn call_log(State(state): State<SharedState>) -> Response {
    Json(state.lock().calls.clone()).into_response()
}

async fn reset(State(state): State<SharedState>) -> StatusCode {
    reset_calls(&state);
    StatusCode::NO_CONTENT
}

async fn outbox(State(state): State<SharedState>) -> Response {
    Json(state.lock().outbox.clone()).into_response()
}

async fn drain(State(state): State<SharedState>) -> Response {
    Json(std::mem::take(&mut state.lock().outbox)).into_response()
}

async fn issue_token(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    let Some(system) = system(&name) else {
        return bad_system();
    };
    let token = state.lock().issue_token(system, state.config.token_ttl);
    Json(json!({"access_token": token, "token_type": "Bearer"})).into_response()
}

#[derive(Deserialize, Default)]
struct ExpireRequest {
    #[serde(default)]
    system: Option<System>,
}

async fn expire_tokens(State(state): State<SharedState>, body: Bytes) -> Response {
    let request = if body.is_empty() {
        ExpireRequest::default()
    } else {
        match serde_json::from_slice::<ExpireRequest>(&body) {
            Ok(r) => r,
            Err(e) => return bad_request("system", e),
        }
    };
    state
        .lock()
        .tokens
        .retain(|_, t| request.system.is_some_and(|s| s != t.system));
    StatusCode::NO_CONTENT.into_response()
}

async fn user_create(
    State(state): State<SharedState>,
    Path(sobject): Path<String>,
    body: Bytes,
) -> Response {
    match crm::parse_fields(&body).and_then(|fields| crm::user_create(&state, &sobject, fields)) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn user_update(
    State(state): State<SharedState>,
    Path((sobject, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match crm::parse_fields(&body)
        .and_then(|fields| crm::user_update(&state, &sobject, &id, fields))
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn crm_records(State(state): State<SharedState>, Path(sobject): Path<String>) -> Response {
    let inner = state.lock();
    let records: Vec<_> = inner
        .crm
        .records
        .get(&sobject)
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    Json(records).into_response()
}

async fn billing_accounts(State(state): State<SharedState>) -> Response {
    let accounts: Vec<_> = state.lock().billing.accounts.values().cloned().collect();
    Json(accounts).into_response()
}

async fn billing_subscriptions(State(state): State<SharedState>) -> Response {
    let subs: Vec<_> = state
        .lock()
        .billing
        .subscriptions
        .values()
        .cloned()
        .collect();
    Json(subs).into_response()
}

async fn upsert_product(State(state): State<SharedState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Product>(&body) {
        Ok(product) => {
            let product = state.lock().billing_upsert_product(&state.config, product);
            Json(product).into_response()
        }
        Err(e) => bad_request("product", e),
    }
}
