//! `ledger redrive --correlation <id>`: re-runs the failed or deferred syncs of one trace
//! against the external systems (configured like `ledger worker`: CRM_BASE_URL, ...), and
//! prints what each re-run did. The one deliberate path that calls out again; `--dry-run`
//! only lists. It parses, wires and prints; the logic is `sync_ledger::redrive`.

use super::CliError;
use projections::CorrelationId;
use std::process::ExitCode;
use std::sync::Arc;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::connectors::config::{ConnectorsConfig, TokenConfig};
use sync_ledger::ledger::open_store;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::Effects;
use sync_ledger::redrive::{
    plan, redrive, Pending, RedriveReport, RedriveRequest, RedriveResult, Redriven,
};
use sync_ledger::views::open_views;

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The trace whose failed/deferred syncs to re-run.
    #[arg(long)]
    pub correlation: String,
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
    let correlation = CorrelationId::parse(&args.correlation)
        .map_err(|e| CliError::Invalid(format!("--correlation: {e}")))?;
    let requested_by = match &args.by {
        Some(by) if !by.trim().is_empty() => by.trim().to_string(),
        Some(_) => return Err(CliError::Invalid("--by: must not be empty".into())),
        None => std::env::var("USER").unwrap_or_else(|_| "operator".to_string()),
    };
    let request = RedriveRequest {
        correlation,
        requested_by,
        reason: args.reason.clone(),
        dry_run: args.dry_run,
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
