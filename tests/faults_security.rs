//! Fault family 8, security, through the real entry points: callouts whose signature is forged,
//! cut from another body, re-stamped or replayed are refused (or, replayed verbatim inside the
//! window, recorded once); a whole sync run (`ledger ingest` + `ledger worker` against the
//! sandbox, with token expiry and 5xx) leaks no client secret or access token into its logs,
//! errors, ledger events or views; the audit API handler refuses any request without an IAM
//! caller; a client secret the token endpoint refuses, and panics over values that hold
//! secrets, show no secret either. (No IAM wildcard in the template is asserted by tests/template_checks.rs.)

mod common;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use common::fault_world::{fields, World};
use common::ingest_fixtures::{callout_request, fixture, signature_header};
use sandbox::{Faults, RegisteredClient, SandboxConfig, System};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sync_ledger::connectors::config::ConnectorsConfig;
use sync_ledger::connectors::ApiToken;
use sync_ledger::ingest::signature::CalloutSecret;
use sync_ledger::lambda::audit_api::AuditApi;
use sync_ledger::lambda::ingest::IngestHandler;
use sync_ledger::ledger::{EventLog, SqliteLedger};
use sync_ledger::views::sqlite::SqliteViewStore;

const CALLOUT_SECRET: &str = "faults-callout-secret-7f3a";

fn status_and_body(response: &Value) -> (i64, Value) {
    let body = response["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (response["statusCode"].as_i64().unwrap(), body)
}

fn embedded_ledger(dir: &Path) -> (PathBuf, Arc<SqliteLedger>) {
    let path = dir.join("ledger.db");
    sync_ledger::ledger::sqlite::migrate(&path).unwrap();
    let log = Arc::new(SqliteLedger::open(&path).unwrap());
    (path, log)
}

#[tokio::test]
async fn forged_cut_restamped_and_replayed_callouts_are_refused_or_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = embedded_ledger(dir.path());
    let h = IngestHandler::new(log.clone(), CalloutSecret::new(CALLOUT_SECRET).unwrap());
    let body = fixture("zuora/account_created.json");
    let other = fixture("zuora/subscription_created.json");
    let now = chrono::Utc::now().timestamp();
    let captured = signature_header(CALLOUT_SECRET, &body, now);
    let captured_value = captured[0].1.clone();
    let mac = captured_value.split("v1=").nth(1).unwrap().to_string();

    let refused = [
        // A signature captured from one callout pasted onto another body.
        ("cut from another body", other.clone(), captured.clone()),
        // The captured MAC with a fresh timestamp: the MAC covers the timestamp.
        (
            "re-stamped",
            body.clone(),
            vec![("x-zuora-signature", format!("t={},v1={mac}", now + 10))],
        ),
        // A capture replayed after the tolerance window.
        (
            "replayed late",
            body.clone(),
            signature_header(CALLOUT_SECRET, &body, now - 3600),
        ),
        (
            "forged with a guessed secret",
            body.clone(),
            signature_header("callout-secret", &body, now),
        ),
        (
            "empty MAC",
            body.clone(),
            vec![("x-zuora-signature", format!("t={now},v1="))],
        ),
    ];
    for (case, b, headers) in &refused {
        let (status, reply) =
            status_and_body(&h.handle(callout_request(b, headers)).await.unwrap());
        assert_eq!(status, 401, "{case}: {reply}");
        assert!(!reply.to_string().contains(CALLOUT_SECRET), "{case}");
        assert!(!reply.to_string().contains(&mac), "{case}: no MAC echoed");
    }
    assert!(
        log.read_all(None, None, 100).await.unwrap().is_empty(),
        "refused callouts record nothing"
    );

    // The genuine callout, then the same bytes replayed inside the window: recorded once.
    for expected in ["appended", "already_recorded", "already_recorded"] {
        let (status, reply) =
            status_and_body(&h.handle(callout_request(&body, &captured)).await.unwrap());
        assert_eq!((status, reply), (200, json!({"outcome": expected})));
    }
    assert_eq!(log.read_all(None, None, 100).await.unwrap().len(), 1);
    eprintln!(
        "faults_security: callouts: {} forged/replayed variants refused (401), 1 genuine recorded once over 3 deliveries",
        refused.len()
    );
}

fn audit_request(authorizer: Option<Value>) -> ApiGatewayV2httpRequest {
    let mut r: Value = serde_json::from_str(&fixture("aws/function_url_request.json")).unwrap();
    r["rawPath"] = json!("/audit/001xx000003DGb2AAG");
    r["requestContext"]["http"]["method"] = json!("GET");
    r["requestContext"]["http"]["path"] = json!("/audit/001xx000003DGb2AAG");
    if let Some(a) = authorizer {
        r["requestContext"]["authorizer"] = a;
    }
    serde_json::from_value(r).unwrap()
}

#[tokio::test]
async fn the_audit_api_refuses_requests_without_an_iam_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = embedded_ledger(dir.path());
    let views = Arc::new(SqliteViewStore::open(&path).unwrap());
    let api = AuditApi::new(log, views);
    let refused = [
        ("unauthenticated", None),
        (
            "JWT instead of IAM",
            Some(json!({"jwt": {"claims": {"sub": "someone"}, "scopes": null}})),
        ),
        ("IAM without a caller", Some(json!({"iam": {}}))),
    ];
    for (case, authorizer) in refused {
        let response = api.handle(audit_request(authorizer)).await;
        assert_eq!(response.status_code, 403, "{case}");
    }
    // The same request signed by an IAM caller is answered (nothing recorded for the id).
    let signed = audit_request(Some(json!({"iam": {
        "accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
        "callerId": "AIDAEXAMPLE", "userArn": "arn:aws:iam::123456789012:user/ops",
        "userId": "AIDAEXAMPLE"
    }})));
    let response = api.handle(signed).await;
    assert_ne!(response.status_code, 403, "an IAM caller is let through");
    eprintln!("faults_security: audit API: 3 unauthenticated variants refused (403), IAM caller answered {}", response.status_code);
}

