//! How the services reach the external systems (CRM and Billing base URLs, where API tokens
//! come from, the pricebook and default currency), read once from the environment at
//! start-up by the projector Lambda, `ledger worker` and `ledger redrive`. A missing or
//! invalid variable is named in the error; no secret value is ever part of an error.

use crate::config::{missing, ConfigError, Vars};
use url::Url;

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
    pub call_limits: super::concurrency::CallLimits,
}

fn base_url<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    variable: &str,
) -> Result<Url, ConfigError> {
    let value = vars.required(variable, "is required (the API's base URL)")?;
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

fn oauth_client<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    system: &str,
    base: &Url,
    default_path: &str,
) -> Result<Option<OAuthClient>, ConfigError> {
    let id_var = format!("{system}_CLIENT_ID");
    let secret_var = format!("{system}_CLIENT_SECRET");
    let url_var = format!("{system}_TOKEN_URL");
    match (vars.get(&id_var), vars.get(&secret_var)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(missing(&secret_var, &format!("is required with {id_var}"))),
        (None, Some(_)) => Err(missing(&id_var, &format!("is required with {secret_var}"))),
        (Some(client_id), Some(client_secret)) => {
            let token_url = match vars.get(&url_var) {
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
        Self::from_lookup(crate::config::env_var)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let crm_base_url = base_url(&vars, CRM_BASE_URL_ENV)?;
        let billing_base_url = base_url(&vars, BILLING_BASE_URL_ENV)?;
        let crm = oauth_client(&vars, "CRM", &crm_base_url, "services/oauth2/token")?;
        let billing = oauth_client(&vars, "BILLING", &billing_base_url, "oauth/token")?;
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
        let default_currency = vars
            .get(DEFAULT_CURRENCY_ENV)
            .unwrap_or_else(|| "USD".to_string());
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
            pricebook_id: vars.get(CRM_PRICEBOOK_ENV),
            default_currency,
            call_limits: super::concurrency::CallLimits::from_lookup(|name| vars.get(name))?,
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
