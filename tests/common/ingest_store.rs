//! Ledgers for the ingest tests, behind the `EventLog` port: a fresh, migrated DynamoDB
//! ledger on the shared moto server per test, and one whose endpoint has gone away after it
//! was opened (DynamoDB unreachable), for the transient-failure path.

use super::moto::{moto, unique_name, Moto};
use std::sync::Arc;
use sync_ledger::ledger::dynamodb::{self, DynamoDbLedger};
use sync_ledger::ledger::EventLog;

pub struct TestStore {
    log: Arc<dyn EventLog>,
    /// `dynamodb://<prefix>` names this ledger for a child process (`LEDGER_STORE`).
    pub prefix: String,
}

impl TestStore {
    pub fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    pub fn url(&self) -> String {
        format!("dynamodb://{}", self.prefix)
    }
}

/// A migrated ledger with its own table prefix on this test binary's moto server.
pub async fn fresh_store() -> TestStore {
    let config = moto().sdk_config().await;
    let prefix = unique_name("ingest");
    dynamodb::migrate_with(&config, &prefix)
        .await
        .expect("migrate");
    TestStore {
        log: Arc::new(
            DynamoDbLedger::open_with(&config, &prefix)
                .await
                .expect("open"),
        ),
        prefix,
    }
}

/// A ledger opened against a private moto server that is then stopped: every later call
/// meets a refused connection, as when DynamoDB is unreachable. The SDK's own retries are
/// off so the adapter's bounded backoff is the only wait.
pub async fn unreachable_store() -> TestStore {
    let private = Moto::start().unwrap_or_else(|e| panic!("{e}"));
    let config = private
        .sdk_config()
        .await
        .into_builder()
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let prefix = unique_name("gone");
    dynamodb::migrate_with(&config, &prefix)
        .await
        .expect("migrate");
    let log = DynamoDbLedger::open_with(&config, &prefix)
        .await
        .expect("open");
    drop(private);
    TestStore {
        log: Arc::new(log),
        prefix,
    }
}

/// An HTTP proxy in front of moto that answers DynamoDB writes touching one key with a real
/// `ThrottlingException` response (what a hot partition gets), and forwards everything else.
/// The SDK and the adapter see DynamoDB's wire behaviour; nothing in-process is faked.
pub struct ThrottlingProxy {
    endpoint: String,
    marker: Arc<std::sync::Mutex<Option<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl ThrottlingProxy {
    pub async fn start(upstream: &str) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;

        let marker: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let upstream = upstream.to_string();
        let client = reqwest::Client::new();
        let state = marker.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (client, upstream, marker) = (client.clone(), upstream.clone(), state.clone());
                async move {
                    let target = headers
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let is_write = target.ends_with(".TransactWriteItems")
                        || target.ends_with(".PutItem")
                        || target.ends_with(".UpdateItem");
                    let throttled = marker.lock().unwrap().as_ref().is_some_and(|m| {
                        is_write && String::from_utf8_lossy(&body).contains(m.as_str())
                    });
                    if throttled {
                        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                        return (
                            StatusCode::BAD_REQUEST,
                            [("content-type", "application/x-amz-json-1.0")],
                            body,
                        )
                            .into_response();
                    }
                    let mut request = client.request(
                        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                        format!("{upstream}{uri}"),
                    );
                    for (name, value) in headers.iter() {
                        if name != "host" && name != "content-length" {
                            request = request.header(name.as_str(), value.as_bytes());
                        }
                    }
                    let response = request.body(body).send().await.unwrap();
                    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                    let mut out = HeaderMap::new();
                    for (name, value) in response.headers() {
                        if name != "content-length" && name != "transfer-encoding" {
                            out.insert(
                                axum::http::HeaderName::from_bytes(name.as_str().as_bytes())
                                    .unwrap(),
                                axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                            );
                        }
                    }
                    (status, out, response.bytes().await.unwrap()).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint,
            marker,
            server,
        }
    }

    /// Throttle every write whose request mentions `key` (e.g. a stream id).
    pub fn throttle(&self, key: &str) {
        *self.marker.lock().unwrap() = Some(key.to_string());
    }

    pub fn stop_throttling(&self) {
        *self.marker.lock().unwrap() = None;
    }

    /// A migrated ledger reached through this proxy. The SDK's own retries are off so the
    /// adapter's bounded backoff is the only wait before it reports `Throttled`.
    pub async fn store(&self) -> TestStore {
        let config = moto()
            .sdk_config()
            .await
            .into_builder()
            .endpoint_url(&self.endpoint)
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build();
        let prefix = unique_name("throttled");
        dynamodb::migrate_with(&config, &prefix)
            .await
            .expect("migrate");
        TestStore {
            log: Arc::new(
                DynamoDbLedger::open_with(&config, &prefix)
                    .await
                    .expect("open"),
            ),
            prefix,
        }
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}
