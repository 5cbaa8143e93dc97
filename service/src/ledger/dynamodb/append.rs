//! Appends on DynamoDB: the stream head (consistent Query), dedupe markers, and the chunked
//! TransactWriteItems that put each event with its marker under `attribute_not_exists`
//! conditions. A call commits in chunks of at most `MAX_EVENTS_PER_TRANSACTION` events and
//! `MAX_TRANSACTION_BYTES`; each chunk is atomic, the call is not, so a call that spans
//! several chunks marks its markers with its id and a retry resumes after the chunks an
//! earlier try committed. What an append must do (one stream, the expected-version check,
//! where a retry resumes, `recorded_at`) is `append_rules`; this file only does it on DynamoDB.

use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use projections::{EventId, NewEvent, Source, SourceEventId, StreamId};

use super::chunk::{encode, plan_chunk, Head, MAX_TRANSACTION_BYTES};
use super::errors::{self, classify, with_retries, Backoff, Failure};
use super::item::{self, DedupeItem};
use super::DynamoDbLedger;
use crate::ledger::append_rules::{self, call_id, expected_matches, wrong_expected};
use crate::ledger::{AppendOutcome, ExistingEvent, ExpectedVersion, LedgerError};

/// An already-recorded event as its dedupe marker tells it.
struct Marker {
    existing: ExistingEvent,
    append_call: Option<String>,
}

