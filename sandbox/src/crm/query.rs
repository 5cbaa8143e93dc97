//! Salesforce SOQL over REST: `GET /services/data/vXX.X/query?q=<SOQL>` and the next page at
//! `GET /services/data/vXX.X/query/<locator>-<offset>` (the `nextRecordsUrl` of the previous
//! page). Answer: `{"totalSize", "done", "records": [{"attributes": {"type", "url"}, ...}],
//! "nextRecordsUrl"?}`, 2,000 records a page; a query outside the subset is a 400
//! `[{"message", "errorCode": "MALFORMED_QUERY"}]`. Shapes: Salesforce REST API Developer
//! Guide, "Execute a SOQL Query" and "Query More Results".

use super::CrmError;
use crate::query::{self, Query, PAGE_SIZE};
use crate::state::{Inner, SharedState};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Locators look like Salesforce's (`01g` key prefix).
const LOCATOR_PREFIX: &str = "01gSB";

#[derive(Deserialize)]
pub(crate) struct QueryParams {
    q: Option<String>,
}

fn malformed(message: impl Into<String>) -> CrmError {
    CrmError::new(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", message)
}

impl Inner {
    fn soql_open(&mut self, version: &str, query: &Query) -> Result<Value, CrmError> {
        let records = self.crm.records.get(&query.object);
        if records.is_none() && !super::KNOWN_SOBJECTS.contains(&query.object.as_str()) {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                format!("sObject type '{}' is not supported.", query.object),
            ));
        }
        // One pass over the object's records (kept in id order): the cursor holds the ids.
        let ids: Vec<String> = records
            .into_iter()
            .flat_map(|r| r.iter())
            .filter(|(_, record)| {
                query
                    .conditions
                    .iter()
                    .all(|c| c.matches(query::field(record, &c.field).map(|(_, v)| v)))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let locator = self.crm.cursors.open(LOCATOR_PREFIX, query, ids);
        Ok(self.soql_page(version, &locator, 0))
    }

    fn soql_page(&mut self, version: &str, locator: &str, offset: usize) -> Value {
        let Some(cursor) = self.crm.cursors.get(locator) else {
            return Value::Null;
        };
        let end = (offset + PAGE_SIZE).min(cursor.ids.len());
        let objects = self.crm.records.get(&cursor.object);
        let records: Vec<Value> = cursor.ids[offset.min(end)..end]
            .iter()
            // A record deleted since the query is skipped, as Salesforce does.
            .filter_map(|id| objects.and_then(|o| o.get(id)).map(|r| (id, r)))
            .map(|(id, record)| {
                let mut out = Map::new();
                out.insert(
                    "attributes".into(),
                    json!({"type": cursor.object, "url": format!("/services/data/{version}/sobjects/{}/{id}", cursor.object)}),
                );
                for name in &cursor.fields {
                    match query::field(record, name) {
                        Some((key, value)) => out.insert(key.clone(), value.clone()),
                        None => out.insert(name.clone(), Value::Null),
                    };
                }
                Value::Object(out)
            })
            .collect();
        let total = cursor.ids.len();
        let done = end >= total;
        let mut answer = json!({"totalSize": total, "done": done, "records": records});
        if done {
            let locator = locator.to_string();
            self.crm.cursors.close(&locator);
        } else {
            answer["nextRecordsUrl"] =
                json!(format!("/services/data/{version}/query/{locator}-{end}"));
        }
        answer
    }
}

/// `GET /services/data/{v}/query?q=<SOQL>`.
pub(crate) async fn query(
    State(state): State<SharedState>,
    Path(version): Path<String>,
    UrlQuery(params): UrlQuery<QueryParams>,
) -> Result<Response, CrmError> {
    let text = params
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| malformed("the q parameter (a SOQL query) is required"))?;
    let parsed = query::parse(&text).map_err(|e| malformed(format!("{e}: {text}")))?;
    let answer = state.lock().soql_open(&version, &parsed)?;
    Ok(Json(answer).into_response())
}

/// `GET /services/data/{v}/query/{locator}` — the next page of a query.
pub(crate) async fn query_more(
    State(state): State<SharedState>,
    Path((version, locator)): Path<(String, String)>,
) -> Result<Response, CrmError> {
    let invalid = || {
        CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let (cursor, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let answer = state.lock().soql_page(&version, cursor, offset);
    if answer.is_null() {
        return Err(invalid());
    }
    Ok(Json(answer).into_response())
}
