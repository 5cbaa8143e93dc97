//! The sandbox emits what the real systems would, in the shapes the ingest path takes: each
//! outbox event is fed to the real ingest mapper and must become the expected catalogue
//! event (origin marker on our own writes, none on a person's), with callouts signed.

mod common;

use chrono::Utc;
use projections::{CorrelationId, DomainEvent};
use sandbox::{
    Faults, OutboxEvent, Price, Product, Sandbox, SandboxConfig, System, CALLOUT_SIGNATURE_HEADER,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use sync_ledger::connectors::billing::{NewAccount, NewSubscription, RatePlanSelection};
use sync_ledger::connectors::crm::{CrmAccountBody, OrderUpdate};
use sync_ledger::connectors::oauth::{ClientCredentials, ClientCredentialsStore};
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, CrmClient, IdempotencyKey, ServiceName, TokenProvider,
};
use sync_ledger::ingest::map_body;
use sync_ledger::ingest::signature::{verify, CalloutSecret};

fn tokens(sandbox: &Sandbox) -> Arc<TokenProvider> {
    let creds = |system: System| {
        let c = sandbox.config().credentials(system);
        ClientCredentials {
            token_url: sandbox.token_url(system),
            client_id: c.client_id.clone(),
            client_secret: ApiToken::new(c.client_secret.expose_secret()).unwrap(),
        }
    };
    Arc::new(TokenProvider::new(
        Arc::new(ClientCredentialsStore::new([
            (ServiceName::crm(), creds(System::Crm)),
            (ServiceName::billing(), creds(System::Billing)),
        ])),
        Duration::from_secs(300),
    ))
}

fn clients(sandbox: &Sandbox) -> (CrmClient, BillingClient) {
    let tokens = tokens(sandbox);
    (
        CrmClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::crm()),
            tokens.clone(),
        )
        .unwrap(),
        BillingClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::billing()),
            tokens,
        )
        .unwrap(),
    )
}

/// The ingest path's view of one delivered event.
fn ingest(event: &OutboxEvent) -> Vec<DomainEvent> {
    map_body(&event.body_text(), Utc::now())
        .unwrap_or_else(|r| panic!("ingest rejected {}: {r:?}", event.body))
        .into_iter()
        .map(|e| {
            projections::RecordedEvent::from_new(e, 1, Utc::now())
                .decode()
                .unwrap()
        })
        .collect()
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn crm_changes_become_account_events_with_origin_only_on_our_writes() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (crm, _) = clients(&sandbox);
    let person = sandbox
        .crm_user_create(
            "Account",
            fields(json!({"Name": "Globex", "CurrencyIsoCode": "EUR"})),
        )
        .unwrap();
    let correlation_id = CorrelationId::new();
    let ours = crm
        .upsert_account(
            "8ad0billing7",
            &CrmAccountBody {
                name: Some("Initech".into()),
                currency: Some("USD".into()),
            },
            correlation_id,
        )
        .await
        .unwrap();
    // A person renames our account: the update carries only the changed field plus the
    // enriched Name, and no origin.
    sandbox
        .crm_user_update(
            "Account",
            &ours.id,
            fields(json!({"Name": "Initech Global"})),
        )
        .unwrap();

    let events: Vec<DomainEvent> = sandbox.drain_outbox().iter().flat_map(ingest).collect();

    let [DomainEvent::CrmAccountUpserted(a), DomainEvent::CrmAccountUpserted(b), DomainEvent::CrmAccountUpserted(c)] =
        events.as_slice()
    else {
        panic!("expected three account events, got {events:?}");
    };
    assert_eq!(
        (a.account_id.as_str(), a.origin.as_deref()),
        (person.as_str(), None)
    );
    assert_eq!(b.account_id, ours.id);
    assert_eq!(b.origin.as_deref(), Some("sync-ledger"));
    assert_eq!(b.billing_account_id.as_deref(), Some("8ad0billing7"));
    assert_eq!(
        (c.name.as_str(), c.origin.as_deref()),
        ("Initech Global", None)
    );
    assert!(sandbox.drain_outbox().is_empty(), "drained");
}

