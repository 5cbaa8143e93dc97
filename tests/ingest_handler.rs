//! The ingest Lambda handler driven through its entry point (`IngestHandler::handle`, which
//! the `ingest` binary hands every invocation to) with the fixture events of
//! tests/fixtures, against the DynamoDB ledger on moto. Asserts what an operator would check in the
//! ledger: each good record once, bad records kept with a reason, refused callouts absent.

mod common;

use common::ingest_fixtures::{callout_request, fixture, signature_header, sqs_event};
use common::ingest_store::{fresh_store, unreachable_store, TestStore, ThrottlingProxy};
use common::moto::moto;
use serde_json::{json, Value};
use std::sync::Arc;
use sync_ledger::ingest::signature::CalloutSecret;
use sync_ledger::ingest::RAW_CAP;
use sync_ledger::lambda::ingest::{CalloutAuth, IngestHandler};
use sync_ledger::ledger::EventLog;
use sync_ledger::projections::RecordedEvent;

const SECRET: &str = "callout-secret-for-tests";

fn handler(log: Arc<dyn EventLog>) -> IngestHandler {
    IngestHandler::new(log, CalloutSecret::new(SECRET).unwrap())
}

async fn all_events(store: &TestStore) -> Vec<RecordedEvent> {
    store.log().read_all(None, None, 100_000).await.unwrap()
}

fn of_type<'a>(events: &'a [RecordedEvent], event_type: &str) -> Vec<&'a RecordedEvent> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn good_bodies() -> Vec<(&'static str, String)> {
    vec![
        (
            "m-order-pe",
            fixture("salesforce/order_event_activated.json"),
        ),
        (
            "m-acct-create",
            fixture("salesforce/account_change_create.json"),
        ),
        (
            "m-acct-update",
            fixture("salesforce/account_change_update_enriched.json"),
        ),
        (
            "m-product",
            fixture("salesforce/product2_change_create.json"),
        ),
        (
            "m-order-cdc",
            fixture("salesforce/order_change_activated.json"),
        ),
        (
            "m-unknown-pe",
            fixture("salesforce/unknown_platform_event.json"),
        ),
    ]
}

fn bad_bodies() -> Vec<(&'static str, String)> {
    vec![
        ("m-truncated", fixture("bad/truncated_json.txt")),
        (
            "m-missing-acct",
            fixture("bad/order_event_missing_account.json"),
        ),
        ("m-foreign", fixture("bad/foreign_source.json")),
    ]
}

#[tokio::test]
async fn sqs_batch_appends_every_good_record_once_and_redelivery_appends_nothing() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let mut batch = good_bodies();
    batch.extend(bad_bodies());
    let event = sqs_event(&batch);

    let response = h.handle(event.clone()).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    let first = all_events(&store).await;
    assert_eq!(first.len(), 9, "6 good records + 3 rejections: {first:#?}");

    let order = &of_type(&first, "CrmOrderActivated");
    assert_eq!(order.len(), 2, "platform event + CDC activation");
    let pe = order
        .iter()
        .find(|e| e.stream_id.as_str() == "crm-order-801xx000003GZ9vAAG")
        .unwrap();
    assert_eq!(
        pe.source_event_id.as_str(),
        "a4b2c1d0-9e8f-4a7b-8c6d-5e4f3a2b1c01"
    );
    assert_eq!(
        pe.correlation_id.to_string(),
        "0192f3c4-7d1e-7a42-9b3c-5e6f7a8b9c0d"
    );
    assert_eq!(pe.payload["items"][1]["unit_price"], json!(199.0));
    let accounts = of_type(&first, "CrmAccountUpserted");
    assert_eq!(accounts.len(), 2);
    assert!(accounts
        .iter()
        .all(|e| e.stream_id.as_str() == "crm-account-001xx000003DGb2AAG"));
    let echo = accounts
        .iter()
        .find(|e| e.payload["billing_account_id"].is_string())
        .unwrap();
    assert_eq!(
        echo.payload["origin"], "sync-ledger",
        "our own write is marked as an echo"
    );
    assert_eq!(
        of_type(&first, "CrmProductChanged")[0].payload["product_code"],
        "GC1020"
    );
    assert_eq!(
        of_type(&first, "Unmapped.Salesforce.Carbon_Comparison__e").len(),
        1
    );

    // The whole batch again (SQS redelivery, relay replay): nothing new.
    let again = h.handle(event).await.unwrap();
    assert_eq!(again, json!({"batchItemFailures": []}));
    assert_eq!(all_events(&store).await.len(), first.len());
}

