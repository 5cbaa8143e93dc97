//! CRM and Billing clients against the in-process sandbox: retries and backoff with
//! `Retry-After`, idempotent creates across a timeout, the one-refresh rule on 401, error
//! classification, and the Salesforce/Zuora call shapes the projectors rely on.

mod common;

use async_trait::async_trait;
use chrono::NaiveDate;
use common::sync_world::gold;
use projections::CorrelationId;
use sandbox::{Faults, Product, RatePlan, Sandbox, SandboxConfig, System, STANDARD_PRICEBOOK_ID};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sync_ledger::connectors::billing::{
    AccountUpdate, CancellationPolicy, ChargeOverride, NewAccount, NewSubscription,
    RatePlanSelection, SubscriptionAmendment,
};
use sync_ledger::connectors::crm::{CrmAccountBody, OrderUpdate, PriceFields, ProductFields};
use sync_ledger::connectors::oauth::{ClientCredentials, ClientCredentialsStore};
use sync_ledger::connectors::token::{SecretReader, TokenError};
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, ConnectorError, CrmClient, IdempotencyKey, RetryPolicy,
    ServiceName, TokenProvider,
};

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

/// Tokens straight from the sandbox's OAuth endpoints (client credentials).
fn oauth_tokens(sandbox: &Sandbox) -> Arc<TokenProvider> {
    let creds = |system: System| {
        let c = sandbox.config().credentials(system);
        ClientCredentials {
            token_url: sandbox.token_url(system),
            client_id: c.client_id.clone(),
            client_secret: ApiToken::new(c.client_secret.expose_secret()).unwrap(),
        }
    };
    let store = ClientCredentialsStore::new([
        (ServiceName::crm(), creds(System::Crm)),
        (ServiceName::billing(), creds(System::Billing)),
    ]);
    Arc::new(TokenProvider::new(
        Arc::new(store),
        Duration::from_secs(300),
    ))
}

fn config(sandbox: &Sandbox, service: ServiceName, retry: RetryPolicy) -> ClientConfig {
    let mut config = ClientConfig::new(sandbox.url(), service);
    config.retry = retry;
    config
}

fn billing(sandbox: &Sandbox, retry: RetryPolicy) -> BillingClient {
    BillingClient::new(
        config(sandbox, ServiceName::billing(), retry),
        oauth_tokens(sandbox),
    )
    .unwrap()
}

fn crm(sandbox: &Sandbox) -> CrmClient {
    CrmClient::new(
        config(sandbox, ServiceName::crm(), fast_retries(3)),
        oauth_tokens(sandbox),
    )
    .unwrap()
}

fn acme() -> NewAccount {
    NewAccount {
        name: "Acme Ltd".into(),
        currency: "USD".into(),
        crm_id: Some("001SB0000000042AAA".into()),
        bill_cycle_day: 1,
        auto_pay: false,
        bill_to_contact: None,
    }
}

fn key(step: &str) -> IdempotencyKey {
    IdempotencyKey::for_event(&projections::EventId::new(), step).unwrap()
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.unwrap()
}

#[tokio::test]
async fn throttled_calls_wait_out_retry_after_then_succeed() {
    let sandbox = sandbox().await;
    sandbox.set_faults(
        System::Billing,
        Faults {
            throttle_next: 2,
            retry_after_secs: 1,
            ..Faults::default()
        },
    );
    let client = billing(&sandbox, fast_retries(4));

    let created = client
        .create_account(&acme(), &key("create"), CorrelationId::new())
        .await
        .expect("succeeds once the throttling stops");

    let attempts: Vec<_> = sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.route == "/v1/accounts")
        .collect();
    assert_eq!(
        attempts.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 429, 200]
    );
    // Retry-After is a floor: each retry arrived at least a second after the 429.
    for pair in attempts.windows(2) {
        assert!(
            pair[1].arrived_ms >= pair[0].arrived_ms + 1000,
            "retry came too early: {pair:?}"
        );
    }
    assert_eq!(sandbox.billing_accounts().len(), 1);
    assert_eq!(sandbox.billing_accounts()[0].id, created.account_id);
}

