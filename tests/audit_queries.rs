//! Audit queries through every entry point: `ledger audit` (tree and `--json`) by correlation
//! id, CRM id and Billing id; the `audit_api` Lambda handler on HTTP API v2 requests (200, 400,
//! 403, 404, 405); and `ledger serve` over real HTTP. The ledger is seeded through the
//! `EventLog` port with the events a sync records (inbound -> outcome + mirror -> echo), and
//! the correlation view is built by `ledger replay`.

use projections::catalogue::DomainEvent;
use projections::{CorrelationId, NewEvent, RecordedEvent, Source, SourceEventId, StreamId};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::lambda::audit_api::AuditApi;
use sync_ledger::ledger::{open_store, EventLog, ExpectedVersion};
use sync_ledger::views::open_views;

const CRM_ID: &str = "001Dn00000AudtIAH";
const BILLING_ID: &str = "8ad09be48f3aaud1";

/// The traces of one account's day, as the projectors record them.
struct Day {
    dir: tempfile::TempDir,
    /// CRM account created -> Billing account created (outcome + mirror).
    created: CorrelationId,
    /// Billing's callout about the account we created -> echo suppressed.
    echo: CorrelationId,
    /// A later CRM rename whose Billing update failed.
    failed: CorrelationId,
}

fn domain(event_type: &str, payload: Value) -> DomainEvent {
    DomainEvent::decode(event_type, payload).unwrap()
}

