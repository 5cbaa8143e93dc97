//! End-to-end latency: CRM accounts created in the sandbox at a fixed rate, their change events
//! recorded through the ingest path, the account projection run by the feed worker in this
//! process against the sandbox's Billing API; p50/p99 from the append to the Billing account
//! existing. It measures on the embedded store and changes no setting of what it runs.

use super::{Measurement, Outcome, Scale, ScratchDir};
use chrono::Utc;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Map};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

pub const NAME: &str = "latency";
pub const TITLE: &str = "End-to-end: append -> Billing account exists (sandbox + worker)";

/// How long to wait for the last accounts to arrive before reporting them as lost.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// How often the watcher looks at the sandbox's Billing accounts.
const WATCH_EVERY: Duration = Duration::from_millis(1);

/// The worker's knobs: the ESM's batch size, no batching window (the template's projector
/// mappings set none), and a short idle poll (the embedded feed is polled; Streams pushes).
fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        batch_size: 100,
        batch_window: Duration::ZERO,
        idle_poll: Duration::from_millis(5),
        stop: StopWhen::Never,
        ..WorkerSettings::default()
    }
}

pub async fn run(scale: Scale) -> Outcome {
    match measure(scale).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Skipped { reason },
    }
}

/// The connector configuration a user would export for `ledger worker` against `sandbox`.
fn connectors(sandbox: &Sandbox) -> Result<ConnectorsConfig, String> {
    let env: HashMap<&str, String> = sandbox.connectors_env().into_iter().collect();
    ConnectorsConfig::from_lookup(|name| env.get(name).cloned()).map_err(|e| e.to_string())
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn measure(scale: Scale) -> Result<Outcome, String> {
    let (accounts, per_second) = if scale.quick { (40, 20.0) } else { (300, 20.0) };
    let dir = ScratchDir::new()?;
    let path = dir.path().join("ledger.db");
    migrate(&path).map_err(|e| e.to_string())?;
    let log: Arc<dyn EventLog> = Arc::new(SqliteLedger::open(&path).map_err(|e| e.to_string())?);
    let views: Arc<dyn ViewStore> =
        Arc::new(SqliteViewStore::open(&path).map_err(|e| e.to_string())?);
    let sandbox = Arc::new(
        Sandbox::start(SandboxConfig::default())
            .await
            .map_err(|e| format!("starting the sandbox: {e}"))?,
    );
    let effects = ConnectorEffects::from_config(&connectors(&sandbox)?, None)
        .map_err(|e| format!("connectors: {e}"))?;
    let deps = ProjectorDeps {
        log: log.clone(),
        views: views.clone(),
        effects: Arc::new(effects),
        settings: RunnerSettings::default(),
    };
    let projector = build_selected("account", &deps)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("no account projector")?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(feed::run(
        log.clone(),
        views.clone(),
        projector,
        worker_settings(),
        shutdown,
    ));

    // CRM id -> when its change event was appended; the watcher turns it into a latency.
    let appended: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let watcher = {
        let (sandbox, appended, latencies) = (sandbox.clone(), appended.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            loop {
                for account in sandbox.billing_accounts() {
                    let Some(crm_id) = account.crm_id else {
                        continue;
                    };
                    if seen.contains(&crm_id) {
                        continue;
                    }
                    let at = appended.lock().map(|a| a.get(&crm_id).copied());
                    if let Ok(Some(at)) = at {
                        if let Ok(mut l) = latencies.lock() {
                            l.push(at.elapsed());
                        }
                        seen.insert(crm_id);
                    }
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        })
    };

    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut relayed = 0usize;
    let result: Result<(), String> = async {
        for i in 0..accounts {
            ticks.tick().await;
            let mut fields = Map::new();
            fields.insert("Name".into(), json!(format!("Latency Probe {i}")));
            fields.insert("CurrencyIsoCode".into(), json!("USD"));
            let crm_id = sandbox
                .crm_user_create("Account", fields)
                .map_err(|e| format!("sandbox: {e}"))?;
            // The relay delivers everything the systems emitted (including the echoes of
            // earlier syncs), as EventBridge and the callouts would.
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
                relayed += 1;
            }
            if let Ok(mut a) = appended.lock() {
                a.insert(crm_id, Instant::now());
            }
        }
        Ok(())
    }
    .await;
    let offered_for = started.elapsed();
    let deadline = Instant::now() + DRAIN_WAIT;
    while latencies.lock().map(|l| l.len()).unwrap_or(0) < accounts && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watcher.abort();
    let _ = stop.send(true);
    let worker_result = worker.await;
    result?;
    match worker_result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("worker: {e}")),
        Err(e) => return Err(format!("worker task: {e}")),
    }
    let mut samples = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    if samples.len() < accounts {
        return Err(format!(
            "only {} of {accounts} Billing accounts appeared within {DRAIN_WAIT:?}",
            samples.len()
        ));
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let label = |q: &str| format!("append -> Billing account exists, {q}");
    Ok(Outcome::Measured {
        measurements: vec![
            Measurement::new(NAME, label("p50"), ms(quantile(&samples, 0.50)), "ms"),
            Measurement::new(NAME, label("p99"), ms(quantile(&samples, 0.99)), "ms"),
            Measurement::new(NAME, label("max"), ms(quantile(&samples, 1.0)), "ms"),
        ],
        notes: vec![format!(
            "{accounts} CRM accounts created in the sandbox at {per_second} per second \
             (offered for {:.1} s; {relayed} outbox events relayed through the ingest path \
             into the embedded store), the account projection run by the feed worker in this \
             process (batch size 100, no batching window, 5 ms idle poll) calling the \
             sandbox's Billing API over HTTP; latency from the append of the account's change \
             event to the Billing account being visible in the sandbox (watched every \
             {} ms). DynamoDB on moto is not measured here: moto's transaction cost, not the \
             code, would dominate",
            offered_for.as_secs_f64(),
            WATCH_EVERY.as_millis()
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.50), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&samples[..1], 0.99), Duration::from_millis(1));
    }
}
