//! The parameter-store port: versioned secrets (OAuth client credentials, API tokens) that
//! the token rotator writes and the token provider reads. SSM Parameter Store (SecureString
//! under a KMS key) in AWS; an embedded SQLite file for the demo and local runs. Values stay
//! `ApiToken`s end to end so none is ever printed; no caching here (that is `TokenProvider`).

use super::token::{ApiToken, SecretReader, SsmStore, TokenError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A write or versioned read that failed. `detail` never carries a value we hold.
#[derive(Debug, Clone, thiserror::Error)]
#[error("parameter {parameter}: {detail}")]
pub struct ParameterError {
    pub parameter: String,
    pub detail: String,
}

impl ParameterError {
    fn new(parameter: &str, detail: impl Into<String>) -> Self {
        Self {
            parameter: parameter.to_string(),
            detail: detail.into(),
        }
    }
}

/// A versioned parameter store; `read` (from `SecretReader`) gives the latest version.
#[async_trait]
pub trait ParameterStore: SecretReader {
    /// Writes `value` as the next version of `name` (encrypted where the store encrypts) and
    /// returns that version.
    async fn put(
        &self,
        name: &str,
        value: &ApiToken,
        description: &str,
    ) -> Result<i64, ParameterError>;

    /// Exactly `version` of `name`, decrypted, with the version the store reports.
    async fn get_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<(ApiToken, i64), ParameterError>;
}

/// SSM Parameter Store: SecureString parameters encrypted with `kms_key_id`.
#[derive(Clone)]
pub struct SsmParameters {
    client: aws_sdk_ssm::Client,
    kms_key_id: String,
}

impl SsmParameters {
    pub fn new(client: aws_sdk_ssm::Client, kms_key_id: impl Into<String>) -> Self {
        Self {
            client,
            kms_key_id: kms_key_id.into(),
        }
    }
}

fn sdk_detail<E: std::error::Error>(e: &E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
}

#[async_trait]
impl SecretReader for SsmParameters {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        SsmStore::new(self.client.clone()).read(parameter).await
    }
}

#[async_trait]
impl ParameterStore for SsmParameters {
    async fn put(
        &self,
        name: &str,
        value: &ApiToken,
        description: &str,
    ) -> Result<i64, ParameterError> {
        let written = self
            .client
            .put_parameter()
            .name(name)
            .value(value.expose_secret())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .key_id(&self.kms_key_id)
            .overwrite(true)
            .description(description)
            .send()
            .await
            .map_err(|e| ParameterError::new(name, sdk_detail(&e)))?;
        Ok(written.version())
    }

    async fn get_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<(ApiToken, i64), ParameterError> {
        // The `name:version` selector reads exactly that version, however soon "latest"
        // reflects a write.
        let out = self
            .client
            .get_parameter()
            .name(format!("{name}:{version}"))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| ParameterError::new(name, sdk_detail(&e)))?;
        let stored = out
            .parameter()
            .ok_or_else(|| ParameterError::new(name, "GetParameter returned no parameter"))?;
        let value = ApiToken::new(stored.value().unwrap_or_default())
            .map_err(|_| ParameterError::new(name, "the stored value is empty"))?;
        Ok((value, stored.version()))
    }
}

/// Parameters in a local SQLite file (table `parameters`, every version kept). Not
/// encrypted: for the demo and local runs only, so the file is made owner-only.
#[derive(Clone)]
pub struct EmbeddedParameters {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedParameters {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ParameterError> {
        let fail = |detail: String| ParameterError {
            parameter: path.display().to_string(),
            detail,
        };
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS parameters (
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                value TEXT NOT NULL,
                description TEXT NOT NULL,
                written_at TEXT NOT NULL,
                PRIMARY KEY (name, version)
            );",
        )
        .map_err(|e| fail(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection off the async threads.
    async fn with_conn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ParameterError> {
        let conn = self.conn.clone();
        let fail = |detail: String| ParameterError {
            parameter: name.to_string(),
            detail,
        };
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))
    }
}

#[async_trait]
impl SecretReader for EmbeddedParameters {
    async fn read(&self, parameter: &str) -> Result<ApiToken, TokenError> {
        let name = parameter.to_string();
        let value = self
            .with_conn(parameter, move |conn| {
                conn.query_row(
                    "SELECT value FROM parameters WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    params![name],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await
            .map_err(|e| TokenError::Unavailable {
                parameter: parameter.to_string(),
                detail: e.detail,
            })?;
        let value = value.ok_or_else(|| TokenError::NotFound {
            parameter: parameter.to_string(),
        })?;
        ApiToken::new(value).map_err(|_| TokenError::Malformed {
            parameter: parameter.to_string(),
            reason: "parameter value is empty".into(),
        })
    }
}

#[async_trait]
impl ParameterStore for EmbeddedParameters {
    async fn put(
        &self,
        name: &str,
        value: &ApiToken,
        description: &str,
    ) -> Result<i64, ParameterError> {
        let (name_owned, value, description) = (
            name.to_string(),
            value.expose_secret().to_string(),
            description.to_string(),
        );
        self.with_conn(name, move |conn| {
            // One transaction: concurrent writers get distinct, gapless versions.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM parameters WHERE name = ?1",
                params![name_owned],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO parameters (name, version, value, description, written_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name_owned,
                    version,
                    value,
                    description,
                    chrono::Utc::now().to_rfc3339()
                ],
            )?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    async fn get_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<(ApiToken, i64), ParameterError> {
        let name_owned = name.to_string();
        let value = self
            .with_conn(name, move |conn| {
                conn.query_row(
                    "SELECT value FROM parameters WHERE name = ?1 AND version = ?2",
                    params![name_owned, version],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await?;
        let value = value.ok_or_else(|| {
            ParameterError::new(name, format!("version {version} does not exist"))
        })?;
        let value = ApiToken::new(value)
            .map_err(|_| ParameterError::new(name, "the stored value is empty"))?;
        Ok((value, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_grow_and_the_latest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedParameters::open(&dir.path().join("params.db")).unwrap();
        let missing = store.read("/apiTokens/crm").await.unwrap_err();
        assert!(matches!(missing, TokenError::NotFound { .. }), "{missing}");
        let one = ApiToken::new("first").unwrap();
        let two = ApiToken::new("second").unwrap();
        assert_eq!(store.put("/apiTokens/crm", &one, "d").await.unwrap(), 1);
        assert_eq!(store.put("/apiTokens/crm", &two, "d").await.unwrap(), 2);
        assert_eq!(store.read("/apiTokens/crm").await.unwrap(), two);
        assert_eq!(
            store.get_version("/apiTokens/crm", 1).await.unwrap(),
            (one, 1)
        );
        let gone = store.get_version("/apiTokens/crm", 3).await.unwrap_err();
        assert!(
            gone.to_string().contains("version 3 does not exist"),
            "{gone}"
        );
    }
}
