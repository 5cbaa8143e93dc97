//! Offline checks of the SAM template (`template.yaml`) against the code it deploys: the
//! tables match `migrations/dynamodb/`, every function runs a workspace binary with every
//! variable that binary reads, no policy statement grants a wildcard action, and the alarms
//! and the dashboard watch every function, queue and table, in the metric names and
//! dimensions the code emits (the projector's EMF line is built by `batch_metrics` itself).
//! It parses the template with cfn-lint's YAML loader (`tests/common/template_json.py`, run by
//! the venv Python that `scripts/test` creates) and never talks to AWS.

mod common;

use common::template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use template::{resources_of_type, root, template, transformed_template};

// ------------------------------------------------------------------ tables vs migrations

/// One table's shape as both files must agree on it. Sets where order carries no meaning.
#[derive(Debug, PartialEq)]
struct TableShape {
    key_schema: Vec<(String, String)>,
    attributes: BTreeSet<(String, String)>,
    global_indexes: BTreeMap<String, IndexShape>,
    local_indexes: BTreeMap<String, IndexShape>,
    /// `None` when the table has no stream.
    stream_view: Option<String>,
    billing_mode: String,
    /// `Some("KMS")` when SSE with KMS is on (`SSEEnabled` in CloudFormation, `Enabled` in
    /// CreateTable).
    sse_type: Option<String>,
    deletion_protection: bool,
}

#[derive(Debug, PartialEq)]
struct IndexShape {
    key_schema: Vec<(String, String)>,
    projection_type: String,
    non_key_attributes: BTreeSet<String>,
}

