//! API tokens: the redacting `ApiToken` newtype and the `TokenProvider` that reads
//! `/apiTokens/<service>` through the Parameters and Secrets Lambda Extension, or the SSM API
//! when the extension is absent, and caches it. Nothing here may print or log a token value.
//!
//! Three ports, one meaning each:
//! - [`TokenSource`]: the API token of a *service* (`crm`, `billing`), as the HTTP clients
//!   need it, cached, with `invalidate` after a 401 (`TokenProvider`);
//! - [`SecretReader`]: the current value of a *named secret parameter* (a token, an OAuth
//!   client id or secret, a salt), uncached, read-only (SSM, the extension, the embedded
//!   store, a client-credentials exchange);
//! - `params::ParameterStore`: a `SecretReader` that also *writes versions* and reads an
//!   exact version back (what the rotator needs).

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// Where API tokens live in Parameter Store.
pub const TOKEN_PARAMETER_PREFIX: &str = "/apiTokens/";

/// An API bearer token. `Debug` and `Display` never show it; only `expose_secret` does, and
/// only the HTTP layer and the SSM writer call that.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(value: impl Into<String>) -> Result<Self, TokenError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(TokenError::Malformed {
                parameter: String::new(),
                reason: "token is empty".into(),
            });
        }
        Ok(Self(value))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// First 12 hex digits of sha256(salt || token): identifies a token in audit events
    /// without revealing it (the salt stops matching against a list of known tokens).
    pub fn fingerprint(&self, salt: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(self.0.as_bytes());
        hex::encode(hasher.finalize())[..12].to_string()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A service whose token we hold: `crm`, `billing`, `billing-callout`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(value: &str) -> Result<Self, TokenError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(TokenError::InvalidService {
                value: value.chars().take(64).collect(),
            })
        }
    }

    pub fn crm() -> Self {
        Self("crm".into())
    }

    pub fn billing() -> Self {
        Self("billing".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `/apiTokens/<service>`.
    pub fn parameter_name(&self) -> String {
        format!("{TOKEN_PARAMETER_PREFIX}{}", self.0)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("service name {value:?} must be 1-64 characters [a-z0-9_-]")]
    InvalidService { value: String },
    #[error("parameter {parameter} does not exist")]
    NotFound { parameter: String },
    #[error("parameter {parameter}: access denied: {detail}")]
    Denied { parameter: String, detail: String },
    #[error("parameter {parameter}: store unavailable: {detail}")]
    Unavailable { parameter: String, detail: String },
    #[error("parameter {parameter}: {reason}")]
    Malformed { parameter: String, reason: String },
}

impl TokenError {
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// Reads the current value of a named secret parameter (`/apiTokens/crm`,
/// `/oauthClients/crm/clientId`, ...). No caching here: that is `TokenProvider`'s.
#[async_trait]
pub trait SecretReader: Send + Sync {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError>;
}

/// What the HTTP clients need: the API token of a service, and a way to drop a stale one.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, service: &ServiceName) -> Result<ApiToken, TokenError>;
    /// Forget the cached token so the next `token` call reads the store again.
    fn invalidate(&self, service: &ServiceName);
}

/// Caching token source over a `SecretReader`. Entries live for `ttl` (so a rotated token is
/// picked up without a 401) or until invalidated after a 401.
pub struct TokenProvider {
    store: Arc<dyn SecretReader>,
    ttl: Duration,
    cache: Mutex<HashMap<ServiceName, (ApiToken, Instant)>>,
}

impl TokenProvider {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    pub fn new(store: Arc<dyn SecretReader>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The Lambda arrangement: the extension on `localhost:2773` (or
    /// `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`) when it answers, else the SSM API.
    pub fn for_lambda(ssm: aws_sdk_ssm::Client) -> Self {
        let ssm = SsmStore::new(ssm);
        let store: Arc<dyn SecretReader> = match ExtensionStore::from_env() {
            Some(extension) => Arc::new(ExtensionOrSsm { extension, ssm }),
            None => Arc::new(ssm),
        };
        Self::new(store, Self::DEFAULT_TTL)
    }

    fn cached(&self, service: &ServiceName) -> Option<ApiToken> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(service)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| t.clone())
    }
}

#[async_trait]
impl TokenSource for TokenProvider {
    async fn token(&self, service: &ServiceName) -> Result<ApiToken, TokenError> {
        if let Some(token) = self.cached(service) {
            return Ok(token);
        }
        let token = self.store.read(&service.parameter_name()).await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    fn invalidate(&self, service: &ServiceName) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service);
    }
}

