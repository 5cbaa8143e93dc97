//! `ledger reconcile`: compare CRM, Billing and the correlation view (accounts), record the
//! run and its drift in the ledger, and with `--repair` append observed-state events the
//! projectors (`ledger worker`) act on. On an empty ledger this is the backfill. Configured
//! like `ledger worker` (CRM_BASE_URL, BILLING_BASE_URL, client credentials). It parses,
//! wires and prints; the logic is `sync_ledger::reconcile`.

use super::CliError;
use projections::reconcile::{Drift, Prefer};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::connectors::config::{ConnectorsConfig, TokenConfig};
use sync_ledger::ledger::open_store;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::reconcile::{reconcile, ReconcileOptions, ReconcileReport, RunStatus};
use sync_ledger::views::open_views;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// What to compare: account (orders and products are not compared yet).
    #[arg(long, default_value = "account")]
    pub entity: String,
    /// Compare and print only: record nothing, repair nothing, keep no checkpoint.
    #[arg(long, conflicts_with = "repair")]
    pub dry_run: bool,
    /// Append an observed-state event per drift for the projectors to repair through the
    /// ordinary sync path (then run `ledger worker`).
    #[arg(long)]
    pub repair: bool,
    /// Which side wins a field drift or an unlinked pair: newer, crm or billing.
    #[arg(long, default_value = "newer")]
    pub prefer: String,
    /// Stop cleanly after this many read calls (both systems); the next run resumes.
    #[arg(long, value_name = "K")]
    pub max_api_calls: Option<u64>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(store: &StoreUrl, args: &ReconcileArgs) -> Result<ExitCode, CliError> {
    if args.entity != "account" {
        return Err(CliError::Invalid(format!(
            "--entity: {:?} is not supported; accounts are the entity reconciled (account)",
            args.entity
        )));
    }
    let prefer = Prefer::parse(&args.prefer).ok_or_else(|| {
        CliError::Invalid(format!(
            "--prefer: {:?} must be newer, crm or billing",
            args.prefer
        ))
    })?;
    if args.max_api_calls == Some(0) {
        return Err(CliError::Invalid(
            "--max-api-calls: must be at least 1".into(),
        ));
    }
    let connectors = ConnectorsConfig::from_env()?;
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    let ssm_config = match connectors.tokens {
        TokenConfig::ParameterStore => Some(aws.get().await),
        TokenConfig::ClientCredentials { .. } => None,
    };
    let (crm, billing) = ConnectorEffects::clients(&connectors, ssm_config)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let options = ReconcileOptions {
        dry_run: args.dry_run,
        repair: args.repair,
        prefer,
        max_api_calls: args.max_api_calls,
    };
    let terminal = std::io::stderr().is_terminal() && !args.json;
    let mut progress = move |done: u64, total: u64| {
        if terminal {
            let width = 30u64;
            let filled = (done * width)
                .checked_div(total)
                .unwrap_or(width)
                .min(width);
            eprint!(
                "\r[{}{}] {done}/{total} CRM accounts compared",
                "#".repeat(filled as usize),
                ".".repeat((width - filled) as usize)
            );
            let _ = std::io::stderr().flush();
        }
    };
    let report = reconcile(
        log.as_ref(),
        views.as_ref(),
        &crm,
        &billing,
        &options,
        &mut progress,
    )
    .await?;
    if terminal {
        eprintln!();
    }
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The object: run id, records scanned, drift per kind, repairs, read calls.
pub fn to_json(report: &ReconcileReport) -> serde_json::Value {
    let drift: serde_json::Map<String, serde_json::Value> = report
        .drift
        .iter()
        .map(|(kind, n)| (kind.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "run_id": report.run_id.to_string(),
        "scanned": {"crm": report.scanned_crm, "billing": report.scanned_billing},
        "drift": drift,
        "repaired": report.repaired,
        "api_calls": {"crm": report.calls_crm, "billing": report.calls_billing},
    })
}

/// The report as a person reads it.
pub fn render(report: &ReconcileReport) -> String {
    let mut out = String::new();
    let mode = match (report.dry_run, report.resumed) {
        (true, _) => " (dry run: nothing recorded)",
        (false, true) => " (resumed from its checkpoint)",
        _ => "",
    };
    out.push_str(&format!(
        "reconcile {} accounts{mode}: scanned crm {}, billing {}; api calls crm {}, billing {}\n",
        report.run_id,
        report.scanned_crm,
        report.scanned_billing,
        report.calls_crm,
        report.calls_billing
    ));
    let kinds: Vec<String> = report
        .drift
        .iter()
        .map(|(kind, n)| format!("{} {n}", kind.as_str()))
        .collect();
    out.push_str(&format!(
        "  drift {}: {}\n",
        report.drift_total(),
        kinds.join(", ")
    ));
    for drift in &report.shown {
        out.push_str(&format!("    {}\n", describe(drift)));
    }
    if report.drift_total() > report.shown.len() as u64 {
        out.push_str(&format!(
            "    ... (all of them: `ledger audit {}`)\n",
            report.run_id
        ));
    }
    if report.repaired > 0 {
        out.push_str(&format!(
            "  repaired {}: observed-state events appended; `ledger worker --until-idle` syncs them\n",
            report.repaired
        ));
    }
    match report.status {
        RunStatus::Completed => out.push_str(&format!(
            "  completed in {:.1}s\n",
            report.duration.as_secs_f64()
        )),
        RunStatus::BudgetExhausted if report.dry_run => out.push_str(
            "  stopped at --max-api-calls (a dry run keeps no checkpoint: counts cover what was read)\n",
        ),
        RunStatus::BudgetExhausted => out.push_str(
            "  stopped at --max-api-calls: run the same command again to resume from the checkpoint\n",
        ),
    }
    out
}

/// One drift on one line: kind, both records, the view's link, which fields and side.
pub fn describe(drift: &Drift) -> String {
    let crm = drift.crm.as_ref();
    let billing = drift.billing.as_ref();
    let side = |id: Option<&String>, name: Option<&String>| match (id, name) {
        (Some(id), Some(name)) => format!("{id} {name:?}"),
        _ => "-".to_string(),
    };
    let mut text = format!(
        "{}: crm {} / billing {}",
        drift.kind.as_str(),
        side(crm.map(|c| &c.id), crm.map(|c| &c.name)),
        side(billing.map(|b| &b.id), billing.map(|b| &b.name)),
    );
    if let Some(link) = &drift.view_link {
        text.push_str(&format!(" (view links {link})"));
    }
    if let Some(newer) = drift.newer.filter(|_| !drift.fields.is_empty()) {
        text.push_str(&format!(
            " [{} differ, {} newer]",
            drift.fields.join(", "),
            newer.as_str()
        ));
    }
    text
}
