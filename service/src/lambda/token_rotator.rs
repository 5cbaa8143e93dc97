//! The token rotator Lambda's handler: for each configured service, a new token by OAuth
//! client credentials, written to `/apiTokens/<service>` as a new version in the parameter
//! store (SSM SecureString under the KMS key; the embedded store locally), read back to
//! verify, then audited on `system-token-<service>` as
//! `TokenRotated` (fingerprint only) or `TokenRotationFailed` (reason only). It must never
//! put a token or client secret into an event, a log line, an error or the result.

use crate::config::{ConfigError, StoreUrl};
use crate::connectors::oauth::{client_credentials, ClientCredentials};
use crate::connectors::params::{ParameterStore, SsmParameters};
use crate::connectors::{ApiToken, ServiceName};
use crate::lambda::emf::Metrics;
use crate::ledger::{EventLog, ExpectedVersion, LedgerError};
use chrono::Utc;
use projections::catalogue::{TokenRotated, TokenRotationFailed};
use projections::{CorrelationId, DomainEvent, NewEvent, Source, SourceEventId, StreamId};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use url::Url;

pub const SERVICES_ENV: &str = "TOKEN_ROTATOR_SERVICES";
pub const KMS_KEY_ENV: &str = "TOKEN_KMS_KEY_ID";
pub const SALT_ENV: &str = "TOKEN_FINGERPRINT_SALT";
pub const SALT_PARAM_ENV: &str = "TOKEN_FINGERPRINT_SALT_PARAM";

/// One service whose token is rotated.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub service: ServiceName,
    pub token_url: Url,
    pub client_id_parameter: String,
    pub client_secret_parameter: String,
}

/// Where the fingerprint salt comes from.
#[derive(Debug, Clone)]
pub enum SaltSource {
    Value(ApiToken),
    /// A SecureString parameter, read once at init.
    Parameter(String),
}

/// The rotator's configuration, read once at start-up.
#[derive(Debug, Clone)]
pub struct RotatorConfig {
    pub services: Vec<ServiceSettings>,
    pub kms_key_id: String,
    pub salt: SaltSource,
    pub store: StoreUrl,
}

fn env_key(service: &ServiceName) -> String {
    service.as_str().to_ascii_uppercase().replace('-', "_")
}