#[tokio::test]
async fn bad_records_are_rejected_with_the_field_and_the_raw_body_kept() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let bad = bad_bodies();
    h.handle(sqs_event(&bad)).await.unwrap();

    let events = all_events(&store).await;
    let rejected = of_type(&events, "IngestRejected");
    assert_eq!(rejected.len(), 3);
    for (_, body) in &bad {
        let r = rejected
            .iter()
            .find(|e| e.payload["raw"] == json!(body))
            .expect("raw kept verbatim");
        assert_eq!(r.payload["channel"], "sqs");
        assert_eq!(r.payload["raw_truncated"], false);
        assert!(r.stream_id.as_str().starts_with("system-ingest-rejected-"));
    }
    let field = |f: &str| rejected.iter().any(|e| e.payload["field"] == json!(f));
    assert!(field("detail.payload.Account_Id__c"), "{rejected:#?}");
    assert!(field("source"));
    assert!(rejected
        .iter()
        .any(|e| e.payload["reason"].as_str().unwrap().contains("not JSON")));
}

#[tokio::test]
async fn an_oversized_poison_message_is_kept_truncated_and_left_for_the_dead_letter_queue() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let huge = format!("{{\"unknown\": \"{}\"}}", "x".repeat(RAW_CAP + 10));
    let event = sqs_event(&[
        ("m-huge", huge.clone()),
        ("m-ok", fixture("salesforce/product2_change_create.json")),
    ]);

    let response = h.handle(event.clone()).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m-huge"}]})
    );
    let events = all_events(&store).await;
    let rejected = of_type(&events, "IngestRejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].payload["raw_truncated"], true);
    assert_eq!(rejected[0].payload["raw_len"], json!(huge.len()));

    // Each redelivery until the redrive policy moves it to the DLQ records nothing new.
    h.handle(event).await.unwrap();
    assert_eq!(all_events(&store).await.len(), events.len());
}

#[tokio::test]
async fn eventbridge_delivered_directly_is_appended_once() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let event: Value =
        serde_json::from_str(&fixture("salesforce/order_event_activated.json")).unwrap();
    assert_eq!(
        h.handle(event.clone()).await.unwrap(),
        json!({"outcome": "appended"})
    );
    assert_eq!(
        h.handle(event).await.unwrap(),
        json!({"outcome": "already_recorded"})
    );
    let events = all_events(&store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "CrmOrderActivated");
}

fn status_and_body(response: &Value) -> (i64, Value) {
    let body = response["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (response["statusCode"].as_i64().unwrap(), body)
}

#[tokio::test]
async fn a_signed_callout_is_appended_then_reported_already_recorded() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let body = fixture("zuora/subscription_created.json");
    let mut headers = signature_header(SECRET, &body, chrono::Utc::now().timestamp());
    headers.push((
        "x-correlation-id",
        "0192f3c4-7d1e-7a42-9b3c-5e6f7a8b9c0d".to_string(),
    ));
    let request = callout_request(&body, &headers);

    let (status, reply) = status_and_body(&h.handle(request.clone()).await.unwrap());
    assert_eq!((status, reply), (200, json!({"outcome": "appended"})));
    let (status, reply) = status_and_body(&h.handle(request).await.unwrap());
    assert_eq!(
        (status, reply),
        (200, json!({"outcome": "already_recorded"}))
    );

    let events = all_events(&store).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event_type, "BillingSubscriptionCreated");
    assert_eq!(e.stream_id.as_str(), "billing-subscription-A-S00000107");
    assert_eq!(
        e.source_event_id.as_str(),
        "8ad0823f8f2a1b2c018f2a3b4c5d0002"
    );
    assert_eq!(
        e.correlation_id.to_string(),
        "0192f3c4-7d1e-7a42-9b3c-5e6f7a8b9c0d"
    );
    assert_eq!(e.payload["crm_order_id"], "801xx000003GZ9vAAG");
}

#[tokio::test]
async fn forged_stale_and_unsigned_callouts_are_refused_and_not_recorded() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let body = fixture("zuora/account_created.json");
    let now = chrono::Utc::now().timestamp();
    let forged = CalloutSecret::new("guessed")
        .unwrap()
        .sign(body.as_bytes(), now);
    let cases = [
        ("forged", vec![("x-zuora-signature", forged)]),
        ("stale", signature_header(SECRET, &body, now - 301)),
        ("unsigned", vec![]),
        (
            "tampered",
            signature_header(SECRET, &body.replace("Acme", "Evil"), now),
        ),
    ];
    for (case, headers) in cases {
        let (status, reply) =
            status_and_body(&h.handle(callout_request(&body, &headers)).await.unwrap());
        assert_eq!(status, 401, "{case}: {reply}");
        assert!(
            !reply.to_string().contains(SECRET),
            "{case}: the secret never leaks"
        );
    }
    assert!(
        all_events(&store).await.is_empty(),
        "a refused callout records nothing"
    );
}

