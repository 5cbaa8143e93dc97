//! `ViewStore` on the DynamoDB views table (`<prefix>-views`, hash key `pk`). View items
//! carry `kind = "view"`, checkpoints `kind = "checkpoint"` under `checkpoint#<name>`.
//! It never creates tables (`ledger migrate` does) and never reads the event log.

use super::{
    check_checkpoint_name, check_commit, check_item_size, check_projection, Checkpoint,
    ExpectedRevision, LastVersions, ViewError, ViewKey, ViewNamespace, ViewPage, ViewRow,
    ViewStore, ViewWrite, MAX_KEYS_PER_READ,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use projections::envelope::format_timestamp;
use projections::StreamId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// BatchWriteItem takes at most 25 requests.
const BATCH_WRITE_MAX: usize = 25;
/// How often unprocessed deletes are re-sent before the wipe reports the store throttled.
const BATCH_WRITE_ATTEMPTS: u32 = 8;
/// How often unprocessed keys of a batch read are re-sent before it reports the store
/// throttled (the runner then retries the batch by redelivery).
const BATCH_READ_ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct DynamoViewStore {
    client: Client,
    table: String,
    namespace: ViewNamespace,
}

impl DynamoViewStore {
    /// The views of table `table` (normally `<prefix>-views`), live namespace.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            namespace: ViewNamespace::live(),
        }
    }

    /// The table of `LEDGER_STORE=dynamodb://<prefix>`.
    pub fn table_name(table_prefix: &str) -> String {
        format!("{table_prefix}-views")
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn stored_pk(&self, pk: &str) -> String {
        format!("{}{pk}", self.namespace.key_prefix())
    }

    /// Every stored item whose pk starts with `prefix`, consistently read. The views table
    /// has only a hash key, so this is a Scan: it serves replay verify, digests and wipes,
    /// never the per-event path.
    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<Item>, ViewError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    fn encode_write(&self, w: &ViewWrite, now: &str) -> Result<Put, ViewError> {
        let body = serde_json::to_string(&w.state)
            .map_err(|e| ViewError::Store(format!("state of {}: {e}", w.key)))?;
        // A map attribute costs its keys and its numbers (at most 21 bytes each).
        let versions_bytes: usize = w.last_version.keys().map(|s| s.as_str().len() + 21).sum();
        check_item_size(&w.key, body.len() + versions_bytes)?;
        let last_version = encode_last_versions(&w.last_version);
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.stored_pk(&w.key.pk())))
            .item("kind", AttributeValue::S("view".into()))
            .item("projection", AttributeValue::S(w.key.projection().into()))
            .item("revision", AttributeValue::N(w.expected.next().to_string()))
            .item("last_version", last_version)
            // The state is kept as JSON text, not a native map: numbers round-trip exactly
            // (a DynamoDB Number would turn 1.0 into 1) and ops tools read it as-is.
            .item("body", AttributeValue::S(body))
            .item("updated_at", AttributeValue::S(now.to_string()));
        put = match w.expected {
            ExpectedRevision::Absent => put.condition_expression("attribute_not_exists(pk)"),
            ExpectedRevision::Exact(current) => put
                .condition_expression("revision = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(current.to_string())),
        };
        put.build()
            .map_err(|e| ViewError::Store(format!("building put of {}: {e}", w.key)))
    }

    fn decode_item(&self, item: &Item) -> Result<ViewRow, ViewError> {
        let stored_pk = string_attr(item, "pk", "?")?;
        let pk = stored_pk
            .strip_prefix(&self.namespace.key_prefix())
            .ok_or_else(|| ViewError::Corrupt {
                pk: stored_pk.to_string(),
                reason: format!("not in namespace {}", self.namespace),
            })?;
        let corrupt = |reason: String| ViewError::Corrupt {
            pk: stored_pk.to_string(),
            reason,
        };
        let key = ViewKey::from_pk(pk)?;
        let revision = number_attr(item, "revision", stored_pk)?;
        let state = serde_json::from_str(string_attr(item, "body", stored_pk)?)
            .map_err(|e| corrupt(format!("body: {e}")))?;
        let mut last_version = LastVersions::new();
        if let Some(attr) = item.get("last_version") {
            let map = attr
                .as_m()
                .map_err(|_| corrupt("last_version is not a map".into()))?;
            for (stream, v) in map {
                let stream = StreamId::parse(stream.clone())
                    .map_err(|e| corrupt(format!("last_version key: {e}")))?;
                let v = v
                    .as_n()
                    .ok()
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| corrupt(format!("last_version of {stream} is not a u64")))?;
                last_version.insert(stream, v);
            }
        }
        Ok(ViewRow {
            key,
            revision,
            last_version,
            state,
            updated_at: time_attr(item, "updated_at", stored_pk)?,
        })
    }

    /// Deletes keys in batches of 25, re-sending what DynamoDB left unprocessed.
    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), ViewError> {
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|pk| {
                    let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .key("pk", AttributeValue::S(pk.clone()))
                        .build()
                        .map_err(|e| ViewError::Store(format!("building delete: {e}")))?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<_, ViewError>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                if attempt > BATCH_WRITE_ATTEMPTS {
                    return Err(ViewError::Throttled(format!(
                        "{} deletes still unprocessed after {BATCH_WRITE_ATTEMPTS} attempts",
                        pending.len()
                    )));
                }
                if attempt > 1 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| classify("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

fn encode_last_versions(lv: &LastVersions) -> AttributeValue {
    AttributeValue::M(
        lv.iter()
            .map(|(s, v)| (s.as_str().to_string(), AttributeValue::N(v.to_string())))
            .collect(),
    )
}

fn string_attr<'a>(item: &'a Item, name: &str, pk: &str) -> Result<&'a str, ViewError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| ViewError::Corrupt {
            pk: pk.to_string(),
            reason: format!("{name} is missing or not a string"),
        })
}

