//! OAuth 2.0 client-credentials exchange (RFC 6749 §4.4) against a service's token endpoint:
//! used by the token rotator, and as a `SecretReader` of tokens for local runs against the
//! sandbox. The client secret and the issued token stay inside `ApiToken`; errors never carry them.

use super::error::{ConnectorError, TransportFailure};
use super::token::{ApiToken, SecretReader, TokenError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::CorrelationId;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// Where and as whom to ask for a token.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: ApiToken,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: ApiToken,
    /// From `expires_in` when the server sends it (Zuora does, Salesforce does not).
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST token_url` with `grant_type=client_credentials`, form-encoded.
pub async fn client_credentials(
    http: &reqwest::Client,
    service: &str,
    credentials: &ClientCredentials,
    correlation_id: CorrelationId,
) -> Result<IssuedToken, ConnectorError> {
    const OP: &str = "oauth_token";
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &credentials.client_id)
        .append_pair("client_secret", credentials.client_secret.expose_secret())
        .finish();
    let response = http
        .post(credentials.token_url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(super::http::CORRELATION_HEADER, correlation_id.to_string())
        .timeout(Duration::from_secs(10))
        .body(form)
        .send()
        .await
        .map_err(|e| ConnectorError::Transport {
            service: service.to_string(),
            operation: OP,
            failure: if e.is_timeout() {
                TransportFailure::Timeout
            } else if e.is_connect() {
                TransportFailure::Connect
            } else {
                TransportFailure::Other
            },
            detail: e.without_url().to_string(),
            attempts: 1,
        })?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        // RFC 6749 §5.2 error answer: `error` and `error_description`, never secrets.
        return Err(ConnectorError::Api {
            service: service.to_string(),
            operation: OP,
            status,
            code: body["error"].as_str().map(str::to_string),
            message: body["error_description"]
                .as_str()
                .unwrap_or("token request refused")
                .to_string(),
            attempts: 1,
            retry_after: None,
        });
    }
    let token = body["access_token"]
        .as_str()
        .and_then(|t| ApiToken::new(t).ok())
        .ok_or_else(|| ConnectorError::Decode {
            service: service.to_string(),
            operation: OP,
            status,
            reason: "answer has no access_token".into(),
        })?;
    let expires_at = body["expires_in"]
        .as_i64()
        .map(|secs| Utc::now() + chrono::Duration::seconds(secs));
    Ok(IssuedToken { token, expires_at })
}

/// A `SecretReader` of API tokens that asks each service's token endpoint directly (no
/// Parameter Store): for the demo and local runs against the sandbox.
pub struct ClientCredentialsStore {
    http: reqwest::Client,
    /// Parameter name (`/apiTokens/<service>`) -> credentials.
    services: HashMap<String, (String, ClientCredentials)>,
}

impl ClientCredentialsStore {
    pub fn new(
        services: impl IntoIterator<Item = (super::token::ServiceName, ClientCredentials)>,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            services: services
                .into_iter()
                .map(|(s, c)| (s.parameter_name(), (s.to_string(), c)))
                .collect(),
        }
    }
}

#[async_trait]
impl SecretReader for ClientCredentialsStore {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        let (service, credentials) =
            self.services
                .get(parameter)
                .ok_or_else(|| TokenError::NotFound {
                    parameter: parameter.to_string(),
                })?;
        client_credentials(&self.http, service, credentials, CorrelationId::new())
            .await
            .map(|issued| issued.token)
            .map_err(|e| {
                if e.is_transient() {
                    TokenError::Unavailable {
                        parameter: parameter.to_string(),
                        detail: e.to_string(),
                    }
                } else {
                    TokenError::Denied {
                        parameter: parameter.to_string(),
                        detail: e.to_string(),
                    }
                }
            })
    }
}
