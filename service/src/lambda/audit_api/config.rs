//! The audit API Lambda's configuration, read once from the environment at start-up: only
//! `LEDGER_STORE`, required like every function's (a missing or empty one fails init naming
//! it, rather than opening an embedded file the function does not have).

use crate::config::{ConfigError, StoreUrl, Vars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditApiConfig {
    /// `LEDGER_STORE`: the ledger and the views beside it.
    pub store: StoreUrl,
}

impl AuditApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(crate::config::env_var)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            store: Vars::new(lookup).store()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_required_and_empty_is_missing() {
        for lookup in [None, Some(String::new())] {
            let e = AuditApiConfig::from_lookup(|_| lookup.clone()).unwrap_err();
            assert_eq!(e.variable, "LEDGER_STORE");
        }
        let c = AuditApiConfig::from_lookup(|_| Some("dynamodb://prod".into())).unwrap();
        assert_eq!(
            c.store,
            StoreUrl::DynamoDb {
                table_prefix: "prod".into()
            }
        );
    }
}
