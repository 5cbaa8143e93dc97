//! `ledger sandbox` as its own process, driven only through HTTP: OAuth, the Billing API,
//! fault knobs set at start and at runtime, call counters, the outbox and token expiry —
//! what the demo and out-of-process benchmarks rely on.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The sandbox process; killed (by its own handle) when the test ends.
struct Running {
    child: Child,
    ready: Value,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["sandbox", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ledger binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("ready line");
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Running { child, ready }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ready["sandbox"].as_str().unwrap())
    }
}

async fn billing_token(sandbox: &Running, secret: &str) -> reqwest::Response {
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={secret}",
        sandbox.ready["billing_client_id"].as_str().unwrap()
    );
    reqwest::Client::new()
        .post(sandbox.ready["billing_token_url"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sandbox_process_serves_faults_counters_outbox_and_tokens_over_http() {
    let sandbox = start(&[
        "--faults",
        r#"{"billing":{"throttle_next":1,"retry_after_secs":1}}"#,
    ]);
    let http = reqwest::Client::new();

    let refused = billing_token(&sandbox, "wrong-secret").await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let token: Value = billing_token(&sandbox, "sandbox-billing-secret")
        .await
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();

    let create = || {
        http.post(sandbox.url("v1/accounts"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "k-1")
            .json(&json!({"name": "Acme", "currency": "USD"}))
            .send()
    };
    let throttled = create().await.unwrap();
    assert_eq!(throttled.status(), 429, "the start-up fault applies");
    assert_eq!(throttled.headers()["retry-after"], "1");
    let created = create().await.unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["success"], true);

    // Runtime knobs: every Billing call now fails with 503.
    let set = http
        .put(sandbox.url("__admin/faults/billing"))
        .json(&json!({"fail_next": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let failed = http
        .get(sandbox.url(&format!(
            "v1/accounts/{}",
            created["accountId"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);

    let calls: Value = http
        .get(sandbox.url("__admin/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["by_route"]["POST /v1/accounts"], 2);
    assert_eq!(calls["by_route"]["GET /v1/accounts/{key}"], 1);
    assert_eq!(calls["by_route"]["POST /oauth/token"], 2);

    let drained: Vec<Value> = http
        .post(sandbox.url("__admin/outbox/drain"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(drained.len(), 1, "one account, one callout: {drained:?}");
    assert_eq!(drained[0]["event_type"], "AccountCreated");
    assert_eq!(drained[0]["body"]["account"]["name"], "Acme");
    let left: Vec<Value> = http
        .get(sandbox.url("__admin/outbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(left.is_empty());

    let person = http
        .post(sandbox.url("__admin/crm/Account"))
        .json(&json!({"Name": "Globex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(person.status(), 201);
    let outbox: Vec<Value> = http
        .get(sandbox.url("__admin/outbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(outbox[0]["event_type"], "AccountChangeEvent");

    let expired = http
        .post(sandbox.url("__admin/tokens/expire"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 204);
    let rejected = http
        .get(sandbox.url("v1/catalog/products"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 401);
}

#[tokio::test]
async fn bad_fault_json_at_start_is_refused_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "sandbox",
            "--port",
            "0",
            "--faults",
            "{\"billing\":{\"fail_next\":\"x\"}}",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--faults"), "{stderr}");
}
