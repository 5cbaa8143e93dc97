//! A local Lambda Runtime API (version 2018-06-01) that runs a compiled Lambda binary the way
//! the Lambda service does: spawned with `AWS_LAMBDA_RUNTIME_API` and Lambda's environment, it
//! long-polls `/invocation/next` and posts a response or an error per invocation. Shared by
//! `ledger bench` (init time, peak RSS) and the tests; it measures and relays, never judges.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify};

/// How long one invocation may run before the emulator gives up waiting (the deadline the
/// function is told). Not a performance assertion: only a guard against a hung test.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

pub const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

/// Why the emulator could not start a function or get an answer from it.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("runtime API: cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error("runtime API: cannot create the function log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime API: cannot spawn {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime API: {0}")]
    Invocation(String),
}

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST /invocation/{id}/response`: the body, as JSON when it parses.
    Response(Value),
    /// `POST /invocation/{id}/error`: `Lambda-Runtime-Function-Error-Type` and the body.
    Error {
        error_type: Option<String>,
        body: Value,
    },
}

impl Invocation {
    /// The response body, or the function's error as text.
    pub fn into_response(self) -> Result<Value, String> {
        match self {
            Invocation::Response(v) => Ok(v),
            Invocation::Error { error_type, body } => {
                Err(format!("invocation failed: {error_type:?} {body}"))
            }
        }
    }

    /// The response body; panics with the function's error. For tests, which want exactly
    /// that; `ledger bench` uses [`Invocation::into_response`].
    pub fn expect_response(self) -> Value {
        self.into_response().unwrap_or_else(|e| panic!("{e}"))
    }
}

struct Pending {
    request_id: String,
    payload: Value,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Pending>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Invocation>>>,
    init_error: Mutex<Option<Value>>,
    first_next: Mutex<Option<Instant>>,
    function_name: String,
}

/// A spawned Lambda binary and the Runtime API it talks to. Dropping it kills the process.
pub struct LambdaProcess {
    addr: SocketAddr,
    shared: Arc<Shared>,
    child: Mutex<tokio::process::Child>,
    pid: Option<u32>,
    spawned_at: Instant,
    log_path: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl LambdaProcess {
    /// Starts a Runtime API on a free port and spawns `binary` against it, with the
    /// environment Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`, memory size, region, ...) plus
    /// `env` (credentials, endpoint, the function's own variables), which wins on conflict.
    pub async fn spawn(
        binary: impl AsRef<Path>,
        function_name: &str,
        env: &[(String, String)],
    ) -> Result<Self, EmulatorError> {
        let shared = Arc::new(Shared {
            function_name: function_name.to_string(),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(EmulatorError::Listen)?;
        let addr = listener.local_addr().map_err(EmulatorError::Listen)?;
        let server = tokio::spawn(async move {
            // The server only stops when aborted (on drop); an I/O error ends it, and the
            // waiting `invoke` then reports the function as not answering.
            let _ = axum::serve(listener, app).await;
        });

        let log_path = std::env::temp_dir().join(format!(
            "sync-ledger-lambda-{function_name}-{}.log",
            uuid::Uuid::now_v7().simple()
        ));
        let log_error = |source| EmulatorError::Log {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(log_error)?;
        let log_copy = log.try_clone().map_err(log_error)?;
        let mut command = tokio::process::Command::new(binary.as_ref());
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/26/[$LATEST]0123456789abcdef",
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("_HANDLER", "bootstrap")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_copy))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                server.abort();
                return Err(EmulatorError::Spawn {
                    binary: binary.as_ref().to_path_buf(),
                    source,
                });
            }
        };
        let pid = child.id();
        Ok(Self {
            addr,
            shared,
            child: Mutex::new(child),
            pid,
            spawned_at,
            log_path,
            server,
        })
    }

    /// `127.0.0.1:<port>` of the Runtime API.
    pub fn runtime_api(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `payload` as the next invocation and waits for the function's answer. Fails
    /// (with the function's log) if the process exits or the deadline passes first.
    pub async fn invoke(&self, payload: Value) -> Result<Invocation, EmulatorError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (tx, mut rx) = oneshot::channel();
        lock(&self.shared.waiting).insert(request_id.clone(), tx);
        lock(&self.shared.queue).push_back(Pending {
            request_id: request_id.clone(),
            payload,
        });
        self.shared.queued.notify_waiters();
        self.shared.queued.notify_one();
        let started = Instant::now();
        loop {
            tokio::select! {
                outcome = &mut rx => return outcome.map_err(|_| EmulatorError::Invocation("the server dropped the invocation".to_string())),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(status) = self.exit_status() {
                        return Err(EmulatorError::Invocation(format!("function exited ({status}) before answering {request_id}; log:\n{}", self.logs())));
                    }
                    if started.elapsed() > INVOCATION_TIMEOUT {
                        return Err(EmulatorError::Invocation(format!("no answer to {request_id} within {INVOCATION_TIMEOUT:?}; log:\n{}", self.logs())));
                    }
                }
            }
        }
    }

    /// Time from spawn to the function's first `GET /invocation/next` (its cold start),
    /// once it has happened.
    pub fn init_duration(&self) -> Option<Duration> {
        lock(&self.shared.first_next).map(|at| at.duration_since(self.spawned_at))
    }

    /// Peak resident set size so far in KiB (`VmHWM` of `/proc/<pid>/status`), while the
    /// process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        proc_status_kib(&status, "VmHWM:")
    }

    /// The body the function posted to `/init/error`, if it did.
    pub fn init_error(&self) -> Option<Value> {
        lock(&self.shared.init_error).clone()
    }

    /// Waits (up to `timeout`) for the process to exit.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Everything the function wrote to stdout/stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.start_kill();
        }
        self.server.abort();
    }
}

/// A panic elsewhere while holding one of these locks leaves plain data behind: keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.first_next).get_or_insert_with(Instant::now);
    let pending = loop {
        let notified = shared.queued.notified();
        if let Some(p) = lock(&shared.queue).pop_front() {
            break p;
        }
        notified.await;
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + INVOCATION_TIMEOUT.as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        // Every value here is ids and digits; one that is not a valid header is left out.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", pending.request_id.clone());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        format!("{FUNCTION_ARN_PREFIX}{}", shared.function_name),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{};Parent=0000000000000001;Sampled=0",
            deadline / 1000,
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        ),
    );
    set("content-type", "application/json".to_string());
    (StatusCode::OK, headers, pending.payload.to_string()).into_response()
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn complete(shared: &Shared, id: &str, outcome: Invocation) -> StatusCode {
    match lock(&shared.waiting).remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    complete(&shared, &id, Invocation::Response(json_or_text(&body)))
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    complete(
        &shared,
        &id,
        Invocation::Error {
            error_type,
            body: json_or_text(&body),
        },
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *lock(&shared.init_error) = Some(json_or_text(&body));
    StatusCode::ACCEPTED
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
