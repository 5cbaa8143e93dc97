//! The token provider: reading `/apiTokens/<service>` through a Parameters and Secrets
//! extension-shaped endpoint (its own port, header checked), through SSM (moto), falling back
//! from one to the other, and the one re-read after a 401 with a token rotated in SSM.

mod common;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use common::moto::moto;
use projections::CorrelationId;
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_ledger::connectors::billing::NewAccount;
use sync_ledger::connectors::token::{
    ExtensionOrSsm, ExtensionStore, SsmStore, TokenError, TokenSource,
};
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, IdempotencyKey, ServiceName, TokenProvider,
};

const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjE-session-token";

/// What the fake extension saw.
#[derive(Default)]
struct Seen {
    requests: Vec<(HashMap<String, String>, Option<String>)>,
}

type ExtensionState = (Arc<HashMap<String, String>>, Arc<Mutex<Seen>>);

/// An endpoint shaped like the AWS Parameters and Secrets Lambda Extension: it answers
/// `GET /systemsmanager/parameters/get` like `GetParameter`, only with the session token.
async fn extension(values: HashMap<String, String>) -> (url::Url, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = (Arc::new(values), seen.clone());
    let app = Router::new()
        .route(
            "/systemsmanager/parameters/get",
            get(
                |State((values, seen)): State<ExtensionState>,
                 Query(query): Query<HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    let token = headers
                        .get("x-aws-parameters-secrets-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    seen.lock().unwrap().requests.push((query.clone(), token.clone()));
                    if token.as_deref() != Some(SESSION_TOKEN) {
                        return (StatusCode::UNAUTHORIZED, "missing or wrong session token")
                            .into_response();
                    }
                    let name = query.get("name").cloned().unwrap_or_default();
                    match values.get(&name) {
                        Some(value) => Json(json!({
                            "Parameter": {
                                "ARN": format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
                                "DataType": "text", "LastModifiedDate": "2026-11-26T06:00:00Z",
                                "Name": name, "Selector": null, "SourceResult": null,
                                "Type": "SecureString", "Value": value, "Version": 3,
                            },
                            "ResultMetadata": {},
                        }))
                        .into_response(),
                        None => (
                            StatusCode::BAD_REQUEST,
                            "an error occurred (ParameterNotFound) when referencing Secrets Manager",
                        )
                            .into_response(),
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn session() -> ApiToken {
    ApiToken::new(SESSION_TOKEN).unwrap()
}

#[tokio::test]
async fn a_token_is_read_through_the_extension_with_the_session_token_header_and_cached() {
    let (url, seen) = extension(HashMap::from([(
        "/apiTokens/crm".to_string(),
        "crm-token-value".to_string(),
    )]))
    .await;
    let provider = TokenProvider::new(
        Arc::new(ExtensionStore::new(url, session())),
        Duration::from_secs(300),
    );

    let token = provider.token(&ServiceName::crm()).await.unwrap();
    let again = provider.token(&ServiceName::crm()).await.unwrap();

    assert_eq!(token.expose_secret(), "crm-token-value");
    assert_eq!(again, token);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.requests.len(),
        1,
        "the second read came from the cache"
    );
    let (query, header) = &seen.requests[0];
    assert_eq!(header.as_deref(), Some(SESSION_TOKEN));
    assert_eq!(query["name"], "/apiTokens/crm");
    assert_eq!(query["withDecryption"], "true");
}

#[tokio::test]
async fn an_invalidated_token_is_read_again() {
    let (url, seen) = extension(HashMap::from([(
        "/apiTokens/billing".to_string(),
        "billing-token".to_string(),
    )]))
    .await;
    let provider = TokenProvider::new(
        Arc::new(ExtensionStore::new(url, session())),
        Duration::from_secs(300),
    );
    provider.token(&ServiceName::billing()).await.unwrap();

    provider.invalidate(&ServiceName::billing());
    provider.token(&ServiceName::billing()).await.unwrap();

    assert_eq!(seen.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn extension_refusals_and_missing_parameters_are_told_apart() {
    let (url, _) = extension(HashMap::new()).await;
    let wrong_session = ExtensionStore::new(url.clone(), ApiToken::new("stale").unwrap());
    let right_session = ExtensionStore::new(url, session());
    use sync_ledger::connectors::token::SecretReader;

    let denied = wrong_session.read("/apiTokens/crm").await.unwrap_err();
    let missing = right_session.read("/apiTokens/crm").await.unwrap_err();

    assert!(matches!(denied, TokenError::Denied { .. }), "{denied}");
    assert!(!denied.is_transient());
    assert!(matches!(missing, TokenError::NotFound { .. }), "{missing}");
    assert!(!format!("{denied} {denied:?}").contains(SESSION_TOKEN));
}

fn unique_service() -> ServiceName {
    ServiceName::parse(&format!("billing-{}", uuid::Uuid::now_v7().simple())).unwrap()
}

async fn put_token(ssm: &aws_sdk_ssm::Client, service: &ServiceName, token: &str) -> i64 {
    ssm.put_parameter()
        .name(service.parameter_name())
        .value(token)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap()
        .version()
}

#[tokio::test]
async fn without_the_extension_tokens_come_from_ssm() {
    let ssm = moto().ssm().await;
    let service = unique_service();
    put_token(&ssm, &service, "from-ssm").await;
    // Nothing listens where the extension would be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = url::Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let store = ExtensionOrSsm::new(
        ExtensionStore::new(nowhere, session()),
        SsmStore::new(ssm.clone()),
    );
    let provider = TokenProvider::new(Arc::new(store), Duration::from_secs(300));

    let token = provider.token(&service).await.unwrap();

    assert_eq!(token.expose_secret(), "from-ssm");
    let missing = provider
        .token(&ServiceName::parse("nobody-here").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(missing, TokenError::NotFound { .. }), "{missing}");
}

#[tokio::test]
async fn a_401_re_reads_the_token_rotated_in_ssm_once_and_succeeds() {
    let ssm = moto().ssm().await;
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let service = unique_service();
    put_token(
        &ssm,
        &service,
        sandbox.issue_token(System::Billing).expose_secret(),
    )
    .await;
    let provider = Arc::new(TokenProvider::new(
        Arc::new(SsmStore::new(ssm.clone())),
        Duration::from_secs(300),
    ));
    let client =
        BillingClient::new(ClientConfig::new(sandbox.url(), service.clone()), provider).unwrap();
    let account = |name: &str| NewAccount {
        name: name.into(),
        currency: "USD".into(),
        ..NewAccount::default()
    };
    client
        .create_account(
            &account("First"),
            &IdempotencyKey::parse("e1:create").unwrap(),
            CorrelationId::new(),
        )
        .await
        .unwrap();

    // The old token dies; the rotator has written a new version.
    sandbox.expire_tokens(Some(System::Billing));
    put_token(
        &ssm,
        &service,
        sandbox.issue_token(System::Billing).expose_secret(),
    )
    .await;
    client
        .create_account(
            &account("Second"),
            &IdempotencyKey::parse("e2:create").unwrap(),
            CorrelationId::new(),
        )
        .await
        .expect("one refresh from SSM, then success");

    let statuses: Vec<u16> = sandbox.call_log().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![200, 401, 200]);
    assert_eq!(sandbox.billing_accounts().len(), 2);
}