/// Reads SecureString parameters with the SSM API (`GetParameter`, `WithDecryption`).
#[derive(Clone)]
pub struct SsmStore {
    client: aws_sdk_ssm::Client,
}

impl SsmStore {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretReader for SsmStore {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        use aws_sdk_ssm::error::SdkError;
        use aws_sdk_ssm::operation::get_parameter::GetParameterError;
        let out = self
            .client
            .get_parameter()
            .name(parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                let parameter = parameter.to_string();
                match &e {
                    SdkError::ServiceError(se) => match se.err() {
                        GetParameterError::ParameterNotFound(_)
                        | GetParameterError::ParameterVersionNotFound(_) => {
                            TokenError::NotFound { parameter }
                        }
                        GetParameterError::InvalidKeyId(_) => TokenError::Denied {
                            parameter,
                            detail: "invalid KMS key".into(),
                        },
                        other => {
                            let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(other)
                                .unwrap_or("unknown")
                                .to_string();
                            if code.contains("AccessDenied") {
                                TokenError::Denied {
                                    parameter,
                                    detail: code,
                                }
                            } else {
                                TokenError::Unavailable {
                                    parameter,
                                    detail: code,
                                }
                            }
                        }
                    },
                    _ => TokenError::Unavailable {
                        parameter,
                        detail: aws_smithy_types::error::display::DisplayErrorContext(&e)
                            .to_string(),
                    },
                }
            })?;
        let value =
            out.parameter()
                .and_then(|p| p.value())
                .ok_or_else(|| TokenError::Malformed {
                    parameter: parameter.to_string(),
                    reason: "GetParameter returned no value".into(),
                })?;
        ApiToken::new(value).map_err(|_| TokenError::Malformed {
            parameter: parameter.to_string(),
            reason: "parameter value is empty".into(),
        })
    }
}

/// Reads parameters through the AWS Parameters and Secrets Lambda Extension: a local HTTP
/// endpoint authenticated by the function's session token.
/// Source: AWS Systems Manager user guide, "Using Parameter Store parameters in Lambda
/// functions" (`GET /systemsmanager/parameters/get?name=..&withDecryption=true`, header
/// `X-Aws-Parameters-Secrets-Token`, response shaped like `GetParameter`).
#[derive(Clone)]
pub struct ExtensionStore {
    endpoint: Url,
    session_token: ApiToken,
    http: reqwest::Client,
}

/// The header the extension requires; its value is `AWS_SESSION_TOKEN`.
pub const EXTENSION_TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