#[tokio::test]
async fn our_crm_write_keeps_the_correlation_id_on_its_echo() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (crm, _) = clients(&sandbox);
    let correlation_id = CorrelationId::new();
    crm.upsert_account(
        "8ad0billing9",
        &CrmAccountBody {
            name: Some("Umbrella".into()),
            currency: None,
        },
        correlation_id,
    )
    .await
    .unwrap();

    let outbox = sandbox.drain_outbox();
    let mapped = map_body(&outbox[0].body_text(), Utc::now()).unwrap();
    assert_eq!(mapped[0].correlation_id, correlation_id);
}

#[tokio::test]
async fn order_activation_and_our_status_write_become_order_events() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (crm, _) = clients(&sandbox);
    let account = sandbox
        .crm_user_create("Account", fields(json!({"Name": "Hooli"})))
        .unwrap();
    let order = sandbox
        .crm_user_create(
            "Order",
            fields(json!({
                "AccountId": account, "Status": "Draft", "EffectiveDate": "2026-12-01",
                "CurrencyIsoCode": "USD", "OrderNumber": "00000100",
                "OrderItems": [{"ProductCode": "SKU-GOLD", "Quantity": 3, "UnitPrice": 30.0}],
            })),
        )
        .unwrap();
    sandbox.drain_outbox();
    sandbox
        .crm_user_update("Order", &order, fields(json!({"Status": "Activated"})))
        .unwrap();
    crm.update_order(
        &order,
        &OrderUpdate {
            status: Some("Cancelled".into()),
            billing_subscription_id: Some("A-S00000001".into()),
        },
        CorrelationId::new(),
    )
    .await
    .unwrap();

    let events: Vec<DomainEvent> = sandbox.drain_outbox().iter().flat_map(ingest).collect();

    let [DomainEvent::CrmOrderActivated(activated), DomainEvent::CrmOrderCancelled(cancelled)] =
        events.as_slice()
    else {
        panic!("expected activation then cancellation, got {events:?}");
    };
    assert_eq!(activated.order_id, order);
    assert_eq!(activated.account_id, account);
    assert_eq!(activated.items.len(), 1);
    assert_eq!(activated.items[0].product_code, "SKU-GOLD");
    assert_eq!(activated.items[0].quantity, 3.0);
    assert_eq!(activated.origin, None);
    assert_eq!(cancelled.origin.as_deref(), Some("sync-ledger"));
}

/// The sync scenarios' Gold product, priced in EUR too.
fn gold() -> Product {
    let mut gold = common::sync_world::gold();
    gold.product_rate_plans[0].product_rate_plan_charges[0]
        .pricing
        .push(Price {
            currency: "EUR".into(),
            price: 28.0,
        });
    gold
}

