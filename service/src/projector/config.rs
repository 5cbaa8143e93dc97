//! The projector's configuration, read once from the environment at start-up (the Lambda
//! main and `ledger worker` share it). A missing or invalid variable is named in the error;
//! nothing is read later, mid-batch, and no secret value is ever part of an error.

use crate::config::{ConfigError, StoreUrl, STORE_ENV};
use url::Url;

pub const PROJECTION_ENV: &str = "PROJECTION";
pub const CRM_BASE_URL_ENV: &str = "CRM_BASE_URL";
pub const BILLING_BASE_URL_ENV: &str = "BILLING_BASE_URL";
pub const CRM_PRICEBOOK_ENV: &str = "CRM_PRICEBOOK_ID";
pub const DEFAULT_CURRENCY_ENV: &str = "DEFAULT_CURRENCY";

/// Where API tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenConfig {
    /// `/apiTokens/crm` and `/apiTokens/billing` in Parameter Store (through the Lambda
    /// extension when present): production, and local runs against the AWS test endpoint.
    ParameterStore,
    /// OAuth client credentials asked of each system directly (local runs against the
    /// sandbox): `<SYSTEM>_CLIENT_ID` + `<SYSTEM>_CLIENT_SECRET`, token URL from
    /// `<SYSTEM>_TOKEN_URL` or the system's standard path under its base URL.
    ClientCredentials {
        crm: Box<OAuthClient>,
        billing: Box<OAuthClient>,
    },
}

/// One client's credentials; the secret is only ever held, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// How the projector reaches the external systems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorsConfig {
    pub crm_base_url: Url,
    pub billing_base_url: Url,
    pub tokens: TokenConfig,
    /// The Salesforce pricebook prices are written to (needed by product sync only).
    pub pricebook_id: Option<String>,
    /// Currency of a Billing account created for a CRM account that names none.
    pub default_currency: String,
    /// Calls in flight per system (`BILLING_MAX_CONCURRENT_CALLS`, `CRM_MAX_CONCURRENT_CALLS`).
    pub call_limits: super::limits::CallLimits,
}

/// The projector Lambda's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    pub projection: String,
    pub store: StoreUrl,
    pub connectors: ConnectorsConfig,
}

fn missing(variable: &str, reason: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        value: String::new(),
        reason: reason.to_string(),
    }
}

fn base_url(lookup: &impl Fn(&str) -> Option<String>, variable: &str) -> Result<Url, ConfigError> {
    let value = lookup(variable)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| missing(variable, "is required (the API's base URL)"))?;
    let mut url = Url::parse(value.trim()).map_err(|e| ConfigError {
        variable: variable.to_string(),
        value: value.clone(),
        reason: format!("is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError {
            variable: variable.to_string(),
            value,
            reason: "must be an http(s) URL".to_string(),
        });
    }
    // Relative API paths are joined onto the base, which needs the trailing slash.
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

fn oauth_client(
    lookup: &impl Fn(&str) -> Option<String>,
    system: &str,
    base: &Url,
    default_path: &str,
) -> Result<Option<OAuthClient>, ConfigError> {
    let id_var = format!("{system}_CLIENT_ID");
    let secret_var = format!("{system}_CLIENT_SECRET");
    let url_var = format!("{system}_TOKEN_URL");
    match (lookup(&id_var), lookup(&secret_var)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(missing(&secret_var, &format!("is required with {id_var}"))),
        (None, Some(_)) => Err(missing(&id_var, &format!("is required with {secret_var}"))),
        (Some(client_id), Some(client_secret)) => {
            let token_url = match lookup(&url_var) {
                Some(value) => Url::parse(&value).map_err(|e| ConfigError {
                    variable: url_var.clone(),
                    value: value.clone(),
                    reason: format!("is not a URL: {e}"),
                })?,
                None => base.join(default_path).map_err(|e| ConfigError {
                    variable: url_var.clone(),
                    value: String::new(),
                    reason: format!("cannot be derived from the base URL: {e}"),
                })?,
            };
            Ok(Some(OAuthClient {
                token_url,
                client_id,
                client_secret,
            }))
        }
    }
}

impl ConnectorsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let crm_base_url = base_url(&lookup, CRM_BASE_URL_ENV)?;
        let billing_base_url = base_url(&lookup, BILLING_BASE_URL_ENV)?;
        let crm = oauth_client(&lookup, "CRM", &crm_base_url, "services/oauth2/token")?;
        let billing = oauth_client(&lookup, "BILLING", &billing_base_url, "oauth/token")?;
        let tokens = match (crm, billing) {
            (None, None) => TokenConfig::ParameterStore,
            (Some(crm), Some(billing)) => TokenConfig::ClientCredentials {
                crm: Box::new(crm),
                billing: Box::new(billing),
            },
            (Some(_), None) => {
                return Err(missing(
                    "BILLING_CLIENT_ID",
                    "is required when CRM_CLIENT_ID is set (both systems use the same token source)",
                ))
            }
            (None, Some(_)) => {
                return Err(missing(
                    "CRM_CLIENT_ID",
                    "is required when BILLING_CLIENT_ID is set (both systems use the same token source)",
                ))
            }
        };
        let default_currency = lookup(DEFAULT_CURRENCY_ENV).unwrap_or_else(|| "USD".to_string());
        if default_currency.len() != 3 || !default_currency.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(ConfigError {
                variable: DEFAULT_CURRENCY_ENV.to_string(),
                value: default_currency,
                reason: "must be an ISO 4217 code such as USD".to_string(),
            });
        }
        Ok(Self {
            crm_base_url,
            billing_base_url,
            tokens,
            pricebook_id: lookup(CRM_PRICEBOOK_ENV).filter(|v| !v.trim().is_empty()),
            default_currency,
            call_limits: super::limits::CallLimits::from_lookup(&lookup)?,
        })
    }

    /// Fails at start-up, not mid-batch, when a selected projection needs what is missing.
    pub fn check_for(&self, projections: &[&str]) -> Result<(), ConfigError> {
        let needs_pricebook = projections.iter().any(|p| {
            *p == <projections::product_sync::ProductSync as projections::Projection>::NAME
        });
        if needs_pricebook && self.pricebook_id.is_none() {
            return Err(missing(
                CRM_PRICEBOOK_ENV,
                "is required by product sync (the Salesforce pricebook prices are written to)",
            ));
        }
        Ok(())
    }
}

impl ProjectorConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let projection = lookup(PROJECTION_ENV)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                missing(
                    PROJECTION_ENV,
                    "is required (account, order, product or correlation)",
                )
            })?;
        let view_name = super::registry::view_name(&projection).ok_or_else(|| ConfigError {
            variable: PROJECTION_ENV.to_string(),
            value: projection.clone(),
            reason: format!("must be one of {}", super::registry::known()),
        })?;
        let store = lookup(STORE_ENV)
            .ok_or_else(|| missing(STORE_ENV, "is required (e.g. dynamodb://<table-prefix>)"))?;
        let connectors = ConnectorsConfig::from_lookup(&lookup)?;
        connectors.check_for(&[view_name])?;
        Ok(Self {
            projection,
            store: StoreUrl::parse(&store)?,
            connectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
