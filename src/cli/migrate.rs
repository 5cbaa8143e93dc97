//! `ledger migrate`: applies the selected store's pending migrations and says what it did.
//! The work is `ledger::migrate`; this file only prints.

use super::{describe_store, CliError};
use std::process::ExitCode;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::migrate::{migrate, MigrationReport};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

pub async fn run(store: &StoreUrl, _args: &MigrateArgs) -> Result<ExitCode, CliError> {
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    let report = migrate(store, &aws).await?;
    print!("{}", render(&describe_store(store), &report));
    Ok(ExitCode::SUCCESS)
}

fn render(store: &str, report: &MigrationReport) -> String {
    let mut out = format!("store {store}\n");
    for id in &report.already_applied {
        out.push_str(&format!("  already applied  {id}\n"));
    }
    for id in &report.applied {
        out.push_str(&format!("  applied          {id}\n"));
    }
    if report.applied.is_empty() {
        out.push_str(&format!(
            "nothing to apply: all {} migrations already applied\n",
            report.already_applied.len()
        ));
    } else {
        out.push_str(&format!("applied {} migrations\n", report.applied.len()));
    }
    out
}