#[tokio::test]
async fn billing_writes_and_catalog_changes_become_billing_events() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (_, billing) = clients(&sandbox);
    let gold = sandbox.upsert_product(gold());
    let account = billing
        .create_account(
            &NewAccount {
                name: "Acme".into(),
                currency: "USD".into(),
                crm_id: Some("001SB0000000002AAA".into()),
                bill_cycle_day: 1,
                auto_pay: false,
                bill_to_contact: None,
            },
            &IdempotencyKey::parse("evt-1:create-account").unwrap(),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    billing
        .create_subscription(
            &NewSubscription {
                account_key: account.account_id.clone(),
                contract_effective_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                rate_plans: vec![RatePlanSelection {
                    product_rate_plan_id: gold.product_rate_plans[0].id.clone(),
                    charge_overrides: vec![],
                }],
                crm_order_id: Some("801SB0000000003AAA".into()),
                currency: None,
            },
            &IdempotencyKey::parse("evt-2:create-subscription").unwrap(),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    // A price change only emits the changed charge.
    let mut cheaper = gold.clone();
    cheaper.product_rate_plans[0].product_rate_plan_charges[0].pricing[0].price = 25.0;
    sandbox.upsert_product(cheaper);

    let events: Vec<DomainEvent> = sandbox.drain_outbox().iter().flat_map(ingest).collect();
    let names: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();

    assert_eq!(
        names,
        vec![
            "BillingProductChanged",
            "BillingRatePlanChanged",
            "BillingPriceChanged",
            "BillingPriceChanged",
            "BillingAccountCreated",
            "BillingSubscriptionCreated",
            "BillingPriceChanged",
            "BillingPriceChanged",
        ]
    );
    let DomainEvent::BillingAccountCreated(a) = &events[4] else {
        unreachable!()
    };
    assert_eq!(a.account_id, account.account_id);
    assert_eq!(a.crm_id.as_deref(), Some("001SB0000000002AAA"));
    assert_eq!(a.origin.as_deref(), Some("sync-ledger"));
    let DomainEvent::BillingSubscriptionCreated(s) = &events[5] else {
        unreachable!()
    };
    assert_eq!(s.crm_order_id.as_deref(), Some("801SB0000000003AAA"));
    assert_eq!(
        s.rate_plans[0].product_rate_plan_id,
        gold.product_rate_plans[0].id
    );
    let DomainEvent::BillingPriceChanged(p) = &events[6] else {
        unreachable!()
    };
    assert_eq!((p.currency.as_str(), p.price), ("USD", 25.0));
}

#[tokio::test]
async fn callouts_are_signed_with_the_shared_secret() {
    const SHARED: &str = "callout-shared-secret";
    let secret = CalloutSecret::new(SHARED).unwrap();
    let sandbox = Sandbox::start(SandboxConfig {
        callout_secret: Some(sandbox::CalloutSigner::new(SHARED).unwrap()),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.upsert_product(gold());

    let outbox = sandbox.drain_outbox();

    assert!(!outbox.is_empty());
    for event in outbox {
        let header = event
            .headers
            .get(CALLOUT_SIGNATURE_HEADER)
            .map(String::as_str);
        verify(
            &secret,
            header,
            event.body_text().as_bytes(),
            Utc::now().timestamp(),
        )
        .expect("the ingest side accepts the signature");
        assert!(verify(
            &CalloutSecret::new("another").unwrap(),
            header,
            event.body_text().as_bytes(),
            Utc::now().timestamp()
        )
        .is_err());
    }
}

#[tokio::test]
async fn duplicate_delivery_repeats_the_same_event_which_ingest_keys_identically() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.set_faults(
        System::Crm,
        Faults {
            duplicate_deliveries: true,
            ..Faults::default()
        },
    );
    sandbox
        .crm_user_create("Account", fields(json!({"Name": "Stark"})))
        .unwrap();

    let outbox = sandbox.drain_outbox();

    assert_eq!(outbox.len(), 2);
    assert_ne!(outbox[0].seq, outbox[1].seq);
    assert_eq!(outbox[0].body, outbox[1].body);
    let a = map_body(&outbox[0].body_text(), Utc::now()).unwrap();
    let b = map_body(&outbox[1].body_text(), Utc::now()).unwrap();
    assert_eq!(a[0].source_event_id, b[0].source_event_id);
}

#[tokio::test]
async fn callouts_are_pushed_signed_to_the_configured_url_duplicates_included() {
    use axum::http::HeaderMap;
    // (signature header, body) of each delivery.
    type Deliveries = Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;
    let received: Deliveries = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/callouts",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let signature = headers
                    .get("x-zuora-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                sink.lock().unwrap().push((signature, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callouts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    const PUSHED: &str = "push-secret";
    let secret = CalloutSecret::new(PUSHED).unwrap();
    let sandbox = Sandbox::start(SandboxConfig {
        callout_secret: Some(sandbox::CalloutSigner::new(PUSHED).unwrap()),
        callout_url: Some(url::Url::parse(&url).unwrap()),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.set_faults(
        System::Billing,
        Faults {
            duplicate_deliveries: true,
            ..Faults::default()
        },
    );

    sandbox.upsert_product(Product {
        product_rate_plans: vec![],
        ..gold()
    });
    let expected = sandbox.outbox().len();
    // Deliveries run on their own tasks: wait (bounded) for them to arrive.
    for _ in 0..100 {
        if received.lock().unwrap().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let received = received.lock().unwrap().clone();
    assert_eq!(expected, 2, "one ProductCreated, delivered twice");
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].1, received[1].1, "the same event twice");
    for (signature, body) in &received {
        verify(
            &secret,
            signature.as_deref(),
            body.as_bytes(),
            Utc::now().timestamp(),
        )
        .expect("signed for the receiver");
        assert!(map_body(body, Utc::now()).is_ok());
    }
}
