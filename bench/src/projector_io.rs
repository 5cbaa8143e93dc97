//! Projector I/O against real-ish latency: Billing-originated account changes (people creating
//! accounts in Billing) projected into the CRM by the account projection, run by the feed
//! worker in this process against the sandbox with 100 ms added to every CRM call. Counts the
//! CRM API calls (each one unit of the tenant's daily Salesforce allocation) and the accounts
//! synced per second, with bulk CRM writes (sObject Collections) beside the sequential
//! baseline (one upsert per account), both measured in this run on the embedded store.

use super::{Bound, Measurement, Outcome, Scale, ScratchDir, Target};
use chrono::Utc;
use sandbox::{Faults, Sandbox, SandboxConfig, System};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_ledger::connectors::config::ConnectorsConfig;
use sync_ledger::ingest::{map_body, record, Channel};
use sync_ledger::ledger::sqlite::{migrate, SqliteLedger};
use sync_ledger::ledger::EventLog;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{build_selected, ProjectorDeps, RunnerSettings};
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::ViewStore;
use sync_ledger::worker::{feed, StopWhen, WorkerSettings};

pub const NAME: &str = "projector_io";
pub const TITLE: &str =
    "Projector I/O: Billing account changes -> CRM, bulk collections vs one call each";

/// Added to every CRM answer by the sandbox's latency knob.
const CRM_LATENCY_MS: u64 = 100;
/// The event source mapping's batch size (template.yaml).
const BATCH_SIZE: usize = 100;

/// What one run of the projection did.
struct Run {
    crm_calls: u64,
    elapsed: Duration,
}

pub async fn run(scale: Scale) -> Outcome {
    let accounts = scale.events(1000);
    let measured = async {
        let bulk = measure(accounts, true).await?;
        let sequential = measure(accounts, false).await?;
        Ok::<_, String>((bulk, sequential))
    }
    .await;
    let (bulk, sequential) = match measured {
        Ok(runs) => runs,
        Err(reason) => return Outcome::Skipped { reason },
    };
    let per_thousand = |r: &Run| r.crm_calls as f64 * 1000.0 / accounts as f64;
    let per_second = |r: &Run| accounts as f64 / r.elapsed.as_secs_f64();
    Outcome::Measured {
        measurements: vec![
            Measurement::new(
                NAME,
                "CRM API calls per 1,000 Billing-originated account changes",
                per_thousand(&bulk),
                "calls",
            )
            .against("one upsert per account", per_thousand(&sequential))
            .target(Target::Value(Bound::AtMost(10.0))),
            Measurement::new(
                NAME,
                format!(
                    "accounts synced into the CRM per second ({CRM_LATENCY_MS} ms per CRM call)"
                ),
                per_second(&bulk),
                "accounts/s",
            )
            .against("one upsert per account", per_second(&sequential)),
        ],
        notes: vec![format!(
            "{accounts} accounts created in the sandbox's Billing by a person (no CRM id), their \
             callouts recorded through the ingest path into the embedded store, then the \
             account projection run by the feed worker in this process (batch size \
             {BATCH_SIZE}, no batching window) until idle, calling the sandbox's CRM over HTTP \
             with {CRM_LATENCY_MS} ms added to every CRM answer. Bulk: RunnerSettings::default() \
             (the CRM upserts of a batch's independent streams as sObject Collections, up to 200 \
             records a call); baseline: the same with bulk_crm_writes off. CRM calls exclude \
             token requests; every account is checked to be in the CRM after each run"
        )],
    }
}

/// The connector configuration a user would export for `ledger worker` against `sandbox`.
fn connectors(sandbox: &Sandbox) -> Result<ConnectorsConfig, String> {
    let env: HashMap<&str, String> = sandbox.connectors_env().into_iter().collect();
    ConnectorsConfig::from_lookup(|name| env.get(name).cloned()).map_err(|e| e.to_string())
}

async fn measure(accounts: usize, bulk_crm_writes: bool) -> Result<Run, String> {
    let dir = ScratchDir::new()?;
    let path = dir.path().join("ledger.db");
    migrate(&path).map_err(|e| e.to_string())?;
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).map_err(|e| e.to_string())?);
    let views: Arc<dyn ViewStore> =
        Arc::new(SqliteViewStore::open(&path).map_err(|e| e.to_string())?);
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(|e| format!("starting the sandbox: {e}"))?;
    for i in 0..accounts {
        sandbox
            .billing_user_create_account(&format!("Bench Account {i:05}"), "USD")
            .map_err(|e| format!("sandbox: {e}"))?;
    }
    for event in sandbox.drain_outbox() {
        let raw = event.body_text();
        let now = Utc::now();
        record(
            log.as_ref(),
            Channel::Cli,
            raw.as_bytes(),
            map_body(&raw, now),
            now,
        )
        .await
        .map_err(|e| format!("ingest: {e}"))?;
    }
    sandbox.set_faults(
        System::Crm,
        Faults {
            latency_ms: CRM_LATENCY_MS,
            ..Faults::default()
        },
    );
    let effects = ConnectorEffects::from_config(&connectors(&sandbox)?, None)
        .map_err(|e| format!("connectors: {e}"))?;
    let deps = ProjectorDeps {
        log: log.clone(),
        views: views.clone(),
        effects: Arc::new(effects),
        settings: RunnerSettings {
            bulk_crm_writes,
            ..RunnerSettings::default()
        },
    };
    let projector = build_selected("account", &deps)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("no account projector")?;
    let settings = WorkerSettings {
        batch_size: BATCH_SIZE,
        batch_window: Duration::ZERO,
        idle_poll: Duration::from_millis(5),
        stop: StopWhen::Idle,
        ..WorkerSettings::default()
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    sandbox.reset_calls();
    let started = Instant::now();
    feed::run(log.clone(), views.clone(), projector, settings, shutdown)
        .await
        .map_err(|e| format!("worker: {e}"))?;
    let elapsed = started.elapsed();
    let calls = sandbox.calls();
    let crm_calls = calls.crm - calls.count("POST /services/oauth2/token");
    let synced = sandbox
        .crm_records("Account")
        .iter()
        .filter(|r| r.contains_key("Billing_Account_Id__c"))
        .count();
    if synced != accounts {
        return Err(format!(
            "only {synced} of {accounts} accounts reached the CRM (bulk: {bulk_crm_writes})"
        ));
    }
    Ok(Run { crm_calls, elapsed })
}
