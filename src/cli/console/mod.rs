//! The operator console `ledger serve` serves beside the JSON audit API: search, a trace's
//! causal chain as a timeline, an entity's links and history, the unfinished syncs with a
//! Redrive action, and reconciliation runs. Server-rendered HTML (maud templates compiled into
//! the binary), one embedded stylesheet and a five-line script; nothing loads from elsewhere.
//! Read-only except `POST /failures/redrive`, which runs the same code as `ledger redrive`.

pub mod entity;
pub mod failures;
pub mod guard;
pub mod page;
pub mod reconcile;
pub mod scan;
pub mod search;
pub mod stream;
pub mod trace;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use guard::{BearerToken, Csrf};
use std::sync::Arc;
use sync_ledger::ledger::EventLog;
use sync_ledger::projector::Effects;
use sync_ledger::views::ViewStore;

/// What every console handler works with.
pub struct Console {
    pub log: Arc<dyn EventLog>,
    pub views: Arc<dyn ViewStore>,
    /// The external systems for redrive, or why they are not configured (the console still
    /// serves every read-only page without them).
    pub redrive: Result<Arc<dyn Effects>, String>,
    pub csrf: Csrf,
    /// Required on every request when set (a console bound beyond loopback).
    pub token: Option<BearerToken>,
}

pub type Shared = Arc<Console>;

/// The console's routes, guarded by the bearer token when one is configured. `api` (the JSON
/// audit API) is guarded too.
pub fn router(console: Console, api: Router) -> Router {
    let console = Arc::new(console);
    Router::new()
        .route("/", get(search::search_page))
        .route("/search", get(search::search_page))
        .route("/trace/{id}", get(trace::trace_page))
        .route("/entity/{side}/{id}", get(entity::entity_page))
        .route("/stream/{id}", get(stream::stream_page))
        .route("/failures", get(failures::failures_page))
        .route("/failures/redrive", post(failures::redrive_action))
        .route("/reconcile", get(reconcile::reconcile_page))
        .route("/login", get(login_page).post(login_action))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .with_state(console.clone())
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(console, require_token))
}

/// Refuses a request without the bearer token (when one is configured); the login page and
/// the static assets stay open so a browser can present the token.
async fn require_token(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &console.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if matches!(path, "/login" | "/console.css" | "/console.js") || token.admits(request.headers())
    {
        return next.run(request).await;
    }
    let mut response = login_form(StatusCode::UNAUTHORIZED, None);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ledger console\""),
    );
    response
}

fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    page::page(
        status,
        "Sign in",
        None,
        maud::html! {
            h1 { "Sign in" }
            p { "This console requires the bearer token from " code { (guard::TOKEN_VARIABLE) } "." }
            @if let Some(message) = message { p.problem role="alert" { (message) } }
            form.search method="post" action="/login" {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

/// Sets the token cookie when the posted token is right.
async fn login_action(State(console): State<Shared>, body: String) -> Response {
    let Some(token) = &console.token else {
        return axum::response::Redirect::to("/").into_response();
    };
    let given = form_values(&body, "token")
        .into_iter()
        .next()
        .unwrap_or_default();
    if !token.matches(&given) {
        return login_form(StatusCode::UNAUTHORIZED, Some("token: does not match"));
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard::TOKEN_COOKIE,
        given.trim()
    );
    let mut response = axum::response::Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", page::STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", page::SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Every value of `name` in an `application/x-www-form-urlencoded` body (repeated keys kept).
pub fn form_values(body: &str, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(body.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// A store error as a page: 503 when retrying helps, else 500 (details go to the log only).
pub fn store_trouble(what: &str, error: &dyn std::fmt::Display, transient: bool) -> Response {
    tracing::error!(error = %error, what, "console read failed");
    if transient {
        page::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "The store is busy",
            "The store is throttling or unavailable; retry shortly.",
        )
    } else {
        page::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The store could not be read",
            &format!("{what} failed: {error}"),
        )
    }
}
