//! Token rotation: for each configured service, a new token by OAuth client credentials,
//! written to `/apiTokens/<service>` as a new version in the parameter store (SSM
//! SecureString under the KMS key; the embedded store locally), read back to verify, then
//! audited on `system-token-<service>` as `TokenRotated` (fingerprint only) or
//! `TokenRotationFailed` (reason only). It must never put a token or client secret into an
//! event, a log line, an error or the result. The Lambda handler
//! (`lambda::token_rotator`) and `ledger demo` run it.

mod report;

pub use report::{FailedService, RotatedService, RotatorError, RunReport};

use crate::connectors::oauth::{client_credentials, ClientCredentials};
use crate::connectors::params::ParameterStore;
use crate::connectors::token::{ApiToken, ServiceName};
use crate::lambda::emf::Metrics;
use crate::ledger::{EventLog, ExpectedVersion, LedgerError};
use chrono::Utc;
use projections::catalogue::{TokenRotated, TokenRotationFailed};
use projections::{CorrelationId, DomainEvent, NewEvent, Source, SourceEventId, StreamId};
use serde_json::{json, Map};
use std::sync::Arc;
use url::Url;

/// One service whose token is rotated.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub service: ServiceName,
    pub token_url: Url,
    pub client_id_parameter: String,
    pub client_secret_parameter: String,
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

/// The rotation service: rotates every configured service's token through a parameter
/// store and audits each outcome in the ledger.
pub struct TokenRotation {
    log: Arc<dyn EventLog>,
    params: Arc<dyn ParameterStore>,
    http: reqwest::Client,
    services: Vec<ServiceSettings>,
    salt: ApiToken,
    /// EMF metric lines on stdout (what CloudWatch reads in Lambda).
    emit_metrics: bool,
}

impl TokenRotation {
    /// A rotation over any parameter store (SSM in Lambda, the embedded one for the demo).
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

    #[test]
    fn redaction_removes_every_secret() {
        let a = ApiToken::new("tok-123").unwrap();
        assert_eq!(
            redact("got tok-123 back".into(), &[&a]),
            "got <redacted> back"
        );
    }
}