fn number_attr(item: &Item, name: &str, pk: &str) -> Result<u64, ViewError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ViewError::Corrupt {
            pk: pk.to_string(),
            reason: format!("{name} is missing or not a u64"),
        })
}

fn time_attr(item: &Item, name: &str, pk: &str) -> Result<DateTime<Utc>, ViewError> {
    let text = string_attr(item, name, pk)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ViewError::Corrupt {
            pk: pk.to_string(),
            reason: format!("{name} {text:?}: {e}"),
        })
}

/// Maps an SDK failure to the port's error classes (transient ones drive retries).
fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> ViewError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let detail = format!(
        "{operation}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&err)
    );
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return ViewError::Unavailable(detail)
        }
        _ => {}
    }
    match err.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => ViewError::Throttled(detail),
        Some("InternalServerError" | "ServiceUnavailable") => ViewError::Unavailable(detail),
        Some("ResourceNotFoundException") => ViewError::NotMigrated(detail),
        _ => ViewError::Store(detail),
    }
}

#[async_trait]
impl ViewStore for DynamoViewStore {
    fn namespace(&self) -> &ViewNamespace {
        &self.namespace
    }

    fn in_namespace(&self, namespace: ViewNamespace) -> Arc<dyn ViewStore> {
        Arc::new(Self {
            client: self.client.clone(),
            table: self.table.clone(),
            namespace,
        })
    }

