//! Fault family 7, bad input: every decoder that reads bytes from outside (SQS/EventBridge
//! bodies, Zuora callout bodies, CLI input lines and ledger envelopes, DynamoDB stream images,
//! callout signature headers) is driven with 103,000 generated cases in total — real fixtures
//! with 1-3 fields anywhere removed or replaced by any JSON (also inside an SQS event), real
//! fixtures truncated or with a character changed, arbitrary text and JSON, mutated envelopes
//! and stream images, forged signature headers; and whole Lambda invocations (SQS batch,
//! Function URL callout, direct EventBridge) mutated anywhere, through `IngestHandler::handle`
//! on an embedded ledger. Asserted: no panic, every rejection
//! names a reason (and a non-empty field when it names one), and the `IngestRejected` event
//! of a rejection keeps the raw bytes. Each test prints its case and rejection counts.

mod common;

use chrono::Utc;
use common::ingest_fixtures::{callout_request, fixture, signature_header, sqs_event};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use sync_ledger::ingest::decode::{decode_envelope, decode_line};
use sync_ledger::ingest::signature::{self, CalloutSecret};
use sync_ledger::ingest::{map_body, rejection_event, split_raw, zuora, Channel, Rejection};
use sync_ledger::lambda::ingest::{IngestError, IngestHandler};
use sync_ledger::ledger::dynamodb::item::{decode_event, event_item};
use sync_ledger::ledger::{EventLog, SqliteLedger};
use sync_ledger::projections::{CorrelationId, EventId, NewEvent, Source, SourceEventId, StreamId};

/// The real-shaped inputs the mutations start from (shapes: tests/fixtures/README.md).
const FIXTURES: &[&str] = &[
    "salesforce/account_change_create.json",
    "salesforce/account_change_update_enriched.json",
    "salesforce/order_change_activated.json",
    "salesforce/order_event_activated.json",
    "salesforce/product2_change_create.json",
    "salesforce/unknown_platform_event.json",
    "zuora/account_created.json",
    "zuora/payment_processed_unmapped.json",
    "zuora/price_changed.json",
    "zuora/subscription_created.json",
];

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A rejection must say why, and name a real field when it names one.
fn assert_explained(rejection: &Rejection, input: &str) {
    assert!(
        !rejection.reason.trim().is_empty(),
        "rejection without a reason for {input:?}"
    );
    if let Some(field) = &rejection.field {
        assert!(!field.trim().is_empty(), "empty field name for {input:?}");
    }
    // Nothing lost: the rejection event keeps the raw bytes (a prefix when over the cap).
    let event = rejection_event(Channel::Cli, input.as_bytes(), rejection, Utc::now());
    let kept = event.payload["raw"].as_str().expect("raw is kept as text");
    let kept_all_or_a_prefix = input.starts_with(kept) && (!kept.is_empty() || input.is_empty());
    assert!(kept_all_or_a_prefix, "rejection event lost the raw input");
    assert_eq!(event.payload["reason"], rejection.reason);
}