fn key_schema(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    (
                        k["AttributeName"].as_str().unwrap_or_default().to_string(),
                        k["KeyType"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn indexes(value: &Value) -> BTreeMap<String, IndexShape> {
    value
        .as_array()
        .map(|indexes| {
            indexes
                .iter()
                .map(|i| {
                    let projection = &i["Projection"];
                    let shape = IndexShape {
                        key_schema: key_schema(&i["KeySchema"]),
                        projection_type: projection["ProjectionType"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        non_key_attributes: projection["NonKeyAttributes"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|n| n.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    };
                    (
                        i["IndexName"].as_str().unwrap_or_default().to_string(),
                        shape,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a CreateTable input (migrations) or a table's Properties (template): the two use
/// the same member names, except `StreamEnabled` (CreateTable only) and `SSEEnabled`
/// (CloudFormation) / `Enabled` (CreateTable).
fn table_shape(table: &Value) -> TableShape {
    let stream = &table["StreamSpecification"];
    let stream_enabled = match stream.get("StreamEnabled") {
        Some(enabled) => enabled.as_bool() == Some(true),
        None => stream.get("StreamViewType").is_some(),
    };
    TableShape {
        key_schema: key_schema(&table["KeySchema"]),
        attributes: table["AttributeDefinitions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["AttributeName"].as_str().unwrap_or_default().to_string(),
                            d["AttributeType"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        global_indexes: indexes(&table["GlobalSecondaryIndexes"]),
        local_indexes: indexes(&table["LocalSecondaryIndexes"]),
        stream_view: stream_enabled
            .then(|| stream["StreamViewType"].as_str().map(str::to_string))
            .flatten(),
        // DynamoDB's CreateTable defaults to PROVISIONED; CloudFormation does too.
        billing_mode: table["BillingMode"]
            .as_str()
            .unwrap_or("PROVISIONED")
            .to_string(),
        sse_type: {
            let sse = &table["SSESpecification"];
            let enabled = sse.get("SSEEnabled").or_else(|| sse.get("Enabled"));
            (enabled == Some(&Value::Bool(true)))
                .then(|| sse["SSEType"].as_str().unwrap_or("KMS").to_string())
        },
        deletion_protection: table["DeletionProtectionEnabled"] == true,
    }
}

/// The migration files, by table name suffix (`${prefix}-events` -> `events`).
fn migration_tables() -> BTreeMap<String, Value> {
    let dir = root().join("migrations/dynamodb");
    let mut tables = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable migration");
        let input: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = input["TableName"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no TableName", path.display()));
        let suffix = name.strip_prefix("${prefix}-").unwrap_or_else(|| {
            panic!(
                "{}: TableName {name:?} is not ${{prefix}}-<name>",
                path.display()
            )
        });
        tables.insert(suffix.to_string(), input);
    }
    tables
}

/// The template's tables, by table name suffix (`!Sub ${Prefix}-events` -> `events`).
fn template_tables() -> BTreeMap<String, &'static Value> {
    resources_of_type(template(), "AWS::DynamoDB::Table")
        .into_iter()
        .map(|(logical, table)| {
            let props = &table["Properties"];
            let name = props["TableName"]["Fn::Sub"].as_str().unwrap_or_else(|| {
                panic!("{logical}: TableName must be !Sub ${{Prefix}}-<name> (LEDGER_STORE derives it)")
            });
            let suffix = name
                .strip_prefix("${Prefix}-")
                .unwrap_or_else(|| panic!("{logical}: TableName {name:?} is not ${{Prefix}}-<name>"));
            (suffix.to_string(), props)
        })
        .collect()
}

#[test]
fn template_tables_match_the_dynamodb_migrations() {
    let migrations = migration_tables();
    let templates = template_tables();
    assert!(
        migrations.contains_key("events"),
        "migrations/dynamodb has no ${{prefix}}-events table: {:?}",
        migrations.keys()
    );
    assert_eq!(
        migrations.keys().collect::<Vec<_>>(),
        templates.keys().collect::<Vec<_>>(),
        "the template deploys exactly the tables the migrations create"
    );
    for (name, migration) in &migrations {
        let expected = table_shape(migration);
        let deployed = table_shape(templates[name]);
        assert_eq!(
            deployed, expected,
            "table {name}: template.yaml (left) differs from migrations/dynamodb (right)"
        );
    }
}

#[test]
fn event_log_table_streams_new_images_and_is_protected() {
    let events = template_tables()["events"];
    let view = events["StreamSpecification"]["StreamViewType"].as_str();
    assert!(
        matches!(view, Some("NEW_IMAGE" | "NEW_AND_OLD_IMAGES")),
        "projectors need the new image: {view:?}"
    );
    for (name, table) in template_tables() {
        assert_eq!(
            table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{name}: PITR on"
        );
        assert_eq!(
            table["DeletionProtectionEnabled"], true,
            "{name}: deletion protection on"
        );
        assert_eq!(
            table["SSESpecification"]["SSEEnabled"], true,
            "{name}: SSE on"
        );
        assert_eq!(
            table["SSESpecification"]["SSEType"], "KMS",
            "{name}: SSE with KMS"
        );
        assert!(
            table["SSESpecification"]["KMSMasterKeyId"].is_object(),
            "{name}: SSE with the template's own key"
        );
    }
}

#[test]
fn table_shape_comparison_notices_a_changed_index_key() {
    // The comparison itself must be able to fail: a GSI sort key renamed on one side.
    let migration = serde_json::json!({
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "GlobalSecondaryIndexes": [{"IndexName": "g", "KeySchema": [
            {"AttributeName": "a", "KeyType": "HASH"}, {"AttributeName": "b", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}],
        "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_IMAGE"},
        "BillingMode": "PAY_PER_REQUEST"
    });
    let mut template = migration.clone();
    template["StreamSpecification"] = serde_json::json!({"StreamViewType": "NEW_IMAGE"});
    assert_eq!(table_shape(&template), table_shape(&migration));
    template["GlobalSecondaryIndexes"][0]["KeySchema"][1]["AttributeName"] = "c".into();
    assert_ne!(table_shape(&template), table_shape(&migration));
}

// ------------------------------------------------------------------ IAM: no wildcard actions

/// Every `Action`/`NotAction` of every policy statement anywhere in the template (IAM roles,
/// managed policies, key, queue and topic policies), with where it was found.
fn policy_actions(value: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(statements) = map.get("Statement") {
                let list = match statements {
                    Value::Array(list) => list.clone(),
                    single => vec![single.clone()],
                };
                for (i, statement) in list.iter().enumerate() {
                    for key in ["Action", "NotAction"] {
                        if let Some(actions) = statement.get(key) {
                            out.push((format!("{at}/Statement/{i}/{key}"), actions.clone()));
                        }
                    }
                }
            }
            for (key, child) in map {
                policy_actions(child, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                policy_actions(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Statements that grant a wildcard (`*`, `s3:*`, `kms:Get*`) or grant by exclusion.
fn wildcard_grants(template: &Value) -> Vec<String> {
    let mut actions = Vec::new();
    policy_actions(template, "", &mut actions);
    let mut bad = Vec::new();
    for (at, value) in actions {
        if at.ends_with("/NotAction") {
            bad.push(format!("{at}: NotAction grants everything else"));
            continue;
        }
        let list = match &value {
            Value::Array(list) => list.clone(),
            other => vec![other.clone()],
        };
        for action in list {
            match action.as_str() {
                Some(a) if a.contains('*') || a.contains('?') => bad.push(format!("{at}: {a}")),
                Some(_) => {}
                None => bad.push(format!("{at}: computed action {action}")),
            }
        }
    }
    bad
}

#[test]
fn no_policy_statement_uses_a_wildcard_action() {
    let mut actions = Vec::new();
    policy_actions(template(), "", &mut actions);
    assert!(
        actions.len() >= 20,
        "expected the roles' statements to be written out in the template, found {}",
        actions.len()
    );
    let bad = wildcard_grants(template());
    assert!(bad.is_empty(), "wildcard actions:\n{}", bad.join("\n"));
}

#[test]
fn sam_transform_generates_no_role_and_attaches_no_aws_managed_policy() {
    let deployed = transformed_template();
    let source_roles: BTreeSet<&str> = resources_of_type(template(), "AWS::IAM::Role")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let deployed_roles: BTreeSet<&str> = resources_of_type(deployed, "AWS::IAM::Role")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(deployed_roles, source_roles, "SAM adds no role of its own");
    let functions = resources_of_type(deployed, "AWS::Lambda::Function");
    assert_eq!(
        functions.len(),
        resources_of_type(template(), "AWS::Serverless::Function").len()
    );
    let text = deployed.to_string();
    assert!(
        !text.contains(":iam::aws:policy/"),
        "no AWS-managed policy (they grant `Resource: *`) is attached"
    );
    let bad = wildcard_grants(deployed);
    assert!(
        bad.is_empty(),
        "wildcard actions after the transform:\n{}",
        bad.join("\n")
    );
}

#[test]
fn wildcard_check_catches_star_prefix_and_not_action() {
    let policy = serde_json::json!({"Resources": {"R": {"Properties": {"PolicyDocument": {
    "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "x"},
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:Get*"], "Resource": "x"},
        {"Effect": "Allow", "NotAction": "iam:PassRole", "Resource": "x"},
        {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": "x"}
    ]}}}}});
    let bad = wildcard_grants(&policy);
    assert_eq!(bad.len(), 3, "{bad:#?}");
}

#[test]
fn every_function_has_its_own_written_out_role() {
    // SAM's generated roles attach AWS-managed policies with `Resource: *`; ours are explicit.
    for (name, function) in resources_of_type(template(), "AWS::Serverless::Function") {
        let props = &function["Properties"];
        assert!(
            props.get("Policies").is_none(),
            "{name}: SAM Policies hide statements"
        );
        let role = props["Role"]["Fn::GetAtt"][0].as_str().unwrap_or_else(|| {
            panic!("{name}: Role must be !GetAtt <a role of this template>.Arn")
        });
        assert_eq!(
            template()["Resources"][role]["Type"],
            "AWS::IAM::Role",
            "{name}: {role} is a role of this template"
        );
    }
}

// ------------------------------------------------------------------ functions and binaries

/// `[[bin]]` name -> path, read from the root `Cargo.toml`.
fn workspace_binaries() -> BTreeMap<String, PathBuf> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let mut bins = BTreeMap::new();
    let mut in_bin = false;
    let (mut name, mut path) = (None::<String>, None::<String>);
    let mut flush = |name: &mut Option<String>, path: &mut Option<String>| {
        if let Some(n) = name.take() {
            let p = path.take().unwrap_or_else(|| format!("src/bin/{n}.rs"));
            bins.insert(n, root().join(p));
        }
        *path = None;
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            if in_bin {
                flush(&mut name, &mut path);
            }
            in_bin = line == "[[bin]]";
            continue;
        }
        if !in_bin {
            continue;
        }
        let value = |l: &str| {
            l.split_once('=')
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        if line.starts_with("name") {
            name = value(line);
        } else if line.starts_with("path") {
            path = value(line);
        }
    }
    if in_bin {
        flush(&mut name, &mut path);
    }
    bins
}

/// A deployed function: its logical id, the binary it runs, and its own variables.
struct Function {
    logical: String,
    binary: String,
    env: BTreeMap<String, Value>,
}

fn functions() -> Vec<Function> {
    resources_of_type(template(), "AWS::Serverless::Function")
        .into_iter()
        .map(|(logical, f)| {
            let binary = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{logical}: Metadata.BuildProperties.Binary names the binary")
                })
                .to_string();
            let env = f["Properties"]["Environment"]["Variables"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            Function {
                logical: logical.to_string(),
                binary,
                env,
            }
        })
        .collect()
}

fn global_function_property(key: &str) -> &'static Value {
    &template()["Globals"]["Function"][key]
}

fn global_env() -> BTreeMap<String, Value> {
    global_function_property("Environment")["Variables"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[test]
fn every_function_runs_a_workspace_binary_built_by_cargo_lambda_for_arm64() {
    let bins = workspace_binaries();
    assert!(
        bins.contains_key("ingest"),
        "Cargo.toml [[bin]] parsed: {bins:?}"
    );
    let mut deployed = BTreeSet::new();
    for (logical, f) in resources_of_type(template(), "AWS::Serverless::Function") {
        let props = &f["Properties"];
        let property = |key: &str| match props.get(key) {
            Some(v) => v,
            None => global_function_property(key),
        };
        assert_eq!(
            f["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{logical}"
        );
        assert_eq!(property("Runtime"), "provided.al2023", "{logical}");
        assert_eq!(
            property("Architectures"),
            &serde_json::json!(["arm64"]),
            "{logical}"
        );
        assert_eq!(property("Handler"), "bootstrap", "{logical}");
        assert_eq!(property("Tracing"), "Active", "{logical}");
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default();
        let path = bins.get(binary).unwrap_or_else(|| {
            panic!("{logical}: binary {binary:?} is not a [[bin]] of Cargo.toml")
        });
        assert!(path.exists(), "{logical}: {} exists", path.display());
        deployed.insert(binary.to_string());
    }
    let lambdas: BTreeSet<String> = [
        "ingest",
        "projector",
        "token_rotator",
        "audit_api",
        "give_up_consumer",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        deployed, lambdas,
        "every Lambda binary is deployed, the CLI is not"
    );
}

#[test]
fn one_projector_function_per_projection() {
    let mut projections: Vec<String> = functions()
        .iter()
        .filter(|f| f.binary == "projector")
        .map(|f| {
            f.env["PROJECTION"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: PROJECTION is a literal", f.logical))
                .to_string()
        })
        .collect();
    projections.sort();
    let mut built: Vec<&str> = sync_ledger::projector::PROJECTIONS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    built.sort();
    assert_eq!(
        projections, built,
        "one projector function per projection the code has"
    );
}

#[test]
fn projector_stream_mappings_filter_events_and_bound_retries() {
    for (logical, f) in resources_of_type(template(), "AWS::Serverless::Function") {
        if f["Metadata"]["BuildProperties"]["Binary"] != "projector" {
            continue;
        }
        let events = f["Properties"]["Events"]
            .as_object()
            .expect("projector has Events");
        let streams: Vec<&Value> = events
            .values()
            .filter(|e| e["Type"] == "DynamoDB")
            .map(|e| &e["Properties"])
            .collect();
        assert_eq!(streams.len(), 1, "{logical}: one event source mapping");
        let esm = streams[0];
        assert_eq!(
            esm["Stream"]["Fn::GetAtt"],
            serde_json::json!(["EventsTable", "StreamArn"])
        );
        assert_eq!(
            esm["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "{logical}"
        );
        assert_eq!(esm["BisectBatchOnFunctionError"], true, "{logical}");
        let retries = esm["MaximumRetryAttempts"].as_i64().unwrap_or(-1);
        assert!(
            (0..=10_000).contains(&retries),
            "{logical}: bounded retries, got {retries}"
        );
        let age = esm["MaximumRecordAgeInSeconds"].as_i64().unwrap_or(-1);
        // -1 is "forever"; stream records live 24 h.
        assert!(
            (60..=86_400).contains(&age),
            "{logical}: bounded record age, got {age}"
        );
        let on_failure = &esm["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"], "SQS", "{logical}");
        let queue = on_failure["Destination"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            template()["Resources"][queue]["Type"],
            "AWS::SQS::Queue",
            "{logical}"
        );
        let filters = esm["FilterCriteria"]["Filters"]
            .as_array()
            .expect("FilterCriteria");
        assert_eq!(filters.len(), 1, "{logical}");
        let pattern: Value = serde_json::from_str(filters[0]["Pattern"].as_str().unwrap())
            .expect("the filter pattern is JSON");
        assert_eq!(
            pattern,
            serde_json::json!({"dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}}),
            "{logical}: only kind = event reaches a projector"
        );
    }
}

// ------------------------------------------------------------------ environment variables
//
// How the variables a binary reads are found (a source scan, deliberately simple):
// 1. Files: from `src/bin/<binary>.rs`, follow every `sync_ledger::a::b` (the service crate,
//    `service/src`), `crate::a::b` (the file's own crate),
//    `super::`/`self::` path (brace groups included) to the module files it names, and the
//    `mod x;` children of each module named; repeat. This over-approximates (a module's whole
//    file counts), which can only ask for more variables, never fewer.
// 2. Reads: in those files (comments stripped), every `env::var("X")` / `env::var_os("X")`,
//    the same with a `const NAME: &str = "X"` (from any file under `src/` or `service/src/`) as the argument,
//    every `const *_ENV` those files name (a variable read through a lookup closure must be
//    named by such a const), and clap's `env = "X"`.
// 3. Variables the Lambda runtime itself sets (`RUNTIME_PROVIDED`) need no template entry.

/// Set by the Lambda service in every execution environment, never by the template.
const RUNTIME_PROVIDED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
    "TZ",
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
];

/// Read by code but deliberately left unset in the template, each for its reason
/// (documented in DEPLOY.md).
const DELIBERATELY_UNSET: &[(&str, &str)] = &[
    (
        "AWS_ENDPOINT_URL",
        "a local AWS-compatible endpoint, for local runs only",
    ),
    (
        "TOKEN_FINGERPRINT_SALT",
        "the salt is a secret: the template names its parameter (TOKEN_FINGERPRINT_SALT_PARAM)",
    ),
];

/// Set in the template for something other than our code: the Parameters and Secrets
/// extension reads these, and tracing-subscriber's `EnvFilter` reads `RUST_LOG`.
fn configures_something_else(var: &str) -> bool {
    var.starts_with("PARAMETERS_SECRETS_EXTENSION_")
        || var.starts_with("SSM_PARAMETER_STORE_")
        || var == "RUST_LOG"
}

/// The source with comments removed (string literals kept intact).
fn strip_comments(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                out.push_str(&source[start..i]);
            }
            b'\'' => {
                // A char literal ('"', '\'') must not open a string; a lifetime is copied as is.
                let rest = &source[i..];
                let len = if let Some(escaped) = rest.strip_prefix("'\\") {
                    escaped.find('\'').map(|p| p + 3)
                } else {
                    rest[1..]
                        .chars()
                        .next()
                        .filter(|c| rest[1 + c.len_utf8()..].starts_with('\''))
                        .map(|c| c.len_utf8() + 2)
                };
                let len = len.unwrap_or(1);
                out.push_str(&rest[..len]);
                i += len;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = source[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            _ => {
                let c = source[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Module paths written after `start` (the text right after `sync_ledger::` etc.), with
/// brace groups expanded: `{config::StoreUrl, ledger::{self, open}}` -> three paths.
fn paths_after(text: &str) -> Vec<Vec<String>> {
    fn parse(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let mut segs = prefix;
        let mut i = 0;
        let chars: Vec<char> = text.chars().collect();
        loop {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '{' {
                i += 1;
                loop {
                    let consumed = parse(&chars[i..].iter().collect::<String>(), segs.clone(), out);
                    i += consumed;
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    match chars.get(i) {
                        Some(',') => i += 1,
                        Some('}') => {
                            i += 1;
                            return i;
                        }
                        _ => return i,
                    }
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    if chars.get(i) == Some(&'}') {
                        return i + 1;
                    }
                }
            }
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            if start == i {
                out.push(segs);
                return i;
            }
            segs.push(chars[start..i].iter().collect());
            if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                out.push(segs);
                return i;
            }
        }
    }
    let mut out = Vec::new();
    parse(text, Vec::new(), &mut out);
    out
}

/// The module directory of a file: `src/a/mod.rs` and `src/a.rs` both -> `src/a`.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().expect("file in a directory");
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod") | Some("lib") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

/// Module files named by `segments` from `dir`: each existing `seg.rs` / `seg/mod.rs` on the
/// way (the last one is the module named; later segments are items in it).
fn resolve(dir: &Path, segments: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dir = dir.to_path_buf();
    for seg in segments {
        if seg == "self" {
            continue;
        }
        let flat = dir.join(format!("{seg}.rs"));
        let nested = dir.join(seg).join("mod.rs");
        if flat.exists() {
            files.push(flat);
        } else if nested.exists() {
            files.push(nested);
        } else {
            break;
        }
        dir = dir.join(seg);
    }
    files
}

/// Every source file the binary at `main` can reach (see the comment above). A module
/// *named* by a path also brings its `mod x;` children (it may re-export them); a module only
/// passed through on the way (`lambda` in `lambda::projector`) does not.
fn reachable_files(main: &Path) -> BTreeSet<PathBuf> {
    let src = root().join("src");
    let service = root().join("service/src");
    let mut passed = BTreeSet::new();
    let mut named = BTreeSet::new();
    let mut queue = vec![(main.to_path_buf(), true)];
    while let Some((file, is_named)) = queue.pop() {
        if named.contains(&file) || (!is_named && passed.contains(&file)) {
            continue;
        }
        if is_named {
            named.insert(file.clone());
        } else {
            passed.insert(file.clone());
        }
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap_or_default());
        let here = module_dir(&file);
        let parent = here.parent().map(Path::to_path_buf).unwrap_or(src.clone());
        let own_crate = if file.starts_with(&service) {
            &service
        } else {
            &src
        };
        for (marker, base) in [
            ("sync_ledger::", &service),
            ("crate::", own_crate),
            ("self::", &here),
            ("super::", &parent),
        ] {
            for (at, _) in text.match_indices(marker) {
                if text[..at].chars().next_back().is_some_and(is_ident) {
                    continue;
                }
                let after = &text[at + marker.len()..];
                let after = &after[..after.floor_char_boundary(4000)];
                for path in paths_after(after) {
                    let files = resolve(base, &path);
                    let last = files.len().saturating_sub(1);
                    queue.extend(files.into_iter().enumerate().map(|(i, f)| (f, i == last)));
                }
            }
        }
        if !is_named {
            continue;
        }
        // `mod x;` children (not inline `mod x { ... }` blocks such as tests).
        for (at, _) in text.match_indices("mod ") {
            if text[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = &text[at + 4..];
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() && rest[name.len()..].trim_start().starts_with(';') {
                queue.extend(resolve(&here, &[name]).into_iter().map(|f| (f, true)));
            }
        }
    }
    named.union(&passed).cloned().collect()
}

/// `const NAME: &str = "VALUE";` anywhere under `src/` or `service/src/`.
fn string_consts() -> BTreeMap<String, String> {
    let mut consts = BTreeMap::new();
    let files = rust_files(&root().join("src"))
        .into_iter()
        .chain(rust_files(&root().join("service/src")));
    for file in files {
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap_or_default());
        for (at, _) in text.match_indices("const ") {
            let rest = &text[at + 6..];
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            let Some(rest) = rest[name.len()..].trim_start().strip_prefix(':') else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix("&str") else {
                continue;
            };
            let rest = rest.trim_start().trim_start_matches("'static").trim_start();
            let Some(rest) = rest.strip_prefix('=') else {
                continue;
            };
            if let Some(value) = string_literal(rest.trim_start()) {
                consts.insert(name, value);
            }
        }
    }
    consts
}

fn string_literal(text: &str) -> Option<String> {
    let body = text.strip_prefix('"')?;
    Some(body[..body.find('"')?].to_string())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            files.push(path);
        }
    }
    files
}

/// Variables read in `text`: `env::var(...)`/`env::var_os(...)` with a literal or a known
/// const, every `*_ENV` const the text names (the convention for names read indirectly,
/// e.g. through a `lookup(STORE_ENV)` closure), and clap's `env = "..."`. A name built by a
/// macro (`env::var(format!(..))`) cannot be checked and is returned as an error.
fn env_reads(text: &str, consts: &BTreeMap<String, String>) -> (BTreeSet<String>, Vec<String>) {
    let mut vars = BTreeSet::new();
    let mut unresolved = Vec::new();
    for marker in ["env::var(", "env::var_os("] {
        for (at, _) in text.match_indices(marker) {
            let arg = text[at + marker.len()..].trim_start();
            if let Some(literal) = string_literal(arg) {
                vars.insert(literal);
                continue;
            }
            let ident: String = arg
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let last = ident.rsplit("::").next().unwrap_or_default();
            if let Some(value) = consts.get(last) {
                vars.insert(value.clone());
            } else if arg[ident.len()..].trim_start().starts_with('!') {
                unresolved.push(arg.chars().take(60).collect());
            }
        }
    }
    for (name, value) in consts {
        if !name.ends_with("_ENV") {
            continue;
        }
        let named = text.match_indices(name.as_str()).any(|(at, _)| {
            !text[..at].chars().next_back().is_some_and(is_ident)
                && !text[at + name.len()..].chars().next().is_some_and(is_ident)
        });
        if named {
            vars.insert(value.clone());
        }
    }
    // clap: `#[arg(long, env = "NAME")]`. Only names shaped like variables count, so a
    // local `let env = "..."` is not mistaken for one.
    for (at, _) in text.match_indices("env") {
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = text[at + 3..].trim_start();
        if let Some(rest) = rest.strip_prefix('=') {
            if let Some(literal) = string_literal(rest.trim_start()) {
                let shaped = !literal.is_empty()
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if shaped {
                    vars.insert(literal);
                }
            }
        }
    }
    (vars, unresolved)
}

/// Binary name -> variables its code reads (runtime-provided ones removed).
fn variables_read_by_binaries() -> BTreeMap<String, BTreeSet<String>> {
    let consts = string_consts();
    workspace_binaries()
        .into_iter()
        .map(|(bin, main)| {
            let mut vars = BTreeSet::new();
            let mut unresolved = Vec::new();
            for file in reachable_files(&main) {
                let text = strip_comments(&std::fs::read_to_string(&file).unwrap_or_default());
                let (found, dynamic) = env_reads(&text, &consts);
                vars.extend(found);
                unresolved.extend(dynamic.into_iter().map(|d| format!("{}: {d}", file.display())));
            }
            assert!(
                unresolved.is_empty(),
                "{bin}: env reads this check cannot resolve (use a literal or a `const NAME: &str`):\n{}",
                unresolved.join("\n")
            );
            vars.retain(|v| !RUNTIME_PROVIDED.contains(&v.as_str()));
            (bin, vars)
        })
        .collect()
}

/// Binary name -> every string literal its reachable code holds. A variable name among them
/// is read somehow (e.g. `lookup("CRM_BASE_URL")` in a table of fallbacks) even where the
/// scan above cannot follow the read: enough to tell a used variable from a stale one.
fn literals_of_binaries() -> BTreeMap<String, BTreeSet<String>> {
    workspace_binaries()
        .into_iter()
        .map(|(bin, main)| {
            let mut literals = BTreeSet::new();
            for file in reachable_files(&main) {
                let text = strip_comments(&std::fs::read_to_string(&file).unwrap_or_default());
                let mut rest = text.as_str();
                while let Some(start) = rest.find('"') {
                    let body = &rest[start + 1..];
                    let end = body.find('"').unwrap_or(body.len());
                    literals.insert(body[..end].to_string());
                    rest = &body[(end + 1).min(body.len())..];
                }
            }
            (bin, literals)
        })
        .collect()
}

#[test]
fn every_variable_a_binary_reads_is_set_for_each_of_its_functions() {
    let reads = variables_read_by_binaries();
    let globals = global_env();
    assert!(
        globals.contains_key("LEDGER_STORE"),
        "every function reaches the ledger through LEDGER_STORE"
    );
    let mut missing = Vec::new();
    for f in functions() {
        for var in &reads[&f.binary] {
            if DELIBERATELY_UNSET.iter().any(|(name, _)| name == var) {
                continue;
            }
            if !f.env.contains_key(var) && !globals.contains_key(var) {
                missing.push(format!("{} ({}): {var}", f.logical, f.binary));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "variables read but not set in template.yaml:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_variable_the_template_sets_is_read_by_that_function() {
    let reads = variables_read_by_binaries();
    let literals = literals_of_binaries();
    let mut stale = Vec::new();
    for f in functions() {
        for var in f.env.keys().chain(global_env().keys()) {
            let used = reads[&f.binary].contains(var) || literals[&f.binary].contains(var);
            if !configures_something_else(var) && !used {
                stale.push(format!("{} ({}): {var}", f.logical, f.binary));
            }
        }
    }
    // Globals apply to every function; a global only one binary reads is still noise for the
    // others, so it is reported per function like the rest.
    assert!(
        stale.is_empty(),
        "set in template.yaml but read by no code of that binary:\n{}",
        stale.join("\n")
    );
}

#[test]
fn deploy_guide_lists_every_variable_the_template_sets() {
    let guide = std::fs::read_to_string(root().join("docs/DEPLOY.md")).expect("docs/DEPLOY.md");
    let mut vars: BTreeSet<String> = global_env().into_keys().collect();
    for f in functions() {
        vars.extend(f.env.into_keys());
    }
    let missing: Vec<_> = vars
        .iter()
        .filter(|v| !guide.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/DEPLOY.md does not list {missing:?}"
    );
}

#[test]
fn env_scan_finds_literal_const_and_clap_reads_but_not_comments() {
    let source = r#"
        //! Reads `std::env::var("IN_A_DOC")` -- only in prose.
        pub const STORE_ENV: &str = "LEDGER_STORE";
        fn a() { std::env::var("PROJECTION").ok(); let _ = env::var_os(STORE_ENV); }
        /* env::var("IN_A_BLOCK_COMMENT") */
        #[derive(clap::Parser)] struct Args { #[arg(long, env = "LEDGER_BATCH")] batch: u32 }
        fn c() { let q = '"'; std::env::var("AFTER_A_CHAR").ok(); }
        fn d(lookup: impl Fn(&str) -> Option<String>) { lookup(SECRET_PARAM_ENV); }
        fn e() { from_lookup(|name| std::env::var(name).ok()); }
    "#;
    let stripped = strip_comments(source);
    let consts = BTreeMap::from([
        ("STORE_ENV".to_string(), "LEDGER_STORE".to_string()),
        (
            "SECRET_PARAM_ENV".to_string(),
            "CALLOUT_SECRET_PARAM".to_string(),
        ),
        ("UNUSED_ENV".to_string(), "NOT_READ_HERE".to_string()),
    ]);
    let (vars, unresolved) = env_reads(&stripped, &consts);
    assert_eq!(
        vars,
        [
            "AFTER_A_CHAR",
            "CALLOUT_SECRET_PARAM",
            "LEDGER_BATCH",
            "LEDGER_STORE",
            "PROJECTION"
        ]
        .map(String::from)
        .into()
    );
    assert!(unresolved.is_empty());
    let (_, unresolved) = env_reads("std::env::var(format!(\"X_{n}\"))", &consts);
    assert_eq!(
        unresolved.len(),
        1,
        "a computed name is reported, not skipped"
    );
}

#[test]
fn module_paths_with_brace_groups_are_all_followed() {
    let paths = paths_after("{config::StoreUrl, ledger::{self, open::open_store}};");
    assert_eq!(
        paths,
        vec![
            vec!["config".to_string(), "StoreUrl".to_string()],
            vec!["ledger".to_string(), "self".to_string()],
            vec![
                "ledger".to_string(),
                "open".to_string(),
                "open_store".to_string()
            ],
        ]
    );
}

// ------------------------------------------------------------------ alarms and dashboard

/// A metric as an alarm names it: namespace, name, and dimensions (name -> template value,
/// e.g. `{"Ref": "IngestFunction"}`).
#[derive(Debug, Clone, PartialEq)]
struct AlarmMetric {
    namespace: String,
    name: String,
    dimensions: BTreeMap<String, Value>,
}

fn dimensions_of(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["Name"].as_str().unwrap_or_default().to_string(),
                d["Value"].clone(),
            )
        })
        .collect()
}

/// Every metric an alarm watches: its own (`MetricName`) or those its metric math reads.
fn alarm_metrics(props: &Value) -> Vec<AlarmMetric> {
    if let Some(name) = props["MetricName"].as_str() {
        return vec![AlarmMetric {
            namespace: props["Namespace"].as_str().unwrap_or_default().to_string(),
            name: name.to_string(),
            dimensions: dimensions_of(&props["Dimensions"]),
        }];
    }
    props["Metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| {
            let metric = &q["MetricStat"]["Metric"];
            Some(AlarmMetric {
                namespace: metric["Namespace"].as_str()?.to_string(),
                name: metric["MetricName"].as_str()?.to_string(),
                dimensions: dimensions_of(&metric["Dimensions"]),
            })
        })
        .collect()
}

/// Alarm logical id -> its Properties.
fn alarms() -> Vec<(&'static str, &'static Value)> {
    resources_of_type(template(), "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(name, alarm)| (name, &alarm["Properties"]))
        .collect()
}

/// The alarms watching exactly this metric (dimensions equal, not a subset: CloudWatch
/// matches a metric by all of its dimensions).
fn alarms_on(
    namespace: &str,
    name: &str,
    dimensions: &[(&str, Value)],
) -> Vec<(&'static str, &'static Value)> {
    let wanted = AlarmMetric {
        namespace: namespace.to_string(),
        name: name.to_string(),
        dimensions: dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    alarms()
        .into_iter()
        .filter(|(_, props)| alarm_metrics(props).contains(&wanted))
        .collect()
}

/// One alarm on the metric, firing on the first occurrence (`Sum > 0`).
fn assert_fires_on_any(what: &str, found: &[(&str, &Value)]) {
    assert_eq!(found.len(), 1, "{what}: one alarm, found {found:?}");
    let (name, props) = found[0];
    assert_eq!(props["Statistic"], "Sum", "{name}");
    assert_eq!(props["Threshold"], 0, "{name}");
    assert_eq!(
        props["ComparisonOperator"], "GreaterThanThreshold",
        "{name}"
    );
}

/// The template's value of the projector EMF dimensions, as `batch_metrics` prints them for
/// the function's projection, and the metric names that line holds.
fn projector_emf(function: &Function) -> (Vec<(String, String)>, BTreeSet<String>) {
    let short = f_env_str(function, "PROJECTION");
    let name = sync_ledger::projector::PROJECTIONS
        .iter()
        .find(|(s, _)| *s == short)
        .unwrap_or_else(|| panic!("{}: unknown PROJECTION {short}", function.logical))
        .1;
    let doc = sync_ledger::lambda::projector::batch_metrics(
        name,
        0,
        &sync_ledger::projector::BatchOutcome::default(),
        0,
    )
    .to_emf(0);
    let metrics = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(metrics["Namespace"], sync_ledger::lambda::emf::NAMESPACE);
    let dimensions = metrics["Dimensions"][0]
        .as_array()
        .expect("one dimension set")
        .iter()
        .map(|k| {
            let k = k.as_str().expect("dimension names are strings");
            (
                k.to_string(),
                doc[k].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let names = metrics["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| m["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    (dimensions, names)
}

fn f_env_str(function: &Function, var: &str) -> String {
    function.env[var]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {var} is a literal", function.logical))
        .to_string()
}

/// Queues that receive what something gave up on: SQS redrive targets, EventBridge target
/// and SAM function dead-letter queues, on-failure destinations. Logical ids.
fn failure_queues() -> BTreeSet<String> {
    fn arn_target(value: &Value) -> Option<String> {
        value["Fn::GetAtt"][0].as_str().map(str::to_string)
    }
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let target = match key.as_str() {
                        "deadLetterTargetArn" => arn_target(child),
                        "DeadLetterConfig" => {
                            arn_target(&child["Arn"]).or_else(|| arn_target(&child["TargetArn"]))
                        }
                        "DeadLetterQueue" => arn_target(&child["TargetArn"]),
                        "OnFailure" => arn_target(&child["Destination"]),
                        _ => None,
                    };
                    out.extend(target);
                    walk(child, out);
                }
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut queues = BTreeSet::new();
    walk(&template()["Resources"], &mut queues);
    queues
}

#[test]
fn every_alarm_notifies_the_alarm_topic_and_the_email_subscription_is_optional() {
    let all = alarms();
    assert!(all.len() >= 20, "{} alarms", all.len());
    for (name, props) in &all {
        assert_eq!(
            props["AlarmActions"],
            serde_json::json!([{"Ref": "AlarmTopic"}]),
            "{name}"
        );
        assert!(props["AlarmDescription"].is_object() || props["AlarmDescription"].is_string());
        assert!(props["Threshold"].is_number() || props["Threshold"]["Ref"].is_string());
        // A metric that is not published (no batch, no message) is not a failure.
        assert_eq!(props["TreatMissingData"], "notBreaching", "{name}");
        if props.get("Metrics").is_some() {
            let returned = props["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|q| q["ReturnData"] == true)
                .count();
            assert_eq!(returned, 1, "{name}: metric math alarms on one series");
        }
    }
    let resources = &template()["Resources"];
    assert_eq!(resources["AlarmTopic"]["Type"], "AWS::SNS::Topic");
    let subscription = &resources["AlarmEmailSubscription"];
    assert_eq!(subscription["Type"], "AWS::SNS::Subscription");
    assert_eq!(subscription["Condition"], "HasAlarmEmail");
    assert_eq!(
        subscription["Properties"]["TopicArn"],
        serde_json::json!({"Ref": "AlarmTopic"})
    );
    assert_eq!(
        subscription["Properties"]["Endpoint"],
        serde_json::json!({"Ref": "AlarmEmail"})
    );
    assert_eq!(
        template()["Conditions"]["HasAlarmEmail"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]})
    );
    assert_eq!(template()["Parameters"]["AlarmEmail"]["Default"], "");
}

#[test]
fn every_function_alarms_on_its_errors() {
    // The give-up consumer (issue 15 item 3) is held to this too once it is deployed.
    let functions = resources_of_type(template(), "AWS::Serverless::Function");
    assert!(functions.len() >= 7);
    for (logical, _) in functions {
        let found = alarms_on(
            "AWS/Lambda",
            "Errors",
            &[("FunctionName", serde_json::json!({"Ref": logical}))],
        );
        assert_fires_on_any(&format!("{logical} Errors"), &found);
    }
}

#[test]
fn every_projector_alarms_on_permanent_failures_sync_failed_and_iterator_age_as_emitted() {
    let projectors: Vec<Function> = functions()
        .into_iter()
        .filter(|f| f.binary == "projector")
        .collect();
    assert_eq!(projectors.len(), sync_ledger::projector::PROJECTIONS.len());
    for f in &projectors {
        let (dimensions, emitted) = projector_emf(f);
        let dimensions: Vec<(&str, Value)> = dimensions
            .iter()
            .map(|(k, v)| (k.as_str(), Value::String(v.clone())))
            .collect();
        for metric in ["EventsFailedPermanent", "SyncFailedAppended"] {
            assert!(
                emitted.contains(metric),
                "the projector's EMF line holds {metric}: {emitted:?}"
            );
            let found = alarms_on(sync_ledger::lambda::emf::NAMESPACE, metric, &dimensions);
            assert_fires_on_any(&format!("{} {metric} {dimensions:?}", f.logical), &found);
        }
        let age = alarms_on(
            "AWS/Lambda",
            "IteratorAge",
            &[("FunctionName", serde_json::json!({"Ref": f.logical}))],
        );
        assert_eq!(age.len(), 1, "{}: one IteratorAge alarm", f.logical);
        assert_eq!(age[0].1["Statistic"], "Maximum");
        assert_eq!(
            age[0].1["Threshold"],
            serde_json::json!({"Ref": "IteratorAgeAlarmMs"})
        );
    }
}

#[test]
fn every_dead_letter_and_on_failure_queue_alarms_when_not_empty() {
    let queues = failure_queues();
    for expected in ["SalesforceEventsDlq", "ProjectorFailureQueue"] {
        assert!(queues.contains(expected), "{expected} found in {queues:?}");
    }
    for queue in &queues {
        assert_eq!(
            template()["Resources"][queue]["Type"],
            "AWS::SQS::Queue",
            "{queue}"
        );
        let found = alarms_on(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            &[(
                "QueueName",
                serde_json::json!({"Fn::GetAtt": [queue, "QueueName"]}),
            )],
        );
        assert_eq!(found.len(), 1, "{queue}: one depth alarm");
        assert_eq!(found[0].1["Statistic"], "Maximum");
        assert_eq!(found[0].1["Threshold"], 0);
        assert_eq!(found[0].1["ComparisonOperator"], "GreaterThanThreshold");
    }
}

#[test]
fn every_table_and_index_alarms_on_read_and_write_throttles() {
    let tables = resources_of_type(template(), "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 2);
    for (logical, table) in tables {
        let table_ref = serde_json::json!({"Ref": logical});
        let indexes: Vec<&str> = table["Properties"]["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["IndexName"].as_str())
            .collect();
        let mut alarm_names = BTreeSet::new();
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            let found = alarms_on("AWS/DynamoDB", metric, &[("TableName", table_ref.clone())]);
            assert_eq!(found.len(), 1, "{logical} {metric}");
            alarm_names.insert(found[0].0);
            for index in &indexes {
                let found = alarms_on(
                    "AWS/DynamoDB",
                    metric,
                    &[
                        ("TableName", table_ref.clone()),
                        ("GlobalSecondaryIndexName", Value::String(index.to_string())),
                    ],
                );
                assert_eq!(found.len(), 1, "{logical}/{index} {metric}");
                alarm_names.insert(found[0].0);
            }
        }
        for name in alarm_names {
            let props = &template()["Resources"][name]["Properties"];
            let sum = props["Metrics"]
                .as_array()
                .and_then(|m| m.iter().find(|q| q["ReturnData"] == true))
                .map(|q| q["Expression"].clone());
            assert_eq!(
                sum,
                Some(Value::String("SUM(METRICS())".into())),
                "{name}: alarms on the sum of every throttle series it reads"
            );
            assert_eq!(
                props["Threshold"],
                serde_json::json!({"Ref": "DynamoDbThrottleAlarmEvents"})
            );
        }
    }
}

/// A dashboard metric row: namespace, name, dimensions (values as resolved by
/// `dashboard_body`).
type DashboardMetric = (String, String, BTreeMap<String, String>);

/// The dashboard's body with every `${...}` of its `!Sub` replaced: parameters by their
/// default, `AWS::Region` by `us-east-1`, `${X}` by `ref:X` and `${X.Attr}` by `getatt:X.Attr`
/// (each checked to name a resource of the template), then parsed as JSON.
fn dashboard_body() -> Value {
    let dashboards = resources_of_type(template(), "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let text = dashboards[0].1["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody is a !Sub string, so names resolve");
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("closed ${");
        let name = &rest[start + 2..end];
        let value = if name == "AWS::Region" {
            "us-east-1".to_string()
        } else if let Some(p) = template()["Parameters"].get(name) {
            p["Default"].to_string().trim_matches('"').to_string()
        } else {
            let (logical, attribute) = match name.split_once('.') {
                Some((l, a)) => (l, Some(a)),
                None => (name, None),
            };
            assert!(
                template()["Resources"].get(logical).is_some(),
                "the dashboard names ${{{name}}}, which is not a resource or parameter"
            );
            match attribute {
                Some(a) => format!("getatt:{logical}.{a}"),
                None => format!("ref:{logical}"),
            }
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the dashboard body is JSON: {e}\n{out}"))
}

/// Every metric row of every widget, with the widget's title.
fn dashboard_metrics() -> Vec<(String, DashboardMetric)> {
    let body = dashboard_body();
    let mut rows = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let props = &widget["properties"];
        assert_eq!(props["region"], "us-east-1", "{props}");
        let title = props["title"].as_str().unwrap_or_default().to_string();
        for row in props["metrics"].as_array().into_iter().flatten() {
            let parts: Vec<&str> = row
                .as_array()
                .expect("a metric row is an array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                !parts.contains(&"."),
                "{title}: write rows out in full (no \".\" shorthand), so they can be checked"
            );
            assert!(
                parts.len() >= 2 && parts.len().is_multiple_of(2),
                "{title}: {row}"
            );
            let dimensions = parts[2..]
                .chunks(2)
                .map(|kv| (kv[0].to_string(), kv[1].to_string()))
                .collect();
            rows.push((
                title.clone(),
                (parts[0].to_string(), parts[1].to_string(), dimensions),
            ));
        }
    }
    rows
}

#[test]
fn dashboard_shows_intake_syncs_lag_queues_calls_and_tables_with_names_that_resolve() {
    let rows = dashboard_metrics();
    let has = |namespace: &str, name: &str, dimensions: &[(&str, &str)]| {
        let wanted: BTreeMap<String, String> = dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rows.iter()
            .any(|(_, (ns, n, d))| ns == namespace && n == name && *d == wanted)
    };

    // Ingest's own metrics, named as the ingest binary's code names them.
    let ingest_literals = &literals_of_binaries()["ingest"];
    let ingest_rows: Vec<_> = rows
        .iter()
        .filter(|(_, (ns, _, d))| {
            ns == sync_ledger::lambda::emf::NAMESPACE
                && d.get("Function").map(String::as_str) == Some("ingest")
        })
        .collect();
    for (title, (_, name, dimensions)) in &ingest_rows {
        assert!(
            ingest_literals.contains(name),
            "{title}: ingest emits no {name}"
        );
        let channel = &dimensions["Channel"];
        assert!(
            ingest_literals.contains(channel),
            "{title}: ingest has no channel {channel}"
        );
    }
    for metric in ["EventsAppended", "RecordsRejected"] {
        assert!(
            ingest_rows.iter().any(|(_, (_, n, _))| n == metric),
            "events appended / rejected: {metric}"
        );
    }

    // Per projector function: its outcomes in the dimensions it emits, and its lag.
    for f in functions().iter().filter(|f| f.binary == "projector") {
        let (dimensions, emitted) = projector_emf(f);
        let dimensions: Vec<(&str, &str)> = dimensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for metric in ["SyncFailedAppended", "EventsFailedPermanent"] {
            assert!(
                has(sync_ledger::lambda::emf::NAMESPACE, metric, &dimensions),
                "syncs by outcome: {metric} {dimensions:?}"
            );
        }
        let logical = format!("ref:{}", f.logical);
        assert!(
            has("AWS/Lambda", "IteratorAge", &[("FunctionName", &logical)]),
            "iterator age of {}",
            f.logical
        );
        for (_, (ns, name, d)) in &rows {
            if ns == sync_ledger::lambda::emf::NAMESPACE
                && d.get("Function").map(String::as_str) == Some("projector")
            {
                assert!(emitted.contains(name), "the projector emits no {name}");
            }
        }
    }
    // API calls: the connectors emit no call metric; the sync projections' applied events
    // stand for them (the correlation view folds only and calls nothing).
    for projection in ["account-sync", "order-sync", "product-sync"] {
        assert!(has(
            sync_ledger::lambda::emf::NAMESPACE,
            "EventsApplied",
            &[("Function", "projector"), ("Projection", projection)]
        ));
    }

    for queue in failure_queues() {
        let name = format!("getatt:{queue}.QueueName");
        assert!(
            has(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                &[("QueueName", &name)]
            ),
            "depth of {queue}"
        );
    }
    for (logical, _) in resources_of_type(template(), "AWS::Serverless::Function") {
        let name = format!("ref:{logical}");
        assert!(
            has("AWS/Lambda", "Errors", &[("FunctionName", &name)]),
            "errors of {logical}"
        );
    }
    for (logical, _) in resources_of_type(template(), "AWS::DynamoDB::Table") {
        let table = format!("ref:{logical}");
        for metric in [
            "ConsumedReadCapacityUnits",
            "ConsumedWriteCapacityUnits",
            "ReadThrottleEvents",
            "WriteThrottleEvents",
        ] {
            assert!(
                has("AWS/DynamoDB", metric, &[("TableName", &table)]),
                "{metric} of {logical}"
            );
        }
    }
}

/// The give-up consumer: on the queue every projector mapping sends its discarded ranges to,
/// reporting batch item failures, with its own DLQ behind that queue, a visibility timeout
/// of at least six times its timeout, a role that reads only that stream and consumes only
/// that queue, and a `PROJECTOR_FUNCTION_PREFIX` that names every projector function (the
/// consumer reads the projection from the function ARN).
#[test]
fn give_up_consumer_reads_every_projector_give_up_with_least_privilege() {
    let resources = &template()["Resources"];
    let consumer = &resources["GiveUpConsumerFunction"];
    let queue_arn = serde_json::json!({"Fn::GetAtt": ["ProjectorFailureQueue", "Arn"]});
    let events: Vec<&Value> = consumer["Properties"]["Events"]
        .as_object()
        .expect("the consumer has Events")
        .values()
        .collect();
    assert_eq!(events.len(), 1, "one trigger");
    assert_eq!(events[0]["Type"], "SQS");
    assert_eq!(events[0]["Properties"]["Queue"], queue_arn);
    assert_eq!(
        events[0]["Properties"]["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );

    let queue = &resources["ProjectorFailureQueue"]["Properties"];
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        serde_json::json!({"Fn::GetAtt": ["GiveUpConsumerDlq", "Arn"]})
    );
    let timeout = consumer["Properties"]
        .get("Timeout")
        .unwrap_or_else(|| global_function_property("Timeout"))
        .as_u64()
        .unwrap();
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap_or(30) >= 6 * timeout,
        "visibility timeout at least 6 x the consumer's timeout"
    );

    let prefix = consumer["Properties"]["Environment"]["Variables"]["PROJECTOR_FUNCTION_PREFIX"]
        ["Fn::Sub"]
        .as_str()
        .expect("PROJECTOR_FUNCTION_PREFIX is a !Sub");
    let mut projectors = 0;
    for (logical, f) in resources_of_type(template(), "AWS::Serverless::Function") {
        if f["Metadata"]["BuildProperties"]["Binary"] != "projector" {
            continue;
        }
        projectors += 1;
        let projection = f["Properties"]["Environment"]["Variables"]["PROJECTION"]
            .as_str()
            .unwrap();
        assert_eq!(
            f["Properties"]["FunctionName"]["Fn::Sub"],
            format!("{prefix}{projection}"),
            "{logical}: named so the consumer reads its projection"
        );
        let mapping = f["Properties"]["Events"]
            .as_object()
            .unwrap()
            .values()
            .find(|e| e["Type"] == "DynamoDB")
            .unwrap();
        assert_eq!(
            mapping["Properties"]["DestinationConfig"]["OnFailure"]["Destination"], queue_arn,
            "{logical} gives up to the consumer's queue"
        );
    }
    assert_eq!(projectors, 4);

    // The role's own statements: stream reads on the events stream only, SQS on the queue only.
    let role = &resources["GiveUpConsumerRole"]["Properties"];
    let statements: Vec<&Value> = role["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap())
        .collect();
    for statement in statements {
        let list: Vec<&str> = match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        for action in list {
            let resource = &statement["Resource"];
            if action.starts_with("dynamodb:") {
                assert!(
                    ["dynamodb:GetRecords", "dynamodb:GetShardIterator"].contains(&action),
                    "{action}: the consumer only reads the stream"
                );
                assert_eq!(
                    resource,
                    &serde_json::json!({"Fn::GetAtt": ["EventsTable", "StreamArn"]})
                );
            } else if action.starts_with("sqs:") {
                assert_ne!(action, "sqs:SendMessage", "the consumer sends nothing");
                assert_eq!(resource, &queue_arn, "{action}");
            } else {
                assert!(action.starts_with("logs:"), "{action}");
            }
        }
    }
    let managed: Vec<&str> = role["ManagedPolicyArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Ref"].as_str())
        .collect();
    assert_eq!(managed, ["LedgerAppendPolicy", "TracingPolicy"]);
}
