//! The ingest Lambda's configuration, read once from the environment at start-up. A missing
//! or invalid variable fails init with its name; nothing is read later, mid-batch.

use crate::config::{ConfigError, StoreUrl, Vars};
use crate::connectors::token::{ServiceName, TOKEN_PARAMETER_PREFIX};

pub const SECRET_PARAM_ENV: &str = "CALLOUT_SECRET_PARAM";
pub const DEFAULT_SECRET_PARAM: &str = "/apiTokens/billing-callout";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `LEDGER_STORE` (required: a Lambda has no durable local disk for the embedded store).
    pub store: StoreUrl,
    /// `CALLOUT_SECRET_PARAM` = `/apiTokens/<service>`: the token that is the Billing
    /// callout HMAC secret.
    pub callout_secret: ServiceName,
}

impl IngestConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(crate::config::env_var)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let store = vars.store()?;
        let param = vars
            .get(SECRET_PARAM_ENV)
            .unwrap_or_else(|| DEFAULT_SECRET_PARAM.to_string());
        let callout_secret = param
            .strip_prefix(TOKEN_PARAMETER_PREFIX)
            .and_then(|service| ServiceName::parse(service).ok())
            .ok_or_else(|| ConfigError {
                variable: SECRET_PARAM_ENV.to_string(),
                value: param.clone(),
                reason: format!(
                    "must be {TOKEN_PARAMETER_PREFIX}<service> with a service of [a-z0-9_-]"
                ),
            })?;
        Ok(Self {
            store,
            callout_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_store_is_named_and_the_secret_param_defaults() {
        let e = IngestConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(e.variable, "LEDGER_STORE");
        let c = IngestConfig::from_lookup(|n| (n == "LEDGER_STORE").then(|| "dynamodb://p".into()))
            .unwrap();
        assert_eq!(
            c.callout_secret.parameter_name(),
            "/apiTokens/billing-callout"
        );
        let bad = IngestConfig::from_lookup(|n| match n {
            "LEDGER_STORE" => Some("dynamodb://p".into()),
            _ => Some("relative".into()),
        })
        .unwrap_err();
        assert_eq!(bad.variable, "CALLOUT_SECRET_PARAM");
    }
}
