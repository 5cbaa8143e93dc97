//! Recording one mapped source record through the `EventLog` port: its events, or its
//! `IngestRejected` event. Shared by the Lambda handler and `ledger ingest`. It decides
//! nothing about retries; a store error is returned for the caller to redeliver.

use super::rejection::{exceeds_cap, rejection_event};
use super::{Channel, Mapped, Rejection};
use crate::ledger::{AppendOutcome, EventLog, ExpectedVersion, LedgerError};
use chrono::{DateTime, Utc};
use projections::NewEvent;

/// What became of one source record.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// At least one of its events was new.
    Appended {
        appended: usize,
        already_recorded: usize,
    },
    /// Every event it maps to was recorded before (a redelivery).
    AlreadyRecorded { events: usize },
    /// It could not be mapped; an `IngestRejected` event holds the reason and the raw body.
    Rejected {
        rejection: Rejection,
        /// False when the same raw body was rejected before (a redelivered poison message).
        newly_recorded: bool,
        /// The raw body is larger than the ledger keeps: the caller must let the transport
        /// keep the whole (SQS redrive to the DLQ, Lambda on-failure destination).
        truncated: bool,
    },
}

impl Ingested {
    pub fn label(&self) -> &'static str {
        match self {
            Ingested::Appended { .. } => "appended",
            Ingested::AlreadyRecorded { .. } => "already_recorded",
            Ingested::Rejected { .. } => "rejected",
        }
    }
}

/// Records `mapped` (the mapping of `raw`). Idempotent: a redelivery of the same record
/// appends nothing, because every event carries its source's idempotency key and a
/// rejection is keyed by the sha256 of the raw body.
pub async fn record(
    log: &dyn EventLog,
    channel: Channel,
    raw: &[u8],
    mapped: Mapped,
    now: DateTime<Utc>,
) -> Result<Ingested, LedgerError> {
    let rejection = match mapped {
        Ok(events) => match append_events(log, events).await {
            Ok(outcomes) => {
                let appended = outcomes.iter().filter(|o| o.is_appended()).count();
                let already_recorded = outcomes.len() - appended;
                return Ok(if appended == 0 {
                    Ingested::AlreadyRecorded {
                        events: already_recorded,
                    }
                } else {
                    Ingested::Appended {
                        appended,
                        already_recorded,
                    }
                });
            }
            Err(e) if e.is_transient() => return Err(e),
            // The store refused the event itself (e.g. an item over DynamoDB's size limit):
            // retrying cannot help, so the record is kept as a rejection instead.
            Err(e) => Rejection::whole(format!("the ledger refused the mapped event: {e}")),
        },
        Err(rejection) => rejection,
    };
    let event = rejection_event(channel, raw, &rejection, now);
    let outcomes = log
        .append(&event.stream_id.clone(), ExpectedVersion::Any, vec![event])
        .await?;
    Ok(Ingested::Rejected {
        rejection,
        newly_recorded: outcomes.iter().any(AppendOutcome::is_appended),
        truncated: exceeds_cap(raw),
    })
}

/// Appends events in order, one append per run of consecutive events on the same stream.
/// Runs on different streams are separate appends: a failure part-way is repaired by the
/// redelivery, whose already-recorded events are deduplicated.
pub async fn append_events(
    log: &dyn EventLog,
    events: Vec<NewEvent>,
) -> Result<Vec<AppendOutcome>, LedgerError> {
    let mut outcomes = Vec::with_capacity(events.len());
    let mut run: Vec<NewEvent> = Vec::new();
    for event in events {
        if run
            .first()
            .is_some_and(|first| first.stream_id != event.stream_id)
        {
            let batch = std::mem::take(&mut run);
            outcomes.extend(
                log.append(&batch[0].stream_id.clone(), ExpectedVersion::Any, batch)
                    .await?,
            );
        }
        run.push(event);
    }
    if let Some(first) = run.first() {
        let stream = first.stream_id.clone();
        outcomes.extend(log.append(&stream, ExpectedVersion::Any, run).await?);
    }
    Ok(outcomes)
}
