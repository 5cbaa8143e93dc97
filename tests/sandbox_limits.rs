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
