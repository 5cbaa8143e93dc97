//! Fault family 6, tokens, through `ledger worker` against the sandbox's OAuth servers: the
//! Billing token expires in the middle of a batch -> exactly one refresh and the batch
//! succeeds; tokens of both systems are revoked over and over while the worker projects (what
//! a rotation that invalidates the old token looks like to a client) -> no failed sync; and the
//! real rotation: the token rotator writes new tokens to Parameter Store (moto) every 80 ms
//! while a worker reading its tokens from there projects, and each rotation revokes the
//! superseded tokens -> the worker re-reads after a 401 and no sync fails.

mod common;

use common::fault_world::World;
use common::moto::moto;
use sandbox::{Faults, System};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use sync_ledger::config::StoreUrl;
use sync_ledger::connectors::{ApiToken, ServiceName};
use sync_ledger::lambda::token_rotator::{RotatorConfig, SaltSource, TokenRotator};
use sync_ledger::ledger::SqliteLedger;
use sync_ledger::rotation::ServiceSettings;

const BILLING_TOKEN: &str = "POST /oauth/token";
const CRM_TOKEN: &str = "POST /services/oauth2/token";

async fn world_with_accounts(accounts: usize) -> World {
    let w = World::new().await;
    let activity = w.crm_activity(accounts, 0);
    let deliveries: Vec<_> = activity.iter().flat_map(|(_, e)| e.clone()).collect();
    w.ingest(&deliveries).await;
    w.sandbox.set_faults(
        System::Billing,
        Faults {
            latency_ms: 10,
            ..Faults::default()
        },
    );
    w
}

fn billing_api_calls(w: &World) -> u64 {
    let calls = w.sandbox.calls();
    calls.billing - calls.count(BILLING_TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_mid_batch_is_refreshed_exactly_once_and_the_batch_succeeds() {
    const ACCOUNTS: usize = 12;
    let w = world_with_accounts(ACCOUNTS).await;
    let worker = w.command(World::WORKER).output();
    let expire = async {
        // Half-way through the batch's Billing calls.
        while billing_api_calls(&w) < ACCOUNTS as u64 / 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        w.sandbox.expire_tokens(Some(System::Billing));
        billing_api_calls(&w)
    };
    let (out, expired_at) = tokio::join!(worker, expire);
    let out = out.unwrap();
    w.capture(&out);
    assert!(out.status.success(), "the worker run failed");
    assert!(
        billing_api_calls(&w) > expired_at,
        "the expiry happened before the batch ended"
    );
    let fetches = w.sandbox.calls().count(BILLING_TOKEN);
    assert_eq!(fetches, 2, "the first token and exactly one refresh");
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    w.settle().await;
    let state = w.billing_state().await;
    assert_eq!(state.len(), ACCOUNTS);
    assert!(state.values().all(|(_, linked)| *linked));
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    let rejected = w
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.status == 401)
        .count();
    eprintln!(
        "faults_tokens: expiry after {expired_at} of {} Billing calls: {rejected} x 401, {fetches} token fetches (1 refresh), {ACCOUNTS} accounts synced",
        billing_api_calls(&w)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revoked_repeatedly_while_the_worker_runs_fail_no_sync() {
    const ACCOUNTS: usize = 12;
    let w = world_with_accounts(ACCOUNTS).await;
    let mut child = w.command(World::WORKER).spawn().unwrap();
    let mut rotations = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(60)) => {
                w.sandbox.expire_tokens(None);
                rotations += 1;
            }
        }
    };
    assert!(status.success(), "the worker run failed");
    assert!(rotations > 0, "no rotation happened while the worker ran");
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    w.settle().await;
    let state = w.billing_state().await;
    assert_eq!(state.len(), ACCOUNTS);
    assert!(state.values().all(|(_, linked)| *linked));
    let failed = w.events_of_type("SyncFailed").await;
    assert!(failed.is_empty(), "no sync failed: {failed:?}");
    let calls = w.sandbox.calls();
    eprintln!(
        "faults_tokens: {rotations} revocations during the run, {} + {} token fetches, 0 SyncFailed, {ACCOUNTS} accounts synced",
        calls.count(BILLING_TOKEN),
        calls.count(CRM_TOKEN)
    );
}

/// The scheduler's invocation of the rotator (EventBridge Scheduler "Scheduled Event").
fn scheduled_event() -> serde_json::Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": "2026-11-26T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/token-rotation"],
        "detail": "{}"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotated_in_parameter_store_while_the_worker_runs_fail_no_sync() {
    const ACCOUNTS: usize = 12;
    let w = world_with_accounts(ACCOUNTS).await;
    let ssm = moto().ssm().await;
    // The rotator's OAuth clients, as the deployment stores them.
    let mut services = Vec::new();
    for (system, service) in [
        (System::Crm, ServiceName::crm()),
        (System::Billing, ServiceName::billing()),
    ] {
        let credentials = w.sandbox.config().credentials(system).clone();
        let id_param = format!("/oauthClients/{service}/clientId");
        let secret_param = format!("/oauthClients/{service}/clientSecret");
        moto().put_secure(&id_param, &credentials.client_id).await;
        moto()
            .put_secure(&secret_param, credentials.client_secret.expose_secret())
            .await;
        services.push(ServiceSettings {
            service,
            token_url: w.sandbox.token_url(system),
            client_id_parameter: id_param,
            client_secret_parameter: secret_param,
        });
    }
    let config = RotatorConfig {
        services,
        kms_key_id: moto().kms_key().await,
        salt: SaltSource::Value(ApiToken::new("faults-salt").unwrap()),
        store: StoreUrl::parse("dynamodb://unused").unwrap(),
    };
    // Its audit events go to the same ledger as the sync's.
    let rotator = TokenRotator::init(
        &config,
        Arc::new(SqliteLedger::open(w.db()).unwrap()),
        ssm.clone(),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let first = rotator.handle(scheduled_event()).await.unwrap();
    assert_eq!(first.rotated.len(), 2, "{first:?}");

    // The worker reads its tokens from Parameter Store (no client credentials given).
    let mut worker = w.command(World::WORKER);
    for variable in [
        "CRM_CLIENT_ID",
        "CRM_CLIENT_SECRET",
        "BILLING_CLIENT_ID",
        "BILLING_CLIENT_SECRET",
    ] {
        worker.env_remove(variable);
    }
    let mut child = worker
        .envs(moto().env())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut rotations = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(80)) => {
                let report = rotator.handle(scheduled_event()).await.unwrap();
                assert!(report.failed.is_empty(), "{report:?}");
                w.sandbox.revoke_superseded_tokens();
                rotations += 1;
            }
        }
    };
    assert!(status.success(), "the worker run failed");
    assert!(rotations > 0, "no rotation happened while the worker ran");
    let rejected = w
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.status == 401)
        .count();
    assert!(rejected > 0, "no revoked token was ever presented");
    let failed = w.events_of_type("SyncFailed").await;
    assert!(failed.is_empty(), "no sync failed: {failed:?}");
    let rotated = w.events_of_type("TokenRotated").await.len();
    w.settle().await;
    let state = w.billing_state().await;
    assert_eq!(state.len(), ACCOUNTS);
    assert!(state.values().all(|(_, linked)| *linked));
    assert!(w.events_of_type("SyncFailed").await.is_empty());
    eprintln!(
        "faults_tokens: Parameter Store rotation: {rotations} rotations during the run ({rotated} TokenRotated events), {rejected} x 401 on revoked tokens, 0 SyncFailed, {ACCOUNTS} accounts synced"
    );
}
