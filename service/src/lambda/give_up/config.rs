//! The give-up consumer's configuration, read once from the environment at start-up. A
//! missing or invalid variable fails init with its name.

use crate::config::{env_var, ConfigError, StoreUrl, Vars, STORE_ENV};

/// What projector function names start with before the projection (`<Prefix>-projector-`).
pub const FUNCTION_PREFIX_ENV: &str = "PROJECTOR_FUNCTION_PREFIX";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUpConfig {
    /// `LEDGER_STORE`: must be `dynamodb://<prefix>` (the on-failure records name a DynamoDB
    /// stream).
    pub store: StoreUrl,
    /// `PROJECTOR_FUNCTION_PREFIX`.
    pub function_prefix: String,
}

impl GiveUpConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_var)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let store = vars.store()?;
        if !matches!(store, StoreUrl::DynamoDb { .. }) {
            return Err(ConfigError {
                variable: STORE_ENV.to_string(),
                value: String::new(),
                reason: "must be dynamodb://<table-prefix>: given-up ranges are read from the events table's stream".to_string(),
            });
        }
        let function_prefix = vars.required(
            FUNCTION_PREFIX_ENV,
            "is required (e.g. sync-ledger-projector-: projector functions are this + the projection)",
        )?;
        Ok(Self {
            store,
            function_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_named_when_missing_or_wrong() {
        let e = GiveUpConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(e.variable, STORE_ENV);
        let e = GiveUpConfig::from_lookup(|n| (n == STORE_ENV).then(|| "dynamodb://p".into()))
            .unwrap_err();
        assert_eq!(e.variable, FUNCTION_PREFIX_ENV);
        let e = GiveUpConfig::from_lookup(|n| match n {
            STORE_ENV => Some("sqlite://x.db".into()),
            _ => Some("p-projector-".into()),
        })
        .unwrap_err();
        assert_eq!(e.variable, STORE_ENV);
        let c = GiveUpConfig::from_lookup(|n| match n {
            STORE_ENV => Some("dynamodb://p".into()),
            _ => Some("p-projector-".into()),
        })
        .unwrap();
        assert_eq!(c.function_prefix, "p-projector-");
    }
}
