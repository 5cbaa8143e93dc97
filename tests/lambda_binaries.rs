//! Every Lambda binary run as its deployed function: the compiled binary under the Runtime API
//! emulator (tests/common/runtime_api.rs), with exactly the environment `template.yaml` gives
//! that function (tests/common/template.rs resolves it for a test stack), against the
//! deploy's store (the DynamoDB tables of `migrations/dynamodb` on moto), the Parameters and
//! Secrets extension the template layers on (tests/common/params_extension.rs, backed by
//! moto's SSM), and invoked with the event its trigger in the template delivers. Proves the
//! template and the binaries fit.

mod common;

use common::params_extension;
use common::runtime_api;
use common::template;

use common::moto::{moto, unique_name};
use params_extension::ParamsExtension;
use runtime_api::LambdaProcess;
use sandbox::{Sandbox, SandboxConfig, System, STANDARD_PRICEBOOK_ID};
use serde_json::{json, Value};
use std::sync::OnceLock;
use sync_ledger::ingest::signature::{CalloutSecret, SIGNATURE_HEADER};
use sync_ledger::ledger::dynamodb::{migrate::migrate_with, DynamoDbLedger};
use sync_ledger::ledger::EventLog;
use template::{template, Stack};

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Lambda gives every function a session token; the extension only answers requests that
/// carry it.
const SESSION_TOKEN: &str = "test-session-token";

/// A deployed stack on moto: the template resolved with this prefix, its tables migrated,
/// and the extension layer's stand-in.
struct TestStack {
    prefix: String,
    stack: Stack,
    extension: ParamsExtension,
}

impl TestStack {
    async fn deploy() -> Self {
        Self::deploy_with(&[]).await
    }

    /// A stack with these parameter values over the test defaults.
    async fn deploy_with(parameters: &[(&str, &str)]) -> Self {
        // Within the template's Prefix pattern ([A-Za-z0-9_.-]{1,40}).
        let prefix = unique_name("it")[..30].to_string();
        let mut values = vec![
            ("Prefix", prefix.as_str()),
            ("SalesforceOrgId", "00Dxx0000001gEREAY"),
            ("SalesforceChannelId", "0YLxx0000000001GAA"),
            ("CrmBaseUrl", "https://example.my.salesforce.com"),
            ("CrmPricebookId", "01sxx0000000001AAA"),
        ];
        values.extend_from_slice(parameters);
        let stack = Stack::new(&values);
        migrate_with(&moto().sdk_config().await, &prefix)
            .await
            .expect("ledger migrate on moto");
        let extension = ParamsExtension::start(moto().ssm().await, SESSION_TOKEN).await;
        Self {
            prefix,
            stack,
            extension,
        }
    }

    /// What Lambda would run `logical` with: the template's variables, plus the credentials
    /// and endpoint that point the SDK at moto and the session token Lambda adds (the other
    /// runtime variables come from the emulator). The one deviation: the extension listens on
    /// a free port instead of the template's, so parallel tests cannot collide.
    fn env(&self, logical: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = moto()
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.push(("AWS_SESSION_TOKEN".to_string(), SESSION_TOKEN.to_string()));
        let port = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";
        let mut template_env = self.stack.function_env(logical);
        let slot = template_env
            .iter_mut()
            .find(|(k, _)| k == port)
            .unwrap_or_else(|| panic!("template sets {port} for {logical}"));
        slot.1 = self.extension.port().to_string();
        env.extend(template_env);
        env
    }

    fn var(&self, logical: &str, name: &str) -> String {
        self.stack
            .function_env(logical)
            .into_iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("template sets no {name} on {logical}"))
            .1
    }

    /// The function's deployed name (`FunctionName` in the template).
    fn function_name(&self, logical: &str) -> String {
        self.stack
            .resolve(&template()["Resources"][logical]["Properties"]["FunctionName"])
    }

    async fn spawn(&self, logical: &str, binary: &str) -> LambdaProcess {
        assert_eq!(
            template::binary_of(&template()["Resources"][logical]),
            Some(binary),
            "{logical} runs {binary}"
        );
        LambdaProcess::spawn(
            binary_path(binary),
            &self.function_name(logical),
            &self.env(logical),
        )
        .await
    }

    async fn ledger(&self) -> DynamoDbLedger {
        DynamoDbLedger::open_with(&moto().sdk_config().await, &self.prefix)
            .await
            .expect("open the stack's ledger")
    }

    async fn event_types(&self) -> Vec<String> {
        self.ledger()
            .await
            .read_all(None, None, 1000)
            .await
            .expect("read the ledger")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

fn binary_path(binary: &str) -> &'static str {
    match binary {
        "ingest" => env!("CARGO_BIN_EXE_ingest"),
        "projector" => env!("CARGO_BIN_EXE_projector"),
        "token_rotator" => env!("CARGO_BIN_EXE_token_rotator"),
        "audit_api" => env!("CARGO_BIN_EXE_audit_api"),
        "give_up_consumer" => env!("CARGO_BIN_EXE_give_up_consumer"),
        other => panic!("{other} is not a Lambda binary"),
    }
}

