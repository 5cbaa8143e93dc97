//! The local AWS endpoint for integration tests: one patched moto server
//! (`tests/common/moto_server.py`) per test binary, started on first use on a free port.
//! Never skips: without a Python that has moto it fails with the command that fixes it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fake credentials and region: moto accepts any, the SDK insists on some.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

/// Generous: a cold moto import on a busy 2-core machine takes several seconds. Not a
/// performance assertion, only a guard against hanging forever on a broken install.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A running moto server. The process ends when this is dropped, and also when the test
/// process exits (the server exits when its stdin closes), so a `static` never leaks it.
pub struct Moto {
    endpoint: String,
    child: Mutex<Child>,
    // Held only so the server's stdin stays open for as long as this process lives.
    _stdin: ChildStdin,
    log_path: PathBuf,
}

/// The shared server of this test binary (moto keeps everything in memory, so never one
/// server for all binaries, and never one per test either).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("{e}")))
}

impl Moto {
    /// Spawns a fresh server. Prefer [`moto()`] unless a test needs a private one.
    pub fn start() -> Result<Moto, String> {
        let python = python()?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("tests/common/moto_server.py");
        let log_path = std::env::temp_dir().join(format!(
            "sync-ledger-moto-{}-{}.log",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create moto log {}: {e}", log_path.display()))?;
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {} {}: {e}", python.display(), script.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");

        // The ready line is read on a thread so a server that never prints cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix("moto ready on ")
                    .map(|endpoint| endpoint.trim().to_string())
            });
            let _ = tx.send(ready);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let started = Instant::now();
        let endpoint = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(endpoint)) => break endpoint,
                Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    return Err(format!(
                        "moto server exited before it was ready ({status:?}); its log {}:\n{}",
                        log_path.display(),
                        tail(&log_path)
                    ));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!(
                            "moto server exited before it was ready ({status}); its log {}:\n{}",
                            log_path.display(),
                            tail(&log_path)
                        ));
                    }
                    if started.elapsed() > STARTUP_TIMEOUT {
                        let _ = child.kill();
                        return Err(format!(
                            "moto server not ready after {STARTUP_TIMEOUT:?}; its log {}:\n{}",
                            log_path.display(),
                            tail(&log_path)
                        ));
                    }
                }
            }
        };
        Ok(Moto {
            endpoint,
            child: Mutex::new(child),
            _stdin: stdin,
            log_path,
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where the server's stderr goes (for diagnosing a failing test).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The environment a child process (e.g. the `ledger` binary) needs to reach this
    /// server through the standard SDK configuration chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            // Never pick up a developer's real profile or instance credentials.
            ("AWS_PROFILE", "moto-test".to_string()),
            ("AWS_CONFIG_FILE", "/dev/null".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// [`Moto::env`] followed by `pairs`: a child process's whole environment (e.g. a Lambda
    /// binary under the Runtime API emulator).
    pub fn env_with(&self, pairs: &[(&str, String)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        all
    }

    /// Applies [`Moto::env`] to a command.
    pub fn apply_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        for (key, value) in self.env() {
            command.env(key, value);
        }
        command
    }

    /// SDK configuration pointing at this server. Build clients per test: an SDK client's
    /// connection pool belongs to the tokio runtime that first used it.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "moto",
            ))
            .load()
            .await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    pub async fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.sdk_config().await)
    }

    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config().await)
    }

    /// Puts (or overwrites) a SecureString parameter, as the deployment stores secrets.
    pub async fn put_secure(&self, name: &str, value: &str) {
        self.ssm()
            .await
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
    }

    /// One call of moto's KMS JSON API, by hand because the workspace has no KMS SDK client
    /// (moto does not check signatures, so a dummy one does). Asserts that moto accepted it.
    pub async fn kms(&self, target: &str, body: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now();
        let response = reqwest::Client::new()
            .post(self.endpoint())
            .header("X-Amz-Target", format!("TrentService.{target}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Date", now.format("%Y%m%dT%H%M%SZ").to_string())
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/{}/{REGION}/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
                    now.format("%Y%m%d")
                ),
            )
            .json(&body)
            .send()
            .await
            .expect("moto answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "KMS {target}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// A fresh KMS key for SecureString parameters; its id.
    pub async fn kms_key(&self) -> String {
        let response = self
            .kms(
                "CreateKey",
                serde_json::json!({"Description": "api tokens", "KeyUsage": "ENCRYPT_DECRYPT"}),
            )
            .await;
        response["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap_or_else(|| panic!("CreateKey answered {response}"))
            .to_string()
    }

    /// The launcher's patch counters (`GET /_ledger/patch-stats`), per table.
    pub async fn patch_stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_ledger/patch-stats", self.endpoint))
            .await
            .and_then(|r| r.error_for_status())
            .expect("moto patch-stats endpoint answers")
            .json()
            .await
            .expect("moto patch-stats is JSON")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A table/prefix name no other test in this server uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn python() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MOTO_PYTHON") {
        let path = PathBuf::from(path);
        if path.exists() {
            return Ok(path);
        }
        return Err(format!(
            "MOTO_PYTHON={} does not exist; run `bash scripts/test` once to create .venv",
            path.display()
        ));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    Err(format!(
        "no Python with moto for the AWS tests: set MOTO_PYTHON, or run `bash scripts/test` \
         once to create {} with moto[server]==5.2.1",
        venv.display()
    ))
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
