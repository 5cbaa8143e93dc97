//! The ingest Lambda's configuration, read once from the environment at start-up. A missing
//! or invalid variable fails init with its name; nothing is read later, mid-batch.

use crate::config::{ConfigError, StoreUrl, Vars};
use crate::connectors::token::{ServiceName, TOKEN_PARAMETER_PREFIX};

pub const SECRET_PARAM_ENV: &str = "CALLOUT_SECRET_PARAM";
pub const DEFAULT_SECRET_PARAM: &str = "/apiTokens/billing-callout";
/// Optional: the SecureString holding the callouts' Basic auth `user:password`.
pub const BASIC_AUTH_PARAM_ENV: &str = "CALLOUT_BASIC_AUTH_PARAM";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `LEDGER_STORE` (required: a Lambda has no durable local disk for the embedded store).
    pub store: StoreUrl,
    /// `CALLOUT_SECRET_PARAM` = `/apiTokens/<service>`: the token that is the Billing
    /// callout HMAC secret.
    pub callout_secret: ServiceName,
    /// `CALLOUT_BASIC_AUTH_PARAM` = `/apiTokens/<service>`: Basic auth `user:password`
    /// accepted beside the HMAC scheme; unset (or empty): Basic auth is refused.
    pub callout_basic_auth: Option<ServiceName>,
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
        let callout_secret = token_parameter(SECRET_PARAM_ENV, &param)?;
        let callout_basic_auth = vars
            .get(BASIC_AUTH_PARAM_ENV)
            .map(|p| token_parameter(BASIC_AUTH_PARAM_ENV, &p))
            .transpose()?;
        Ok(Self {
            store,
            callout_secret,
            callout_basic_auth,
        })
    }
}

/// The service of a `/apiTokens/<service>` parameter named by `variable`.
fn token_parameter(variable: &str, param: &str) -> Result<ServiceName, ConfigError> {
    param
        .strip_prefix(TOKEN_PARAMETER_PREFIX)
        .and_then(|service| ServiceName::parse(service).ok())
        .ok_or_else(|| ConfigError {
            variable: variable.to_string(),
            value: param.to_string(),
            reason: format!(
                "must be {TOKEN_PARAMETER_PREFIX}<service> with a service of [a-z0-9_-]"
            ),
        })
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
        assert_eq!(c.callout_basic_auth, None);
    }

    #[test]
    fn the_basic_auth_parameter_is_optional_and_checked() {
        let with = |value: &'static str| {
            IngestConfig::from_lookup(move |n| match n {
                "LEDGER_STORE" => Some("dynamodb://p".into()),
                "CALLOUT_BASIC_AUTH_PARAM" => Some(value.into()),
                _ => None,
            })
        };
        let c = with("/apiTokens/billing-callout-basic").unwrap();
        assert_eq!(
            c.callout_basic_auth.unwrap().parameter_name(),
            "/apiTokens/billing-callout-basic"
        );
        assert_eq!(with("").unwrap().callout_basic_auth, None);
        let bad = with("/elsewhere/basic").unwrap_err();
        assert_eq!(bad.variable, "CALLOUT_BASIC_AUTH_PARAM");
    }
}
