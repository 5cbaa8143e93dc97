//! The token rotator against moto (SSM SecureStrings with a KMS key, the DynamoDB ledger)
//! and the sandbox's OAuth endpoints: a run writes a new verified parameter version and a
//! `TokenRotated` audit event that, like the logs, never contains the token; a failing
//! service is recorded as `TokenRotationFailed` while the others still rotate.

mod common;

use common::ingest_store::fresh_store;
use common::moto::{moto, unique_name};
use projections::{CorrelationId, DomainEvent, StreamId};
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_ledger::config::StoreUrl;
use sync_ledger::connectors::token::SsmStore;
use sync_ledger::connectors::{ApiToken, BillingClient, ClientConfig, ServiceName, TokenProvider};
use sync_ledger::lambda::token_rotator::{RotatorConfig, SaltSource, TokenRotator};
use sync_ledger::ledger::EventLog;
use sync_ledger::rotation::ServiceSettings;

const SALT: &str = "per-deployment-salt";

/// A service of this test (unique on the shared moto), rotated against `system`'s token
/// endpoint with the given client secret.
async fn service(sandbox: &Sandbox, system: System, client_secret: &str) -> ServiceSettings {
    let service = ServiceName::parse(&unique_name(system.as_str())).unwrap();
    let id_param = format!("/oauthClients/{service}/clientId");
    let secret_param = format!("/oauthClients/{service}/clientSecret");
    moto()
        .put_secure(&id_param, &sandbox.config().credentials(system).client_id)
        .await;
    moto().put_secure(&secret_param, client_secret).await;
    // The token the previous rotation left (version 1).
    moto()
        .put_secure(&service.parameter_name(), "previous-token")
        .await;
    ServiceSettings {
        service,
        token_url: sandbox.token_url(system),
        client_id_parameter: id_param,
        client_secret_parameter: secret_param,
    }
}

fn config(services: Vec<ServiceSettings>, kms_key_id: String) -> RotatorConfig {
    RotatorConfig {
        services,
        kms_key_id,
        salt: SaltSource::Value(ApiToken::new(SALT).unwrap()),
        store: StoreUrl::parse("dynamodb://unused").unwrap(),
    }
}

/// Log lines of the code under test, captured for searching.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn audit(log: &Arc<dyn EventLog>, service: &ServiceName) -> Vec<projections::RecordedEvent> {
    log.read_stream(
        &StreamId::parse(format!("system-token-{service}")).unwrap(),
        1,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_run_writes_a_verified_ssm_version_and_an_audit_event_that_holds_no_token() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let ssm = moto().ssm().await;
    let store = fresh_store().await;
    let key = moto().kms_key().await;
    let billing = service(&sandbox, System::Billing, "sandbox-billing-secret").await;
    let crm = service(&sandbox, System::Crm, "sandbox-crm-secret").await;
    let rotator = TokenRotator::init(
        &config(vec![billing.clone(), crm.clone()], key.clone()),
        store.log(),
        ssm.clone(),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let schedule_id = "8f3c2b1e-5d4a-4c3b-9a2f-1e0d9c8b7a6f";

    // The scheduler's invocation (EventBridge Scheduler "Scheduled Event" shape).
    let report = rotator
        .handle(json!({
            "version": "0", "id": schedule_id, "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012",
            "time": "2026-11-26T06:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/token-rotation"],
            "detail": "{}"
        }))
        .await
        .unwrap();

    assert_eq!(report.rotated.len(), 2, "{report:?}");
    assert!(report.failed.is_empty());
    let run = CorrelationId::parse(schedule_id).unwrap();
    let parameter = ssm
        .get_parameter()
        .name(billing.service.parameter_name())
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(
        parameter.version, 2,
        "a new version over the previous token"
    );
    let token = ApiToken::new(parameter.value.unwrap()).unwrap();
    assert_ne!(token.expose_secret(), "previous-token");
    let described = ssm
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Name")
                .values(billing.service.parameter_name())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let meta = &described.parameters()[0];
    assert_eq!(
        meta.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert!(meta.key_id().unwrap_or_default().contains(&key), "{meta:?}");

    // The rotated token is live: the Billing API accepts it, read through SSM.
    let client = BillingClient::new(
        ClientConfig::new(sandbox.url(), billing.service.clone()),
        Arc::new(TokenProvider::new(
            Arc::new(SsmStore::new(ssm.clone())),
            Duration::from_secs(60),
        )),
    )
    .unwrap();
    client.list_products(CorrelationId::new()).await.unwrap();

    let events = audit(&store.log(), &billing.service).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.correlation_id, run);
    let DomainEvent::TokenRotated(rotated) = event.decode().unwrap() else {
        panic!("expected TokenRotated, got {}", event.event_type);
    };
    assert_eq!(rotated.parameter_name, billing.service.parameter_name());
    assert_eq!(rotated.parameter_version, 2);
    assert_eq!(rotated.fingerprint, token.fingerprint(SALT.as_bytes()));
    assert!(
        rotated.expires_at.is_some(),
        "Billing's token endpoint sends expires_in"
    );
    assert_eq!(audit(&store.log(), &crm.service).await.len(), 1);

    // Nothing recorded or logged carries the token or a client secret.
    let everything_recorded =
        serde_json::to_string(&store.log().by_correlation(&run).await.unwrap()).unwrap();
    let logged = logs.text();
    assert!(
        logged.contains("token rotated"),
        "the capture works: {logged}"
    );
    assert!(logged.contains(&rotated.fingerprint));
    for secret in [
        token.expose_secret(),
        "sandbox-billing-secret",
        "sandbox-crm-secret",
    ] {
        assert!(
            !everything_recorded.contains(secret),
            "the ledger holds a secret"
        );
        assert!(!logged.contains(secret), "the logs hold a secret");
        assert!(!serde_json::to_string(&report).unwrap().contains(secret));
    }
}

