//! The sandbox's API limits as the real systems report and enforce them: Salesforce's
//! `Sforce-Limit-Info: api-usage=N/M` on every CRM answer and 403 `REQUEST_LIMIT_EXCEEDED`
//! past the daily allocation; Zuora's `RateLimit-*` headers on every Billing answer.

use sandbox::limits::ApiLimits;
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::Value;

async fn get(sandbox: &Sandbox, system: System, path: &str) -> reqwest::Response {
    let token = sandbox.issue_token(system);
    reqwest::Client::new()
        .get(sandbox.url().join(path).unwrap())
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn crm_answers_report_api_usage_and_refuse_past_the_daily_allocation() {
    let sandbox = Sandbox::start(SandboxConfig {
        limits: ApiLimits {
            crm_daily_allocation: 5,
            ..ApiLimits::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let path = "services/data/v60.0/sobjects/Account/Billing_Account_Id__c/A-1";
    let first = get(&sandbox, System::Crm, path).await;
    assert_eq!(first.status(), 404);
    assert_eq!(header(&first, "sforce-limit-info"), "api-usage=1/5");
    let second = get(&sandbox, System::Crm, path).await;
    assert_eq!(header(&second, "sforce-limit-info"), "api-usage=2/5");

    sandbox.set_crm_api_used(5);
    let refused = get(&sandbox, System::Crm, path).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(header(&refused, "sforce-limit-info"), "api-usage=5/5");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(sandbox.crm_api_used(), 5, "a refused call spends nothing");
}

#[tokio::test]
async fn billing_answers_carry_zuora_rate_limit_headers() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let first = get(&sandbox, System::Billing, "v1/catalog/products").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "ratelimit-limit"), "40000");
    assert_eq!(header(&first, "ratelimit-remaining"), "39999");
    let reset: u64 = header(&first, "ratelimit-reset").parse().unwrap();
    assert!(reset <= 3600, "{reset}");
    let second = get(&sandbox, System::Billing, "v1/catalog/products").await;
    assert_eq!(header(&second, "ratelimit-remaining"), "39998");
}

/// Tokens from the sandbox's OAuth endpoints, as the connectors get them.
fn tokens(sandbox: &Sandbox) -> std::sync::Arc<sync_ledger::connectors::TokenProvider> {
    use sync_ledger::connectors::oauth::{ClientCredentials, ClientCredentialsStore};
    use sync_ledger::connectors::{ApiToken, ServiceName};
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
    std::sync::Arc::new(sync_ledger::connectors::TokenProvider::new(
        std::sync::Arc::new(store),
        std::time::Duration::from_secs(300),
    ))
}

#[tokio::test]
async fn the_clients_read_the_usage_every_answer_reports() {
    use sync_ledger::connectors::{BillingClient, ClientConfig, CrmClient, ServiceName};
    let sandbox = Sandbox::start(SandboxConfig {
        limits: ApiLimits {
            crm_daily_allocation: 1000,
            ..ApiLimits::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let tokens = tokens(&sandbox);
    let crm = CrmClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::crm()),
        tokens.clone(),
    )
    .unwrap();
    let billing = BillingClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::billing()),
        tokens,
    )
    .unwrap();
    assert_eq!(
        crm.api_usage(),
        None,
        "nothing reported before the first call"
    );
    sandbox.set_crm_api_used(899);
    let cid = projections::CorrelationId::new();
    // A 404 answer reports the usage too.
    let missing = crm.get_record("Account", "001SB0000000999AAA", cid).await;
    assert!(matches!(missing, Ok(None)), "{missing:?}");
    let usage = crm.api_usage().unwrap();
    assert_eq!((usage.used, usage.limit), (900, 1000));
    assert!((usage.remaining_percent() - 10.0).abs() < 1e-9);

    billing.list_products(cid).await.unwrap();
    let usage = billing.api_usage().unwrap();
    assert_eq!((usage.used, usage.limit), (1, 40_000));
    assert!(usage.reset_secs.is_some_and(|s| s <= 3600));
}
