//! `ledger ingest <file|->`: appends JSON lines to the ledger. Each line is decoded by
//! `sync_ledger::ingest::decode` (a ledger envelope, or a raw source format); a bad line is
//! reported by line and field, kept as an `IngestRejected` event, and never stops the good
//! lines. It must not decide anything about the events.

use super::{describe_store, CliError};
use chrono::Utc;
use std::fmt;
use std::process::ExitCode;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ingest::decode::decode_line;
use sync_ledger::ingest::{record, Channel, Ingested, Rejection};
use sync_ledger::ledger::{open_store, EventLog};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// JSON-lines file of event envelopes (or raw EventBridge / Zuora callout / SQS records);
    /// `-` reads stdin.
    pub input: String,
}

pub async fn run(store: &StoreUrl, args: &IngestArgs) -> Result<ExitCode, CliError> {
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let summary = if args.input == "-" {
        ingest_lines(
            log.as_ref(),
            BufReader::new(tokio::io::stdin()),
            &args.input,
        )
        .await?
    } else {
        let file = tokio::fs::File::open(&args.input)
            .await
            .map_err(|source| CliError::Io {
                path: args.input.clone(),
                source,
            })?;
        ingest_lines(log.as_ref(), BufReader::new(file), &args.input).await?
    };
    for rejected in &summary.rejected {
        eprintln!("{rejected}");
    }
    tracing::info!(
        store = %describe_store(store),
        appended = summary.appended,
        already_recorded = summary.already_recorded,
        rejected = summary.rejected.len(),
        "ingest finished"
    );
    println!("{summary}");
    Ok(if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What one ingest run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestSummary {
    pub appended: usize,
    pub already_recorded: usize,
    pub rejected: Vec<LineRejection>,
}

impl fmt::Display for IngestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "appended {}, already recorded {}, rejected {}",
            self.appended,
            self.already_recorded,
            self.rejected.len()
        )
    }
}

/// A rejected input record: where it was and why (`line 7: payload.account_id: ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct LineRejection {
    pub line: usize,
    /// The SQS message id when the line held several messages.
    pub record: Option<String>,
    pub rejection: Rejection,
}

impl fmt::Display for LineRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(id) => write!(f, "line {} (message {id}): {}", self.line, self.rejection),
            None => write!(f, "line {}: {}", self.line, self.rejection),
        }
    }
}

/// Reads every line and records each record through `sync_ledger::ingest::record` (the same path
/// as the ingest Lambda): its events appended with `ExpectedVersion::Any`, or its rejection
/// kept. Only a store failure stops the run.
pub async fn ingest_lines<R: AsyncBufRead + Unpin>(
    log: &dyn EventLog,
    reader: R,
    name: &str,
) -> Result<IngestSummary, CliError> {
    let mut summary = IngestSummary::default();
    let mut lines = reader.lines();
    let mut number = 0;
    while let Some(line) = lines.next_line().await.map_err(|source| CliError::Io {
        path: name.to_string(),
        source,
    })? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let now = Utc::now();
        for decoded in decode_line(&line, now) {
            match record(
                log,
                Channel::Cli,
                decoded.raw.as_bytes(),
                decoded.mapped,
                now,
            )
            .await?
            {
                Ingested::Appended {
                    appended,
                    already_recorded,
                } => {
                    summary.appended += appended;
                    summary.already_recorded += already_recorded;
                }
                Ingested::AlreadyRecorded { events } => summary.already_recorded += events,
                Ingested::Rejected { rejection, .. } => summary.rejected.push(LineRejection {
                    line: number,
                    record: decoded.id,
                    rejection,
                }),
            }
        }
    }
    Ok(summary)
}