#[tokio::test]
async fn a_retry_after_beyond_the_policy_fails_fast_as_transient() {
    let sandbox = sandbox().await;
    sandbox.set_faults(
        System::Billing,
        Faults {
            throttle_next: 1,
            retry_after_secs: 120,
            ..Faults::default()
        },
    );
    let client = billing(&sandbox, fast_retries(4));

    let err = client
        .create_account(&acme(), &key("create"), CorrelationId::new())
        .await
        .unwrap_err();

    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(429));
    assert!(matches!(
        err,
        ConnectorError::Api { retry_after: Some(d), attempts: 1, .. } if d == Duration::from_secs(120)
    ));
    assert_eq!(sandbox.calls().count("POST /v1/accounts"), 1);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_the_bound_then_reported_transient() {
    let sandbox = sandbox().await;
    sandbox.set_faults(
        System::Billing,
        Faults {
            fail_next: 10,
            ..Faults::default()
        },
    );
    let client = billing(&sandbox, fast_retries(3));

    let err = client
        .create_account(&acme(), &key("create"), CorrelationId::new())
        .await
        .unwrap_err();

    assert!(err.is_transient());
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.attempts(), 3);
    assert_eq!(sandbox.calls().count("POST /v1/accounts"), 3);
    assert!(sandbox.billing_accounts().is_empty());
}

#[tokio::test]
async fn an_idempotent_create_retried_after_a_timeout_creates_one_account() {
    let sandbox = sandbox().await;
    // The first call is carried out, but its answer arrives after the client gave up.
    sandbox.set_faults(
        System::Billing,
        Faults {
            stall_next: 1,
            stall_ms: 1500,
            ..Faults::default()
        },
    );
    let mut config = config(&sandbox, ServiceName::billing(), fast_retries(3));
    config.timeout = Duration::from_millis(400);
    let client = BillingClient::new(config, oauth_tokens(&sandbox)).unwrap();
    let key = key("create-account");

    let created = client
        .create_account(&acme(), &key, CorrelationId::new())
        .await
        .expect("the retry gets the saved answer");

    let accounts = sandbox.billing_accounts();
    assert_eq!(accounts.len(), 1, "exactly one account: {accounts:?}");
    assert_eq!(accounts[0].id, created.account_id);
    let calls: Vec<_> = sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.route == "/v1/accounts")
        .collect();
    assert_eq!(calls.len(), 2, "one timed-out call and one retry");
    assert!(calls
        .iter()
        .all(|c| c.idempotency_key.as_deref() == Some(key.as_str())));
    let created_events = sandbox
        .outbox()
        .into_iter()
        .filter(|e| e.event_type == "AccountCreated")
        .count();
    assert_eq!(created_events, 1);
}

/// A subscription on Gold for Acme, made by `client`: (subscription number, Gold's plan).
async fn gold_subscription(sandbox: &Sandbox, client: &BillingClient) -> (String, RatePlan) {
    let gold = sandbox.upsert_product(gold());
    let account = client
        .create_account(&acme(), &key("account"), CorrelationId::new())
        .await
        .unwrap();
    let plan = gold.product_rate_plans[0].clone();
    let sub = client
        .create_subscription(
            &NewSubscription {
                account_key: account.account_id,
                contract_effective_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                rate_plans: vec![RatePlanSelection {
                    product_rate_plan_id: plan.id.clone(),
                    charge_overrides: vec![],
                }],
                crm_order_id: None,
                currency: None,
            },
            &key("subscription"),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    (sub.subscription_number, plan)
}

fn amendment(plan: &RatePlan, remove: &str, quantity: f64) -> SubscriptionAmendment {
    SubscriptionAmendment {
        contract_effective_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        add: vec![RatePlanSelection {
            product_rate_plan_id: plan.id.clone(),
            charge_overrides: vec![ChargeOverride {
                product_rate_plan_charge_id: plan.product_rate_plan_charges[0].id.clone(),
                quantity,
            }],
        }],
        remove: vec![remove.to_string()],
    }
}

#[tokio::test]
async fn an_amend_retried_while_still_in_progress_gets_409_then_its_saved_answer_and_amends_once() {
    let sandbox = sandbox().await;
    let retry = RetryPolicy {
        max_attempts: 12,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    };
    let mut config = config(&sandbox, ServiceName::billing(), retry);
    config.timeout = Duration::from_millis(300);
    let client = BillingClient::new(config, oauth_tokens(&sandbox)).unwrap();
    let (number, plan) = gold_subscription(&sandbox, &client).await;
    let old = sandbox.billing_subscriptions()[0].rate_plans[0].id.clone();
    // The amend is carried out, then stays in progress past the client's timeout: the
    // client's retries with the same key meet 409 until the answer is saved.
    sandbox.set_faults(
        System::Billing,
        Faults {
            idempotency_hold_ms: 500,
            ..Faults::default()
        },
    );
    let key = key("amend");

    client
        .amend_subscription(
            &number,
            &amendment(&plan, &old, 4.0),
            &key,
            CorrelationId::new(),
        )
        .await
        .expect("a retry gets the saved answer");

    let sub = &sandbox.billing_subscriptions()[0];
    assert_eq!(sub.version, 2, "created, then amended once: {sub:?}");
    assert_eq!(sub.rate_plans.len(), 1);
    assert_eq!(sub.rate_plans[0].charges[0].quantity, 4.0);
    let amends: Vec<_> = sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.label() == "PUT /v1/subscriptions/{key}")
        .collect();
    assert!(
        amends.iter().any(|c| c.status == 409),
        "a retry met the request in progress: {amends:?}"
    );
    assert!(amends
        .iter()
        .all(|c| c.idempotency_key.as_deref() == Some(key.as_str())));
    let amended = sandbox
        .outbox()
        .into_iter()
        .filter(|e| e.event_type == "SubscriptionAmended")
        .count();
    assert_eq!(amended, 1);
}