/// Every `(crm|billing)-<32 hex>` in `text`: the shape of the sandbox's access tokens.
fn token_like(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["crm-", "billing-"] {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            if hex.len() == 32 {
                found.push(format!("{prefix}{hex}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_sync_run_leaks_no_secret_or_token_into_logs_events_or_views() {
    let crm_secret = format!("crm-client-secret-{}", uuid::Uuid::new_v4().simple());
    let billing_secret = format!("billing-client-secret-{}", uuid::Uuid::new_v4().simple());
    let config = SandboxConfig {
        crm_client: RegisteredClient::new("faults-crm", &crm_secret),
        billing_client: RegisteredClient::new("faults-billing", &billing_secret),
        ..SandboxConfig::default()
    };
    // Everything our code logs, at every level.
    let run = World::with_config(config, "debug,sync_ledger=trace").await;
    for i in 0..3 {
        let name = format!("Leak Check {i}");
        run.sandbox
            .crm_user_create(
                "Account",
                fields(json!({"Name": name, "CurrencyIsoCode": "USD"})),
            )
            .unwrap();
    }
    // Failures and refreshes are where secrets tend to slip into messages.
    run.sandbox.set_faults(
        System::Billing,
        Faults {
            fail_next: 2,
            ..Faults::default()
        },
    );
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 8, "sync did not settle");
        run.sandbox.expire_tokens(None);
        let delivered = run.deliver_outbox().await;
        run.work().await;
        if delivered == 0 {
            break;
        }
    }
    assert_eq!(run.sandbox.billing_accounts().len(), 3, "the run synced");
    let calls = run.sandbox.calls();
    let refreshes = calls.count("POST /oauth/token") + calls.count("POST /services/oauth2/token");
    assert!(refreshes >= 2, "tokens were fetched and refreshed");

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(run.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("ledger.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored).into_owned();
    let captured = run.captured.lock().unwrap().clone();
    for (what, text) in [("logs", &captured), ("ledger + views", &stored)] {
        for secret in [&crm_secret, &billing_secret] {
            assert!(!text.contains(secret.as_str()), "{what} contain a secret");
        }
        let tokens = token_like(text);
        assert!(
            tokens.is_empty(),
            "{what} contain {} access token(s)",
            tokens.len()
        );
    }
    eprintln!(
        "faults_security: whole run: {} bytes of logs and {} bytes of store scanned, {rounds} rounds, {refreshes} token fetches, 0 secrets, 0 tokens",
        captured.len(),
        stored.len()
    );
}

/// What a panic over `value` prints (`unwrap`, `expect` and `panic!("{:?}")` format it with
/// `Debug`), in both forms; formatted directly so no panic noise reaches the test output.
fn panic_message(value: &dyn std::fmt::Debug) -> String {
    format!("{value:?} {value:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_secret_and_panics_over_secret_values_show_no_secret() {
    let billing_secret = format!("billing-client-secret-{}", uuid::Uuid::new_v4().simple());
    let config = SandboxConfig {
        billing_client: RegisteredClient::new("faults-billing", &billing_secret),
        ..SandboxConfig::default()
    };
    let w = World::with_config(config, "debug,sync_ledger=trace").await;
    w.sandbox
        .crm_user_create(
            "Account",
            fields(json!({"Name": "Refused Ltd", "CurrencyIsoCode": "USD"})),
        )
        .unwrap();
    w.deliver_outbox().await;
    // A near miss of the real secret: the token endpoint refuses it. The refusal, its retries
    // and whatever is recorded about it must name neither value.
    let wrong = format!("{billing_secret}-rotated-away");
    let out = w
        .command(World::WORKER)
        .env("BILLING_CLIENT_SECRET", &wrong)
        .output()
        .await
        .unwrap();
    w.capture(&out);
    assert!(
        w.sandbox.billing_accounts().is_empty(),
        "the refused secret must not have synced anything"
    );
    let refusals = w
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.route == "/oauth/token" && c.status >= 400)
        .count();
    assert!(refusals > 0, "the token endpoint refused the wrong secret");
    let failed = w.events_of_type("SyncFailed").await;
    let captured = w.captured.lock().unwrap().clone();
    let stored = String::from_utf8_lossy(&std::fs::read(w.db()).unwrap()).into_owned();
    for (what, text) in [("logs and errors", &captured), ("ledger + views", &stored)] {
        for secret in [&billing_secret, &wrong] {
            assert!(!text.contains(secret.as_str()), "{what} contain a secret");
        }
    }

    // Values that hold secrets, as a panic would print them.
    let env: std::collections::BTreeMap<&str, String> = w.env().into_iter().collect();
    let connectors = ConnectorsConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let token = ApiToken::new(billing_secret.clone()).unwrap();
    let callout = CalloutSecret::new(CALLOUT_SECRET).unwrap();
    let mut panics = 0;
    for message in [
        panic_message(&connectors),
        panic_message(&token),
        panic_message(&callout),
    ] {
        panics += 1;
        for secret in [billing_secret.as_str(), CALLOUT_SECRET] {
            assert!(
                !message.contains(secret),
                "a panic shows a secret: {message}"
            );
        }
    }
    eprintln!(
        "faults_security: refused secret: {refusals} token refusals, {} SyncFailed ({:?}), {} bytes of logs and {} bytes of store scanned, 0 secrets; {panics} panics over secret-carrying values show none",
        failed.len(),
        failed.first().map(|e| e.payload["reason"].clone()),
        captured.len(),
        stored.len()
    );
}
