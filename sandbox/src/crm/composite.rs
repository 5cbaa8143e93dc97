//! The CRM simulator's composite API (`POST .../composite`): subrequests run in order with
//! `@{referenceId.field}` substitution and `allOrNone` rollback.

use super::*;

/// `POST /services/data/{v}/composite`: sub-requests in order, `@{ref.field}` references,
/// `allOrNone` rolls everything back (records and emitted events) when one part fails.
pub(crate) async fn composite(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request = body_object(&body)?;
    let all_or_none = request
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let parts = request
        .get("compositeRequest")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| {
            CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                "compositeRequest is required",
            )
        })?;
    let writer = Writer::from_headers(&headers);
    let mut inner = state.lock();
    let snapshot = (inner.crm.records.clone(), inner.outbox.len());
    let mut results: Vec<Value> = Vec::new();
    let mut refs: BTreeMap<String, Value> = BTreeMap::new();
    let mut failed = false;
    for part in parts {
        let reference = part["referenceId"].as_str().unwrap_or_default().to_string();
        if failed && all_or_none {
            results.push(json!({
                "body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference,
            }));
            continue;
        }
        let part = substitute_refs(&part, &refs);
        let outcome = run_part(&mut inner, &state.config, &part, &writer);
        let (status, body) = match outcome {
            Ok((status, body)) => {
                refs.insert(reference.clone(), body.clone());
                (status.as_u16(), body)
            }
            Err(e) => {
                failed = true;
                (e.status.as_u16(), e.body())
            }
        };
        results.push(json!({"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}));
    }
    if failed && all_or_none {
        inner.crm.records = snapshot.0;
        inner.outbox.truncate(snapshot.1);
        // Parts that had succeeded are reported as rolled back too.
        for result in results.iter_mut() {
            if result["httpStatusCode"].as_u64().is_some_and(|s| s < 300) {
                result["httpStatusCode"] = json!(400);
                result["body"] = json!([{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}]);
            }
        }
    }
    Ok(Json(json!({"compositeResponse": results})).into_response())
}

fn substitute_refs(part: &Value, refs: &BTreeMap<String, Value>) -> Value {
    let mut text = part.to_string();
    for (reference, body) in refs {
        if let Some(obj) = body.as_object() {
            for (field, value) in obj {
                if let Some(v) = value.as_str() {
                    text = text.replace(&format!("@{{{reference}.{field}}}"), v);
                }
            }
        }
    }
    serde_json::from_str(&text).unwrap_or_else(|_| part.clone())
}

fn run_part(
    inner: &mut Inner,
    config: &SandboxConfig,
    part: &Value,
    writer: &Writer,
) -> Result<(StatusCode, Value), CrmError> {
    let method = part["method"].as_str().unwrap_or_default();
    let url = part["url"].as_str().unwrap_or_default();
    let segments: Vec<String> = url
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .split('/')
        .map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let body = match &part["body"] {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    // services / data / vXX.X / sobjects / <type> [/ <id> | / <field> / <value>]
    let tail: Vec<&str> = segments.iter().skip(4).map(String::as_str).collect();
    if segments.len() < 5 || segments[3] != "sobjects" {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("unsupported composite url {url}"),
        ));
    }
    match (method, tail.as_slice()) {
        ("POST", [sobject]) => {
            let id = inner.crm_create(config, sobject, body, writer)?;
            Ok((
                StatusCode::CREATED,
                json!({"id": id, "success": true, "errors": []}),
            ))
        }
        ("PATCH", [sobject, field, value]) => {
            inner.crm_upsert(config, sobject, field, value, body, writer)
        }
        ("PATCH", [sobject, id]) => {
            inner.crm_update(config, sobject, id, body, writer)?;
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        ("GET", [sobject, id]) => inner
            .crm_get(sobject, id)
            .map(|r| (StatusCode::OK, r))
            .ok_or_else(|| {
                CrmError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                )
            }),
        _ => Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("unsupported composite call {method} {url}"),
        )),
    }
}