async fn append(log: &dyn EventLog, event: NewEvent) -> RecordedEvent {
    let stream = event.stream_id.clone();
    let before = log.read_stream(&stream, 1).await.unwrap().len();
    log.append(&stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
    log.read_stream(&stream, 1).await.unwrap().remove(before)
}

fn inbound(
    stream: &str,
    source: Source,
    id: &str,
    correlation: CorrelationId,
    event: &DomainEvent,
) -> NewEvent {
    NewEvent::from_domain(
        StreamId::parse(stream).unwrap(),
        source,
        SourceEventId::parse(id).unwrap(),
        correlation,
        None,
        chrono::Utc::now(),
        event,
    )
}

impl Day {
    async fn seed() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let day = Self {
            dir,
            created: CorrelationId::new(),
            echo: CorrelationId::new(),
            failed: CorrelationId::new(),
        };
        day.ledger(&["migrate"]);
        let log = open_store(&day.store(), &AwsConfig::lazy()).await.unwrap();
        let log = log.as_ref();
        let crm_stream = format!("crm-account-{CRM_ID}");
        let billing_stream = format!("billing-account-{BILLING_ID}");

        let upsert = append(
            log,
            inbound(
                &crm_stream,
                Source::Crm,
                "AccountChangeEvent:77001",
                day.created,
                &domain(
                    "CrmAccountUpserted",
                    json!({"account_id": CRM_ID, "name": "Audit Co", "currency": "USD"}),
                ),
            ),
        )
        .await;
        let synced = json!({"projection": "account-sync", "direction": "crm->billing", "action": "created",
            "crm_id": CRM_ID, "billing_id": BILLING_ID, "written": {"name": "Audit Co", "currency": "USD"}});
        append(
            log,
            NewEvent::caused_by(
                &upsert,
                upsert.stream_id.clone(),
                "billing-create-account",
                chrono::Utc::now(),
                &domain("AccountSynced", synced.clone()),
            ),
        )
        .await;
        let mut mirror = synced;
        mirror["mirror"] = json!(true);
        append(
            log,
            NewEvent::caused_by(
                &upsert,
                StreamId::parse(billing_stream.as_str()).unwrap(),
                "billing-create-account:mirror",
                chrono::Utc::now(),
                &domain("AccountSynced", mirror),
            ),
        )
        .await;

        let callout = append(
            log,
            inbound(
                &billing_stream,
                Source::Billing,
                "zuora-evt-aud-1",
                day.echo,
                &domain(
                    "BillingAccountCreated",
                    json!({"account_id": BILLING_ID, "name": "Audit Co", "crm_id": CRM_ID,
                "currency": "USD", "origin": "sync-ledger"}),
                ),
            ),
        )
        .await;
        append(
            log,
            NewEvent::caused_by(
                &callout,
                callout.stream_id.clone(),
                "echo",
                chrono::Utc::now(),
                &domain(
                    "EchoSuppressed",
                    json!({"projection": "account-sync", "reason": "our own write came back"}),
                ),
            ),
        )
        .await;

        let rename = append(
            log,
            inbound(
                &crm_stream,
                Source::Crm,
                "AccountChangeEvent:77002",
                day.failed,
                &domain(
                    "CrmAccountUpserted",
                    json!({"account_id": CRM_ID, "name": "Audit Company", "currency": "USD",
                "billing_account_id": BILLING_ID}),
                ),
            ),
        )
        .await;
        append(
            log,
            NewEvent::caused_by(
                &rename,
                rename.stream_id.clone(),
                "billing-update-account:failed",
                chrono::Utc::now(),
                &domain(
                    "SyncFailed",
                    json!({"projection": "account-sync",
                "reason": "billing answered 400: invalid currency", "attempts": 1}),
                ),
            ),
        )
        .await;

        day.ledger(&["replay", "--projection", "correlation"]);
        day
    }

    fn store(&self) -> StoreUrl {
        StoreUrl::Sqlite(self.path())
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(args)
            .env(
                "LEDGER_STORE",
                format!("sqlite://{}", self.path().display()),
            )
            .env_remove("RUST_LOG");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ledger(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ledger {args:?}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn audit_json(&self, id: &str) -> Value {
        serde_json::from_str(&self.ledger(&["audit", id, "--json"])).unwrap()
    }
}

fn chain_ids(report: &Value) -> Vec<String> {
    report["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["correlation_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn audit_by_correlation_id_prints_the_causal_tree() {
    let day = Day::seed().await;
    let text = day.ledger(&["audit", &day.created.to_string()]);
    assert!(
        text.contains(&format!("correlation {}: 3 events", day.created)),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().collect();
    let root = rows
        .iter()
        .position(|l| l.contains("CrmAccountUpserted"))
        .expect(&text);
    assert!(
        rows[root].contains("inbound") && rows[root].contains("name=Audit Co"),
        "{text}"
    );
    assert!(
        rows[root].contains(&format!("crm-account-{CRM_ID} v1")),
        "{text}"
    );
    let outcome = rows
        .iter()
        .find(|l| l.contains("├─ AccountSynced"))
        .expect(&text);
    assert!(
        outcome.contains("synced") && outcome.contains("call billing-create-account"),
        "{text}"
    );
    assert!(
        outcome.contains(&format!(
            "crm->billing created crm {CRM_ID} <-> billing {BILLING_ID}"
        )),
        "{text}"
    );
    let mirror = rows
        .iter()
        .find(|l| l.contains("└─ AccountSynced"))
        .expect(&text);
    assert!(
        mirror.contains("synced (mirror)")
            && mirror.contains(&format!("billing-account-{BILLING_ID} v1")),
        "{text}"
    );

    let json = day.audit_json(&day.created.to_string());
    assert_eq!(json["resolved"]["kind"], "correlation_id");
    let roots = json["chains"][0]["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["event_type"], "CrmAccountUpserted");
    assert_eq!(roots[0]["status"], "inbound");
    let children = roots[0]["children"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        assert_eq!(child["causation_id"], roots[0]["event_id"]);
        assert_eq!(child["call"], "billing-create-account");
        assert!(
            child["recorded_at"].as_str().unwrap() >= roots[0]["recorded_at"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn audit_by_crm_id_returns_every_trace_of_the_account_complete() {
    let day = Day::seed().await;
    let json = day.audit_json(CRM_ID);
    assert_eq!(json["resolved"]["kind"], "entity_id");
    let matched = &json["resolved"]["matches"][0];
    assert_eq!(
        (matched["side"].as_str(), matched["entity"].as_str()),
        (Some("crm"), Some("account"))
    );
    assert_eq!(matched["linked_to"], json!([BILLING_ID]));
    assert_eq!(
        chain_ids(&json),
        vec![day.created.to_string(), day.failed.to_string()]
    );
    // The creation trace is complete, including the mirror recorded on the Billing stream.
    assert_eq!(json["chains"][0]["events"], 3);
    let failed = &json["chains"][1]["roots"][0]["children"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("invalid currency"),
        "{failed}"
    );
    assert_eq!(failed["call"], "billing-update-account");

    let text = day.ledger(&["audit", CRM_ID]);
    assert!(
        text.starts_with(&format!(
            "crm account {CRM_ID} (linked to billing {BILLING_ID}): 2 correlation id(s)"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn audit_by_billing_id_returns_the_sync_and_its_echo() {
    let day = Day::seed().await;
    let json = day.audit_json(BILLING_ID);
    assert_eq!(json["resolved"]["matches"][0]["side"], "billing");
    assert_eq!(
        chain_ids(&json),
        vec![day.created.to_string(), day.echo.to_string()]
    );
    assert_eq!(json["chains"][0]["events"], 3);
    let echo = &json["chains"][1]["roots"][0];
    assert_eq!(echo["event_type"], "BillingAccountCreated");
    assert_eq!(echo["children"][0]["status"], "echo suppressed");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_refused_clearly() {
    let day = Day::seed().await;
    let unknown = day.run(&["audit", "001Dn00000NobodyXX"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("nothing recorded for \"001Dn00000NobodyXX\""));
    let bad = day.run(&["audit", "a/b"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("id: must not contain"),
        "{:?}",
        bad
    );
}

/// An HTTP API v2 (payload format 2.0) request for `GET /audit/{proxy+}` as API Gateway sends
/// it with the `AWS_IAM` authorizer (shape from the API Gateway developer guide, "payload
/// format version 2.0"); `iam` is dropped to model an unauthenticated context.
fn http_request(
    id: &str,
    method: &str,
    iam: bool,
) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut request = json!({
        "version": "2.0",
        "routeKey": "GET /audit/{proxy+}",
        "rawPath": format!("/audit/{id}"),
        "rawQueryString": "",
        "headers": {"accept": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "pathParameters": {"proxy": id},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": {"iam": {
                "accessKey": "ASIAEXAMPLE", "accountId": "123456789012", "callerId": "AROAEXAMPLE:ops",
                "principalOrgId": null, "userArn": "arn:aws:sts::123456789012:assumed-role/ops/alice", "userId": "AROAEXAMPLE:ops"
            }},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": format!("/audit/{id}"), "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "curl/8"},
            "requestId": "req-1",
            "routeKey": "GET /audit/{proxy+}",
            "stage": "$default",
            "time": "26/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1795680000000u64
        },
        "isBase64Encoded": false
    });
    if !iam {
        request["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
    }
    serde_json::from_value(request).unwrap()
}

fn body(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Value {
    match response.body.as_ref().unwrap() {
        aws_lambda_events::encodings::Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

#[tokio::test]
async fn the_audit_api_handler_answers_http_api_requests() {
    let day = Day::seed().await;
    let api = AuditApi::new(
        open_store(&day.store(), &AwsConfig::lazy()).await.unwrap(),
        open_views(&day.store(), &AwsConfig::lazy()).await.unwrap(),
    );

    let ok = api.handle(http_request(CRM_ID, "GET", true)).await;
    assert_eq!(ok.status_code, 200);
    assert_eq!(ok.headers["content-type"], "application/json");
    assert_eq!(
        chain_ids(&body(&ok)),
        vec![day.created.to_string(), day.failed.to_string()]
    );
    let by_trace = api
        .handle(http_request(&day.echo.to_string(), "GET", true))
        .await;
    assert_eq!(
        (
            by_trace.status_code,
            body(&by_trace)["chains"][0]["events"].as_u64()
        ),
        (200, Some(2))
    );

    let unsigned = api.handle(http_request(CRM_ID, "GET", false)).await;
    assert_eq!(unsigned.status_code, 403);
    assert!(body(&unsigned)["error"].as_str().unwrap().contains("IAM"));
    assert!(
        !body(&unsigned).to_string().contains("Audit Co"),
        "a 403 must not leak data"
    );

    let unknown = api
        .handle(http_request("001Dn00000NobodyXX", "GET", true))
        .await;
    assert_eq!(unknown.status_code, 404);
    let bad = api.handle(http_request("x#y", "GET", true)).await;
    assert_eq!(bad.status_code, 400);
    assert!(
        body(&bad)["error"].as_str().unwrap().starts_with("id: "),
        "{:?}",
        body(&bad)
    );
    let post = api.handle(http_request(CRM_ID, "POST", true)).await;
    assert_eq!(post.status_code, 405);
}

#[tokio::test]
async fn ledger_serve_answers_the_same_query_over_http() {
    let day = Day::seed().await;
    let mut server = Server(
        day.command(&["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/audit/{id}"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let ok = reqwest::get(format!("{base}/audit/{BILLING_ID}"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let json: Value = ok.json().await.unwrap();
    assert_eq!(
        chain_ids(&json),
        vec![day.created.to_string(), day.echo.to_string()]
    );
    let missing = reqwest::get(format!("{base}/audit/{}", CorrelationId::new()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The `ledger serve` process, stopped when the test ends (also when an assert fails).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