#[tokio::test]
async fn a_signed_callout_with_a_bad_payload_is_400_naming_the_field_and_kept() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let body = fixture("zuora/account_created.json").replace("\"name\": \"Acme Corporation\",", "");
    let request = callout_request(
        &body,
        &signature_header(SECRET, &body, chrono::Utc::now().timestamp()),
    );
    let (status, reply) = status_and_body(&h.handle(request).await.unwrap());
    assert_eq!(status, 400);
    assert_eq!(reply["field"], "account.name");
    let events = all_events(&store).await;
    let rejected = of_type(&events, "IngestRejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].payload["channel"], "billing-callout");
    assert_eq!(rejected[0].payload["raw"], json!(body));
}

#[tokio::test]
async fn an_unknown_billing_event_type_is_kept_as_unmapped() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let body = fixture("zuora/payment_processed_unmapped.json");
    let request = callout_request(
        &body,
        &signature_header(SECRET, &body, chrono::Utc::now().timestamp()),
    );
    let (status, _) = status_and_body(&h.handle(request).await.unwrap());
    assert_eq!(status, 200);
    let events = all_events(&store).await;
    assert_eq!(events[0].event_type, "Unmapped.Zuora.PaymentProcessed");
    assert_eq!(events[0].payload["payment"]["amount"], json!(125.0));
}

#[tokio::test]
async fn a_base64_encoded_callout_is_verified_on_its_decoded_bytes_and_other_methods_are_refused() {
    use base64::Engine;
    let store = fresh_store().await;
    let h = handler(store.log());
    let body = fixture("zuora/price_changed.json");
    let mut request = callout_request(
        "",
        &signature_header(SECRET, &body, chrono::Utc::now().timestamp()),
    );
    request["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&body));
    request["isBase64Encoded"] = json!(true);
    let (status, reply) = status_and_body(&h.handle(request.clone()).await.unwrap());
    assert_eq!((status, reply), (200, json!({"outcome": "appended"})));
    let prices = all_events(&store).await;
    assert_eq!(
        of_type(&prices, "BillingPriceChanged").len(),
        2,
        "one per currency"
    );

    request["requestContext"]["http"]["method"] = json!("GET");
    let (status, _) = status_and_body(&h.handle(request).await.unwrap());
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_throttled_record_is_a_batch_item_failure_while_the_rest_of_the_batch_is_recorded() {
    let proxy = ThrottlingProxy::start(moto().endpoint()).await;
    let store = proxy.store().await;
    let h = handler(store.log());
    let order = fixture("salesforce/order_event_activated.json");
    proxy.throttle("crm-order-801xx000003GZ9vAAG");
    let batch = sqs_event(&[
        ("m-order-pe", order.clone()),
        (
            "m-product",
            fixture("salesforce/product2_change_create.json"),
        ),
        (
            "m-missing-acct",
            fixture("bad/order_event_missing_account.json"),
        ),
    ]);

    let response = h.handle(batch).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m-order-pe"}]}),
        "only the throttled record is redelivered"
    );
    let events = all_events(&store).await;
    assert_eq!(of_type(&events, "CrmProductChanged").len(), 1);
    assert_eq!(
        of_type(&events, "IngestRejected").len(),
        1,
        "the bad record is kept"
    );
    assert!(of_type(&events, "CrmOrderActivated").is_empty());

    // SQS redelivers only the failed message; the partition has cooled down.
    proxy.stop_throttling();
    let redelivered = sqs_event(&[("m-order-pe", order)]);
    assert_eq!(
        h.handle(redelivered).await.unwrap(),
        json!({"batchItemFailures": []})
    );
    let events = all_events(&store).await;
    assert_eq!(of_type(&events, "CrmOrderActivated").len(), 1);
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn when_the_ledger_is_unreachable_nothing_is_lost_and_senders_are_told_to_retry() {
    let gone = unreachable_store().await;
    let h = handler(gone.log());
    let batch = sqs_event(&[
        ("m-good", fixture("salesforce/order_event_activated.json")),
        ("m-bad", fixture("bad/order_event_missing_account.json")),
    ]);
    let response = h.handle(batch).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m-good"}, {"itemIdentifier": "m-bad"}]}),
        "even the bad record's rejection could not be kept, so it is redelivered too"
    );

    let body = fixture("zuora/account_created.json");
    let request = callout_request(
        &body,
        &signature_header(SECRET, &body, chrono::Utc::now().timestamp()),
    );
    let response = h.handle(request).await.unwrap();
    assert_eq!(response["statusCode"], 503);
    assert_eq!(response["headers"]["retry-after"], "5");
}

#[tokio::test]
async fn a_callout_secret_rotated_in_ssm_is_picked_up_and_the_old_one_still_accepted() {
    use sync_ledger::connectors::token::{ServiceName, SsmStore, TokenProvider};
    use sync_ledger::lambda::ingest::{CalloutAuth, TokenSecret};

    let ssm = moto().ssm().await;
    let service = ServiceName::parse(&common::moto::unique_name("billing-callout")).unwrap();
    let put = |value: &'static str| {
        ssm.put_parameter()
            .name(service.parameter_name())
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
    };
    put("secret-before-rotation").await.unwrap();
    let tokens = Arc::new(TokenProvider::new(
        Arc::new(SsmStore::new(ssm.clone())),
        TokenProvider::DEFAULT_TTL,
    ));
    let source = Arc::new(TokenSecret::new(tokens, service.clone()));
    // No minimum interval between re-reads, so the test need not wait a minute.
    let auth = CalloutAuth::load(source, std::time::Duration::ZERO)
        .await
        .unwrap();
    let store = fresh_store().await;
    let h = IngestHandler::with_auth(store.log(), auth);

    put("secret-after-rotation").await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let new_body = fixture("zuora/account_created.json");
    let old_body = fixture("zuora/subscription_created.json");
    for (body, secret, expected) in [
        (&new_body, "secret-after-rotation", 200),
        (&old_body, "secret-before-rotation", 200),
        (&old_body, "never-the-secret", 401),
    ] {
        let request = callout_request(body, &signature_header(secret, body, now));
        let (status, reply) = status_and_body(&h.handle(request).await.unwrap());
        assert_eq!(status, expected, "{secret}: {reply}");
    }
    assert_eq!(all_events(&store).await.len(), 2);
}

