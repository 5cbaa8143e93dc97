//! `ledger audit <correlation-id | crm-id | billing-id> [--json]`: prints the causal chain of
//! every trace the id names, as a tree drawn in a table, or the report as JSON. Read-only.

use super::CliError;
use std::process::ExitCode;
use sync_ledger::audit::{audit, render_text, AuditError, AuditId};
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::open_store;
use sync_ledger::views::open_views;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// A correlation id (UUID), or a CRM or Billing record id.
    pub id: String,
    /// Print the report as JSON (for machines).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(store: &StoreUrl, args: &AuditArgs) -> Result<ExitCode, CliError> {
    let id = AuditId::parse(&args.id)?;
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    match audit(log.as_ref(), views.as_ref(), &id).await {
        Ok(report) => {
            if args.json {
                let json = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::Invalid(format!("encoding the report: {e}")))?;
                println!("{json}");
            } else {
                print!("{}", render_text(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(AuditError::NotFound { id }) => {
            eprintln!("ledger: nothing recorded for {id:?} (not a known correlation id, CRM id or Billing id)");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