impl ExtensionStore {
    pub fn new(endpoint: Url, session_token: ApiToken) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self {
            endpoint,
            session_token,
            http,
        }
    }

    /// Present only inside Lambda (a session token exists); the port defaults to 2773.
    pub fn from_env() -> Option<Self> {
        let session = std::env::var("AWS_SESSION_TOKEN").ok()?;
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok()?;
        let port = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(2773);
        let endpoint = Url::parse(&format!("http://localhost:{port}/")).ok()?;
        Some(Self::new(endpoint, ApiToken::new(session).ok()?))
    }

    async fn get(&self, parameter: &str) -> Result<ApiToken, ExtensionFailure> {
        let mut url = self
            .endpoint
            .join("systemsmanager/parameters/get")
            .map_err(|e| {
                ExtensionFailure::Answer(TokenError::Malformed {
                    parameter: parameter.to_string(),
                    reason: format!("extension endpoint: {e}"),
                })
            })?;
        url.query_pairs_mut()
            .append_pair("name", parameter)
            .append_pair("withDecryption", "true");
        let response = self
            .http
            .get(url)
            .header(EXTENSION_TOKEN_HEADER, self.session_token.expose_secret())
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ExtensionFailure::Absent
                } else {
                    ExtensionFailure::Answer(TokenError::Unavailable {
                        parameter: parameter.to_string(),
                        detail: format!("extension: {}", e.without_url()),
                    })
                }
            })?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let parameter = parameter.to_string();
        let err = match status {
            200 => {
                let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                    ExtensionFailure::Answer(TokenError::Malformed {
                        parameter: parameter.clone(),
                        reason: format!("extension answer is not JSON: {e}"),
                    })
                })?;
                let token = value["Parameter"]["Value"].as_str().unwrap_or_default();
                return ApiToken::new(token).map_err(|_| {
                    ExtensionFailure::Answer(TokenError::Malformed {
                        parameter,
                        reason: "Parameter.Value is missing or empty".into(),
                    })
                });
            }
            400 | 404 if body.contains("ParameterNotFound") || status == 404 => {
                TokenError::NotFound { parameter }
            }
            401 | 403 => TokenError::Denied {
                parameter,
                detail: format!("extension answered HTTP {status}"),
            },
            _ => TokenError::Unavailable {
                parameter,
                detail: format!("extension answered HTTP {status}"),
            },
        };
        Err(ExtensionFailure::Answer(err))
    }
}

enum ExtensionFailure {
    /// Nothing listens on the extension port: the extension is not installed.
    Absent,
    Answer(TokenError),
}

#[async_trait]
impl SecretReader for ExtensionStore {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        self.get(parameter).await.map_err(|f| match f {
            ExtensionFailure::Absent => TokenError::Unavailable {
                parameter: parameter.to_string(),
                detail: "the Parameters and Secrets extension is not listening".into(),
            },
            ExtensionFailure::Answer(e) => e,
        })
    }
}

/// The extension when it is installed; the SSM API when nothing listens on its port.
pub struct ExtensionOrSsm {
    extension: ExtensionStore,
    ssm: SsmStore,
}

impl ExtensionOrSsm {
    pub fn new(extension: ExtensionStore, ssm: SsmStore) -> Self {
        Self { extension, ssm }
    }
}

#[async_trait]
impl SecretReader for ExtensionOrSsm {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        match self.extension.get(parameter).await {
            Ok(token) => Ok(token),
            Err(ExtensionFailure::Absent) => self.ssm.read(parameter).await,
            Err(ExtensionFailure::Answer(e)) => Err(e),
        }
    }
}

/// Fixed tokens, for the demo and local runs against the sandbox (no AWS).
pub struct StaticTokens(HashMap<String, ApiToken>);

impl StaticTokens {
    pub fn new(tokens: impl IntoIterator<Item = (ServiceName, ApiToken)>) -> Self {
        Self(
            tokens
                .into_iter()
                .map(|(s, t)| (s.parameter_name(), t))
                .collect(),
        )
    }
}

#[async_trait]
impl SecretReader for StaticTokens {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        self.0
            .get(parameter)
            .cloned()
            .ok_or_else(|| TokenError::NotFound {
                parameter: parameter.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_prints() {
        let token = ApiToken::new("s3cr3t-value").unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert!(!format!("{token}").contains("s3cr3t"));
        assert!(!format!("{:?}", Some(&token)).contains("s3cr3t"));
    }

    #[test]
    fn fingerprint_is_short_salted_and_stable() {
        let token = ApiToken::new("abc").unwrap();
        let a = token.fingerprint(b"salt-1");
        assert_eq!(a.len(), 12);
        assert_eq!(a, token.fingerprint(b"salt-1"));
        assert_ne!(a, token.fingerprint(b"salt-2"));
    }

    #[test]
    fn service_names_map_to_api_token_parameters() {
        assert_eq!(ServiceName::crm().parameter_name(), "/apiTokens/crm");
        assert!(ServiceName::parse("Bad Name").is_err());
        assert!(ServiceName::parse("billing-callout").is_ok());
    }
}
