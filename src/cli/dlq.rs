//! `ledger dlq drain --queue <url>`: empties the ingest dead-letter queue through the ingest
//! Lambda's own SQS path. Each message is mapped as the Lambda maps an SQS record
//! (`ingest::map_body`) and recorded once (`ingest::record`: its events, deduplicated by the
//! source's event id, or an `IngestRejected` with the reason and the raw body); it is deleted
//! only after that outcome is in the ledger. A message whose outcome could not be recorded
//! (the ledger refused or was unreachable, or its body is larger than the ledger keeps) stays
//! on the queue and is counted. It parses, wires and prints; the mapping is the service's.

use super::CliError;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::Message;
use chrono::Utc;
use std::collections::HashSet;
use std::process::ExitCode;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ingest::{map_body, record, Channel, Ingested, Rejection};
use sync_ledger::ledger::{open_store, EventLog};

/// SQS's largest receive.
const RECEIVE_MAX: i32 = 10;
/// Long-poll wait per receive: an empty answer then means the queue has nothing visible.
const WAIT_SECONDS: i32 = 1;
/// Seconds a received message stays hidden from other consumers while its outcome is
/// recorded; a kept message reappears after this, in a later drain.
const VISIBILITY_SECONDS: i32 = 120;

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Re-ingest every message of a dead-letter queue, deleting each once its outcome is
    /// recorded in the ledger.
    Drain(DrainArgs),
}

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The queue URL (the stack's `SalesforceEventsDlqUrl` output).
    #[arg(long)]
    pub queue: String,
}

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub received: usize,
    /// Messages with at least one new event recorded.
    pub appended: usize,
    /// Messages whose events were all recorded before (a redelivery).
    pub already_recorded: usize,
    /// Messages recorded as `IngestRejected` (reason and raw body in the ledger).
    pub rejected: usize,
    /// Messages left on the queue: their outcome could not be recorded.
    pub kept: usize,
}

pub async fn run(store: &StoreUrl, args: &DlqArgs) -> Result<ExitCode, CliError> {
    match &args.command {
        DlqCommand::Drain(drain_args) => {
            let queue = drain_args.queue.trim();
            if !(queue.starts_with("https://") || queue.starts_with("http://")) {
                return Err(CliError::Invalid(format!(
                    "--queue: {queue:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"
                )));
            }
            let aws = AwsConfig::lazy();
            let log = open_store(store, &aws).await?;
            let sqs = aws_sdk_sqs::Client::new(aws.get().await);
            let drained = drain(&sqs, queue, log.as_ref()).await?;
            println!(
                "drained {queue}: {} received, {} appended, {} already recorded, {} rejected (IngestRejected), {} kept on the queue (outcome not recorded)",
                drained.received,
                drained.appended,
                drained.already_recorded,
                drained.rejected,
                drained.kept
            );
            Ok(if drained.kept == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn sqs_error<E: ProvideErrorMetadata + std::fmt::Display>(operation: &str, e: &E) -> CliError {
    CliError::Invalid(format!(
        "SQS {operation}: {}: {}",
        e.code().unwrap_or("error"),
        e.message()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string())
    ))
}

/// Receives until the queue answers empty (or only messages this run already kept come
/// back), recording each message's outcome before deleting it.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    log: &dyn EventLog,
) -> Result<Drained, CliError> {
    let mut drained = Drained::default();
    // Ids of messages kept this run: seeing one again means everything left was seen.
    let mut kept: HashSet<String> = HashSet::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(RECEIVE_MAX)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(VISIBILITY_SECONDS)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &e))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(drained);
        }
        let mut new_here = 0;
        for message in messages {
            let id = message.message_id().unwrap_or_default().to_string();
            if kept.contains(&id) {
                continue;
            }
            new_here += 1;
            drained.received += 1;
            if !drain_one(sqs, queue, log, message, &mut drained).await? {
                drained.kept += 1;
                kept.insert(id);
            }
        }
        if new_here == 0 {
            return Ok(drained);
        }
    }
}

/// Records one message and deletes it; `false` when it stays on the queue.
async fn drain_one(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    log: &dyn EventLog,
    message: &Message,
    drained: &mut Drained,
) -> Result<bool, CliError> {
    let id = message.message_id().unwrap_or("-");
    let body = message.body().unwrap_or_default();
    let now = Utc::now();
    let mapped = if body.is_empty() {
        Err(Rejection::missing("body"))
    } else {
        map_body(body, now)
    };
    let outcome = match record(log, Channel::Sqs, body.as_bytes(), mapped, now).await {
        Ok(Ingested::Rejected {
            truncated: true, ..
        }) => {
            tracing::warn!(
                message_id = id,
                "rejected and larger than the ledger keeps: left on the queue whole"
            );
            return Ok(false);
        }
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(message_id = id, error = %e, "outcome not recorded: left on the queue");
            return Ok(false);
        }
    };
    let Some(receipt) = message.receipt_handle() else {
        return Ok(false);
    };
    sqs.delete_message()
        .queue_url(queue)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| sqs_error("DeleteMessage", &e))?;
    match outcome {
        Ingested::Appended { .. } => drained.appended += 1,
        Ingested::AlreadyRecorded { .. } => drained.already_recorded += 1,
        Ingested::Rejected { .. } => drained.rejected += 1,
    }
    Ok(true)
}
