//! Zuora ZOQL over REST: `POST /v1/action/query` `{"queryString": "<ZOQL>"}` and
//! `POST /v1/action/queryMore` `{"queryLocator"}`. Answer: `{"records": [...], "size",
//! "done", "queryLocator"?}`, 2,000 records a page (`size`: the records of the whole result,
//! as in Zuora's QueryResult). ZOQL has no ORDER BY; the sandbox answers in id order.
//! Objects: `Account` (`Id, Name, AccountNumber, CrmId, Currency, Status, BillCycleDay,
//! UpdatedDate` and custom `*__c` fields). Shapes: Zuora v1 API reference, "Actions: query,
//! queryMore"; ZOQL reference.

use super::{AccountRecord, BillingError};
use crate::query::{self, Query, PAGE_SIZE};
use crate::state::{Inner, SharedState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Zuora's code for an invalid value in a request.
const INVALID_VALUE: u64 = 53100020;

fn malformed(message: impl Into<String>) -> BillingError {
    BillingError::new(StatusCode::BAD_REQUEST, INVALID_VALUE, message)
}

/// An account as ZOQL names its fields.
fn account_fields(a: &AccountRecord) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("Id".into(), json!(a.id));
    out.insert("Name".into(), json!(a.name));
    out.insert("AccountNumber".into(), json!(a.account_number));
    out.insert("CrmId".into(), json!(a.crm_id));
    out.insert("Currency".into(), json!(a.currency));
    out.insert("Status".into(), json!(a.status));
    out.insert("BillCycleDay".into(), json!(a.bill_cycle_day));
    out.insert("UpdatedDate".into(), json!(a.updated_date));
    out.extend(a.custom.clone());
    out
}

impl Inner {
    fn zoql_open(&mut self, query: &Query) -> Result<Value, BillingError> {
        if query.order_by_id {
            return Err(malformed("invalid ZOQL: ORDER BY is not supported"));
        }
        if !query.object.eq_ignore_ascii_case("Account") {
            return Err(malformed(format!(
                "invalid object for query: {} (the sandbox answers Account)",
                query.object
            )));
        }
        let ids: Vec<String> = self
            .billing
            .accounts
            .values()
            .filter(|a| {
                let fields = account_fields(a);
                query
                    .conditions
                    .iter()
                    .all(|c| c.matches(query::field(&fields, &c.field).map(|(_, v)| v)))
            })
            .map(|a| a.id.clone())
            .collect();
        let locator = self.billing.cursors.open("2c92c0f8", query, ids);
        Ok(self.zoql_page(&locator, 0))
    }

    fn zoql_page(&mut self, locator: &str, offset: usize) -> Value {
        let Some(cursor) = self.billing.cursors.get(locator) else {
            return Value::Null;
        };
        let end = (offset + PAGE_SIZE).min(cursor.ids.len());
        let records: Vec<Value> = cursor.ids[offset.min(end)..end]
            .iter()
            .filter_map(|id| self.billing.accounts.get(id))
            .map(|account| {
                let fields = account_fields(account);
                let mut out = Map::new();
                for name in &cursor.fields {
                    // Zuora leaves a null field out of the record.
                    if let Some((key, value)) = query::field(&fields, name) {
                        if !value.is_null() {
                            out.insert(key.clone(), value.clone());
                        }
                    }
                }
                Value::Object(out)
            })
            .collect();
        let total = cursor.ids.len();
        let done = end >= total;
        let mut answer = json!({"records": records, "size": total, "done": done});
        if done {
            let locator = locator.to_string();
            self.billing.cursors.close(&locator);
        } else {
            answer["queryLocator"] = json!(format!("{locator}-{end}"));
        }
        answer
    }
}

fn text_field(raw: &[u8], field: &str) -> Result<String, BillingError> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|_| malformed("Malformed request: the body must be a JSON object"))?;
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| malformed(format!("'{field}' is required")))
}

/// `POST /v1/action/query`.
pub(crate) async fn query(State(state): State<SharedState>, raw: Bytes) -> Response {
    let answer = text_field(&raw, "queryString").and_then(|text| {
        let parsed = query::parse(&text).map_err(|e| malformed(format!("invalid ZOQL: {e}")))?;
        state.lock().zoql_open(&parsed)
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/action/queryMore`.
pub(crate) async fn query_more(State(state): State<SharedState>, raw: Bytes) -> Response {
    let answer = text_field(&raw, "queryLocator").and_then(|locator| {
        let invalid = || malformed(format!("invalid queryLocator: {locator}"));
        let (cursor, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let page = state.lock().zoql_page(cursor, offset);
        if page.is_null() {
            return Err(invalid());
        }
        Ok(page)
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}
