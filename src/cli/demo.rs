//! `ledger demo`: the whole story on a fresh embedded store in a temp dir and an in-process
//! CRM + Billing sandbox — no AWS, never the configured store. A day of deliveries goes
//! through the real ingest path, the projectors sync it (through a 429 burst and expired
//! tokens), then the correlation view, one audit chain, and a wipe + replay that rebuilds
//! identical views with no external call.
//!
//! `demo_sample.jsonl` is a hand-written day in the ledger envelope of DESIGN §3; payloads
//! follow the catalogue types (Salesforce Account/Order/Product2 change events, Zuora
//! account, subscription and catalog callouts), and it carries two in-file redeliveries.

use super::ingest::ingest_lines;
use super::CliError;
use crate::audit::{audit, render_text, AuditId};
use crate::config::StoreUrl;
use crate::ledger::{migrate::migrate, open_store, EventLog};
use crate::projector::config::ConnectorsConfig;
use crate::projector::effects::ConnectorEffects;
use crate::projector::{build_selected, ProjectorDeps, RunnerSettings};
use crate::replay::{self, snapshot, ReplayRequest, ViewDigest};
use crate::sandbox::{Faults, Sandbox, SandboxConfig, System};
use crate::views::{open_views, ViewNamespace, ViewStore};
use crate::worker::{feed, StopWhen, WorkerSettings};
use projections::correlation_view::LinkItem;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const SAMPLE: &str = include_str!("demo_sample.jsonl");