fn basic(credentials: &str) -> (&'static str, String) {
    use base64::Engine;
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ),
    )
}

#[tokio::test]
async fn a_callout_with_basic_auth_is_appended_and_wrong_or_unconfigured_basic_is_refused() {
    let store = fresh_store().await;
    let h = handler(store.log()).with_basic_auth(CalloutAuth::fixed(
        CalloutSecret::new("zuora-callouts:pa55word").unwrap(),
    ));
    let body = fixture("zuora/subscription_created.json");

    let good = callout_request(&body, &[basic("zuora-callouts:pa55word")]);
    let (status, reply) = status_and_body(&h.handle(good).await.unwrap());
    assert_eq!((status, reply), (200, json!({"outcome": "appended"})));

    let other = fixture("zuora/account_created.json");
    for (credentials, why) in [
        ("zuora-callouts:wrong", "wrong password"),
        ("someone:pa55word", "wrong user"),
    ] {
        let request = callout_request(&other, &[basic(credentials)]);
        let (status, reply) = status_and_body(&h.handle(request).await.unwrap());
        assert_eq!(status, 401, "{why}");
        assert_eq!(reply["error"], "Authorization credentials do not match");
        assert!(!reply.to_string().contains("pa55word"), "{reply}");
    }
    // Without Basic configured, Basic credentials are not a way around the signature.
    let unconfigured = handler(store.log());
    let request = callout_request(&other, &[basic("zuora-callouts:pa55word")]);
    let (status, _) = status_and_body(&unconfigured.handle(request).await.unwrap());
    assert_eq!(status, 401);

    let events = all_events(&store).await;
    assert_eq!(
        events.len(),
        1,
        "only the authenticated callout is recorded"
    );
    assert_eq!(events[0].event_type, "BillingSubscriptionCreated");
}

#[tokio::test]
async fn a_notification_retried_with_a_new_request_id_and_a_re_rendered_body_is_recorded_once() {
    let store = fresh_store().await;
    let h = handler(store.log());
    let first = fixture("zuora/subscription_created.json");
    // Zuora renders the template again for the retry: another event id and time.
    let mut rendered: Value = serde_json::from_str(&first).unwrap();
    rendered["eventId"] = json!("8ad0823f8f2a1b2c018f2a3b4c5d9999");
    rendered["eventTime"] = json!("2026-03-01T10:00:05.000Z");
    let retry = rendered.to_string();
    let now = chrono::Utc::now().timestamp();
    let send = |body: &str, request_id: &str| {
        let mut headers = signature_header(SECRET, body, now);
        headers.push(("zuora-notification-id", "2c92c0f9-notif-0001".to_string()));
        headers.push(("zuora-request-id", request_id.to_string()));
        callout_request(body, &headers)
    };

    let (status, reply) = status_and_body(&h.handle(send(&first, "req-1")).await.unwrap());
    assert_eq!((status, reply), (200, json!({"outcome": "appended"})));
    let (status, reply) = status_and_body(&h.handle(send(&retry, "req-2")).await.unwrap());
    assert_eq!(
        (status, reply),
        (200, json!({"outcome": "already_recorded"}))
    );

    let events = all_events(&store).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].source_event_id.as_str(), "2c92c0f9-notif-0001");
}
