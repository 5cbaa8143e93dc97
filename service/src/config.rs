//! What every process reads the same way: the store (`LEDGER_STORE` = `sqlite://<path>`,
//! default `sqlite://ledger.db`, or `dynamodb://<table-prefix>`), environment variables (one
//! helper, [`Vars`]: a variable set to an empty or blank value counts as unset, in every
//! binary), and the one AWS configuration of the process ([`AwsConfig`]). Parsed once at
//! start-up; a bad value names the variable. Each binary's own variables are read by its
//! configuration module (`lambda::<function>::config`, `connectors::config`).

use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const STORE_ENV: &str = "LEDGER_STORE";
pub const DEFAULT_STORE: &str = "sqlite://ledger.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    DynamoDb { table_prefix: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

impl StoreUrl {
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError {
            variable: STORE_ENV.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(err("sqlite:// needs a file path, e.g. sqlite://ledger.db"));
            }
            Ok(StoreUrl::Sqlite(PathBuf::from(path)))
        } else if let Some(prefix) = value.strip_prefix("dynamodb://") {
            let valid = !prefix.is_empty()
                && prefix.len() <= 200
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(err(
                    "dynamodb:// needs a table prefix of 1-200 characters [A-Za-z0-9_.-]",
                ));
            }
            Ok(StoreUrl::DynamoDb {
                table_prefix: prefix.to_string(),
            })
        } else {
            Err(err("must start with sqlite:// or dynamodb://"))
        }
    }

    /// Reads `LEDGER_STORE`, defaulting to the embedded store (the `ledger` CLI's rule; the
    /// Lambda functions require it, [`Vars::store`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(STORE_ENV) {
            return Err(ConfigError {
                variable: STORE_ENV.to_string(),
                value: String::new(),
                reason: "is not valid UTF-8".to_string(),
            });
        }
        Self::parse(&env_var(STORE_ENV).unwrap_or_else(|| DEFAULT_STORE.to_string()))
    }
}

/// The one way a variable is read from the process environment: unset, empty, blank or not
/// UTF-8 is `None`. Deployment templates set optional variables to `""` when a parameter is
/// left out, and that must mean "not configured", not "configured as nothing".
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A source of configuration variables (the process environment, or a map in tests) read
/// with the [`env_var`] rule, so every binary's `from_lookup` treats an empty variable as
/// missing whatever lookup it is given.
pub struct Vars<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(lookup: F) -> Self {
        Self(lookup)
    }

    /// The variable's value, or `None` when it is unset, empty or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value, or an error naming it (`reason` says what it is for).
    pub fn required(&self, name: &str, reason: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| missing(name, reason))
    }

    /// `LEDGER_STORE`, required: a Lambda function has no durable local disk, so there is no
    /// embedded default (it would lose what it records).
    pub fn store(&self) -> Result<StoreUrl, ConfigError> {
        StoreUrl::parse(&self.required(STORE_ENV, "is required (e.g. dynamodb://<table-prefix>)")?)
    }
}

/// The error of a missing variable.
pub fn missing(variable: &str, reason: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        value: String::new(),
        reason: reason.to_string(),
    }
}

/// The process's one AWS configuration (region, credentials, `AWS_ENDPOINT_URL`), shared by
/// every AWS client. It is loaded on first use and then reused, so a cold start resolves the
/// credential chain once, and a run on the embedded store (which never asks for it) never
/// loads it at all. Clones share the same configuration.
#[derive(Clone, Default)]
pub struct AwsConfig(Arc<OnceCell<aws_config::SdkConfig>>);

impl AwsConfig {
    /// Not loaded yet: the first [`AwsConfig::get`] loads the standard configuration chain.
    pub fn lazy() -> Self {
        Self::default()
    }

    /// An already loaded configuration (a test's local endpoint).
    pub fn loaded(config: aws_config::SdkConfig) -> Self {
        Self(Arc::new(OnceCell::new_with(Some(config))))
    }

    /// The configuration, loaded by the first caller.
    pub async fn get(&self) -> &aws_config::SdkConfig {
        self.0
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await
    }

    /// Whether anything has asked for it yet.
    pub fn is_loaded(&self) -> bool {
        self.0.initialized()
    }
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_store_kinds_and_names_the_variable_on_error() {
        assert_eq!(
            StoreUrl::parse("sqlite://x.db").unwrap(),
            StoreUrl::Sqlite("x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("dynamodb://prod").unwrap(),
            StoreUrl::DynamoDb {
                table_prefix: "prod".into()
            }
        );
        let e = StoreUrl::parse("postgres://x").unwrap_err();
        assert!(e.to_string().starts_with("LEDGER_STORE="), "{e}");
        assert!(StoreUrl::parse("dynamodb://bad prefix").is_err());
    }

    #[test]
    fn an_empty_or_blank_variable_is_missing() {
        let vars = Vars::new(|name: &str| match name {
            "EMPTY" => Some(String::new()),
            "BLANK" => Some("  ".to_string()),
            "SET" => Some("x".to_string()),
            _ => None,
        });
        assert_eq!(vars.get("EMPTY"), None);
        assert_eq!(vars.get("BLANK"), None);
        assert_eq!(vars.get("UNSET"), None);
        assert_eq!(vars.get("SET").as_deref(), Some("x"));
        let e = vars.required("EMPTY", "is required").unwrap_err();
        assert_eq!(e.variable, "EMPTY");
        let store = Vars::new(|_: &str| Some(String::new()))
            .store()
            .unwrap_err();
        assert_eq!(store.variable, STORE_ENV);
        assert!(store.reason.contains("is required"), "{store}");
    }

    #[tokio::test]
    async fn the_aws_config_is_loaded_on_first_use_only() {
        let aws = AwsConfig::lazy();
        let shared = aws.clone();
        assert!(!aws.is_loaded());
        let loaded = aws_config::SdkConfig::builder().build();
        let given = AwsConfig::loaded(loaded);
        assert!(given.is_loaded());
        given.get().await;
        assert!(!shared.is_loaded(), "nothing asked for the lazy one");
    }
}
