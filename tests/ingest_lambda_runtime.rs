//! The compiled `ingest` binary run as Lambda runs it: spawned against a local Runtime API
//! (tests/common/runtime_api.rs), its secret in SSM and its DynamoDB ledger on moto reached
//! through the environment, answering real invocations over HTTP. Proves the `lambda_runtime` wiring,
//! the init-time config and secret reads, and the init failure report.

mod common;

use common::runtime_api;

use common::ingest_fixtures::{fixture, sqs_event};
use common::ingest_store::fresh_store;
use common::moto::moto;
use runtime_api::LambdaProcess;
use serde_json::{json, Value};
use std::time::Duration;
use sync_ledger::ingest::signature::CalloutSecret;

const SECRET: &str = "runtime-test-callout-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_binary_answers_sqs_and_callout_invocations_through_the_runtime_api() {
    let store = fresh_store().await;
    let param = format!(
        "/apiTokens/{}",
        common::moto::unique_name("billing-callout")
    );
    moto().put_secure(&param, SECRET).await;

    let lambda = LambdaProcess::spawn(
        env!("CARGO_BIN_EXE_ingest"),
        "sync-ledger-ingest",
        &moto().env_with(&[
            ("LEDGER_STORE", store.url()),
            ("CALLOUT_SECRET_PARAM", param.clone()),
        ]),
    )
    .await;

    let batch = sqs_event(&[
        ("m-good", fixture("salesforce/order_event_activated.json")),
        ("m-bad", fixture("bad/order_event_missing_account.json")),
    ]);
    let answer = lambda.invoke(batch).await.unwrap().expect_response();
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let body = fixture("zuora/account_created.json");
    let signature = CalloutSecret::new(SECRET)
        .unwrap()
        .sign(body.as_bytes(), chrono::Utc::now().timestamp());
    let mut request: Value =
        serde_json::from_str(&fixture("aws/function_url_request.json")).unwrap();
    request["body"] = json!(body);
    request["headers"]["x-zuora-signature"] = json!(signature);
    let answer = lambda
        .invoke(request.clone())
        .await
        .unwrap()
        .expect_response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    request["headers"]["x-zuora-signature"] = json!("t=1,v1=00");
    let refused = lambda.invoke(request).await.unwrap().expect_response();
    assert_eq!(refused["statusCode"], 401, "{refused}");

    let types: Vec<String> = store
        .log()
        .read_all(None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types.len(), 3, "{types:?}");
    for expected in [
        "CrmOrderActivated",
        "IngestRejected",
        "BillingAccountCreated",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing from {types:?}"
        );
    }
    let logs = lambda.logs();
    assert!(!logs.contains(SECRET), "the secret never reaches the logs");
    eprintln!(
        "ingest cold start: init {:?}, peak RSS {:?} KiB",
        lambda.init_duration(),
        lambda.peak_rss_kib()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_store_variable_fails_init_and_is_reported_naming_it() {
    let lambda = LambdaProcess::spawn(
        env!("CARGO_BIN_EXE_ingest"),
        "sync-ledger-ingest",
        &moto().env_with(&[]),
    )
    .await;
    let status = lambda.wait_exit(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "exits with failure: {status:?}"
    );
    let report = lambda
        .init_error()
        .expect("init failure reported to /init/error");
    assert_eq!(report["errorType"], "Runtime.ConfigError");
    assert!(
        report["errorMessage"]
            .as_str()
            .unwrap()
            .contains("LEDGER_STORE"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_secret_fails_init_naming_the_parameter() {
    let store = fresh_store().await;
    let lambda = LambdaProcess::spawn(
        env!("CARGO_BIN_EXE_ingest"),
        "sync-ledger-ingest",
        &moto().env_with(&[
            ("LEDGER_STORE", store.url()),
            (
                "CALLOUT_SECRET_PARAM",
                "/apiTokens/does-not-exist".to_string(),
            ),
        ]),
    )
    .await;
    lambda.wait_exit(Duration::from_secs(60)).await;
    let report = lambda
        .init_error()
        .expect("init failure reported to /init/error");
    assert_eq!(report["errorType"], "Runtime.SecretError");
    assert!(
        report["errorMessage"]
            .as_str()
            .unwrap()
            .contains("/apiTokens/does-not-exist"),
        "{report}"
    );
    assert!(
        lambda.invoke(json!({})).await.is_err(),
        "a dead function answers nothing"
    );
}
