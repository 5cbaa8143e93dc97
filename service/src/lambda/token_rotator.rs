//! The token rotator Lambda's handler (EventBridge Scheduler): builds the rotation over SSM
//! once per cold start (reading the fingerprint salt parameter if configured) and runs it
//! for every scheduled invocation. The rotation itself is `crate::rotation`.

mod config;

pub use config::{RotatorConfig, SaltSource, KMS_KEY_ENV, SALT_ENV, SALT_PARAM_ENV, SERVICES_ENV};

use crate::connectors::params::{ParameterStore, SsmParameters};
use crate::ledger::EventLog;
use crate::rotation::{RotatorError, RunReport, TokenRotation};
use projections::CorrelationId;
use serde_json::Value;
use std::sync::Arc;

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

pub struct TokenRotator {
    rotation: TokenRotation,
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
        let rotation = TokenRotation::new(log, params, http, config.services.clone(), salt);
        Ok(Self { rotation })
    }

    /// One scheduled run. The run's correlation id comes from the scheduler event's `id`
    /// when present (a redelivered invocation keeps its trace), else it is new.
    pub async fn handle(&self, event: Value) -> Result<RunReport, RotatorError> {
        let correlation_id = event["id"]
            .as_str()
            .and_then(|id| CorrelationId::from_source_text(id).ok())
            .unwrap_or_default();
        self.rotation.run(correlation_id).await
    }

    /// One run under a given correlation id (a re-run that must join an existing trace).
    pub async fn run(&self, correlation_id: CorrelationId) -> Result<RunReport, RotatorError> {
        self.rotation.run(correlation_id).await
    }
}

impl super::bootstrap::Handler for TokenRotator {
    type Event = Value;
    type Response = RunReport;
    type Error = RotatorError;

    async fn handle(&self, event: Value) -> Result<RunReport, RotatorError> {
        TokenRotator::handle(self, event).await
    }
}

/// The fingerprint salt parameter is read at init.
impl From<RotatorError> for super::bootstrap::InitError {
    fn from(e: RotatorError) -> Self {
        Self::secret(e)
    }
}
