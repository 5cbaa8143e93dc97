//! Bulk CRM writes (issue 17 item 3) through the real entry points: people create accounts in
//! Billing, the sandbox emits them, `ledger ingest` records them and `ledger worker` projects
//! them; the account sync's CRM upserts of independent streams go out as one sObject
//! Collections call, and each record's result becomes its own outcome event. Also the
//! sandbox's collection endpoint as Salesforce documents it, and the client on a retry.

mod common;

use common::sync_world;

use projections::CorrelationId;
use sandbox::System;
use serde_json::{json, Value};
use sync_ledger::connectors::crm::{CollectionRecord, CrmAccountBody, COLLECTION_LIMIT};
use sync_world::World;

const COLLECTION_ROUTE: &str =
    "PATCH /services/data/{version}/composite/sobjects/Account/Billing_Account_Id__c";
const SINGLE_ROUTE: &str =
    "PATCH /services/data/{version}/sobjects/Account/Billing_Account_Id__c/{value}";

/// A person creates an account in Billing (no origin marker: not our write). Its id.
async fn billing_user_creates(w: &World, name: &str, currency: &str) -> String {
    let token = w.sandbox.issue_token(System::Billing);
    let answer: Value = reqwest::Client::new()
        .post(w.sandbox.url().join("v1/accounts").unwrap())
        .bearer_auth(token.expose_secret())
        .json(&json!({"name": name, "currency": currency, "billCycleDay": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["accountId"]
        .as_str()
        .expect("account created")
        .to_string()
}

async fn crm_patch(w: &World, path: &str, body: &Value) -> (u16, Value) {
    let token = w.sandbox.issue_token(System::Crm);
    let response = reqwest::Client::new()
        .patch(w.sandbox.url().join(path).unwrap())
        .bearer_auth(token.expose_secret())
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn account(external_id: &str, name: &str) -> Value {
    json!({"attributes": {"type": "Account"}, "Billing_Account_Id__c": external_id, "Name": name})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_account_changes_reach_the_crm_in_one_collection_call_with_per_record_outcomes() {
    let w = sync_world::sqlite_world().await;
    w.sandbox.restrict_crm_currencies();
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(billing_user_creates(&w, &format!("Bulk {i:02}"), "USD").await);
    }
    // Billing takes any 3-letter code; the CRM org has not enabled this one.
    let bad = billing_user_creates(&w, "Bulk Bad Currency", "ZZZ").await;
    w.deliver_outbox().await;
    w.sandbox.reset_calls();

    w.work().await;

    let calls = w.sandbox.calls();
    assert_eq!(calls.count(COLLECTION_ROUTE), 1, "{:?}", calls.by_route);
    assert_eq!(calls.count(SINGLE_ROUTE), 0, "{:?}", calls.by_route);
    let crm = w.sandbox.crm_records("Account");
    for id in &ids {
        assert!(
            crm.iter().any(|r| r["Billing_Account_Id__c"] == json!(id)),
            "billing account {id} is in the CRM"
        );
        let types = w.types(&format!("billing-account-{id}")).await;
        assert!(
            types.contains(&"AccountSynced".to_string()),
            "{id}: {types:?}"
        );
        assert!(
            !types.contains(&"SyncFailed".to_string()),
            "{id}: {types:?}"
        );
    }
    assert!(!crm.iter().any(|r| r["Billing_Account_Id__c"] == json!(bad)));
    let events = w.events(&format!("billing-account-{bad}")).await;
    let failed = events
        .iter()
        .find(|e| e.event_type == "SyncFailed")
        .expect("the rejected record is its own SyncFailed");
    let reason = failed.payload["reason"].as_str().unwrap();
    assert!(
        reason.contains("CurrencyIsoCode"),
        "names the field: {reason}"
    );
    assert!(
        reason.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{reason}"
    );
    assert_eq!(failed.causation_id, Some(events[0].event_id));

    // The CRM's change events for our writes come back as echoes and change nothing.
    w.settle().await;
    assert_eq!(w.sandbox.crm_records("Account").len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_endpoint_answers_per_record_in_request_order_and_enforces_200() {
    let w = sync_world::sqlite_world().await;
    w.sandbox.restrict_crm_currencies();
    let path = "services/data/v60.0/composite/sobjects/Account/Billing_Account_Id__c";
    let body = json!({"allOrNone": false, "records": [
        account("B-1", "One"),
        json!({"attributes": {"type": "Account"}, "Billing_Account_Id__c": "B-2"}),
        account("B-3", "Three"),
    ]});
    let (status, results) = crm_patch(&w, path, &body).await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["success"], json!(true));
    assert_eq!(results[0]["created"], json!(true));
    assert_eq!(results[1]["success"], json!(false));
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Name"]));
    assert_eq!(results[2]["success"], json!(true));
    assert_eq!(w.sandbox.crm_records("Account").len(), 2);

    // All or none: one bad record and nothing of the request is kept.
    let body = json!({"allOrNone": true, "records": [
        account("B-4", "Four"),
        json!({"attributes": {"type": "Account"}, "Billing_Account_Id__c": "B-5"}),
    ]});
    let (_, results) = crm_patch(&w, path, &body).await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        json!("ALL_OR_NONE_OPERATION_ROLLED_BACK")
    );
    assert_eq!(w.sandbox.crm_records("Account").len(), 2);

    let too_many: Vec<Value> = (0..=COLLECTION_LIMIT)
        .map(|i| account(&format!("T-{i}"), "Many"))
        .collect();
    let (status, error) = crm_patch(&w, path, &json!({"records": too_many})).await;
    assert_eq!(status, 400);
    assert_eq!(error[0]["errorCode"], json!("EXCEEDED_ID_LIMIT"));
    assert_eq!(w.sandbox.crm_records("Account").len(), 2, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_collection_creates_nothing_twice() {
    let w = sync_world::sqlite_world().await;
    w.sandbox.restrict_crm_currencies();
    let tokens = std::sync::Arc::new(sync_ledger::connectors::oauth::ClientCredentialsStore::new(
        [(
            sync_ledger::connectors::ServiceName::crm(),
            sync_ledger::connectors::oauth::ClientCredentials {
                token_url: w.sandbox.token_url(System::Crm),
                client_id: w
                    .sandbox
                    .config()
                    .credentials(System::Crm)
                    .client_id
                    .clone(),
                client_secret: sync_ledger::connectors::ApiToken::new(
                    w.sandbox
                        .config()
                        .credentials(System::Crm)
                        .client_secret
                        .expose_secret(),
                )
                .unwrap(),
            },
        )],
    ));
    let provider = std::sync::Arc::new(sync_ledger::connectors::TokenProvider::new(
        tokens,
        std::time::Duration::from_secs(300),
    ));
    let crm = sync_ledger::connectors::CrmClient::new(
        sync_ledger::connectors::ClientConfig::new(
            w.sandbox.url(),
            sync_ledger::connectors::ServiceName::crm(),
        ),
        provider,
    )
    .unwrap();
    let cid = CorrelationId::new();
    let records: Vec<CollectionRecord> = ["R-1", "R-2", "R-3"]
        .iter()
        .map(|id| {
            CollectionRecord::account(
                id,
                &CrmAccountBody {
                    name: Some(format!("Retry {id}")),
                    currency: Some("EUR".into()),
                },
                cid,
            )
        })
        .collect();
    let first = crm.upsert_collection(&records, cid).await.unwrap();
    assert!(first.iter().all(|r| r.as_ref().is_ok_and(|u| u.created)));
    let again = crm.upsert_collection(&records, cid).await.unwrap();
    assert!(again.iter().all(|r| r.as_ref().is_ok_and(|u| !u.created)));
    let ids = |rs: &[Result<sync_ledger::connectors::crm::Upserted, _>]| -> Vec<String> {
        rs.iter().map(|r| r.as_ref().unwrap().id.clone()).collect()
    };
    assert_eq!(ids(&first), ids(&again), "the same records, updated");
    assert_eq!(w.sandbox.crm_records("Account").len(), 3);

    let too_many = vec![records[0].clone(); COLLECTION_LIMIT + 1];
    let refused = crm.upsert_collection(&too_many, cid).await.unwrap_err();
    assert!(refused.to_string().contains("records"), "{refused}");
}