impl DynamoDbLedger {
    /// `EventLog::append` on DynamoDB.
    pub(super) async fn append_events(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AppendOutcome>, LedgerError> {
        append_rules::check_one_stream(stream, &events)?;
        let call = call_id(stream, &events);
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; events.len()];
        // Copies of one source event inside this call follow the first copy's outcome (a
        // transaction may not touch one marker twice anyway).
        let mut first_copy: HashMap<(Source, &SourceEventId), usize> = HashMap::new();
        let mut copies = Vec::new();
        let mut pending = VecDeque::new();
        for (idx, event) in events.iter().enumerate() {
            match first_copy.get(&(event.source, &event.source_event_id)) {
                Some(first) => copies.push((idx, *first)),
                None => {
                    first_copy.insert((event.source, &event.source_event_id), idx);
                    pending.push_back(idx);
                }
            }
        }

        let mut expected = expected;
        let mut contention = Backoff::contention();
        let mut throttling = Backoff::throttling();
        // Events this call committed, and whether it took (or takes) more than one chunk.
        let mut written = 0;
        let mut split = false;
        while !pending.is_empty() {
            let head = self.head(stream).await?;
            let actual = head.map_or(0, |h| h.version);
            if !expected_matches(expected, actual) {
                // A retried call whose events are all recorded already is not a conflict, and
                // one whose earlier try stopped between chunks resumes after them.
                let candidates = pending.iter().copied().collect();
                let settled = self
                    .settle_recorded(&events, &mut pending, &mut outcomes, candidates)
                    .await?;
                if pending.is_empty() {
                    break;
                }
                let ours: Vec<u64> = settled
                    .iter()
                    .filter(|m| m.append_call.as_deref() == Some(call.as_str()))
                    .map(|m| m.existing.version)
                    .collect();
                match append_rules::resume_after_partial(expected, actual, &ours) {
                    Some(at) => {
                        expected = ExpectedVersion::Exact(at);
                        split = true;
                        continue;
                    }
                    None => return Err(wrong_expected(stream, expected, actual)),
                }
            }

            let chunk = plan_chunk(
                &events,
                &pending,
                head,
                append_rules::truncate_to_micros(Utc::now()),
                self.by_time_shards,
                &call,
                split,
                MAX_TRANSACTION_BYTES,
            )?;
            split |= chunk.events.len() < pending.len();
            let mut actions = Vec::with_capacity(chunk.items.len() * 2);
            for (event_item, marker) in &chunk.items {
                // attribute_not_exists on the event key is the optimistic-concurrency check:
                // the transaction is all-or-nothing, so a lost race writes neither item.
                actions.push(self.put_new(event_item.clone())?);
                actions.push(self.put_new(encode(marker)?)?);
            }
            self.append_fault.before_write(written)?;
            match self.send_transaction(actions).await {
                Ok(None) => {
                    for (offset, idx) in chunk.events.iter().enumerate() {
                        outcomes[*idx] = Some(AppendOutcome::Appended {
                            version: actual + 1 + offset as u64,
                        });
                    }
                    pending.drain(..chunk.events.len());
                    written += chunk.events.len();
                    if expected != ExpectedVersion::Any {
                        // The next chunk continues exactly where this one ended.
                        expected = ExpectedVersion::Exact(actual + chunk.events.len() as u64);
                    }
                }
                Ok(Some(codes)) => {
                    // Cancellation reasons come one per action, in request order:
                    // 2i = event i, 2i+1 = its dedupe marker.
                    let failed = |action: usize| codes.get(action).cloned().flatten();
                    let duplicates: Vec<usize> = chunk
                        .events
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            failed(2 * i + 1).as_deref() == Some("ConditionalCheckFailed")
                        })
                        .map(|(_, idx)| *idx)
                        .collect();
                    if !duplicates.is_empty() {
                        let settled = self
                            .settle_recorded(&events, &mut pending, &mut outcomes, duplicates)
                            .await?;
                        if settled.is_empty() {
                            // A marker we could not read back yet: wait rather than spin.
                            contention
                                .wait_or_throttled(format!(
                                    "dedupe markers of stream {stream} not readable"
                                ))
                                .await?;
                        }
                        continue;
                    }
                    let lost_race = (0..chunk.events.len())
                        .any(|i| failed(2 * i).as_deref() == Some("ConditionalCheckFailed"));
                    if lost_race {
                        // Exact/NoStream: the next turn re-reads the head and reports it.
                        contention
                            .wait_or_throttled(format!(
                                "stream {stream} kept moving under concurrent writers"
                            ))
                            .await?;
                        continue;
                    }
                    let reasons: Vec<String> = codes.iter().flatten().cloned().collect();
                    if reasons.iter().all(|c| errors::is_retryable_code(c)) {
                        throttling
                            .wait_or_throttled(format!(
                                "TransactWriteItems cancelled: {}",
                                reasons.join(", ")
                            ))
                            .await?;
                        continue;
                    }
                    return Err(LedgerError::Store(format!(
                        "TransactWriteItems cancelled: {}",
                        reasons.join(", ")
                    )));
                }
                Err(Failure::Retry(detail)) => throttling.wait_or_throttled(detail).await?,
                Err(Failure::Fatal(err)) => return Err(err),
            }
        }

        for (copy, first) in copies {
            let existing = match &outcomes[first] {
                Some(AppendOutcome::Appended { version }) => ExistingEvent {
                    stream_id: stream.clone(),
                    version: *version,
                    event_id: events[first].event_id,
                },
                Some(AppendOutcome::AlreadyRecorded { existing }) => existing.clone(),
                None => unreachable!("every first copy is settled before the loop ends"),
            };
            outcomes[copy] = Some(AppendOutcome::AlreadyRecorded { existing });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every event has an outcome"))
            .collect())
    }

    /// Strongly consistent, so a writer never builds on a stale version.
    async fn head(&self, stream: &StreamId) -> Result<Option<Head>, LedgerError> {
        let out = with_retries(|| async {
            self.db
                .query()
                .table_name(&self.events_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(stream.to_string()))
                .projection_expression("sk, recorded_at")
                .scan_index_forward(false)
                .limit(1)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("Query head", e))
        })
        .await?;
        let Some(item) = out.items().first() else {
            return Ok(None);
        };
        let version = match item.get("sk") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| LedgerError::Corrupt {
            key: stream.to_string(),
            reason: "the last item has no numeric sk".to_string(),
        })?;
        let recorded_at = match item.get("recorded_at") {
            Some(AttributeValue::S(s)) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        };
        Ok(Some(Head {
            version,
            recorded_at,
        }))
    }

    /// The dedupe marker of a source event, read strongly consistent.
    async fn read_marker(
        &self,
        source: Source,
        source_event_id: &SourceEventId,
    ) -> Result<Option<Marker>, LedgerError> {
        let pk = item::dedupe_pk(source, source_event_id);
        let out = with_retries(|| async {
            self.db
                .get_item()
                .table_name(&self.events_table)
                .key("pk", AttributeValue::S(pk.clone()))
                .key("sk", AttributeValue::N("0".to_string()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("GetItem dedupe marker", e))
        })
        .await?;
        let Some(found) = out.item else {
            return Ok(None);
        };
        let marker: DedupeItem =
            serde_dynamo::from_item(found).map_err(|e| LedgerError::Corrupt {
                key: pk.clone(),
                reason: e.to_string(),
            })?;
        let corrupt = |reason: String| LedgerError::Corrupt {
            key: pk.clone(),
            reason,
        };
        Ok(Some(Marker {
            existing: ExistingEvent {
                stream_id: StreamId::parse(marker.stream_id).map_err(|e| corrupt(e.to_string()))?,
                version: marker.version,
                event_id: EventId::parse(&marker.event_id).map_err(|e| corrupt(e.to_string()))?,
            },
            append_call: marker.append_call,
        }))
    }

    /// Drops from `pending` every candidate whose marker exists, recording `AlreadyRecorded`;
    /// returns the markers it found, in the order of `candidates`.
    async fn settle_recorded(
        &self,
        events: &[NewEvent],
        pending: &mut VecDeque<usize>,
        outcomes: &mut [Option<AppendOutcome>],
        candidates: Vec<usize>,
    ) -> Result<Vec<Marker>, LedgerError> {
        let found: Vec<(usize, Option<Marker>)> = futures::stream::iter(candidates)
            .map(|idx| async move {
                let event = &events[idx];
                self.read_marker(event.source, &event.source_event_id)
                    .await
                    .map(|marker| (idx, marker))
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut settled = Vec::new();
        for (idx, marker) in found {
            if let Some(marker) = marker {
                outcomes[idx] = Some(AppendOutcome::AlreadyRecorded {
                    existing: marker.existing.clone(),
                });
                pending.retain(|p| *p != idx);
                settled.push(marker);
            }
        }
        Ok(settled)
    }

    fn put_new(
        &self,
        attrs: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, LedgerError> {
        let put = Put::builder()
            .table_name(&self.events_table)
            .set_item(Some(attrs))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| LedgerError::Store(format!("cannot build Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Sends one transaction; `Ok(None)` on success, else the per-action cancellation codes
    /// (`None` for an action that did not fail) or a classified failure.
    async fn send_transaction(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<Option<String>>>, Failure> {
        match self
            .db
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    let codes = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                        .collect();
                    return Ok(Some(codes));
                }
                if err.code() == Some("ValidationException") {
                    return Err(Failure::Fatal(LedgerError::Store(format!(
                        "TransactWriteItems rejected: {}",
                        err.message().unwrap_or("validation error")
                    ))));
                }
                Err(classify("TransactWriteItems", err))
            }
        }
    }
}