#[tokio::test]
async fn an_amend_key_reused_with_another_body_is_refused_with_422() {
    let sandbox = sandbox().await;
    let client = billing(&sandbox, fast_retries(3));
    let (number, plan) = gold_subscription(&sandbox, &client).await;
    let old = sandbox.billing_subscriptions()[0].rate_plans[0].id.clone();
    let key = key("amend");
    client
        .amend_subscription(
            &number,
            &amendment(&plan, &old, 2.0),
            &key,
            CorrelationId::new(),
        )
        .await
        .unwrap();

    let err = client
        .amend_subscription(
            &number,
            &amendment(&plan, &old, 9.0),
            &key,
            CorrelationId::new(),
        )
        .await
        .unwrap_err();

    assert_eq!(err.status(), Some(422), "{err}");
    assert!(!err.is_transient());
    assert_eq!(sandbox.billing_subscriptions()[0].version, 2);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_refused_permanently() {
    let sandbox = sandbox().await;
    let client = billing(&sandbox, fast_retries(3));
    let key = key("create");
    client
        .create_account(&acme(), &key, CorrelationId::new())
        .await
        .unwrap();
    let other = NewAccount {
        name: "Other Inc".into(),
        ..acme()
    };

    let err = client
        .create_account(&other, &key, CorrelationId::new())
        .await
        .unwrap_err();

    assert_eq!(err.status(), Some(422));
    assert!(!err.is_transient());
    assert_eq!(sandbox.billing_accounts().len(), 1);
}

/// Serves whatever token is current; counts reads.
struct RotatingStore {
    current: std::sync::Mutex<ApiToken>,
    reads: AtomicUsize,
}

#[async_trait]
impl SecretReader for RotatingStore {
    async fn read(&self, _parameter: &str) -> Result<ApiToken, TokenError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.current.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn an_expired_token_is_re_read_once_and_the_call_succeeds() {
    let sandbox = sandbox().await;
    let store = Arc::new(RotatingStore {
        current: std::sync::Mutex::new(
            ApiToken::new(sandbox.issue_token(System::Billing).expose_secret()).unwrap(),
        ),
        reads: AtomicUsize::new(0),
    });
    let tokens = Arc::new(TokenProvider::new(store.clone(), Duration::from_secs(300)));
    let client = BillingClient::new(
        config(&sandbox, ServiceName::billing(), fast_retries(3)),
        tokens,
    )
    .unwrap();
    client
        .create_account(&acme(), &key("first"), CorrelationId::new())
        .await
        .unwrap();
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        1,
        "cached after one read"
    );

    // The token expires and the rotator has stored a new one.
    sandbox.expire_tokens(Some(System::Billing));
    *store.current.lock().unwrap() =
        ApiToken::new(sandbox.issue_token(System::Billing).expose_secret()).unwrap();
    client
        .update_account(
            &sandbox.billing_accounts()[0].id,
            &AccountUpdate {
                name: Some("Acme Renamed".into()),
                crm_id: None,
            },
            &key("rename"),
            CorrelationId::new(),
        )
        .await
        .expect("succeeds after one refresh");

    assert_eq!(store.reads.load(Ordering::SeqCst), 2, "exactly one re-read");
    let statuses: Vec<u16> = sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.route == "/v1/accounts/{key}")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![401, 200]);
    assert_eq!(sandbox.billing_accounts()[0].name, "Acme Renamed");
}

