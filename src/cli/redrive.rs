//! `ledger redrive --correlation <id>`: re-runs the failed or deferred syncs of one trace
//! against the external systems (configured like `ledger worker`: CRM_BASE_URL, ...), and
//! prints what each re-run did. `ledger redrive --failed [--since T] [--projection P]` does
//! the same for every trace with an unfinished sync, printing a summary (counts by
//! projection and reason) before any call. The one deliberate path that calls out again;
//! `--dry-run` only lists. It parses, wires and prints; the logic is `sync_ledger::redrive`.

use super::CliError;
use projections::CorrelationId;
use std::process::ExitCode;
use std::sync::Arc;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::connectors::config::{ConnectorsConfig, TokenConfig};
use sync_ledger::ledger::open_store;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::names::{known, view_name};
use sync_ledger::projector::Effects;
use sync_ledger::redrive::failed::{plan_failed, FailedQuery, FailedSummary};
use sync_ledger::redrive::{
    plan, redrive, Pending, RedriveReport, RedriveRequest, RedriveResult, Redriven,
};
use sync_ledger::views::open_views;

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The trace whose failed/deferred syncs to re-run.
    #[arg(long, required_unless_present = "failed", conflicts_with = "failed")]
    pub correlation: Option<String>,
    /// Every trace with a failed or deferred sync, across the ledger.
    #[arg(long)]
    pub failed: bool,
    /// With --failed: only failures recorded at or after this time (RFC 3339).
    #[arg(long, requires = "failed")]
    pub since: Option<String>,
    /// With --failed: only this projection's syncs (account, order, product, correlation).
    #[arg(long, requires = "failed")]
    pub projection: Option<String>,
    /// List what would be re-run; call nothing, record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who asks (recorded in the ledger); default: $USER.
    #[arg(long)]
    pub by: Option<String>,
    /// Why (recorded in the ledger).
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn run(store: &StoreUrl, args: &RedriveArgs) -> Result<ExitCode, CliError> {
    let requested_by = match &args.by {
        Some(by) if !by.trim().is_empty() => by.trim().to_string(),
        Some(_) => return Err(CliError::Invalid("--by: must not be empty".into())),
        None => std::env::var("USER").unwrap_or_else(|_| "operator".to_string()),
    };
    let Some(correlation) = &args.correlation else {
        return run_failed(store, args, requested_by).await;
    };
    let correlation = CorrelationId::parse(correlation)
        .map_err(|e| CliError::Invalid(format!("--correlation: {e}")))?;
    let request = RedriveRequest {
        correlation,
        requested_by,
        reason: args.reason.clone(),
        dry_run: args.dry_run,
        projection: None,
    };
    // Loaded only by what needs it (a DynamoDB store, Parameter Store tokens), then shared.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    if args.dry_run {
        // A dry run needs no connector configuration: it reads the ledger only.
        let (_, targets) = plan(log.as_ref(), views.as_ref(), &correlation).await?;
        let report = RedriveReport {
            correlation,
            dry_run: true,
            items: targets
                .into_iter()
                .map(|target| Redriven {
                    target,
                    result: RedriveResult::Planned,
                })
                .collect(),
            calls: 0,
            view_updates: 0,
            view_failures: Vec::new(),
        };
        print!("{}", render(&report));
        return Ok(ExitCode::SUCCESS);
    }
    let effects = connector_effects(&aws).await?;
    let report = redrive(log, views, effects, &request).await?;
    print!("{}", render(&report));
    Ok(if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The external systems a redrive calls, configured from the environment like `ledger worker`
/// (also used by the console's Redrive action). `aws` is loaded only for Parameter Store
/// tokens.
pub async fn connector_effects(aws: &AwsConfig) -> Result<Arc<dyn Effects>, CliError> {
    let connectors = ConnectorsConfig::from_env()?;
    let ssm_config = match connectors.tokens {
        TokenConfig::ParameterStore => Some(aws.get().await),
        TokenConfig::ClientCredentials { .. } => None,
    };
    Ok(Arc::new(
        ConnectorEffects::from_config(&connectors, ssm_config)
            .map_err(|e| CliError::Invalid(e.to_string()))?,
    ))
}

/// The report as a person reads it.
pub fn render(report: &RedriveReport) -> String {
    let mut out = String::new();
    let actionable = report
        .items
        .iter()
        .filter(|i| {
            matches!(
                i.target.pending,
                Pending::FailedCall { .. } | Pending::GaveUp { .. }
            )
        })
        .count();
    if report.items.is_empty() {
        out.push_str(&format!(
            "nothing to redrive in {}: no failed or deferred sync is pending (0 calls)\n",
            report.correlation
        ));
        return out;
    }
    let head = if report.dry_run {
        format!(
            "redrive {} (dry run): {actionable} sync(s) would be re-run\n",
            report.correlation
        )
    } else {
        format!("redrive {}:\n", report.correlation)
    };
    out.push_str(&head);
    for item in &report.items {
        let t = &item.target;
        let what = format!(
            "{} {} v{} [{} {}]",
            t.cause.event_type,
            t.cause.stream_id,
            t.cause.version,
            t.projection,
            t.what()
        );
        let status = match (&item.result, &t.pending) {
            (RedriveResult::Planned, Pending::FailedCall { last_reason, .. })
            | (RedriveResult::Planned, Pending::GaveUp { last_reason }) => {
                format!("would re-run (failed: {last_reason})")
            }
            (RedriveResult::Planned, Pending::Waiting { waiting_for })
            | (RedriveResult::StillWaiting { waiting_for }, _) => {
                let hint = waiting_for
                    .strip_prefix("account-link:crm:")
                    .map(|account| {
                        format!(" (redrive the account's trace first: `ledger audit {account}`)")
                    })
                    .unwrap_or_default();
                format!("still deferred, waiting for {waiting_for}: nothing to call yet{hint}")
            }
            (RedriveResult::Planned, Pending::NotRedrivable { reason }) => {
                format!("cannot be re-run: {reason}")
            }
            (RedriveResult::Synced { recorded }, _) if recorded.is_empty() => {
                "re-run: succeeded".to_string()
            }
            (RedriveResult::Synced { recorded }, _) => {
                format!("re-run: succeeded, recorded {}", recorded.join(", "))
            }
            (RedriveResult::FailedAgain { reason }, _) => format!("re-run: FAILED again: {reason}"),
            (RedriveResult::Skipped { reason }, _) => format!("not re-run: {reason}"),
        };
        out.push_str(&format!("  {what}: {status}\n"));
    }
    if !report.dry_run {
        out.push_str(&format!(
            "{} external call(s); views updated with {} event(s)\n",
            report.calls, report.view_updates
        ));
        for failure in &report.view_failures {
            out.push_str(&format!(
                "  not applied yet (the projector retries it): {failure}\n"
            ));
        }
    }
    out
}

/// `--failed`: plans every trace with an unfinished sync, prints the summary, then (unless
/// `--dry-run`) redrives the traces one by one.
async fn run_failed(
    store: &StoreUrl,
    args: &RedriveArgs,
    requested_by: String,
) -> Result<ExitCode, CliError> {
    let query = failed_query(args)?;
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    let traces = plan_failed(log.as_ref(), views.as_ref(), &query).await?;
    let summary = FailedSummary::of(&traces);
    print!("{}", render_summary(&summary, args.dry_run));
    if args.dry_run {
        for (correlation, targets) in traces {
            let report = RedriveReport {
                correlation,
                dry_run: true,
                items: targets
                    .into_iter()
                    .map(|target| Redriven {
                        target,
                        result: RedriveResult::Planned,
                    })
                    .collect(),
                calls: 0,
                view_updates: 0,
                view_failures: Vec::new(),
            };
            print!("{}", render(&report));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if traces.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let effects = connector_effects(&aws).await?;
    let mut failures = false;
    for (correlation, _) in traces {
        let request = RedriveRequest {
            correlation,
            requested_by: requested_by.clone(),
            reason: args.reason.clone(),
            dry_run: false,
            projection: query.projection,
        };
        let report = redrive(log.clone(), views.clone(), effects.clone(), &request).await?;
        failures |= report.has_failures();
        print!("{}", render(&report));
    }
    Ok(if failures {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn failed_query(args: &RedriveArgs) -> Result<FailedQuery, CliError> {
    let since = args
        .since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    CliError::Invalid(format!(
                        "--since: {t:?} is not an RFC 3339 time (2026-12-05T10:00:00Z): {e}"
                    ))
                })
        })
        .transpose()?;
    let projection = args
        .projection
        .as_deref()
        .map(|p| {
            view_name(p).ok_or_else(|| {
                CliError::Invalid(format!(
                    "--projection: unknown projection {p:?} (known: {})",
                    known()
                ))
            })
        })
        .transpose()?;
    Ok(FailedQuery { since, projection })
}

/// The summary printed before anything is called.
pub fn render_summary(summary: &FailedSummary, dry_run: bool) -> String {
    if summary.syncs == 0 {
        return "redrive --failed: nothing to redrive: no failed or deferred sync is pending (0 calls)\n"
            .to_string();
    }
    let mut out = format!(
        "redrive --failed{}: {} unfinished sync(s) in {} trace(s)\n",
        if dry_run { " (dry run)" } else { "" },
        summary.syncs,
        summary.traces
    );
    let by_projection: Vec<String> = summary
        .by_projection
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    out.push_str(&format!("  by projection: {}\n", by_projection.join(", ")));
    out.push_str("  by reason:\n");
    for (reason, n) in &summary.by_reason {
        out.push_str(&format!("    {n} x {reason}\n"));
    }
    out
}