/// A poison message: a CRM change that names no account id. It is rejected with the field
/// and reason, and kept (as `IngestRejected`) so nothing is lost.
const POISON: &str = r#"{"stream_id":"crm-account-001Dn00000BrokIAH","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"AccountChangeEvent:000000000000009999","correlation_id":"0193a0b4-1c00-7000-8000-000000000099","occurred_at":"2026-11-26T12:00:00Z","payload":{"name":"No Id Inc"}}"#;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_args: &DemoArgs) -> Result<ExitCode, CliError> {
    let dir = std::env::temp_dir().join(format!("sync-ledger-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let result = run_in(&dir).await;
    // Best effort: a leftover temp dir is harmless and must not hide the demo's result.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn invalid(e: impl std::fmt::Display) -> CliError {
    CliError::Invalid(e.to_string())
}

async fn run_in(dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let store = StoreUrl::Sqlite(dir.join("ledger.db"));
    migrate(&store).await?;
    let log = open_store(&store).await?;
    let views = open_views(&store).await?;
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(invalid)?;
    println!("Sync Ledger demo: a fresh embedded store and an in-process CRM + Billing sandbox (no AWS).\n");

    // 1. Ingest: the real path (`crate::ingest::record`), a redelivery included.
    let day = format!("{SAMPLE}\n{POISON}\n");
    let first = ingest_lines(log.as_ref(), day.as_bytes(), "business day").await?;
    let again = ingest_lines(log.as_ref(), SAMPLE.as_bytes(), "redelivery").await?;
    println!("1. A business day arrives (CRM + Billing events, then the whole batch again):");
    println!(
        "   {} events recorded; {} duplicate deliveries recorded nothing",
        first.appended,
        first.already_recorded + again.already_recorded
    );
    for rejected in &first.rejected {
        println!("   poison message rejected and kept: {rejected}");
    }

    // 2. Projectors over the change feed, against the sandbox, through faults.
    sandbox.set_faults(
        System::Billing,
        Faults {
            throttle_next: 3,
            retry_after_secs: 0,
            ..Faults::default()
        },
    );
    let half = run_projectors(&sandbox, log.clone(), views.clone(), 1).await?;
    sandbox.expire_tokens(None);
    let rest = run_projectors(&sandbox, log.clone(), views.clone(), 10).await?;
    let calls = sandbox.calls();
    println!(
        "\n2. Projectors sync it (Billing answers 3 calls with 429, retried by the client; then every API token expires):"
    );
    println!(
        "   {} events applied, {} deliveries retried, {} given up; {} sandbox calls (CRM {}, Billing {})",
        half.0 + rest.0,
        half.1 + rest.1,
        half.2 + rest.2,
        calls.total,
        calls.crm,
        calls.billing
    );

    // 3. The correlation view.
    println!("\n3. Correlation view (each id resolves to its counterpart):");
    let mut candidates = Vec::new();
    for item in views.list("correlation").await? {
        let Some(crm_id) = item.key.key().strip_prefix("link#crm#") else {
            continue; // every link has a CRM-side and a Billing-side item: show one
        };
        let Ok(link) = serde_json::from_value::<LinkItem>(item.state) else {
            continue;
        };
        let entity = link.entity.as_deref().unwrap_or("record");
        if let Some(l) = link.links.first() {
            println!(
                "   {entity:<14} crm {crm_id:<20} <-> billing {:<34} ({})",
                l.counterpart_id, l.made_by_type
            );
            if entity == "account" {
                candidates.push(l.correlation_id);
            }
        }
    }

    // 4. One audit chain: an account sync that went through cleanly, if there is one.
    let mut shown = None;
    for correlation in &candidates {
        let report = audit(
            log.as_ref(),
            views.as_ref(),
            &AuditId::Correlation(*correlation),
        )
        .await?;
        let text = render_text(&report);
        let clean = !text.contains(" failed ");
        if shown.is_none() || clean {
            shown = Some((*correlation, text));
        }
        if clean {
            break;
        }
    }
    if let Some((correlation, text)) = shown {
        println!("\n4. Audit of one inbound event (`ledger audit {correlation}`):");
        for line in text.lines() {
            println!("   {line}");
        }
    }

    // 5. Recovery: wipe the views, replay the log, compare.
    let names = replay::PROJECTIONS;
    let mut before = Vec::new();
    for name in names {
        before.push(ViewDigest::of(&snapshot(views.as_ref(), name).await?));
    }
    let calls_before = sandbox.calls().total;
    let mut request = ReplayRequest::new(ViewNamespace::live());
    request.checkpoints = false;
    let reports = replay::replay(log.clone(), views.clone(), &request, &mut replay::Silent).await?;
    let replay_calls = sandbox.calls().total - calls_before;
    println!("\n5. Recovery: wipe every view and replay the log (fold only, no decisions):");
    let mut identical = replay_calls == 0;
    for (report, live) in reports.iter().zip(&before) {
        let rebuilt = report
            .digest
            .clone()
            .unwrap_or(ViewDigest::of(&Default::default()));
        let same = &rebuilt == live;
        identical &= same;
        println!(
            "   {:<12} wiped {:>3} items, replayed {:>3} events -> {} {}",
            report.projection,
            report.wiped,
            report.events_read,
            rebuilt,
            if same {
                "= before"
            } else {
                "DIFFERS from before"
            }
        );
    }
    println!("   external calls during replay: {replay_calls}");
    sandbox.shutdown().await;
    if identical {
        let all: Vec<&str> = before.iter().map(ViewDigest::short).collect();
        println!("\nrebuilt views identical: digest {}", all.join(" "));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nrebuilt views DIFFER from the live ones (see above)");
        Ok(ExitCode::FAILURE)
    }
}

/// Runs every projection over the change feed until idle, `rounds` times (outcomes one
/// projection records feed the others on the next round). Returns (applied, retried, gave up).
async fn run_projectors(
    sandbox: &Sandbox,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    rounds: usize,
) -> Result<(usize, usize, usize), CliError> {
    let url = sandbox.url().to_string();
    let crm = sandbox.config().credentials(System::Crm).clone();
    let billing = sandbox.config().credentials(System::Billing).clone();
    let connectors = ConnectorsConfig::from_lookup(|name| match name {
        "CRM_BASE_URL" | "BILLING_BASE_URL" => Some(url.clone()),
        "CRM_CLIENT_ID" => Some(crm.client_id.clone()),
        "CRM_CLIENT_SECRET" => Some(crm.client_secret.expose_secret().to_string()),
        "BILLING_CLIENT_ID" => Some(billing.client_id.clone()),
        "BILLING_CLIENT_SECRET" => Some(billing.client_secret.expose_secret().to_string()),
        "CRM_PRICEBOOK_ID" => Some(crate::sandbox::STANDARD_PRICEBOOK_ID.to_string()),
        _ => None,
    })?;
    let deps = ProjectorDeps {
        log: log.clone(),
        views: views.clone(),
        effects: Arc::new(ConnectorEffects::from_config(&connectors, None).map_err(invalid)?),
        settings: RunnerSettings::default(),
    };
    let settings = WorkerSettings {
        batch_size: 100,
        batch_window: Duration::ZERO,
        max_retries: 5,
        retry_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        idle_poll: Duration::from_millis(10),
        stop: StopWhen::Idle,
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let mut totals = (0, 0, 0);
    for _ in 0..rounds {
        let mut applied_this_round = 0;
        for projector in build_selected("all", &deps).map_err(invalid)? {
            let report = feed::run(
                log.clone(),
                views.clone(),
                projector,
                settings,
                shutdown.clone(),
            )
            .await
            .map_err(invalid)?;
            applied_this_round += report.applied;
            totals.1 += report.retried;
            totals.2 += report.gave_up;
        }
        totals.0 += applied_this_round;
        if applied_this_round == 0 {
            break;
        }
    }
    Ok(totals)
}