#[tokio::test]
async fn a_token_still_rejected_after_the_refresh_is_reported_without_looping() {
    let sandbox = sandbox().await;
    let dead = sandbox.issue_token(System::Crm);
    sandbox.expire_tokens(None);
    let store = Arc::new(RotatingStore {
        current: std::sync::Mutex::new(ApiToken::new(dead.expose_secret()).unwrap()),
        reads: AtomicUsize::new(0),
    });
    let client = CrmClient::new(
        config(&sandbox, ServiceName::crm(), fast_retries(3)),
        Arc::new(TokenProvider::new(store.clone(), Duration::from_secs(300))),
    )
    .unwrap();

    let err = client
        .upsert_account(
            "A00000001",
            &CrmAccountBody {
                name: Some("Acme".into()),
                currency: None,
            },
            CorrelationId::new(),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(err, ConnectorError::Unauthorized { attempts: 2, .. }),
        "{err}"
    );
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    assert_eq!(sandbox.calls().crm, 2);
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(dead.expose_secret()),
        "the token leaked: {text}"
    );
}

#[tokio::test]
async fn invalid_requests_are_permanent_and_not_retried() {
    let sandbox = sandbox().await;
    let client = billing(&sandbox, fast_retries(4));
    let bad = NewAccount {
        currency: "DOLLARS".into(),
        ..acme()
    };

    let err = client
        .create_account(&bad, &key("create"), CorrelationId::new())
        .await
        .unwrap_err();

    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("currency"), "{err}");
    assert_eq!(sandbox.calls().count("POST /v1/accounts"), 1);
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_connection_failure() {
    let sandbox = sandbox().await;
    let tokens = oauth_tokens(&sandbox);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = url::Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let mut config = ClientConfig::new(url, ServiceName::billing());
    config.retry = fast_retries(2);
    let client = BillingClient::new(config, tokens).unwrap();

    let err = client
        .get_account("A00000001", CorrelationId::new())
        .await
        .unwrap_err();

    assert!(err.is_transient());
    assert!(
        matches!(err, ConnectorError::Transport { attempts: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn every_call_carries_the_correlation_id() {
    let sandbox = sandbox().await;
    let correlation_id = CorrelationId::new();
    let billing = billing(&sandbox, fast_retries(2));
    let crm = crm(&sandbox);

    let account = billing
        .create_account(&acme(), &key("create"), correlation_id)
        .await
        .unwrap();
    billing
        .get_account(&account.account_id, correlation_id)
        .await
        .unwrap();
    crm.upsert_account(
        &account.account_id,
        &CrmAccountBody {
            name: Some("Acme Ltd".into()),
            currency: Some("USD".into()),
        },
        correlation_id,
    )
    .await
    .unwrap();

    let log: Vec<_> = sandbox
        .call_log()
        .into_iter()
        .filter(|c| !c.route.contains("token"))
        .collect();
    assert_eq!(log.len(), 3);
    for call in log {
        assert_eq!(
            call.correlation_id.as_deref(),
            Some(correlation_id.to_string().as_str()),
            "{call:?}"
        );
    }
}

#[tokio::test]
async fn crm_upsert_by_billing_id_creates_then_updates_one_account() {
    let sandbox = sandbox().await;
    let client = crm(&sandbox);
    let fields = CrmAccountBody {
        name: Some("Acme Ltd".into()),
        currency: Some("EUR".into()),
    };

    let first = client
        .upsert_account("8ad0billing1", &fields, CorrelationId::new())
        .await
        .unwrap();
    let second = client
        .upsert_account(
            "8ad0billing1",
            &CrmAccountBody {
                name: Some("Acme Group".into()),
                currency: None,
            },
            CorrelationId::new(),
        )
        .await
        .unwrap();

    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    let accounts = sandbox.crm_records("Account");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["Name"], json!("Acme Group"));
    assert_eq!(accounts[0]["Billing_Account_Id__c"], json!("8ad0billing1"));
    assert_eq!(accounts[0]["Origin__c"], json!("sync-ledger"));
    let record = client
        .get_record("Account", &first.id, CorrelationId::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record["CurrencyIsoCode"], json!("EUR"));
    // Both writes show up as change events marked as ours.
    let events = sandbox.outbox();
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event.event_type, "AccountChangeEvent");
        assert_eq!(
            event.body["detail"]["payload"]["ChangeEventHeader"]["changeOrigin"],
            json!("com/salesforce/api/rest/60.0;client=sync-ledger")
        );
    }
}

#[tokio::test]
async fn crm_missing_records_and_required_fields_are_permanent_errors() {
    let sandbox = sandbox().await;
    let client = crm(&sandbox);

    assert_eq!(
        client
            .get_record("Account", "001SB0000009999AAA", CorrelationId::new())
            .await
            .unwrap(),
        None
    );
    let err = client
        .upsert_account("8ad0new", &CrmAccountBody::default(), CorrelationId::new())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(
        matches!(&err, ConnectorError::Api { status: 400, code: Some(c), message, .. }
            if c == "REQUIRED_FIELD_MISSING" && message.contains("Name")),
        "{err}"
    );
    let err = client
        .update_order(
            "801SB0000009999AAA",
            &OrderUpdate {
                status: Some("Activated".into()),
                billing_subscription_id: None,
            },
            CorrelationId::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

fn product(billing_id: &str, name: &str) -> ProductFields {
    ProductFields {
        billing_product_id: billing_id.into(),
        name: name.into(),
        product_code: "SKU-GOLD".into(),
        active: true,
    }
}

fn price(billing_product_id: &str, amount: f64) -> PriceFields {
    PriceFields {
        billing_price_id: "8ad0plan1:USD".into(),
        billing_product_id: billing_product_id.into(),
        pricebook_id: STANDARD_PRICEBOOK_ID.into(),
        currency: "USD".into(),
        unit_price: amount,
        active: true,
    }
}

#[tokio::test]
async fn product_and_price_are_upserted_in_one_composite_call() {
    let sandbox = sandbox().await;
    let client = crm(&sandbox);

    let done = client
        .upsert_product_with_price(
            &product("8ad0prod1", "Gold"),
            &price("8ad0prod1", 99.0),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    let again = client
        .upsert_product_with_price(
            &product("8ad0prod1", "Gold Plus"),
            &price("8ad0prod1", 129.0),
            CorrelationId::new(),
        )
        .await
        .unwrap();

    assert!(done.product.created && done.price.created);
    assert!(!again.product.created && !again.price.created);
    assert_eq!(
        sandbox.calls().crm,
        2 + 1,
        "two composite calls and one token request"
    );
    assert_eq!(
        sandbox
            .calls()
            .count("POST /services/data/{version}/composite"),
        2
    );
    let entries = sandbox.crm_records("PricebookEntry");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["Product2Id"], json!(done.product.id));
    assert_eq!(entries[0]["UnitPrice"], json!(129.0));
    assert_eq!(
        sandbox.crm_records("Product2")[0]["Name"],
        json!("Gold Plus")
    );
}

#[tokio::test]
async fn a_failing_composite_part_rolls_back_the_whole_call() {
    let sandbox = sandbox().await;
    let client = crm(&sandbox);

    let err = client
        .upsert_product_with_price(
            &product("8ad0prod1", "Gold"),
            &PriceFields {
                pricebook_id: String::new(),
                ..price("8ad0prod1", 99.0)
            },
            CorrelationId::new(),
        )
        .await
        .unwrap_err();

    assert!(!err.is_transient());
    assert!(err.to_string().contains("Pricebook2Id"), "{err}");
    assert!(sandbox.crm_records("Product2").is_empty(), "rolled back");
    assert!(
        sandbox.outbox().is_empty(),
        "no change event for a rolled-back write"
    );
}

#[tokio::test]
async fn subscriptions_are_created_amended_and_cancelled() {
    let sandbox = sandbox().await;
    let gold = sandbox.upsert_product(gold());
    let plan = &gold.product_rate_plans[0];
    let client = billing(&sandbox, fast_retries(2));
    let account = client
        .create_account(&acme(), &key("account"), CorrelationId::new())
        .await
        .unwrap();
    let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();

    let sub = client
        .create_subscription(
            &NewSubscription {
                account_key: account.account_number.clone(),
                contract_effective_date: date,
                rate_plans: vec![RatePlanSelection {
                    product_rate_plan_id: plan.id.clone(),
                    charge_overrides: vec![ChargeOverride {
                        product_rate_plan_charge_id: plan.product_rate_plan_charges[0].id.clone(),
                        quantity: 5.0,
                    }],
                }],
                crm_order_id: Some("801SB0000000007AAA".into()),
                currency: None,
            },
            &key("subscription"),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    let stored = &sandbox.billing_subscriptions()[0];
    assert_eq!(stored.rate_plans[0].charges[0].quantity, 5.0);
    assert_eq!(stored.custom["CrmOrderId__c"], json!("801SB0000000007AAA"));

    let old_plan = stored.rate_plans[0].id.clone();
    client
        .amend_subscription(
            &sub.subscription_number,
            &SubscriptionAmendment {
                contract_effective_date: date,
                add: vec![RatePlanSelection {
                    product_rate_plan_id: plan.id.clone(),
                    charge_overrides: vec![],
                }],
                remove: vec![old_plan.clone()],
            },
            &key("amend"),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    let amended = &sandbox.billing_subscriptions()[0];
    assert_eq!(amended.rate_plans.len(), 1);
    assert_ne!(amended.rate_plans[0].id, old_plan);

    let cancelled = client
        .cancel_subscription(
            &sub.subscription_id,
            CancellationPolicy::SpecificDate(date),
            &key("cancel"),
            CorrelationId::new(),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.cancelled_date.as_deref(), Some("2026-12-01"));
    assert_eq!(sandbox.billing_subscriptions()[0].status, "Cancelled");
    let again = client
        .cancel_subscription(
            &sub.subscription_id,
            CancellationPolicy::EndOfCurrentTerm,
            &key("cancel-again"),
            CorrelationId::new(),
        )
        .await
        .unwrap_err();
    assert!(!again.is_transient(), "{again}");

    let types: Vec<String> = sandbox
        .outbox()
        .into_iter()
        .filter(|e| e.event_type.starts_with("Subscription"))
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        vec![
            "SubscriptionCreated",
            "SubscriptionAmended",
            "SubscriptionCancelled"
        ]
    );
}

#[tokio::test]
async fn the_whole_catalog_is_listed_across_pages() {
    let sandbox = sandbox().await;
    for n in 0..45 {
        sandbox.upsert_product(Product {
            sku: format!("SKU-{n:02}"),
            name: format!("Product {n}"),
            ..gold()
        });
    }
    let client = billing(&sandbox, fast_retries(2));

    let products = client.list_products(CorrelationId::new()).await.unwrap();

    assert_eq!(products.len(), 45);
    assert_eq!(products[44].sku, "SKU-44");
    assert_eq!(
        products[0].product_rate_plans[0].product_rate_plan_charges[0].pricing[0].price,
        Some(30.0)
    );
    assert_eq!(sandbox.calls().count("GET /v1/catalog/products"), 2);
}

#[tokio::test]
async fn a_missing_billing_account_reads_as_none() {
    let sandbox = sandbox().await;
    let client = billing(&sandbox, fast_retries(2));
    assert_eq!(
        client
            .get_account("A99999999", CorrelationId::new())
            .await
            .unwrap(),
        None
    );
    let created = client
        .create_account(&acme(), &key("create"), CorrelationId::new())
        .await
        .unwrap();
    let summary = client
        .get_account(&created.account_number, CorrelationId::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.account_id, created.account_id);
    assert_eq!(summary.crm_id.as_deref(), Some("001SB0000000042AAA"));
    assert_eq!(summary.origin.as_deref(), Some("sync-ledger"));
    assert_eq!(summary.currency.as_deref(), Some("USD"));
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_transient_timeout() {
    let sandbox = sandbox().await;
    sandbox.set_faults(
        System::Billing,
        Faults {
            latency_ms: 2000,
            ..Faults::default()
        },
    );
    let mut config = config(&sandbox, ServiceName::billing(), fast_retries(2));
    config.timeout = Duration::from_millis(300);
    let client = BillingClient::new(config, oauth_tokens(&sandbox)).unwrap();

    let err = client
        .get_account("A00000001", CorrelationId::new())
        .await
        .unwrap_err();

    assert!(err.is_transient());
    assert!(
        matches!(
            err,
            ConnectorError::Transport {
                failure: sync_ledger::connectors::error::TransportFailure::Timeout,
                attempts: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_random_error_rate_of_one_fails_every_call_with_500() {
    let sandbox = sandbox().await;
    sandbox.set_faults(
        System::Crm,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let client = crm(&sandbox);

    let err = client
        .get_record("Account", "001SB0000000002AAA", CorrelationId::new())
        .await
        .unwrap_err();

    assert_eq!(err.status(), Some(500));
    assert!(err.is_transient());
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        sandbox
            .calls()
            .count("GET /services/data/{version}/sobjects/Account/{id}"),
        3
    );
}
