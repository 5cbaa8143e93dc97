//! `ledger migrate` for DynamoDB: creates the tables of `migrations/dynamodb/*.json`
//! (CreateTable inputs in the AWS JSON shape), waits for them, enables PITR, writes the
//! `meta#ledger` item and records each migration in the views table. Idempotent; never
//! deletes or alters data.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, SseType, StreamSpecification, StreamViewType, TableStatus,
};
use chrono::Utc;
use serde::Deserialize;

use super::errors::{classify, with_retries, Backoff, Failure};
use super::item::{MetaItem, DEFAULT_BY_TIME_SHARDS};
use crate::ledger::LedgerError;

/// Every migration, in order. Ids are recorded as `migration#<id>` in the views table.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_events",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/dynamodb/0001_events.json"
        )),
    ),
    (
        "0002_views",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/dynamodb/0002_views.json"
        )),
    ),
];

/// What one `migrate` run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_applied: Vec<String>,
}

/// The subset of the CreateTable input the migrations use; unknown fields are refused so a
/// typo in a migration file fails loudly instead of creating a different table.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TableSpec {
    pub table_name: String,
    pub key_schema: Vec<KeySpec>,
    pub attribute_definitions: Vec<AttributeSpec>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub stream_specification: Option<StreamSpec>,
    pub billing_mode: String,
    #[serde(rename = "SSESpecification")]
    pub sse_specification: Option<SseSpec>,
    #[serde(default)]
    pub deletion_protection_enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeySpec {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttributeSpec {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IndexSpec {
    pub index_name: String,
    pub key_schema: Vec<KeySpec>,
    pub projection: ProjectionSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProjectionSpec {
    pub projection_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StreamSpec {
    pub stream_enabled: bool,
    pub stream_view_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SseSpec {
    pub enabled: bool,
    #[serde(rename = "SSEType")]
    pub sse_type: Option<String>,
    #[serde(rename = "KMSMasterKeyId")]
    pub kms_master_key_id: Option<String>,
}

/// The table spec of one migration file for `table_prefix`.
pub fn table_spec(json: &str, table_prefix: &str) -> Result<TableSpec, LedgerError> {
    serde_json::from_str(&json.replace("${prefix}", table_prefix))
        .map_err(|e| LedgerError::Store(format!("invalid DynamoDB migration file: {e}")))
}

/// Applies every pending migration with the process's AWS configuration
/// (`config::AwsConfig`, which honours `AWS_ENDPOINT_URL`).
pub async fn migrate_with(
    config: &aws_config::SdkConfig,
    table_prefix: &str,
) -> Result<MigrationReport, LedgerError> {
    let db = aws_sdk_dynamodb::Client::new(config);
    let views = super::views_table(table_prefix);
    let mut report = MigrationReport::default();
    let mut pending = Vec::new();
    for (id, json) in MIGRATIONS {
        let spec = table_spec(json, table_prefix)?;
        if is_recorded(&db, &views, id).await? {
            report.already_applied.push(id.to_string());
        } else {
            pending.push((id.to_string(), spec));
        }
    }
    // Tables first, records after: the record lives in the views table, which a migration
    // in this same run may be creating.
    for (_, spec) in &pending {
        ensure_table(&db, spec).await?;
    }
    ensure_meta(&db, &super::events_table(table_prefix)).await?;
    for (id, _) in pending {
        record(&db, &views, &id).await?;
        report.applied.push(id);
    }
    Ok(report)
}

async fn is_recorded(
    db: &aws_sdk_dynamodb::Client,
    views: &str,
    id: &str,
) -> Result<bool, LedgerError> {
    let found = with_retries(|| async {
        match db
            .get_item()
            .table_name(views)
            .key("pk", AttributeValue::S(format!("migration#{id}")))
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.item.is_some()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(classify("GetItem migration", e)),
        }
    })
    .await?;
    Ok(found)
}

async fn record(db: &aws_sdk_dynamodb::Client, views: &str, id: &str) -> Result<(), LedgerError> {
    let applied_at = projections::envelope::format_timestamp(&Utc::now());
    with_retries(|| async {
        match db
            .put_item()
            .table_name(views)
            .item("pk", AttributeValue::S(format!("migration#{id}")))
            .item("kind", AttributeValue::S("migration".to_string()))
            .item("applied_at", AttributeValue::S(applied_at.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A concurrent migrator recorded it first: same outcome.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("PutItem migration", e)),
        }
    })
    .await
}

async fn ensure_meta(db: &aws_sdk_dynamodb::Client, events: &str) -> Result<(), LedgerError> {
    let meta: std::collections::HashMap<String, AttributeValue> =
        serde_dynamo::to_item(MetaItem::new(Utc::now(), DEFAULT_BY_TIME_SHARDS))
            .map_err(|e| LedgerError::Store(format!("cannot encode meta#ledger: {e}")))?;
    with_retries(|| async {
        match db
            .put_item()
            .table_name(events)
            .set_item(Some(meta.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Written by an earlier run: its first hour stays the ledger's first hour.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("PutItem meta#ledger", e)),
        }
    })
    .await
}

/// Creates the table unless it exists, waits until it and its indexes are ACTIVE, and
/// turns on point-in-time recovery.
async fn ensure_table(db: &aws_sdk_dynamodb::Client, spec: &TableSpec) -> Result<(), LedgerError> {
    let request = create_table_request(db, spec)?;
    with_retries(|| {
        let request = request.clone();
        async move {
            match request.send().await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
                Err(e) => Err(classify("CreateTable", e)),
            }
        }
    })
    .await?;
    wait_active(db, &spec.table_name).await?;

    // PITR can be refused for a moment right after creation
    // (ContinuousBackupsUnavailableException): retry that like a throttle.
    with_retries(|| async {
        match db
            .update_continuous_backups()
            .table_name(&spec.table_name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .map_err(|e| Failure::Fatal(LedgerError::Store(e.to_string())))?,
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ContinuousBackupsUnavailableException") => Err(
                Failure::Retry(format!("PITR not yet available on {}", spec.table_name)),
            ),
            Err(e) => Err(classify("UpdateContinuousBackups", e)),
        }
    })
    .await
}

async fn wait_active(db: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), LedgerError> {
    // Table creation takes seconds to a few minutes on AWS.
    let mut backoff = Backoff::new(60, Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let out = with_retries(|| async {
            db.describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| classify("DescribeTable", e))
        })
        .await?;
        let description = out.table();
        let table_active = description.and_then(|t| t.table_status()) == Some(&TableStatus::Active);
        let indexes_active = description
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .all(|i| i.index_status().map(|s| s.as_str()) == Some("ACTIVE"));
        if table_active && indexes_active {
            return Ok(());
        }
        if !backoff.wait().await {
            return Err(LedgerError::Unavailable(format!(
                "table {table} did not become ACTIVE"
            )));
        }
    }
}

fn create_table_request(
    db: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<
    aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
    LedgerError,
> {
    let bad = |what: String| LedgerError::Store(format!("{}: {what}", spec.table_name));
    let keys = |schema: &[KeySpec]| -> Result<Vec<KeySchemaElement>, LedgerError> {
        schema
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(&k.attribute_name)
                    .key_type(KeyType::from(k.key_type.as_str()))
                    .build()
                    .map_err(|e| bad(e.to_string()))
            })
            .collect()
    };
    let mut request = db
        .create_table()
        .table_name(&spec.table_name)
        .set_key_schema(Some(keys(&spec.key_schema)?))
        .billing_mode(BillingMode::from(spec.billing_mode.as_str()))
        .deletion_protection_enabled(spec.deletion_protection_enabled);
    for attribute in &spec.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    for index in &spec.global_secondary_indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(keys(&index.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index.projection.projection_type.as_str(),
                        ))
                        .build(),
                )
                .build()
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    if let Some(stream) = &spec.stream_specification {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(stream.stream_enabled)
                .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                .build()
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    if let Some(sse) = &spec.sse_specification {
        request = request.sse_specification(
            SseSpecification::builder()
                .enabled(sse.enabled)
                .set_sse_type(sse.sse_type.as_deref().map(SseType::from))
                .set_kms_master_key_id(sse.kms_master_key_id.clone())
                .build(),
        );
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_parse_with_the_prefix_substituted() {
        let events = table_spec(MIGRATIONS[0].1, "prod").unwrap();
        assert_eq!(events.table_name, "prod-events");
        let index_names: Vec<&str> = events
            .global_secondary_indexes
            .iter()
            .map(|i| i.index_name.as_str())
            .collect();
        assert_eq!(index_names, ["by-correlation", "by-time"]);
        assert!(events.deletion_protection_enabled);
        let views = table_spec(MIGRATIONS[1].1, "prod").unwrap();
        assert_eq!(views.table_name, "prod-views");
        assert_eq!(views.key_schema.len(), 1);
    }

    #[test]
    fn a_typo_in_a_migration_file_is_refused() {
        let err = table_spec(r#"{"TableName": "x", "KeySchemas": []}"#, "p").unwrap_err();
        assert!(err.to_string().contains("KeySchemas"), "{err}");
    }
}