impl RotatorConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Variables (`<S>` = the service name upper-cased, `-` -> `_`):
    /// `TOKEN_ROTATOR_SERVICES` (default `crm,billing`); `TOKEN_URL_<S>`, else derived from
    /// `CRM_BASE_URL` (`services/oauth2/token`) / `BILLING_BASE_URL` (`oauth/token`);
    /// `CLIENT_ID_PARAM_<S>` / `CLIENT_SECRET_PARAM_<S>` (default
    /// `/oauthClients/<service>/clientId|clientSecret`); `TOKEN_KMS_KEY_ID`;
    /// `TOKEN_FINGERPRINT_SALT` or `TOKEN_FINGERPRINT_SALT_PARAM`; `LEDGER_STORE` (required).
    /// Every missing variable is named in the one error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut missing: Vec<String> = Vec::new();
        let invalid = |variable: &str, value: &str, reason: &str| ConfigError {
            variable: variable.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let services_text = lookup(SERVICES_ENV).unwrap_or_else(|| "crm,billing".into());
        let mut services = Vec::new();
        for name in services_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let service = ServiceName::parse(name)
                .map_err(|e| invalid(SERVICES_ENV, &services_text, &e.to_string()))?;
            let key = env_key(&service);
            let url_var = format!("TOKEN_URL_{key}");
            let token_url = match lookup(&url_var) {
                Some(url) => {
                    Some(Url::parse(&url).map_err(|e| invalid(&url_var, &url, &e.to_string()))?)
                }
                None => {
                    let derived = match service.as_str() {
                        "crm" => Some(("CRM_BASE_URL", "services/oauth2/token")),
                        "billing" => Some(("BILLING_BASE_URL", "oauth/token")),
                        _ => None,
                    };
                    match derived.and_then(|(var, path)| lookup(var).map(|v| (var, v, path))) {
                        Some((var, base, path)) => {
                            let base = if base.ends_with('/') {
                                base
                            } else {
                                format!("{base}/")
                            };
                            Some(
                                Url::parse(&base)
                                    .and_then(|u| u.join(path))
                                    .map_err(|e| invalid(var, &base, &e.to_string()))?,
                            )
                        }
                        None => {
                            missing.push(url_var);
                            None
                        }
                    }
                }
            };
            let id_param = lookup(&format!("CLIENT_ID_PARAM_{key}"))
                .unwrap_or_else(|| format!("/oauthClients/{service}/clientId"));
            let secret_param = lookup(&format!("CLIENT_SECRET_PARAM_{key}"))
                .unwrap_or_else(|| format!("/oauthClients/{service}/clientSecret"));
            if let Some(token_url) = token_url {
                services.push(ServiceSettings {
                    service,
                    token_url,
                    client_id_parameter: id_param,
                    client_secret_parameter: secret_param,
                });
            }
        }
        if services_text.trim().is_empty() || (services.is_empty() && missing.is_empty()) {
            return Err(invalid(SERVICES_ENV, &services_text, "names no service"));
        }
        let kms_key_id = lookup(KMS_KEY_ENV);
        if kms_key_id.is_none() {
            missing.push(KMS_KEY_ENV.into());
        }
        let salt = match (lookup(SALT_ENV), lookup(SALT_PARAM_ENV)) {
            (Some(value), _) => ApiToken::new(value).ok().map(SaltSource::Value),
            (None, Some(param)) => Some(SaltSource::Parameter(param)),
            (None, None) => None,
        };
        if salt.is_none() {
            missing.push(format!("{SALT_ENV} (or {SALT_PARAM_ENV})"));
        }
        // No embedded default here: a Lambda writing to a local file would lose the audit.
        let store = match lookup(crate::config::STORE_ENV) {
            Some(value) => Some(StoreUrl::parse(&value)?),
            None => {
                missing.push(crate::config::STORE_ENV.into());
                None
            }
        };
        match (kms_key_id, salt, store) {
            (Some(kms_key_id), Some(salt), Some(store)) if missing.is_empty() => Ok(Self {
                services,
                kms_key_id,
                salt,
                store,
            }),
            _ => Err(ConfigError {
                variable: missing.join(", "),
                value: String::new(),
                reason: "must be set".into(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotatorError {
    #[error("fingerprint salt {parameter}: {reason}")]
    Salt { parameter: String, reason: String },
    /// Rotations happened but their audit events could not be recorded.
    #[error("could not record the audit event of {services}: {source}")]
    Audit {
        services: String,
        #[source]
        source: LedgerError,
    },
}

impl From<RotatorError> for lambda_runtime::Diagnostic {
    fn from(e: RotatorError) -> Self {
        let error_type = match &e {
            RotatorError::Salt { .. } => "TokenRotator.Salt",
            RotatorError::Audit { .. } => "TokenRotator.AuditNotRecorded",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What one run did, per service (the Lambda's result; no secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunReport {
    pub correlation_id: String,
    pub rotated: Vec<RotatedService>,
    pub failed: Vec<FailedService>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RotatedService {
    pub service: String,
    pub parameter_version: i64,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedService {
    pub service: String,
    pub stage: &'static str,
    pub reason: String,
}

/// A failure at one stage of one service's rotation.
struct Failure {
    stage: &'static str,
    reason: String,
}

fn fail(stage: &'static str, reason: impl std::fmt::Display) -> Failure {
    Failure {
        stage,
        reason: reason.to_string(),
    }
}

pub struct TokenRotator {
    log: Arc<dyn EventLog>,
    params: Arc<dyn ParameterStore>,
    http: reqwest::Client,
    services: Vec<ServiceSettings>,
    salt: ApiToken,
    /// EMF metric lines on stdout (what CloudWatch reads in Lambda).
    emit_metrics: bool,
}

impl TokenRotator {
    /// Builds the handler once per cold start; reads the salt parameter if configured.
    pub async fn init(
        config: &RotatorConfig,
        log: Arc<dyn EventLog>,
        ssm: aws_sdk_ssm::Client,
        http: reqwest::Client,
    ) -> Result<Self, RotatorError> {
        let params: Arc<dyn ParameterStore> =
            Arc::new(SsmParameters::new(ssm, config.kms_key_id.clone()));
        let salt = match &config.salt {
            SaltSource::Value(salt) => salt.clone(),
            SaltSource::Parameter(name) => {
                params.read(name).await.map_err(|e| RotatorError::Salt {
                    parameter: name.clone(),
                    reason: e.to_string(),
                })?
            }
        };
        Ok(Self::new(log, params, http, config.services.clone(), salt))
    }

    /// A rotator over any parameter store (the embedded one for the demo and local runs).
    pub fn new(
        log: Arc<dyn EventLog>,
        params: Arc<dyn ParameterStore>,
        http: reqwest::Client,
        services: Vec<ServiceSettings>,
        salt: ApiToken,
    ) -> Self {
        Self {
            log,
            params,
            http,
            services,
            salt,
            emit_metrics: true,
        }
    }

    /// No EMF lines on stdout: for runs outside Lambda whose stdout is for a person.
    pub fn without_metrics(self) -> Self {
        Self {
            emit_metrics: false,
            ..self
        }
    }

    /// One scheduled run. The run's correlation id comes from the scheduler event's `id`
    /// when present (a redelivered invocation keeps its trace), else it is new.
    pub async fn handle(&self, event: Value) -> Result<RunReport, RotatorError> {
        let correlation_id = event["id"]
            .as_str()
            .and_then(|id| CorrelationId::from_source_text(id).ok())
            .unwrap_or_default();
        self.run(correlation_id).await
    }

    /// Rotates every service; one failing never stops the others.
    pub async fn run(&self, correlation_id: CorrelationId) -> Result<RunReport, RotatorError> {
        let mut report = RunReport {
            correlation_id: correlation_id.to_string(),
            rotated: Vec::new(),
            failed: Vec::new(),
        };
        let mut unrecorded: Vec<(String, LedgerError)> = Vec::new();
        let mut metrics = Metrics::new(&[("Function", "token_rotator")]);
        for settings in &self.services {
            let service = settings.service.to_string();
            let outcome = self.rotate(settings, correlation_id).await;
            let (event, discriminator) = match &outcome {
                Ok((version, fingerprint, expires_at)) => {
                    tracing::info!(
                        service = %service,
                        correlation_id = %correlation_id,
                        parameter_version = version,
                        fingerprint = %fingerprint,
                        "token rotated"
                    );
                    metrics.count("TokensRotated", 1);
                    report.rotated.push(RotatedService {
                        service: service.clone(),
                        parameter_version: *version,
                        fingerprint: fingerprint.clone(),
                    });
                    let mut extra = Map::new();
                    extra.insert("verified".into(), json!(true));
                    (
                        DomainEvent::TokenRotated(TokenRotated {
                            service: service.clone(),
                            parameter_name: settings.service.parameter_name(),
                            parameter_version: *version,
                            fingerprint: fingerprint.clone(),
                            expires_at: expires_at.clone(),
                            extra,
                        }),
                        format!("v{version}"),
                    )
                }
                Err(failure) => {
                    tracing::warn!(
                        service = %service,
                        correlation_id = %correlation_id,
                        stage = failure.stage,
                        reason = %failure.reason,
                        "token rotation failed"
                    );
                    metrics.count("TokenRotationFailures", 1);
                    report.failed.push(FailedService {
                        service: service.clone(),
                        stage: failure.stage,
                        reason: failure.reason.clone(),
                    });
                    let mut extra = Map::new();
                    extra.insert("stage".into(), json!(failure.stage));
                    (
                        DomainEvent::TokenRotationFailed(TokenRotationFailed {
                            service: service.clone(),
                            reason: failure.reason.clone(),
                            extra,
                        }),
                        "failed".to_string(),
                    )
                }
            };
            if let Err(e) = self
                .record(&settings.service, correlation_id, &discriminator, &event)
                .await
            {
                tracing::error!(service = %service, correlation_id = %correlation_id, error = %e, "audit event not recorded");
                unrecorded.push((service, e));
            }
        }
        if self.emit_metrics {
            metrics.flush();
        }
        match unrecorded
            .into_iter()
            .reduce(|(a, e), (b, _)| (format!("{a}, {b}"), e))
        {
            None => Ok(report),
            Some((services, source)) => Err(RotatorError::Audit { services, source }),
        }
    }

    /// `(parameter version, fingerprint, expiry)` of the new token.
    async fn rotate(
        &self,
        settings: &ServiceSettings,
        correlation_id: CorrelationId,
    ) -> Result<(i64, String, Option<String>), Failure> {
        let client_id = self
            .params
            .read(&settings.client_id_parameter)
            .await
            .map_err(|e| fail("read-client-credentials", e))?;
        let client_secret = self
            .params
            .read(&settings.client_secret_parameter)
            .await
            .map_err(|e| fail("read-client-credentials", e))?;
        let credentials = ClientCredentials {
            token_url: settings.token_url.clone(),
            client_id: client_id.expose_secret().to_string(),
            client_secret: client_secret.clone(),
        };
        let issued = client_credentials(
            &self.http,
            settings.service.as_str(),
            &credentials,
            correlation_id,
        )
        .await
        .map_err(|e| fail("obtain-token", redact(e.to_string(), &[&client_secret])))?;
        let token = issued.token;
        let parameter = settings.service.parameter_name();
        let secrets = [&token, &client_secret];
        let description = format!(
            "API token for {}, rotated by run {correlation_id}",
            settings.service
        );
        let version = self
            .params
            .put(&parameter, &token, &description)
            .await
            .map_err(|e| fail("write-parameter", redact(e.to_string(), &secrets)))?;
        // Read back exactly the version written, decrypted: this proves the stored value is
        // the new token without relying on how soon "latest" reflects the write.
        let (stored_value, stored_version) = self
            .params
            .get_version(&parameter, version)
            .await
            .map_err(|e| fail("verify-parameter", redact(e.to_string(), &secrets)))?;
        let same_value = stored_value == token;
        let same_version = stored_version == version;
        if !(same_value && same_version) {
            return Err(fail(
                "verify-parameter",
                format!(
                    "{parameter}:{version} read back as version {stored_version}{}",
                    if same_value {
                        ""
                    } else {
                        " with a different value"
                    }
                ),
            ));
        }
        Ok((
            version,
            token.fingerprint(self.salt.expose_secret().as_bytes()),
            issued
                .expires_at
                .map(|at| projections::envelope::format_timestamp(&at)),
        ))
    }

    async fn record(
        &self,
        service: &ServiceName,
        correlation_id: CorrelationId,
        discriminator: &str,
        event: &DomainEvent,
    ) -> Result<(), LedgerError> {
        let stream = StreamId::parse(format!("system-token-{service}"))
            .expect("a valid service name makes a valid stream id");
        // One audit event per run, service and outcome (version): a redelivered invocation
        // that did nothing new records nothing new.
        let source_event_id = SourceEventId::parse(format!(
            "token-rotation:{correlation_id}:{service}:{discriminator}"
        ))
        .expect("non-empty ids");
        let new = NewEvent::from_domain(
            stream.clone(),
            Source::System,
            source_event_id,
            correlation_id,
            None,
            Utc::now(),
            event,
        );
        self.log
            .append(&stream, ExpectedVersion::Any, vec![new])
            .await?;
        Ok(())
    }
}

/// Belt and braces: no error text from a dependency may carry a secret we hold.
fn redact(text: String, secrets: &[&ApiToken]) -> String {
    secrets.iter().fold(text, |text, secret| {
        text.replace(secret.expose_secret(), "<redacted>")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let e = RotatorConfig::from_lookup(lookup(&[])).unwrap_err();
        for name in [
            "TOKEN_URL_CRM",
            "TOKEN_URL_BILLING",
            KMS_KEY_ENV,
            SALT_ENV,
            "LEDGER_STORE",
        ] {
            assert!(e.variable.contains(name), "{e}");
        }
    }

    #[test]
    fn token_urls_derive_from_the_api_base_urls() {
        let config = RotatorConfig::from_lookup(lookup(&[
            ("CRM_BASE_URL", "https://acme.my.salesforce.com"),
            ("BILLING_BASE_URL", "https://rest.zuora.com/"),
            (KMS_KEY_ENV, "alias/api-tokens"),
            (SALT_ENV, "pepper"),
            ("LEDGER_STORE", "dynamodb://prod"),
        ]))
        .unwrap();
        assert_eq!(
            config.services[0].token_url.as_str(),
            "https://acme.my.salesforce.com/services/oauth2/token"
        );
        assert_eq!(
            config.services[1].token_url.as_str(),
            "https://rest.zuora.com/oauth/token"
        );
        assert_eq!(
            config.services[1].client_secret_parameter,
            "/oauthClients/billing/clientSecret"
        );
        assert!(
            !format!("{config:?}").contains("pepper"),
            "the salt never prints"
        );
    }

    #[test]
    fn redaction_removes_every_secret() {
        let a = ApiToken::new("tok-123").unwrap();
        assert_eq!(
            redact("got tok-123 back".into(), &[&a]),
            "got <redacted> back"
        );
    }
}
