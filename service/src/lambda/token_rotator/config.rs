//! The token rotator Lambda's configuration, read once from the environment at start-up
//! (every missing variable named in the one error; nothing is read later).

use crate::config::{ConfigError, StoreUrl, Vars};
use crate::connectors::token::{ApiToken, ServiceName};
use crate::rotation::ServiceSettings;
use url::Url;

pub const SERVICES_ENV: &str = "TOKEN_ROTATOR_SERVICES";
pub const KMS_KEY_ENV: &str = "TOKEN_KMS_KEY_ID";
pub const SALT_ENV: &str = "TOKEN_FINGERPRINT_SALT";
pub const SALT_PARAM_ENV: &str = "TOKEN_FINGERPRINT_SALT_PARAM";

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
        Self::from_lookup(crate::config::env_var)
    }

    /// Variables (`<S>` = the service name upper-cased, `-` -> `_`):
    /// `TOKEN_ROTATOR_SERVICES` (default `crm,billing`); `TOKEN_URL_<S>`, else derived from
    /// `CRM_BASE_URL` (`services/oauth2/token`) / `BILLING_BASE_URL` (`oauth/token`);
    /// `CLIENT_ID_PARAM_<S>` / `CLIENT_SECRET_PARAM_<S>` (default
    /// `/oauthClients/<service>/clientId|clientSecret`); `TOKEN_KMS_KEY_ID`;
    /// `TOKEN_FINGERPRINT_SALT` or `TOKEN_FINGERPRINT_SALT_PARAM`; `LEDGER_STORE` (required).
    /// Every missing variable is named in the one error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let mut missing: Vec<String> = Vec::new();
        let invalid = |variable: &str, value: &str, reason: &str| ConfigError {
            variable: variable.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let services_text = vars
            .get(SERVICES_ENV)
            .unwrap_or_else(|| "crm,billing".into());
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
            let token_url = match vars.get(&url_var) {
                Some(url) => {
                    Some(Url::parse(&url).map_err(|e| invalid(&url_var, &url, &e.to_string()))?)
                }
                None => {
                    let derived = match service.as_str() {
                        "crm" => Some(("CRM_BASE_URL", "services/oauth2/token")),
                        "billing" => Some(("BILLING_BASE_URL", "oauth/token")),
                        _ => None,
                    };
                    match derived.and_then(|(var, path)| vars.get(var).map(|v| (var, v, path))) {
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
            let id_param = vars
                .get(&format!("CLIENT_ID_PARAM_{key}"))
                .unwrap_or_else(|| format!("/oauthClients/{service}/clientId"));
            let secret_param = vars
                .get(&format!("CLIENT_SECRET_PARAM_{key}"))
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
        let kms_key_id = vars.get(KMS_KEY_ENV);
        if kms_key_id.is_none() {
            missing.push(KMS_KEY_ENV.into());
        }
        let salt = match (vars.get(SALT_ENV), vars.get(SALT_PARAM_ENV)) {
            (Some(value), _) => ApiToken::new(value).ok().map(SaltSource::Value),
            (None, Some(param)) => Some(SaltSource::Parameter(param)),
            (None, None) => None,
        };
        if salt.is_none() {
            missing.push(format!("{SALT_ENV} (or {SALT_PARAM_ENV})"));
        }
        // No embedded default here: a Lambda writing to a local file would lose the audit.
        let store = match vars.get(crate::config::STORE_ENV) {
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
}
