//! The projector Lambda's configuration, read once from the environment at start-up:
//! `PROJECTION`, `LEDGER_STORE` and the connectors' variables (`connectors::config`). A
//! missing or invalid variable is named in the error; nothing is read later, mid-batch, and
//! no secret value is ever part of an error.

use crate::config::{ConfigError, StoreUrl, Vars};
use crate::connectors::config::ConnectorsConfig;
use crate::projector::registry;

pub const PROJECTION_ENV: &str = "PROJECTION";

/// The projector Lambda's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    pub projection: String,
    pub store: StoreUrl,
    pub connectors: ConnectorsConfig,
}

impl ProjectorConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(crate::config::env_var)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let projection = vars.required(
            PROJECTION_ENV,
            "is required (account, order, product or correlation)",
        )?;
        let view_name = registry::view_name(&projection).ok_or_else(|| ConfigError {
            variable: PROJECTION_ENV.to_string(),
            value: projection.clone(),
            reason: format!("must be one of {}", registry::known()),
        })?;
        let store = vars.store()?;
        let connectors = ConnectorsConfig::from_lookup(|name| vars.get(name))?;
        connectors.check_for(&[view_name])?;
        Ok(Self {
            projection,
            store,
            connectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::config::TokenConfig;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("PROJECTION", "account"),
        ("LEDGER_STORE", "dynamodb://prod"),
        ("CRM_BASE_URL", "https://acme.my.salesforce.com"),
        ("BILLING_BASE_URL", "https://rest.zuora.com/"),
    ];

    #[test]
    fn a_complete_environment_reads_once_into_typed_config() {
        let c = ProjectorConfig::from_lookup(env(BASE)).unwrap();
        assert_eq!(c.projection, "account");
        assert_eq!(
            c.connectors.crm_base_url.as_str(),
            "https://acme.my.salesforce.com/"
        );
        assert_eq!(c.connectors.tokens, TokenConfig::ParameterStore);
        assert_eq!(c.connectors.default_currency, "USD");
    }

    #[test]
    fn each_missing_or_bad_variable_is_named() {
        for (drop, expected) in [
            ("PROJECTION", "PROJECTION"),
            ("LEDGER_STORE", "LEDGER_STORE"),
            ("CRM_BASE_URL", "CRM_BASE_URL"),
            ("BILLING_BASE_URL", "BILLING_BASE_URL"),
        ] {
            let pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = ProjectorConfig::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(e.variable, expected);
        }
        let mut pairs = BASE.to_vec();
        pairs[0] = ("PROJECTION", "invoices");
        let e = ProjectorConfig::from_lookup(env(&pairs)).unwrap_err();
        assert!(e.to_string().contains("must be one of account"), "{e}");
        pairs[0] = ("PROJECTION", "product");
        let e = ProjectorConfig::from_lookup(env(&pairs)).unwrap_err();
        assert_eq!(e.variable, "CRM_PRICEBOOK_ID");
    }

    #[test]
    fn client_credentials_come_in_pairs_and_never_print_the_secret() {
        let mut pairs = BASE.to_vec();
        pairs.push(("CRM_CLIENT_ID", "crm-client"));
        let e = ProjectorConfig::from_lookup(env(&pairs)).unwrap_err();
        assert_eq!(e.variable, "CRM_CLIENT_SECRET");
        pairs.push(("CRM_CLIENT_SECRET", "s3cret-value"));
        pairs.push(("BILLING_CLIENT_ID", "billing-client"));
        pairs.push(("BILLING_CLIENT_SECRET", "s3cret-value"));
        let c = ProjectorConfig::from_lookup(env(&pairs)).unwrap();
        let TokenConfig::ClientCredentials { crm, .. } = &c.connectors.tokens else {
            panic!("expected client credentials");
        };
        assert_eq!(
            crm.token_url.as_str(),
            "https://acme.my.salesforce.com/services/oauth2/token"
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }
}
