//! The compiled `token_rotator` binary through a local Lambda Runtime API: configured only by
//! environment (as the template sets it), it rotates a token on a scheduled invocation against
//! moto and the sandbox, and a missing variable fails init naming every one that is missing.

mod common;

use common::runtime_api;

use common::ingest_store::fresh_store;
use common::moto::{moto, unique_name};
use projections::StreamId;
use runtime_api::LambdaProcess;
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rotates_on_a_scheduled_invocation() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let store = fresh_store().await;
    let service = unique_name("billing");
    let key = service.to_ascii_uppercase().replace('-', "_");
    let id_param = format!("/oauthClients/{service}/clientId");
    let secret_param = format!("/oauthClients/{service}/clientSecret");
    let salt_param = format!("/oauthClients/{service}/salt");
    moto().put_secure(&id_param, "sandbox-billing-client").await;
    moto()
        .put_secure(&secret_param, "sandbox-billing-secret")
        .await;
    moto().put_secure(&salt_param, "binary-test-salt").await;

    let lambda = LambdaProcess::spawn(
        env!("CARGO_BIN_EXE_token_rotator"),
        "sync-ledger-token-rotator",
        &moto().env_with(&[
            ("LEDGER_STORE", store.url()),
            ("TOKEN_ROTATOR_SERVICES", service.clone()),
            (
                &format!("TOKEN_URL_{key}"),
                sandbox.token_url(System::Billing).to_string(),
            ),
            (&format!("CLIENT_ID_PARAM_{key}"), id_param),
            (&format!("CLIENT_SECRET_PARAM_{key}"), secret_param),
            ("TOKEN_KMS_KEY_ID", "alias/aws/ssm".to_string()),
            ("TOKEN_FINGERPRINT_SALT_PARAM", salt_param),
            ("RUST_LOG", "trace".to_string()),
        ]),
    )
    .await;

    let answer = lambda
        .invoke(json!({
            "version": "0", "id": "0b6e2c4a-1f3d-4e5b-8c7a-9d0e1f2a3b4c",
            "detail-type": "Scheduled Event", "source": "aws.scheduler",
            "time": "2026-11-26T07:00:00Z", "region": "us-east-1", "resources": [], "detail": "{}"
        }))
        .await
        .unwrap()
        .expect_response();

    assert_eq!(answer["rotated"][0]["service"], json!(service), "{answer}");
    assert_eq!(answer["rotated"][0]["parameter_version"], 1);
    assert_eq!(
        answer["correlation_id"],
        "0b6e2c4a-1f3d-4e5b-8c7a-9d0e1f2a3b4c"
    );
    let token = moto()
        .ssm()
        .await
        .get_parameter()
        .name(format!("/apiTokens/{service}"))
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value
        .unwrap();
    let events = store
        .log()
        .read_stream(
            &StreamId::parse(format!("system-token-{service}")).unwrap(),
            1,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "TokenRotated");
    let logs = lambda.logs();
    assert!(logs.contains("token rotated"), "{logs}");
    assert!(!logs.contains(&token), "the token reached the logs");
    assert!(
        !logs.contains("sandbox-billing-secret"),
        "the client secret reached the logs"
    );
    assert!(
        !logs.contains("binary-test-salt"),
        "the salt reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_fails_init_naming_every_missing_variable() {
    let lambda = LambdaProcess::spawn(
        env!("CARGO_BIN_EXE_token_rotator"),
        "sync-ledger-token-rotator",
        &moto().env_with(&[("TOKEN_ROTATOR_SERVICES", "crm".to_string())]),
    )
    .await;

    let status = lambda.wait_exit(Duration::from_secs(60)).await;

    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let report = lambda.init_error().expect("reported to /init/error");
    assert_eq!(report["errorType"], "Runtime.ConfigError");
    let message = report["errorMessage"].as_str().unwrap();
    for name in [
        "TOKEN_URL_CRM",
        "TOKEN_KMS_KEY_ID",
        "TOKEN_FINGERPRINT_SALT",
        "LEDGER_STORE",
    ] {
        assert!(message.contains(name), "{name} not named: {message}");
    }
}
