//! Reconcile: a tenant of N accounts a side in the sandbox (every CRM account naming its
//! Billing account: a backfill's shape, on an empty embedded ledger), compared with
//! `sync_ledger::reconcile` exactly as `ledger reconcile --dry-run` does — wall time, read
//! calls per system against ceil(N / 2,000), and the growth of the peak resident set during
//! the run at N/10 and N (the sandbox shares the process; its records are seeded before the
//! peak is reset).

use super::Target;
use super::{peak_rss_bytes, reset_peak_rss, Bound, Measurement, Outcome, Scale, ScratchDir};
use projections::reconcile::Prefer;
use sandbox::{Sandbox, SandboxConfig, System};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_ledger::connectors::token::StaticTokens;
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, CrmClient, ServiceName, TokenProvider,
};
use sync_ledger::ledger::sqlite::{migrate, SqliteLedger};
use sync_ledger::reconcile::{reconcile, ReconcileOptions};
use sync_ledger::views::sqlite::SqliteViewStore;

pub const NAME: &str = "reconcile";
pub const TITLE: &str = "Reconcile: accounts compared between CRM, Billing and the view";

/// Accounts a side in a full run (the issue's 100,000).
pub const FULL_ACCOUNTS: usize = 100_000;

struct Run {
    accounts: usize,
    wall: Duration,
    calls_crm: u64,
    calls_billing: u64,
    rss_growth: Option<u64>,
}

fn current_rss_bytes() -> Option<u64> {
    super::proc_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
    .map(|k| k * 1024)
}

async fn run_once(dir: &std::path::Path, accounts: usize) -> Result<Run, String> {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    for i in 0..accounts {
        let name = format!("Account {i:06}");
        let billing = sandbox
            .billing_user_create(&name, "USD", None)
            .map_err(|e| e.to_string())?;
        let mut fields = Map::new();
        fields.insert("Name".into(), Value::from(name));
        fields.insert("Billing_Account_Id__c".into(), json!(billing));
        sandbox
            .crm_user_create("Account", fields)
            .map_err(|e| e.to_string())?;
    }
    sandbox.drain_outbox();
    let path = dir.join(format!("reconcile-{accounts}.db"));
    migrate(&path).map_err(|e| e.to_string())?;
    let log = SqliteLedger::open(&path).map_err(|e| e.to_string())?;
    let views = SqliteViewStore::open(&path).map_err(|e| e.to_string())?;
    let token = |system| {
        ApiToken::new(sandbox.issue_token(system).expose_secret()).map_err(|e| e.to_string())
    };
    let tokens = Arc::new(StaticTokens::new([
        (ServiceName::crm(), token(System::Crm)?),
        (ServiceName::billing(), token(System::Billing)?),
    ]));
    let provider = Arc::new(TokenProvider::new(tokens, Duration::from_secs(3600)));
    let crm = CrmClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::crm()),
        provider.clone(),
    )
    .map_err(|e| e.to_string())?;
    let billing = BillingClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::billing()),
        provider,
    )
    .map_err(|e| e.to_string())?;
    let options = ReconcileOptions {
        dry_run: true,
        repair: false,
        prefer: Prefer::Newer,
        max_api_calls: None,
    };
    let before = current_rss_bytes();
    let resettable = reset_peak_rss();
    let start = Instant::now();
    let report = reconcile(&log, &views, &crm, &billing, &options, &mut |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let peak = peak_rss_bytes().filter(|_| resettable);
    if report.scanned_crm != accounts as u64 || report.drift_total() != accounts as u64 {
        return Err(format!(
            "compared {} CRM accounts, {} drifts, of {accounts}",
            report.scanned_crm,
            report.drift_total()
        ));
    }
    let _ = std::fs::remove_file(&path);
    Ok(Run {
        accounts,
        wall,
        calls_crm: report.calls_crm,
        calls_billing: report.calls_billing,
        rss_growth: peak.zip(before).map(|(p, b)| p.saturating_sub(b)),
    })
}

pub async fn run(scale: Scale) -> Outcome {
    match measure(scale).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Skipped { reason },
    }
}

async fn measure(scale: Scale) -> Result<Outcome, String> {
    let dir = ScratchDir::new()?;
    let accounts = scale.events(FULL_ACCOUNTS);
    let small = run_once(dir.path(), accounts / 10).await?;
    let large = run_once(dir.path(), accounts).await?;
    let pages = (large.accounts as f64 / 2_000.0).ceil();
    let per_record = |r: &Run| r.rss_growth.map(|b| b as f64 / r.accounts as f64);
    let mut measurements = vec![
        Measurement::new(
            NAME,
            format!("wall time, {} accounts a side", large.accounts),
            large.wall.as_secs_f64(),
            "s",
        )
        .against(
            format!("{} accounts a side", small.accounts),
            small.wall.as_secs_f64(),
        ),
        Measurement::new(NAME, "CRM read calls", large.calls_crm as f64, "calls")
            .against("ceil(N / 2,000)", pages)
            .target(Target::Ratio(Bound::AtMost(1.05))),
        Measurement::new(
            NAME,
            "Billing read calls",
            large.calls_billing as f64,
            "calls",
        )
        .against("ceil(N / 2,000)", pages)
        .target(Target::Ratio(Bound::AtMost(1.05))),
    ];
    if let (Some(large_b), Some(small_b)) = (per_record(&large), per_record(&small)) {
        measurements.push(
            Measurement::new(
                NAME,
                format!("peak RSS growth per account, {} a side", large.accounts),
                large_b,
                "bytes",
            )
            .against(format!("at {} a side", small.accounts), small_b),
        );
    }
    Ok(Outcome::Measured {
        measurements,
        notes: vec![
            format!(
                "dry run on an empty embedded ledger against the in-process sandbox: {} and {} accounts a side, every CRM account naming its Billing account (all `unlinked`, a backfill's shape)",
                small.accounts, large.accounts
            ),
            "RSS growth: peak resident set during the run less the resident set before it (the sandbox's records are seeded before); it includes the sandbox's cursor and page answers".to_string(),
            "what the run holds: the Billing index (id, name, currency, CrmId, UpdatedDate per Billing account) and one CRM page; CRM records are dropped page by page".to_string(),
        ],
    })
}
