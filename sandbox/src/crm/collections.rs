//! sObject Collections upsert by external id, as the Salesforce REST API Developer Guide
//! documents it ("Upsert Records Using sObject Collections"): `PATCH
//! /services/data/vXX.X/composite/sobjects/{SobjectName}/{ExternalIdFieldName}` with
//! `{"allOrNone": bool, "records": [{"attributes": {"type": ..}, ..}]}`. A well-formed request
//! answers 200 with one UpsertResult per record, in request order; a malformed one (no
//! `records`, more than 200 of them) answers 400 and writes nothing.

use super::{CrmError, Writer};
use crate::state::SharedState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Records one collection request may carry.
pub const MAX_RECORDS: usize = 200;

const ROLLED_BACK: &str = "Record rolled back because not all records were valid and the request was using AllOrNone header";

/// `PATCH /services/data/{v}/composite/sobjects/{sobject}/{field}`.
pub(crate) async fn upsert(
    State(state): State<SharedState>,
    Path((_v, sobject, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CrmError> {
    let request = crate::crm::parse_fields(&body)?;
    let all_or_none = request
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let records = request
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                "records is required and must be a list of sObjects",
            )
        })?;
    if records.len() > MAX_RECORDS {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
            ),
        ));
    }
    let writer = Writer::from_headers(&headers);
    let mut inner = state.lock();
    let snapshot = all_or_none.then(|| (inner.crm.records.clone(), inner.outbox.len()));
    let mut results = Vec::with_capacity(records.len());
    let mut failed = false;
    for record in records {
        let outcome = one_record(&sobject, &field, record).and_then(|(value, body)| {
            inner.crm_upsert(&state.config, &sobject, &field, &value, body, &writer)
        });
        results.push(match outcome {
            Ok((_, answer)) => answer,
            Err(e) => {
                failed = true;
                failure(e.code, &e.message, &e.fields)
            }
        });
    }
    if let (true, Some((records, outbox))) = (failed, snapshot) {
        // All or none: the org keeps nothing of the request, change events included.
        inner.crm.records = records;
        inner.outbox.truncate(outbox);
        for result in results.iter_mut() {
            if result["success"] == json!(true) {
                *result = failure("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK, &[]);
            }
        }
    }
    Ok((StatusCode::OK, Json(Value::Array(results))).into_response())
}

/// One record's external id value and fields, or why it cannot be upserted.
fn one_record(
    sobject: &str,
    field: &str,
    record: &Value,
) -> Result<(String, Map<String, Value>), CrmError> {
    let mut body = record.as_object().cloned().ok_or_else(|| {
        CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "each record must be a JSON object",
        )
    })?;
    let attributes = body.remove("attributes");
    let kind = attributes
        .as_ref()
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str);
    if kind != Some(sobject) {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            format!("each record needs attributes.type {sobject} (the type in the request URI)"),
        ));
    }
    if body.contains_key("Id") {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "record ids are not supported in an upsert by external id",
        ));
    }
    let value = body
        .get(field)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            let mut e = CrmError::new(
                StatusCode::BAD_REQUEST,
                "MISSING_ARGUMENT",
                format!("{field} not specified"),
            );
            e.fields = vec![field.to_string()];
            e
        })?;
    Ok((value, body))
}

/// A failed UpsertResult: `{"success": false, "errors": [{statusCode, message, fields}]}`.
fn failure(code: &str, message: &str, fields: &[String]) -> Value {
    json!({
        "id": null,
        "success": false,
        "errors": [{"statusCode": code, "message": message, "fields": fields}],
    })
}
