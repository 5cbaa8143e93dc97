//! `ledger demo` (first version): migrates a fresh embedded store in a temp dir, ingests a
//! bundled day of CRM and Billing events twice, and shows that the second pass — a full
//! redelivery — records nothing new. Needs no AWS; it never touches the configured store.
//!
//! `demo_sample.jsonl` is a hand-written day in the ledger envelope of DESIGN §3; payloads
//! follow the catalogue types (Salesforce Account/Order/Product2 change events, Zuora
//! account, subscription and catalog callouts), and it carries two in-file redeliveries.

use super::ingest::{ingest_lines, IngestSummary};
use super::CliError;
use crate::config::StoreUrl;
use crate::ledger::{migrate::migrate, open_store};
use std::process::ExitCode;

const SAMPLE: &str = include_str!("demo_sample.jsonl");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_args: &DemoArgs) -> Result<ExitCode, CliError> {
    let dir = std::env::temp_dir().join(format!("sync-ledger-demo-{}", uuid::Uuid::new_v4()));
    let result = run_in(&dir).await;
    // Best effort: a leftover temp dir is harmless and must not hide the demo's result.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let store = StoreUrl::Sqlite(dir.join("ledger.db"));
    let report = migrate(&store).await?;
    println!(
        "Sync Ledger demo: fresh embedded store, {} migrations applied",
        report.applied.len()
    );
    let log = open_store(&store).await?;
    let lines = SAMPLE.lines().filter(|l| !l.trim().is_empty()).count();
    println!("Ingesting a day of CRM and Billing events ({lines} deliveries) twice:\n");

    let first = ingest_lines(log.as_ref(), SAMPLE.as_bytes(), "demo_sample.jsonl").await?;
    let second = ingest_lines(log.as_ref(), SAMPLE.as_bytes(), "demo_sample.jsonl").await?;
    print!(
        "{}",
        table(&[("first pass", &first), ("redelivery", &second)])
    );

    let ok = second.appended == 0 && first.rejected.is_empty() && second.rejected.is_empty();
    if ok {
        println!(
            "\nThe redelivery appended nothing: each of the {} source events is recorded exactly once.",
            first.appended
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nUnexpected: the redelivery changed the ledger (see the table above).");
        Ok(ExitCode::FAILURE)
    }
}

fn table(rows: &[(&str, &IngestSummary)]) -> String {
    let mut out = format!(
        "{:<12}  {:>8}  {:>16}  {:>8}\n",
        "pass", "appended", "already recorded", "rejected"
    );
    for (name, s) in rows {
        out.push_str(&format!(
            "{:<12}  {:>8}  {:>16}  {:>8}\n",
            name,
            s.appended,
            s.already_recorded,
            s.rejected.len()
        ));
    }
    out
}
