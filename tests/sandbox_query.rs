//! The sandbox's query endpoints answer as Salesforce SOQL (`/query`, `nextRecordsUrl`) and
//! Zuora ZOQL (`/v1/action/query`, `queryMore`) are documented to: 2,000 records a page,
//! totals, done flags, modstamps maintained on every write and filterable, malformed queries
//! refused in each system's error shape. Driven through the service's own query clients.

use chrono::Utc;
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, ConnectorError, CrmClient, QueryPage, ServiceName,
    TokenProvider,
};
use sync_ledger::projections::CorrelationId;

fn clients(sandbox: &Sandbox) -> (CrmClient, BillingClient) {
    let token = |system| ApiToken::new(sandbox.issue_token(system).expose_secret()).unwrap();
    let tokens = Arc::new(sync_ledger::connectors::token::StaticTokens::new([
        (ServiceName::crm(), token(System::Crm)),
        (ServiceName::billing(), token(System::Billing)),
    ]));
    let provider = Arc::new(TokenProvider::new(
        tokens,
        std::time::Duration::from_secs(60),
    ));
    (
        CrmClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::crm()),
            provider.clone(),
        )
        .unwrap(),
        BillingClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::billing()),
            provider,
        )
        .unwrap(),
    )
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn all_crm(crm: &CrmClient, soql: &str) -> (Vec<QueryPage>, Vec<Map<String, Value>>) {
    let cid = CorrelationId::new();
    let mut pages = vec![crm.query(soql, cid).await.unwrap()];
    while let Some(next) = pages.last().unwrap().next.clone() {
        pages.push(crm.query_more(&next, cid).await.unwrap());
    }
    let records = pages.iter().flat_map(|p| p.records.clone()).collect();
    (pages, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soql_pages_by_2000_and_filters_on_the_modstamp_every_write_moves() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (crm, _) = clients(&sandbox);
    let ids: Vec<String> = (0..4_500)
        .map(|i| {
            sandbox
                .crm_user_create("Account", fields(json!({"Name": format!("A{i:05}")})))
                .unwrap()
        })
        .collect();
    sandbox.reset_calls();
    let (pages, records) = all_crm(&crm, "SELECT Id, Name, SystemModstamp FROM Account").await;
    assert_eq!(
        pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(),
        [2_000, 2_000, 500]
    );
    assert!(pages.iter().all(|p| p.total == 4_500));
    assert_eq!(sandbox.calls().crm, 3, "one call a page");
    assert_eq!(
        sandbox
            .calls()
            .count("GET /services/data/{version}/query/{locator}"),
        2
    );
    let first = &records[0];
    assert_eq!(first["attributes"]["type"], json!("Account"));
    assert!(first["attributes"]["url"]
        .as_str()
        .unwrap()
        .ends_with(ids[0].as_str()));
    assert_eq!(
        records
            .iter()
            .map(|r| r["Id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "every record once"
    );

    // A write moves SystemModstamp past every earlier one.
    let since = records
        .iter()
        .map(|r| r["SystemModstamp"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    sandbox
        .crm_user_update("Account", &ids[7], fields(json!({"Name": "Renamed"})))
        .unwrap();
    let iso = chrono::DateTime::parse_from_str(&since, "%Y-%m-%dT%H:%M:%S%.f%z")
        .unwrap()
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, changed) = all_crm(
        &crm,
        &format!("SELECT Id, Name FROM Account WHERE SystemModstamp > {iso}"),
    )
    .await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["Name"], json!("Renamed"));
    let (_, after) = all_crm(
        &crm,
        &format!(
            "SELECT Id FROM Account WHERE Id > '{}' ORDER BY Id",
            ids[4_497]
        ),
    )
    .await;
    assert_eq!(after.len(), 2, "keyset paging resumes after an Id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_soql_is_a_400_malformed_query_and_a_stale_locator_is_refused() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (crm, _) = clients(&sandbox);
    let cid = CorrelationId::new();
    for bad in [
        "SELECT FROM Account",
        "SELECT Id FROM Account WHERE Name",
        "UPDATE x",
    ] {
        match crm.query(bad, cid).await {
            Err(ConnectorError::Api { status, code, .. }) => {
                assert_eq!(
                    (status, code.as_deref()),
                    (400, Some("MALFORMED_QUERY")),
                    "{bad}"
                )
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    match crm
        .query_more("/services/data/v60.0/query/01gSBnope-2000", cid)
        .await
    {
        Err(ConnectorError::Api { status, code, .. }) => {
            assert_eq!(
                (status, code.as_deref()),
                (400, Some("INVALID_QUERY_LOCATOR"))
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoql_query_and_query_more_page_accounts_and_filter_on_updated_date() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (_, billing) = clients(&sandbox);
    let cid = CorrelationId::new();
    let http = reqwest::Client::new();
    let token = sandbox.issue_token(System::Billing);
    let mut ids = vec![];
    for i in 0..2_100 {
        let answer: Value = http
            .post(sandbox.url().join("v1/accounts").unwrap())
            .bearer_auth(token.expose_secret())
            .json(&json!({"name": format!("B{i}"), "currency": "EUR", "crmId": if i % 2 == 0 { json!(format!("001C{i}")) } else { Value::Null }}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(answer["accountId"].as_str().unwrap().to_string());
    }
    sandbox.reset_calls();
    let first = billing
        .query("select Id, Name, CrmId, UpdatedDate from Account", cid)
        .await
        .unwrap();
    assert_eq!((first.records.len(), first.total), (2_000, 2_100));
    let locator = first.next.clone().expect("a queryLocator");
    let second = billing.query_more(&locator, cid).await.unwrap();
    assert_eq!((second.records.len(), second.next.clone()), (100, None));
    assert_eq!(sandbox.calls().count("POST /v1/action/query"), 1);
    assert_eq!(sandbox.calls().count("POST /v1/action/queryMore"), 1);
    assert!(
        first.records[1].get("CrmId").is_none(),
        "Zuora leaves null fields out"
    );

    let newest = first
        .records
        .iter()
        .chain(&second.records)
        .map(|r| r["UpdatedDate"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    http.put(
        sandbox
            .url()
            .join(&format!("v1/accounts/{}", ids[3]))
            .unwrap(),
    )
    .bearer_auth(token.expose_secret())
    .json(&json!({"name": "Changed"}))
    .send()
    .await
    .unwrap();
    let changed = billing
        .query(
            &format!("select Id, Name from Account where UpdatedDate > '{newest}'"),
            cid,
        )
        .await
        .unwrap();
    assert_eq!(changed.records.len(), 1);
    assert_eq!(changed.records[0]["Name"], json!("Changed"));
    match billing
        .query("select Id from Account order by Id", cid)
        .await
    {
        Err(e) => assert_eq!(e.status(), Some(400), "{e}"),
        Ok(page) => panic!("ZOQL has no ORDER BY: {page:?}"),
    }
}