#[tokio::test]
async fn one_failing_service_is_recorded_as_failed_while_the_others_rotate() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let ssm = moto().ssm().await;
    let store = fresh_store().await;
    let key = moto().kms_key().await;
    // The CRM client secret in SSM is wrong: its token endpoint refuses the exchange.
    let broken = service(&sandbox, System::Crm, "a-revoked-client-secret").await;
    let healthy = service(&sandbox, System::Billing, "sandbox-billing-secret").await;
    let mut missing = service(&sandbox, System::Billing, "sandbox-billing-secret").await;
    missing.client_secret_parameter = format!("/oauthClients/{}/nothing-here", missing.service);
    let rotator = TokenRotator::init(
        &config(vec![broken.clone(), missing.clone(), healthy.clone()], key),
        store.log(),
        ssm.clone(),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let run = CorrelationId::new();

    let report = rotator.run(run).await.unwrap();

    assert_eq!(
        report
            .rotated
            .iter()
            .map(|r| &r.service)
            .collect::<Vec<_>>(),
        vec![&healthy.service.to_string()]
    );
    assert_eq!(report.failed.len(), 2);
    let failed = audit(&store.log(), &broken.service).await;
    assert_eq!(failed.len(), 1);
    let DomainEvent::TokenRotationFailed(failure) = failed[0].decode().unwrap() else {
        panic!("expected TokenRotationFailed, got {}", failed[0].event_type);
    };
    assert!(
        failure.reason.contains("invalid_client"),
        "{}",
        failure.reason
    );
    assert_eq!(failure.extra["stage"], json!("obtain-token"));
    assert!(!serde_json::to_string(&failed[0])
        .unwrap()
        .contains("a-revoked-client-secret"));
    assert_eq!(failed[0].correlation_id, run);
    let DomainEvent::TokenRotationFailed(no_secret) = audit(&store.log(), &missing.service).await
        [0]
    .decode()
    .unwrap() else {
        panic!("expected TokenRotationFailed");
    };
    assert!(
        no_secret.reason.contains("nothing-here"),
        "names the parameter: {}",
        no_secret.reason
    );
    // The failed services keep their previous token; the healthy one moved on.
    for (settings, version) in [(&broken, 1), (&missing, 1), (&healthy, 2)] {
        let p = ssm
            .get_parameter()
            .name(settings.service.parameter_name())
            .send()
            .await
            .unwrap();
        assert_eq!(
            p.parameter.unwrap().version,
            version,
            "{}",
            settings.service
        );
    }
    assert!(matches!(
        audit(&store.log(), &healthy.service).await[0]
            .decode()
            .unwrap(),
        DomainEvent::TokenRotated(_)
    ));
}
