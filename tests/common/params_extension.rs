//! A local stand-in for the AWS Parameters and Secrets Lambda Extension (the layer the
//! template adds to every function): `GET /systemsmanager/parameters/get?name=..&withDecryption=true`
//! on localhost, answered from the SSM API of the test endpoint (moto), refused unless the
//! `X-Aws-Parameters-Secrets-Token` header carries the function's `AWS_SESSION_TOKEN`, as the
//! real extension does. It caches nothing and asserts nothing; tests read what it served.
//!
//! Use from a test binary: `mod common;` then `use common::params_extension;`.
#![allow(dead_code)]

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The header the extension requires (its value is the function's session token).
pub const TOKEN_HEADER: &str = "x-aws-parameters-secrets-token";

struct Shared {
    ssm: aws_sdk_ssm::Client,
    session_token: String,
    served: Mutex<Vec<String>>,
    refused: Mutex<u32>,
}

/// A running extension stand-in; the server stops when this is dropped.
pub struct ParamsExtension {
    port: u16,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl ParamsExtension {
    /// Serves on a free localhost port; only requests carrying `session_token` are answered.
    pub async fn start(ssm: aws_sdk_ssm::Client, session_token: &str) -> Self {
        let shared = Arc::new(Shared {
            ssm,
            session_token: session_token.to_string(),
            served: Mutex::new(Vec::new()),
            refused: Mutex::new(0),
        });
        let app = Router::new()
            .route("/systemsmanager/parameters/get", get(parameter))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            port,
            shared,
            server,
        }
    }

    /// For `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Names of the parameters it answered, in order.
    pub fn served(&self) -> Vec<String> {
        self.shared.served.lock().unwrap().clone()
    }

    /// Requests refused for a missing or wrong session token header.
    pub fn refused(&self) -> u32 {
        *self.shared.refused.lock().unwrap()
    }
}

impl Drop for ParamsExtension {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn parameter(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    if token != Some(shared.session_token.as_str()) {
        *shared.refused.lock().unwrap() += 1;
        return (StatusCode::FORBIDDEN, "missing or wrong session token").into_response();
    }
    let Some(name) = query.get("name") else {
        return (StatusCode::BAD_REQUEST, "name is required").into_response();
    };
    let decrypt = query.get("withDecryption").map(String::as_str) == Some("true");
    match shared
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(decrypt)
        .send()
        .await
    {
        Ok(out) => {
            let p = out
                .parameter()
                .cloned()
                .unwrap_or_else(|| aws_sdk_ssm::types::Parameter::builder().name(name).build());
            shared.served.lock().unwrap().push(name.clone());
            // The extension answers with GetParameter's own JSON shape.
            let body = json!({
                "Parameter": {
                    "ARN": p.arn(),
                    "DataType": p.data_type(),
                    "Name": p.name(),
                    "Selector": null,
                    "SourceResult": null,
                    "Type": p.r#type().map(|t| t.as_str()),
                    "Value": p.value(),
                    "Version": p.version(),
                },
                "ResultMetadata": {}
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(e) => {
            let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e)
                .unwrap_or("InternalError")
                .to_string();
            let status = if code == "ParameterNotFound" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, format!("{code}: {name}")).into_response()
        }
    }
}