    async fn get(&self, key: &ViewKey) -> Result<Option<ViewRow>, ViewError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.stored_pk(&key.pk())))
            // The next write is conditioned on what is read here: read it strongly.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.map(|item| self.decode_item(&item)).transpose()
    }

    async fn get_many(&self, keys: &[ViewKey]) -> Result<Vec<Option<ViewRow>>, ViewError> {
        let stored: Vec<String> = keys.iter().map(|k| self.stored_pk(&k.pk())).collect();
        // BatchGetItem refuses a key given twice in one request.
        let mut distinct = stored.clone();
        distinct.sort();
        distinct.dedup();
        let mut found: HashMap<String, ViewRow> = HashMap::new();
        for chunk in distinct.chunks(MAX_KEYS_PER_READ) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|pk| HashMap::from([("pk".to_string(), AttributeValue::S(pk.clone()))]))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    if attempt >= BATCH_READ_ATTEMPTS {
                        return Err(ViewError::Throttled(format!(
                            "BatchGetItem: {} keys still unprocessed after {attempt} attempts",
                            pending.len()
                        )));
                    }
                    // Unprocessed keys mean the table is over its throughput: back off.
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    // The next write is conditioned on what is read here: read it strongly.
                    .consistent_read(true)
                    .build()
                    .map_err(|e| ViewError::Store(format!("BatchGetItem request: {e}")))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let row = self.decode_item(&item)?;
                    found.insert(self.stored_pk(&row.key.pk()), row);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(stored.iter().map(|pk| found.get(pk).cloned()).collect())
    }

    async fn commit(&self, writes: Vec<ViewWrite>) -> Result<Vec<u64>, ViewError> {
        check_commit(&writes)?;
        let now = format_timestamp(&Utc::now());
        let revisions: Vec<u64> = writes.iter().map(|w| w.expected.next()).collect();
        match writes.as_slice() {
            [] => return Ok(revisions),
            [w] => {
                let put = self.encode_write(w, &now)?;
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(put.item))
                    .set_condition_expression(put.condition_expression)
                    .set_expression_attribute_values(put.expression_attribute_values)
                    .send()
                    .await;
                return match result {
                    Ok(_) => Ok(revisions),
                    Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                        Err(ViewError::Conflict {
                            pk: w.key.pk(),
                            expected: w.expected,
                        })
                    }
                    Err(e) => Err(classify("PutItem", e)),
                };
            }
            _ => {}
        }
        let items = writes
            .iter()
            .map(|w| {
                Ok(TransactWriteItem::builder()
                    .put(self.encode_write(w, &now)?)
                    .build())
            })
            .collect::<Result<Vec<_>, ViewError>>()?;
        // TransactWriteItems is all-or-nothing: one failed condition cancels every put.
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(revisions),
            Err(e) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc)) = e.as_service_error() {
                    let reasons = tc.cancellation_reasons();
                    let failed = reasons
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    let only_conditions = reasons
                        .iter()
                        .all(|r| matches!(r.code(), None | Some("None" | "ConditionalCheckFailed")));
                    if let (Some(i), true) = (failed, only_conditions) {
                        return Err(ViewError::Conflict {
                            pk: writes[i].key.pk(),
                            expected: writes[i].expected,
                        });
                    }
                    if reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                        return Err(ViewError::Unavailable(format!(
                            "TransactWriteItems: concurrent transaction on the same items: {}",
                            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                        )));
                    }
                }
                Err(classify("TransactWriteItems", e))
            }
        }
    }

    async fn list(&self, projection: &str) -> Result<Vec<ViewRow>, ViewError> {
        check_projection(projection)?;
        let items = self
            .scan_prefix(&self.stored_pk(&format!("{projection}#")))
            .await?;
        let mut views = items
            .iter()
            .map(|item| self.decode_item(item))
            .collect::<Result<Vec<_>, _>>()?;
        views.sort_by_key(|v| v.key.pk());
        Ok(views)
    }

    async fn delete_projection(&self, projection: &str) -> Result<usize, ViewError> {
        check_projection(projection)?;
        let items = self
            .scan_prefix(&self.stored_pk(&format!("{projection}#")))
            .await?;
        let keys: Vec<String> = items
            .iter()
            .map(|item| string_attr(item, "pk", "?").map(str::to_string))
            .collect::<Result<_, _>>()?;
        let count = keys.len();
        self.delete_keys(keys).await?;
        Ok(count)
    }

    async fn list_page(
        &self,
        projection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<ViewPage, ViewError> {
        check_projection(projection)?;
        let prefix = self.stored_pk(&format!("{projection}#"));
        // The table's key is `pk` alone, so a Scan resumes from `{pk: <cursor>}`. Scan's
        // Limit counts items read before the filter: a page may hold fewer items than the
        // limit (even none) and still have a next one.
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(pk, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(prefix))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(
                after.map(|pk| HashMap::from([("pk".to_string(), AttributeValue::S(pk))])),
            )
            .send()
            .await
            .map_err(|e| classify("Scan", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| self.decode_item(item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key {
            Some(key) if !key.is_empty() => Some(string_attr(&key, "pk", "?")?.to_string()),
            _ => None,
        };
        Ok(ViewPage { items, next })
    }

    async fn delete_items(&self, keys: &[ViewKey]) -> Result<(), ViewError> {
        self.delete_keys(keys.iter().map(|k| self.stored_pk(&k.pk())).collect())
            .await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, ViewError> {
        check_checkpoint_name(name)?;
        let pk = self.stored_pk(&format!("checkpoint#{name}"));
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item
            .map(|item| {
                Ok(Checkpoint {
                    name: name.to_string(),
                    position: string_attr(&item, "position", &pk)?.to_string(),
                    updated_at: time_attr(&item, "updated_at", &pk)?,
                })
            })
            .transpose()
    }

    async fn save_checkpoint(&self, name: &str, position: &str) -> Result<(), ViewError> {
        check_checkpoint_name(name)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                "pk",
                AttributeValue::S(self.stored_pk(&format!("checkpoint#{name}"))),
            )
            .item("kind", AttributeValue::S("checkpoint".into()))
            .item("position", AttributeValue::S(position.to_string()))
            .item(
                "updated_at",
                AttributeValue::S(format_timestamp(&Utc::now())),
            )
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }
}
