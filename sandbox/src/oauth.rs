//! OAuth 2.0 client-credentials token endpoints of both simulated systems and the bearer
//! check in front of their APIs. Shapes: Salesforce "OAuth 2.0 Client Credentials Flow"
//! (`/services/oauth2/token`), Zuora "Create an OAuth token" (`/oauth/token`).

use super::state::{api_error, SharedState, System};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `POST /services/oauth2/token` (CRM) and `POST /oauth/token` (Billing), form-encoded.
pub(crate) async fn token(
    State((state, system)): State<(SharedState, System)>,
    body: String,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    let grant = form.get("grant_type").map(String::as_str);
    if grant != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    let expected = state.config.credentials(system);
    let id_ok = form.get("client_id").map(String::as_str) == Some(expected.client_id.as_str());
    let secret_ok = form.get("client_secret").map(String::as_str)
        == Some(expected.client_secret.expose_secret());
    if !(id_ok && secret_ok) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client credentials",
        );
    }
    let ttl = state.config.token_ttl;
    let token = state.lock().issue_token(system, ttl);
    let body = match system {
        System::Crm => json!({
            "access_token": token,
            "signature": uuid::Uuid::new_v4().simple().to_string(),
            "scope": "api",
            "instance_url": format!("http://{}", state.public_host()),
            "id": format!("http://{}/id/00DSANDBOX000001AAA/005SANDBOX000001AAA", state.public_host()),
            "token_type": "Bearer",
            "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        }),
        System::Billing => json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl.as_secs(),
            "scope": "entity.sandbox service.events.read",
            "jti": uuid::Uuid::new_v4().simple().to_string(),
        }),
    };
    Json(body).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Middleware: the API routes of `system` need a live bearer token that system issued.
pub(crate) async fn require_token(
    State((state, system)): State<(SharedState, System)>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string);
    let valid = token.is_some_and(|t| state.lock().token_valid(system, &t));
    if !valid {
        return api_error(
            system,
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "90000011",
            "Session expired or invalid",
        );
    }
    next.run(request).await
}