/// Any JSON value, including the awkward ones (control characters, huge and negative numbers,
/// deep nesting, empty containers).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\\u{7f}\\u{2028}\\u{fffd}]{0,8}".prop_map(Value::String),
        Just(json!("")),
        Just(json!("2026-13-45T99:99:99Z")),
        Just(json!("not-a-date")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Paths of every node in `value` (object keys and array indexes).
fn paths(value: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(PathStep::Key(k.clone()));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        // JSON-in-a-string (Salesforce `Items__c`) is mutated as text by `replace`.
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove,
    Replace(Value),
}

/// Applies `mutation` at the `pick`-th node of `value` (modulo the node count).
fn mutate(value: &mut Value, pick: usize, mutation: &Mutation) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return;
    }
    let path = &all[pick % all.len()];
    let (last, parents) = path.split_last().expect("paths are non-empty");
    let mut node = value;
    for step in parents {
        node = match step {
            PathStep::Key(k) => node.get_mut(k.as_str()).expect("path exists"),
            PathStep::Index(i) => node.get_mut(*i).expect("path exists"),
        };
    }
    match (mutation, last, node) {
        (Mutation::Remove, PathStep::Key(k), Value::Object(map)) => {
            map.remove(k);
        }
        (Mutation::Remove, PathStep::Index(i), Value::Array(items)) => {
            items.remove(*i);
        }
        (Mutation::Replace(new), PathStep::Key(k), Value::Object(map)) => {
            map.insert(k.clone(), new.clone());
        }
        (Mutation::Replace(new), PathStep::Index(i), Value::Array(items)) => {
            items[*i] = new.clone();
        }
        _ => unreachable!("paths point into objects and arrays"),
    }
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    (
        any::<usize>(),
        prop_oneof![
            1 => Just(Mutation::Remove),
            3 => any_json().prop_map(Mutation::Replace),
        ],
    )
}

/// One of the fixtures whose path starts with one of `families` with 1..=3 mutations
/// anywhere in it, as JSON text.
fn mutated_fixture(families: &[&str]) -> impl Strategy<Value = String> {
    let fixtures: Vec<Value> = FIXTURES
        .iter()
        .filter(|p| families.iter().any(|f| p.starts_with(f)))
        .map(|p| serde_json::from_str(&fixture(p)).unwrap())
        .collect();
    (0..fixtures.len(), prop::collection::vec(mutation(), 1..=3)).prop_map(move |(i, mutations)| {
        let mut value = fixtures[i].clone();
        for (pick, m) in &mutations {
            mutate(&mut value, *pick, m);
        }
        value.to_string()
    })
}

/// Text that is mostly not valid JSON: fixtures cut short or with one byte changed, and
/// arbitrary strings.
fn garbled_text() -> impl Strategy<Value = String> {
    let texts: Vec<String> = FIXTURES.iter().map(|p| fixture(p)).collect();
    let texts2 = texts.clone();
    prop_oneof![
        (0..texts.len(), any::<usize>()).prop_map(move |(i, cut)| {
            let t = &texts[i];
            let mut end = cut % (t.len() + 1);
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t[..end].to_string()
        }),
        (0..texts2.len(), any::<usize>(), any::<char>()).prop_map(move |(i, at, c)| {
            let mut chars: Vec<char> = texts2[i].chars().collect();
            let at = at % chars.len();
            chars[at] = c;
            chars.into_iter().collect()
        }),
        ".{0,200}",
        any_json().prop_map(|v| v.to_string()),
    ]
}

/// Feeds one input line through every decoder that accepts untrusted text.
fn decode_everywhere(text: &str, rejected: &AtomicUsize, accepted: &AtomicUsize) {
    let now = Utc::now();
    for record in decode_line(text, now) {
        match &record.mapped {
            Ok(events) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                for event in events {
                    // An accepted event is a valid envelope: it serialises and names its stream.
                    assert!(!event.stream_id.as_str().is_empty());
                    serde_json::to_string(event).expect("accepted events serialise");
                }
            }
            Err(rejection) => {
                rejected.fetch_add(1, Ordering::Relaxed);
                assert_explained(rejection, &record.raw);
            }
        }
    }
    for record in split_raw(text) {
        if let Err(rejection) = map_body(&record.body, now) {
            assert_explained(&rejection, &record.body);
        }
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Err(rejection) = zuora::map_callout(&value, Some(text), now) {
            assert_explained(&rejection, text);
        }
        if let Err(rejection) = decode_envelope(&value) {
            assert_explained(&rejection, text);
        }
    }
}

