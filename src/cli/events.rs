//! `ledger events <stream_id> [--from N] [--json]`: prints one stream's events in version
//! order, as a table or as JSON lines of the recorded envelope. Read-only.

use super::CliError;
use projections::envelope::format_timestamp;
use projections::{RecordedEvent, StreamId};
use std::process::ExitCode;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::open_store;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The stream, e.g. crm-account-001Dn00000ABC.
    pub stream_id: String,
    /// First version to print.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// One JSON envelope per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(store: &StoreUrl, args: &EventsArgs) -> Result<ExitCode, CliError> {
    let stream =
        StreamId::parse(args.stream_id.as_str()).map_err(|e| CliError::Invalid(e.to_string()))?;
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let events = log.read_stream(&stream, args.from).await?;
    if args.json {
        for event in &events {
            let line = serde_json::to_string(event)
                .map_err(|e| CliError::Invalid(format!("encoding {}: {e}", event.event_id)))?;
            println!("{line}");
        }
    } else {
        print!("{}", table(&stream, &events));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(stream: &StreamId, events: &[RecordedEvent]) -> String {
    if events.is_empty() {
        return format!("{stream}: no events\n");
    }
    let type_width = events
        .iter()
        .map(|e| e.event_type.len())
        .max()
        .unwrap_or(0)
        .max("EVENT_TYPE".len());
    let mut out = format!(
        "{:>7}  {:<27}  {:<type_width$}  {:<7}  {:<36}  SOURCE_EVENT_ID\n",
        "VERSION", "RECORDED_AT", "EVENT_TYPE", "SOURCE", "CORRELATION_ID"
    );
    for e in events {
        out.push_str(&format!(
            "{:>7}  {:<27}  {:<type_width$}  {:<7}  {:<36}  {}\n",
            e.version,
            format_timestamp(&e.recorded_at),
            e.event_type,
            e.source.as_str(),
            e.correlation_id.to_string(),
            e.source_event_id
        ));
    }
    out.push_str(&format!("{stream}: {} events\n", events.len()));
    out
}
