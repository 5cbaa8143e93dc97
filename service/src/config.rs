//! Store selection: `LEDGER_STORE` = `sqlite://<path>` (default `sqlite://ledger.db`) or
//! `dynamodb://<table-prefix>`. Parsed once at start-up; a bad value names the variable.

use std::path::PathBuf;

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

    /// Reads `LEDGER_STORE`, defaulting to the embedded store.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(STORE_ENV) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Self::parse(DEFAULT_STORE),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
                variable: STORE_ENV.to_string(),
                value: String::new(),
                reason: "is not valid UTF-8".to_string(),
            }),
        }
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
}