/// `family`'s fixtures mutated `cases` times, directly and inside an SQS event.
fn mutated_fixtures_never_panic_and_every_rejection_has_a_reason(families: &[&str], cases: u32) {
    let (rejected, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner(cases)
        .run(&mutated_fixture(families), |text| {
            decode_everywhere(&text, &rejected, &accepted);
            // The same body inside an SQS Lambda event: one record, same outcome.
            let sqs = json!({"Records": [{"messageId": "m-1", "body": text}]}).to_string();
            let via_sqs = decode_line(&sqs, Utc::now());
            assert_eq!(via_sqs.len(), 1);
            assert_eq!(via_sqs[0].id.as_deref(), Some("m-1"));
            if let Err(rejection) = &via_sqs[0].mapped {
                assert_explained(rejection, &via_sqs[0].raw);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "faults_bad_input: mutated {families:?} fixtures: {cases} cases, {} records rejected, {} accepted",
        rejected.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed)
    );
    assert!(rejected.load(Ordering::Relaxed) > 0 && accepted.load(Ordering::Relaxed) > 0);
}

#[test]
fn mutated_salesforce_change_events_never_panic_and_every_rejection_has_a_reason() {
    mutated_fixtures_never_panic_and_every_rejection_has_a_reason(
        &[
            "salesforce/account_change",
            "salesforce/order_change",
            "salesforce/product2_change",
        ],
        10_000,
    );
}

#[test]
fn mutated_salesforce_platform_events_never_panic_and_every_rejection_has_a_reason() {
    mutated_fixtures_never_panic_and_every_rejection_has_a_reason(
        &[
            "salesforce/order_event",
            "salesforce/unknown_platform_event",
        ],
        10_000,
    );
}

#[test]
fn mutated_zuora_callouts_never_panic_and_every_rejection_has_a_reason() {
    mutated_fixtures_never_panic_and_every_rejection_has_a_reason(&["zuora/"], 10_000);
}

#[test]
fn garbled_and_arbitrary_text_is_rejected_with_a_reason() {
    let (rejected, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cases = 25_000;
    runner(cases)
        .run(&garbled_text(), |text| {
            decode_everywhere(&text, &rejected, &accepted);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "faults_bad_input: garbled text: {cases} cases, {} records rejected, {} accepted",
        rejected.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed)
    );
    assert!(rejected.load(Ordering::Relaxed) > 0);
}

const ENVELOPE_FIELDS: &[&str] = &[
    "event_id",
    "stream_id",
    "event_type",
    "schema_version",
    "source",
    "source_event_id",
    "correlation_id",
    "causation_id",
    "occurred_at",
    "payload",
];

fn valid_envelope() -> Value {
    json!({
        "event_id": EventId::new().to_string(),
        "stream_id": "crm-account-001xx000003DGb2AAG",
        "event_type": "SomethingNew",
        "schema_version": 1,
        "source": "crm",
        "source_event_id": "evt-1",
        "correlation_id": CorrelationId::new().to_string(),
        "causation_id": EventId::new().to_string(),
        "occurred_at": "2026-11-26T09:16:20Z",
        "payload": {"a": 1}
    })
}

#[test]
fn mutated_cli_envelopes_never_panic_and_name_the_field() {
    let base = valid_envelope();
    assert!(decode_envelope(&base).is_ok(), "the base envelope is valid");
    let rejected = AtomicUsize::new(0);
    let cases = 20_000;
    runner(cases)
        .run(&prop::collection::vec(mutation(), 1..=3), |mutations| {
            let mut value = base.clone();
            for (pick, m) in &mutations {
                // Only top-level fields: those are the envelope's own.
                let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
                if keys.is_empty() {
                    break;
                }
                let key = &keys[pick % keys.len()];
                match m {
                    Mutation::Remove => {
                        value.as_object_mut().unwrap().remove(key);
                    }
                    Mutation::Replace(v) => value[key.as_str()] = v.clone(),
                }
            }
            let text = value.to_string();
            match decode_envelope(&value) {
                Ok(event) => {
                    assert!(!event.stream_id.as_str().is_empty());
                }
                Err(rejection) => {
                    rejected.fetch_add(1, Ordering::Relaxed);
                    assert_explained(&rejection, &text);
                    // An envelope's rejection names which of its fields is wrong.
                    let field = rejection.field.as_deref().unwrap_or_default();
                    let top = field.split('.').next().unwrap_or_default();
                    assert!(
                        ENVELOPE_FIELDS.contains(&top),
                        "rejection of {text} names {field:?}, not an envelope field"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "faults_bad_input: CLI envelopes: {cases} cases, {} rejected",
        rejected.load(Ordering::Relaxed)
    );
    assert!(rejected.load(Ordering::Relaxed) > 0);
}

fn valid_stream_image() -> Value {
    let event = NewEvent {
        event_id: EventId::new(),
        stream_id: StreamId::parse("crm-account-001xx000003DGb2AAG").unwrap(),
        event_type: "AccountChanged".into(),
        schema_version: 1,
        source: Source::Crm,
        source_event_id: SourceEventId::parse("evt-7").unwrap(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
        payload: json!({"name": "Acme"}),
    };
    serde_json::to_value(event_item(&event, 3, &Utc::now(), 4)).unwrap()
}

#[test]
fn mutated_stream_images_are_skipped_or_reported_corrupt_never_panic() {
    let base = valid_stream_image();
    let item: serde_dynamo::Item = serde_dynamo::to_item(&base).unwrap();
    assert!(
        decode_event(item).unwrap().is_some(),
        "the base image decodes"
    );
    let (corrupt, skipped) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cases = 20_000;
    runner(cases)
        .run(&prop::collection::vec(mutation(), 1..=3), |mutations| {
            let mut value = base.clone();
            for (pick, m) in &mutations {
                let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
                if keys.is_empty() {
                    break;
                }
                let key = &keys[pick % keys.len()];
                match m {
                    Mutation::Remove => {
                        value.as_object_mut().unwrap().remove(key);
                    }
                    Mutation::Replace(v) => value[key.as_str()] = v.clone(),
                }
            }
            let Ok(item) = serde_dynamo::to_item::<_, serde_dynamo::Item>(&value) else {
                return Ok(()); // not representable as a DynamoDB item at all
            };
            match decode_event(item) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    corrupt.fetch_add(1, Ordering::Relaxed);
                    assert!(!e.to_string().trim().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "faults_bad_input: stream images: {cases} cases, {} corrupt, {} skipped (not events)",
        corrupt.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed)
    );
    assert!(corrupt.load(Ordering::Relaxed) > 0);
}

#[test]
fn arbitrary_signature_headers_never_verify_or_panic() {
    let secret = CalloutSecret::new("callout-secret-under-test").unwrap();
    let body = fixture("zuora/account_created.json");
    let now = 1_800_000_000;
    let good = secret.sign(body.as_bytes(), now);
    let good_mac = good.split("v1=").nth(1).unwrap().to_string();
    let cases = 5_000;
    let header = prop_oneof![
        ".{0,120}",
        // Well-formed headers with a forged MAC or timestamp.
        (any::<i64>(), "[0-9a-f]{64}").prop_map(|(t, mac)| format!("t={t},v1={mac}")),
        (any::<u8>(), any::<usize>()).prop_map(move |(b, at)| {
            let mut bytes = good.clone().into_bytes();
            let at = at % bytes.len();
            bytes[at] = if bytes[at] == b { b.wrapping_add(1) } else { b };
            String::from_utf8_lossy(&bytes).into_owned()
        }),
    ];
    runner(cases)
        .run(&header, |h| {
            match signature::verify(&secret, Some(&h), body.as_bytes(), now) {
                Ok(()) => {
                    // Only the real signature (or a header carrying it unchanged) verifies.
                    assert!(h.to_ascii_lowercase().contains(&good_mac), "forged {h:?}");
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
    eprintln!("faults_bad_input: signature headers: {cases} cases, none forged");
}

const CALLOUT_SECRET: &str = "callout-secret-under-test";

/// Whole invocations as Lambda hands them to the ingest function, before mutation: an SQS
/// batch of a Salesforce event, a signed Billing callout, a directly delivered EventBridge event.
fn invocations() -> Vec<Value> {
    let salesforce = fixture("salesforce/account_change_create.json");
    let zuora = fixture("zuora/account_created.json");
    let now = Utc::now().timestamp();
    vec![
        sqs_event(&[("m-1", salesforce.clone())]),
        callout_request(&zuora, &signature_header(CALLOUT_SECRET, &zuora, now)),
        serde_json::from_str(&salesforce).unwrap(),
    ]
}

/// One invocation with 1..=3 mutations anywhere; or a Billing callout whose body is mutated
/// and then correctly signed, so the mapping behind the signature check is reached.
fn mutated_invocation() -> impl Strategy<Value = Value> {
    let bases = invocations();
    let zuora: Value = serde_json::from_str(&fixture("zuora/account_created.json")).unwrap();
    prop_oneof![
        (0..bases.len(), prop::collection::vec(mutation(), 1..=3)).prop_map(
            move |(i, mutations)| {
                let mut value = bases[i].clone();
                for (pick, m) in &mutations {
                    mutate(&mut value, *pick, m);
                }
                value
            }
        ),
        prop::collection::vec(mutation(), 1..=3).prop_map(move |mutations| {
            let mut body = zuora.clone();
            for (pick, m) in &mutations {
                mutate(&mut body, *pick, m);
            }
            let body = body.to_string();
            let signed = signature_header(CALLOUT_SECRET, &body, Utc::now().timestamp());
            callout_request(&body, &signed)
        }),
    ]
}

#[test]
fn mutated_lambda_invocations_are_answered_with_a_reason_and_lose_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    sync_ledger::ledger::sqlite::migrate(&path).unwrap();
    let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(SqliteLedger::open(&path).unwrap());
    let handler = IngestHandler::new(log.clone(), CalloutSecret::new(CALLOUT_SECRET).unwrap());
    let (refused, answered) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cases = 3_000;
    runner(cases)
        .run(&mutated_invocation(), |invocation| {
            let text = invocation.to_string();
            match rt.block_on(handler.handle(invocation)) {
                Err(e @ IngestError::NotRecorded { .. }) => {
                    panic!("a healthy ledger did not record {text}: {e}")
                }
                Err(e) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    assert!(!e.to_string().trim().is_empty(), "no reason for {text}");
                }
                Ok(answer) => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    if let Some(failures) = answer.get("batchItemFailures") {
                        // Only a record whose outcome could not be recorded is redelivered.
                        assert_eq!(failures, &json!([]), "{text} -> {answer}");
                    }
                    if let Some(status) = answer.get("statusCode").and_then(Value::as_u64) {
                        assert!(status < 500, "{text} -> {answer}");
                        if status >= 400 {
                            let body: Value =
                                serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
                            let reason = body["error"].as_str().unwrap_or_default();
                            assert!(!reason.trim().is_empty(), "{text} -> {answer}");
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // Nothing lost: every rejected record is in the ledger with its reason and raw bytes.
    let events = rt.block_on(log.read_all(None, None, 1_000_000)).unwrap();
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "IngestRejected")
        .collect();
    for e in &rejected {
        assert!(
            !e.payload["reason"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty(),
            "{e:?}"
        );
        assert!(e.payload["raw"].is_string(), "{e:?}");
    }
    eprintln!(
        "faults_bad_input: Lambda invocations: {cases} cases, {} answered, {} refused as invalid invocations, {} events recorded of which {} IngestRejected (each with reason and raw)",
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        events.len(),
        rejected.len()
    );
    assert!(!rejected.is_empty());
}