/// The SQS event Lambda's poller delivers from `SalesforceEventsQueue`: one record per
/// message, the EventBridge event (as the rule's target writes it) in `body`. Record shape:
/// the AWS SQS event sample (tests/fixtures/aws/sqs_record.json).
fn sqs_event(stack: &TestStack, bodies: &[(&str, String)]) -> Value {
    queue_event(stack, "SalesforceEventsQueue", bodies)
}

/// The SQS event Lambda's poller delivers from the template's queue `logical`.
fn queue_event(stack: &TestStack, logical: &str, bodies: &[(&str, String)]) -> Value {
    let queue = stack
        .stack
        .resolve(&template()["Resources"][logical]["Properties"]["QueueName"]);
    let record: Value = serde_json::from_str(&fixture("aws/sqs_record.json")).unwrap();
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            let mut r = record.clone();
            r["messageId"] = json!(id);
            r["body"] = json!(body);
            r["eventSourceARN"] = json!(format!(
                "arn:aws:sqs:{}:{}:{queue}",
                stack.stack.region, stack.stack.account_id
            ));
            r
        })
        .collect();
    json!({ "Records": records })
}

/// The HTTP API (payload 2.0) event of `LedgerHttpApi` for a route of the template, at
/// `raw_path` (which must fit the route; a `{proxy+}` route gets its path parameter): the
/// Function URL sample (same payload format) with the route's key and path.
fn http_api_event(
    logical: &str,
    event: &str,
    raw_path: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Value {
    let route = &template()["Resources"][logical]["Properties"]["Events"][event]["Properties"];
    let method = route["Method"].as_str().expect("route method");
    let path = route["Path"].as_str().expect("route path");
    let mut request: Value =
        serde_json::from_str(&fixture("aws/function_url_request.json")).unwrap();
    match path.strip_suffix("{proxy+}") {
        Some(prefix) => {
            let proxy = raw_path
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{raw_path} is not under the route {path}"));
            request["pathParameters"] = json!({ "proxy": proxy });
        }
        None => assert_eq!(raw_path, path, "the route {path} has no parameters"),
    }
    request["routeKey"] = json!(format!("{method} {path}"));
    request["rawPath"] = json!(raw_path);
    request["requestContext"]["routeKey"] = json!(format!("{method} {path}"));
    request["requestContext"]["http"]["method"] = json!(method);
    request["requestContext"]["http"]["path"] = json!(raw_path);
    request["requestContext"]["stage"] = json!("$default");
    request["body"] = json!(body);
    for (name, value) in headers {
        request["headers"][*name] = json!(value);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_function_records_queue_and_callout_events_with_the_template_environment() {
    let stack = TestStack::deploy().await;
    // The operator creates the callout secret where the template tells ingest to look.
    let secret_param = stack.var("IngestFunction", "CALLOUT_SECRET_PARAM");
    let secret = "deploy-test-callout-secret";
    moto()
        .ssm()
        .await
        .put_parameter()
        .name(&secret_param)
        .value(secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();

    let lambda = stack.spawn("IngestFunction", "ingest").await;

    let batch = sqs_event(
        &stack,
        &[
            ("m-order", fixture("salesforce/order_event_activated.json")),
            (
                "m-account",
                fixture("salesforce/account_change_create.json"),
            ),
        ],
    );
    let answer = lambda.invoke(batch).await.unwrap().expect_response();
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "{}",
        lambda.logs()
    );

    let body = fixture("zuora/account_created.json");
    let signature = CalloutSecret::new(secret)
        .unwrap()
        .sign(body.as_bytes(), chrono::Utc::now().timestamp());
    let callout = http_api_event(
        "IngestFunction",
        "BillingCallout",
        "/billing/callouts",
        &body,
        &[(SIGNATURE_HEADER, signature)],
    );
    let answer = lambda.invoke(callout).await.unwrap().expect_response();
    assert_eq!(answer["statusCode"], 200, "{answer}\n{}", lambda.logs());

    let mut types = stack.event_types().await;
    types.sort();
    assert_eq!(
        types,
        [
            "BillingAccountCreated",
            "CrmAccountUpserted",
            "CrmOrderActivated"
        ],
        "every delivery recorded once in the stack's events table"
    );
    assert!(
        !lambda.logs().contains(secret),
        "the secret never reaches the logs"
    );

    // What the projectors' event source mapping makes of these writes: the template's filter
    // passes the three events and drops their dedupe markers and the ledger's meta item.
    let records = stream_records(&stack).await;
    let filter = projector_filter("ProjectorAccountFunction");
    let (passed, dropped): (Vec<&Value>, Vec<&Value>) =
        records.iter().partition(|r| filter_matches(&filter, r));
    let mut passed_types: Vec<&str> = passed
        .iter()
        .map(|r| {
            r["dynamodb"]["NewImage"]["event_type"]["S"]
                .as_str()
                .unwrap_or("?")
        })
        .collect();
    passed_types.sort();
    assert_eq!(passed_types, types, "every event reaches the projectors");
    let dropped_kinds: std::collections::BTreeSet<&str> = dropped
        .iter()
        .map(|r| {
            r["dynamodb"]["NewImage"]["kind"]["S"]
                .as_str()
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(
        dropped_kinds,
        ["dedupe", "meta"].into(),
        "markers and bookkeeping never reach a projector"
    );
    assert_eq!(dropped.len(), 4, "3 dedupe markers + the meta item");
    eprintln!(
        "ingest (template env, DynamoDB): init {:?}, peak RSS {:?} KiB",
        lambda.init_duration(),
        lambda.peak_rss_kib()
    );
}

/// Lambda event filtering (the subset the template uses): every key of the pattern must be
/// in the record; an array lists the accepted values of a scalar, an object nests. Any other
/// pattern form panics, so a richer filter in the template cannot be checked by accident.
fn filter_matches(pattern: &Value, record: &Value) -> bool {
    let pattern = pattern.as_object().expect("a filter pattern is an object");
    pattern.iter().all(|(key, want)| {
        let Some(have) = record.get(key) else {
            return false;
        };
        match want {
            Value::Object(_) => filter_matches(want, have),
            Value::Array(accepted) => accepted.iter().any(|a| {
                assert!(
                    !a.is_object(),
                    "content filters ({a}) are not supported here"
                );
                a == have
            }),
            other => panic!("a filter pattern leaf must be an array, got {other}"),
        }
    })
}

/// The filter of the projector functions' stream mapping, from the template.
fn projector_filter(logical: &str) -> Value {
    let events = template()["Resources"][logical]["Properties"]["Events"]
        .as_object()
        .expect("projector has Events");
    let stream = events
        .values()
        .find(|e| e["Type"] == "DynamoDB")
        .expect("a DynamoDB stream mapping");
    let filters = stream["Properties"]["FilterCriteria"]["Filters"]
        .as_array()
        .expect("FilterCriteria.Filters");
    assert_eq!(filters.len(), 1, "one filter");
    serde_json::from_str(filters[0]["Pattern"].as_str().expect("Pattern is a string"))
        .expect("Pattern is JSON")
}

/// Every record of the stack's events table stream so far, shaped as Lambda's DynamoDB event
/// source delivers them (`Records[]` of the DynamoDB Streams event sample).
async fn stream_records(stack: &TestStack) -> Vec<Value> {
    let ledger = stack.ledger().await;
    let stream_arn = ledger.stream_arn().to_string();
    let streams = moto().dynamodb_streams().await;
    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .expect("DescribeStream");
    let shards = description
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard.shard_id().unwrap_or_default())
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(it) = iterator.take() {
            let page = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                let change = r.dynamodb().expect("a stream record has its change");
                let image = |item: Option<
                    &std::collections::HashMap<
                        String,
                        aws_sdk_dynamodbstreams::types::AttributeValue,
                    >,
                >| {
                    item.map(|i| serde_json::to_value(serde_dynamo::Item::from(i.clone())).unwrap())
                        .unwrap_or(Value::Null)
                };
                records.push(json!({
                    "eventID": r.event_id(),
                    "eventName": r.event_name().map(|n| n.as_str()),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": stack.stack.region,
                    "dynamodb": {
                        "ApproximateCreationDateTime": change
                            .approximate_creation_date_time()
                            .map(|t| t.secs()),
                        "Keys": image(change.keys.as_ref()),
                        "NewImage": image(change.new_image.as_ref()),
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes(),
                        "StreamViewType": change.stream_view_type().map(|v| v.as_str()),
                    },
                    "eventSourceARN": stream_arn,
                }));
            }
            iterator = page.next_shard_iterator;
        }
    }
    records
}

/// One sandbox (CRM + Billing simulators with their OAuth endpoints) for this test binary, on
/// its own runtime thread so it outlives each test's runtime.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("sandbox runtime");
            runtime.block_on(async move {
                let sandbox = Sandbox::start(SandboxConfig::default())
                    .await
                    .expect("sandbox starts");
                let _ = tx.send(sandbox);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("sandbox handle")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rotator_function_rotates_both_tokens_on_its_scheduled_invocation() {
    let base = sandbox().url().to_string();
    let stack = TestStack::deploy_with(&[("CrmBaseUrl", &base), ("BillingBaseUrl", &base)]).await;
    let logical = "TokenRotatorFunction";

    // What the stack creates: the token key and its alias.
    let key = moto()
        .kms("CreateKey", json!({"Description": "api tokens"}))
        .await;
    let key_id = key["KeyMetadata"]["KeyId"].as_str().expect("a key id");
    let alias = stack.var(logical, "TOKEN_KMS_KEY_ID");
    moto()
        .kms(
            "CreateAlias",
            json!({"AliasName": alias, "TargetKeyId": key_id}),
        )
        .await;
    // What the operator creates (docs/DEPLOY.md): the OAuth clients and the salt.
    let clients = &sandbox().config();
    for (service, client) in [
        ("crm", &clients.crm_client),
        ("billing", &clients.billing_client),
    ] {
        moto()
            .put_secure(
                &format!("/oauthClients/{service}/clientId"),
                &client.client_id,
            )
            .await;
        moto()
            .put_secure(
                &format!("/oauthClients/{service}/clientSecret"),
                client.client_secret.expose_secret(),
            )
            .await;
    }
    let salt = "deploy-test-fingerprint-salt";
    moto()
        .put_secure(&stack.var(logical, "TOKEN_FINGERPRINT_SALT_PARAM"), salt)
        .await;

    let lambda = stack.spawn(logical, "token_rotator").await;
    // The schedule's Input, with the context attributes Scheduler fills in.
    let execution_id = uuid::Uuid::new_v4().to_string();
    let input = template()["Resources"]["TokenRotatorSchedule"]["Properties"]["Target"]["Input"]
        .as_str()
        .expect("the schedule sends an Input")
        .replace("<aws.scheduler.execution-id>", &execution_id)
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/test-token-rotation",
        )
        .replace("<aws.scheduler.scheduled-time>", "2026-11-26T07:00:00Z");
    let event: Value = serde_json::from_str(&input).expect("the schedule Input is JSON");
    let report = lambda.invoke(event).await.unwrap().expect_response();

    let mut rotated: Vec<&str> = report["rotated"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}\n{}", lambda.logs()))
        .iter()
        .filter_map(|r| r["service"].as_str())
        .collect();
    rotated.sort();
    assert_eq!(rotated, ["billing", "crm"], "{report}\n{}", lambda.logs());
    assert_eq!(report["failed"], json!([]), "{report}");

    let ledger = stack.ledger().await;
    let audit = ledger.read_all(None, None, 100).await.unwrap();
    let rotations: Vec<_> = audit
        .iter()
        .filter(|e| e.event_type == "TokenRotated")
        .collect();
    assert_eq!(rotations.len(), 2, "one audit event per service");
    for e in &rotations {
        assert_eq!(
            e.correlation_id.to_string(),
            report["correlation_id"].as_str().unwrap(),
            "the run's events share its correlation id"
        );
    }

    // Neither the tokens now in Parameter Store nor the client secrets reach the logs or the
    // ledger.
    let logs = lambda.logs();
    let ledger_text =
        serde_json::to_string(&audit.iter().map(|e| &e.payload).collect::<Vec<_>>()).unwrap();
    for (service, client) in [
        ("crm", &clients.crm_client),
        ("billing", &clients.billing_client),
    ] {
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
            .and_then(|p| p.value)
            .expect("a token");
        for secret in [token.as_str(), client.client_secret.expose_secret()] {
            assert!(!logs.contains(secret), "{service}: a secret in the logs");
            assert!(
                !ledger_text.contains(secret),
                "{service}: a secret in the ledger"
            );
        }
    }
    assert!(!logs.contains(salt), "the salt stays out of the logs");
    eprintln!(
        "token_rotator (template env, DynamoDB): init {:?}, peak RSS {:?} KiB",
        lambda.init_duration(),
        lambda.peak_rss_kib()
    );
}

/// Records the fixture the way the ingest Lambda does (same mapping and append path).
async fn record_fixture(stack: &TestStack, path: &str) {
    let raw = fixture(path);
    let now = chrono::Utc::now();
    let ledger = stack.ledger().await;
    sync_ledger::ingest::record(
        &ledger,
        sync_ledger::ingest::Channel::Sqs,
        raw.as_bytes(),
        sync_ledger::ingest::map_body(&raw, now),
        now,
    )
    .await
    .expect("recorded");
}

/// What the token rotator leaves behind: current tokens of both systems in Parameter Store.
async fn rotated_tokens() {
    for (system, name) in [
        (System::Crm, "/apiTokens/crm"),
        (System::Billing, "/apiTokens/billing"),
    ] {
        moto()
            .put_secure(name, sandbox().issue_token(system).expose_secret())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_projector_function_applies_its_stream_batch_and_account_sync_reaches_billing() {
    let base = sandbox().url().to_string();
    let stack = TestStack::deploy_with(&[
        ("CrmBaseUrl", &base),
        ("BillingBaseUrl", &base),
        ("CrmPricebookId", STANDARD_PRICEBOOK_ID),
    ])
    .await;
    rotated_tokens().await;
    record_fixture(&stack, "salesforce/account_change_create.json").await;
    let accounts_before = sandbox().billing_accounts().len();

    let projectors = template::functions_running("projector");
    assert_eq!(projectors.len(), 4);
    for logical in projectors {
        // The batch the function's event source mapping delivers: the stream so far, through
        // the mapping's filter.
        let filter = projector_filter(logical);
        let records: Vec<Value> = stream_records(&stack)
            .await
            .into_iter()
            .filter(|r| filter_matches(&filter, r))
            .collect();
        assert!(!records.is_empty(), "{logical}: the stream has events");
        let lambda = stack.spawn(logical, "projector").await;
        let answer = lambda
            .invoke(json!({ "Records": records }))
            .await
            .unwrap_or_else(|e| panic!("{logical}: {e}"))
            .expect_response();
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "{logical} applied the whole batch\n{}",
            lambda.logs()
        );
        // The batch is reported to CloudWatch as one EMF line on stdout.
        let logs = lambda.logs();
        let emf: Value = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|doc| doc["Function"] == "projector")
            .unwrap_or_else(|| panic!("{logical}: no EMF metrics line\n{logs}"));
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "SyncLedger"
        );
        assert_eq!(emf["RecordsReceived"], json!(records.len()), "{emf}");
        assert!(emf["EventsApplied"].is_u64(), "{emf}");
        assert_eq!(emf["EventsFailedPermanent"], 0, "{emf}");
        eprintln!(
            "{logical} (template env, DynamoDB): init {:?}, peak RSS {:?} KiB",
            lambda.init_duration(),
            lambda.peak_rss_kib()
        );
    }

    assert_eq!(
        sandbox().billing_accounts().len(),
        accounts_before + 1,
        "account sync created the CRM account in Billing"
    );
    let types = stack.event_types().await;
    assert!(
        types.iter().any(|t| t == "AccountSynced"),
        "the outcome is recorded in the ledger: {types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_api_function_answers_a_signed_query_and_refuses_an_unsigned_one() {
    let stack = TestStack::deploy().await;
    record_fixture(&stack, "salesforce/order_event_activated.json").await;
    let fixture_event: Value =
        serde_json::from_str(&fixture("salesforce/order_event_activated.json")).unwrap();
    let correlation = fixture_event["detail"]["payload"]["Correlation_Id__c"]
        .as_str()
        .expect("the fixture carries a correlation id")
        .to_string();

    let lambda = stack.spawn("AuditApiFunction", "audit_api").await;
    let path = format!("/audit/{correlation}");
    let mut signed = http_api_event("AuditApiFunction", "Audit", &path, "", &[]);
    // What the route's AWS_IAM authorizer adds for a SigV4-signed caller (HTTP API payload
    // 2.0 sample, `requestContext.authorizer.iam`).
    signed["requestContext"]["authorizer"] = json!({"iam": {
        "accessKey": "AKIAIOSFODNN7EXAMPLE",
        "accountId": "123456789012",
        "callerId": "AIDACKCEVSQ6C2EXAMPLE",
        "principalOrgId": null,
        "userArn": "arn:aws:iam::123456789012:user/ops",
        "userId": "AIDACKCEVSQ6C2EXAMPLE"
    }});
    let answer = lambda.invoke(signed).await.unwrap().expect_response();
    assert_eq!(answer["statusCode"], 200, "{answer}\n{}", lambda.logs());
    let body = answer["body"].as_str().expect("a JSON body");
    assert!(body.contains("CrmOrderActivated"), "{body}");
    assert!(body.contains(&correlation), "{body}");

    let unsigned = http_api_event("AuditApiFunction", "Audit", &path, "", &[]);
    let refused = lambda.invoke(unsigned).await.unwrap().expect_response();
    assert_eq!(refused["statusCode"], 403, "{refused}");
    eprintln!(
        "audit_api (template env, DynamoDB): init {:?}, peak RSS {:?} KiB",
        lambda.init_duration(),
        lambda.peak_rss_kib()
    );
}

/// A projector mapping that exhausts its retries sends the batch's range to
/// `ProjectorFailureQueue` (the on-failure destination record Lambda documents); the consumer
/// the template puts on that queue reads the range back from the stream and records one
/// `SyncFailed` per event, naming the projection from the function ARN — once, however often
/// SQS delivers the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_consumer_function_records_a_projectors_give_up_once() {
    let stack = TestStack::deploy().await;
    record_fixture(&stack, "salesforce/account_change_create.json").await;
    let filter = projector_filter("ProjectorOrderFunction");
    let records: Vec<Value> = stream_records(&stack)
        .await
        .into_iter()
        .filter(|r| filter_matches(&filter, r))
        .collect();
    assert!(!records.is_empty());
    let ledger = stack.ledger().await;
    let shard = moto()
        .dynamodb_streams()
        .await
        .describe_stream()
        .stream_arn(ledger.stream_arn())
        .send()
        .await
        .unwrap()
        .stream_description()
        .and_then(|d| {
            d.shards()
                .first()
                .and_then(|s| s.shard_id().map(str::to_string))
        })
        .expect("a shard");
    let sequence = |r: &Value| {
        r["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let body = json!({
        "requestContext": {
            "requestId": "316aa6d0-8154-4b3a-9af7-85d5f4a6bc81",
            "functionArn": format!(
                "arn:aws:lambda:{}:{}:function:{}",
                stack.stack.region,
                stack.stack.account_id,
                stack.function_name("ProjectorOrderFunction")
            ),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-12-05T20:13:49.717Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence(&records[0]),
            "endSequenceNumber": sequence(records.last().unwrap()),
            "approximateArrivalOfFirstRecord": "2026-12-05T20:13:19Z",
            "approximateArrivalOfLastRecord": "2026-12-05T20:13:19Z",
            "batchSize": records.len(),
            "streamArn": ledger.stream_arn()
        }
    })
    .to_string();

    let lambda = stack
        .spawn("GiveUpConsumerFunction", "give_up_consumer")
        .await;
    // SQS delivers at least once: the same message twice in one batch, then again.
    for batch in [
        vec![("m-1", body.clone()), ("m-1-again", body.clone())],
        vec![("m-1", body.clone())],
    ] {
        let answer = lambda
            .invoke(queue_event(&stack, "ProjectorFailureQueue", &batch))
            .await
            .unwrap()
            .expect_response();
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "{}",
            lambda.logs()
        );
    }
    let events = ledger.read_all(None, None, 1000).await.unwrap();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "SyncFailed")
        .collect();
    assert_eq!(
        failed.len(),
        records.len(),
        "one SyncFailed per given-up event"
    );
    for f in &failed {
        assert_eq!(f.payload["projection"], "order-sync", "{}", f.payload);
        assert_eq!(f.payload["reason"], "gave up after 11 deliveries");
        assert!(f
            .source_event_id
            .as_str()
            .ends_with(":on-failure:order-sync:gave-up"));
    }
    // A message that is not a projector's give-up stays on the queue (batch item failure).
    let answer = lambda
        .invoke(queue_event(
            &stack,
            "ProjectorFailureQueue",
            &[("m-bad", "{}".to_string())],
        ))
        .await
        .unwrap()
        .expect_response();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-bad"}]})
    );
    eprintln!(
        "give_up_consumer (template env, DynamoDB): init {:?}, peak RSS {:?} KiB",
        lambda.init_duration(),
        lambda.peak_rss_kib()
    );
}
