//! The simulated CRM (Salesforce REST shape): sObject create/read/update, upsert by external
//! id, composite, and the change events a real org would relay to EventBridge (CDC for
//! Account/Product2, the `OrderEvent__e` platform event for orders). In-memory only.
//! Shapes: Salesforce REST API Developer Guide (upsert, composite, error responses), Change
//! Data Capture Developer Guide (`ChangeEventHeader`), EventBridge partner event envelope.

use super::state::{Inner, SharedState, System};
use super::SandboxConfig;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub(crate) mod collections;
mod composite;
pub(crate) mod query;
pub(crate) use composite::composite;

/// The currencies the org has enabled: `CurrencyIsoCode` is a restricted picklist in a
/// multi-currency org, so any other code is rejected (Billing accepts any 3-letter code).
pub const ORG_CURRENCIES: &[&str] = &[
    "AUD", "BRL", "CAD", "CHF", "CNY", "DKK", "EUR", "GBP", "HKD", "INR", "JPY", "MXN", "NOK",
    "NZD", "PLN", "SEK", "SGD", "USD", "ZAR",
];

/// The org's standard price book (seeded).
pub const STANDARD_PRICEBOOK_ID: &str = "01sSB0000000001AAA";

pub(crate) struct CrmState {
    /// sObject type -> id -> fields (including `Id`).
    pub records: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    next_id: u64,
    commit: u64,
    /// Last `SystemModstamp` handed out (ms since the epoch): strictly increasing, so
    /// `WHERE SystemModstamp > :since` never misses a write made in the same millisecond.
    last_modstamp: i64,
    /// Open SOQL query cursors (`query.rs`).
    pub(crate) cursors: crate::query::Cursors,
    /// Whether `CurrencyIsoCode` is restricted to `ORG_CURRENCIES` (a multi-currency org
    /// with a restricted picklist). Off by default: the fault tests create CRM records with
    /// codes only Billing refuses, as an org without the restriction allows.
    pub(crate) restricted_currencies: bool,
}

impl Default for CrmState {
    fn default() -> Self {
        let mut state = CrmState {
            records: BTreeMap::new(),
            next_id: 2,
            commit: 0,
            last_modstamp: 0,
            cursors: Default::default(),
            restricted_currencies: false,
        };
        let mut book = Map::new();
        book.insert("Id".into(), json!(STANDARD_PRICEBOOK_ID));
        book.insert("Name".into(), json!("Standard Price Book"));
        book.insert("IsStandard".into(), json!(true));
        state
            .records
            .entry("Pricebook2".into())
            .or_default()
            .insert(STANDARD_PRICEBOOK_ID.into(), book);
        state
    }
}

/// A Salesforce-shaped error.
#[derive(Debug, Clone)]
pub(crate) struct CrmError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl CrmError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: vec![],
        }
    }

    fn body(&self) -> Value {
        json!([{ "message": self.message, "errorCode": self.code, "fields": self.fields }])
    }
}

impl IntoResponse for CrmError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Who made a change, as CDC `changeOrigin` reports it.
#[derive(Debug, Clone)]
pub(crate) enum Writer {
    /// A REST API call; `client` from `Sforce-Call-Options: client=<name>`.
    Api { client: Option<String> },
    /// A person in the UI (the sandbox's admin "user" routes).
    User,
}

impl Writer {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let client = headers
            .get("sforce-call-options")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .filter_map(|part| part.trim().strip_prefix("client="))
                    .next()
                    .map(str::to_string)
            });
        Writer::Api { client }
    }

    fn change_origin(&self) -> String {
        match self {
            Writer::Api { client: Some(c) } => format!("com/salesforce/api/rest/60.0;client={c}"),
            Writer::Api { client: None } => "com/salesforce/api/rest/60.0".into(),
            Writer::User => "com/salesforce/ui".into(),
        }
    }
}

/// The sObject types the org knows (a query on another is `INVALID_TYPE`).
pub(crate) const KNOWN_SOBJECTS: &[&str] = &[
    "Account",
    "Contact",
    "Order",
    "Product2",
    "PricebookEntry",
    "Pricebook2",
];

fn id_prefix(sobject: &str) -> &'static str {
    match sobject {
        "Account" => "001",
        "Contact" => "003",
        "Order" => "801",
        "Product2" => "01t",
        "PricebookEntry" => "01u",
        "Pricebook2" => "01s",
        _ => "a0X",
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, CrmError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            format!("malformed JSON: {e}"),
        )),
    }
}

/// The read-only audit field every write stamps (Salesforce `SystemModstamp`).
pub const MODSTAMP_FIELD: &str = "SystemModstamp";

impl CrmState {
    /// The next `SystemModstamp`, in Salesforce's format (`2024-01-01T00:00:00.000+0000`).
    fn next_modstamp(&mut self) -> Value {
        let now = chrono::Utc::now().timestamp_millis();
        self.last_modstamp = now.max(self.last_modstamp + 1);
        let at = chrono::DateTime::from_timestamp_millis(self.last_modstamp).unwrap_or_default();
        json!(at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
    }
}

impl Inner {
    fn crm_find(&self, sobject: &str, field: &str, value: &str) -> Option<String> {
        self.crm.records.get(sobject).and_then(|records| {
            records
                .iter()
                .find(|(_, r)| r.get(field).and_then(Value::as_str) == Some(value))
                .map(|(id, _)| id.clone())
        })
    }

    /// Replaces `{"Product2": {"Billing_Product_Id__c": "P1"}}` by `Product2Id` (parent by
    /// external id), as Salesforce does on insert/upsert.
    fn crm_resolve_parents(&self, body: &mut Map<String, Value>) -> Result<(), CrmError> {
        let parents: Vec<(String, String, String)> = body
            .iter()
            .filter_map(|(k, v)| {
                let obj = v.as_object()?;
                if obj.len() != 1 {
                    return None;
                }
                let (field, value) = obj.iter().next()?;
                Some((k.clone(), field.clone(), value.as_str()?.to_string()))
            })
            .collect();
        for (relationship, field, value) in parents {
            let sobject = relationship.trim_end_matches("__r");
            let id = self.crm_find(sobject, &field, &value).ok_or_else(|| {
                let mut e = CrmError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    format!("Foreign key external ID: {value} not found for field {field} in entity {sobject}"),
                );
                e.fields = vec![relationship.clone()];
                e
            })?;
            body.remove(&relationship);
            let id_field = if relationship.ends_with("__r") {
                relationship.replace("__r", "__c")
            } else {
                format!("{relationship}Id")
            };
            body.insert(id_field, json!(id));
        }
        Ok(())
    }

    fn crm_validate(&self, sobject: &str, record: &Map<String, Value>) -> Result<(), CrmError> {
        let required: &[&str] = match sobject {
            "Account" | "Product2" => &["Name"],
            "PricebookEntry" => &["Pricebook2Id", "Product2Id", "UnitPrice"],
            "Order" => &["AccountId", "Status", "EffectiveDate"],
            _ => &[],
        };
        let missing: Vec<String> = required
            .iter()
            .filter(|f| {
                record
                    .get(**f)
                    .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()))
            })
            .map(|f| f.to_string())
            .collect();
        if !missing.is_empty() {
            let mut e = CrmError::new(
                StatusCode::BAD_REQUEST,
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
            );
            e.fields = missing;
            return Err(e);
        }
        if let Some(code) = record.get("CurrencyIsoCode").and_then(Value::as_str) {
            if self.crm.restricted_currencies && !ORG_CURRENCIES.contains(&code) {
                let mut e = CrmError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!("Currency ISO Code: invalid currency code: {code}"),
                );
                e.fields = vec!["CurrencyIsoCode".into()];
                return Err(e);
            }
        }
        if sobject == "Order" {
            let account = record["AccountId"].as_str().unwrap_or_default();
            if !self
                .crm
                .records
                .get("Account")
                .is_some_and(|r| r.contains_key(account))
            {
                return Err(CrmError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("invalid cross reference id: AccountId {account}"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn crm_create(
        &mut self,
        config: &SandboxConfig,
        sobject: &str,
        mut body: Map<String, Value>,
        writer: &Writer,
    ) -> Result<String, CrmError> {
        self.crm_resolve_parents(&mut body)?;
        body.remove(MODSTAMP_FIELD);
        self.crm_validate(sobject, &body)?;
        let id = format!("{}SB{:010}AAA", id_prefix(sobject), self.crm.next_id);
        self.crm.next_id += 1;
        let mut record = body.clone();
        record.insert("Id".into(), json!(id));
        let mut stored = record.clone();
        stored.insert(MODSTAMP_FIELD.into(), self.crm.next_modstamp());
        self.crm
            .records
            .entry(sobject.to_string())
            .or_default()
            .insert(id.clone(), stored);
        self.crm_emit(config, sobject, &id, "CREATE", &body, &record, writer);
        Ok(id)
    }

    pub(crate) fn crm_update(
        &mut self,
        config: &SandboxConfig,
        sobject: &str,
        id: &str,
        mut body: Map<String, Value>,
        writer: &Writer,
    ) -> Result<(), CrmError> {
        self.crm_resolve_parents(&mut body)?;
        body.remove(MODSTAMP_FIELD);
        let Some(existing) = self
            .crm
            .records
            .get(sobject)
            .and_then(|r| r.get(id))
            .cloned()
        else {
            return Err(CrmError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ));
        };
        let mut record = existing;
        for (k, v) in &body {
            record.insert(k.clone(), v.clone());
        }
        self.crm_validate(sobject, &record)?;
        record.insert(MODSTAMP_FIELD.into(), self.crm.next_modstamp());
        self.crm
            .records
            .entry(sobject.to_string())
            .or_default()
            .insert(id.to_string(), record.clone());
        self.crm_emit(config, sobject, id, "UPDATE", &body, &record, writer);
        Ok(())
    }

    /// Deletes a record (Salesforce moves it to the recycle bin; the sandbox forgets it) and
    /// emits the CDC `DELETE` change event.
    pub(crate) fn crm_delete(
        &mut self,
        config: &SandboxConfig,
        sobject: &str,
        id: &str,
        writer: &Writer,
    ) -> Result<(), CrmError> {
        let record = self
            .crm
            .records
            .get_mut(sobject)
            .and_then(|r| r.remove(id))
            .ok_or_else(|| {
                CrmError::new(
                    StatusCode::NOT_FOUND,
                    "ENTITY_IS_DELETED",
                    "The requested resource does not exist",
                )
            })?;
        self.crm_emit(config, sobject, id, "DELETE", &Map::new(), &record, writer);
        Ok(())
    }

    /// Upsert by external id: `(status, body)` = 201 created / 200 updated.
    pub(crate) fn crm_upsert(
        &mut self,
        config: &SandboxConfig,
        sobject: &str,
        field: &str,
        value: &str,
        mut body: Map<String, Value>,
        writer: &Writer,
    ) -> Result<(StatusCode, Value), CrmError> {
        if let Some(given) = body.get(field) {
            if given.as_str() != Some(value) {
                return Err(CrmError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    format!("the body's {field} does not match the URL's external id"),
                ));
            }
        }
        match self.crm_find(sobject, field, value) {
            Some(id) => {
                self.crm_update(config, sobject, &id, body, writer)?;
                Ok((
                    StatusCode::OK,
                    json!({"id": id, "success": true, "errors": [], "created": false}),
                ))
            }
            None => {
                body.insert(field.to_string(), json!(value));
                let id = self.crm_create(config, sobject, body, writer)?;
                Ok((
                    StatusCode::CREATED,
                    json!({"id": id, "success": true, "errors": [], "created": true}),
                ))
            }
        }
    }

    pub(crate) fn crm_get(&self, sobject: &str, id: &str) -> Option<Value> {
        let record = self.crm.records.get(sobject)?.get(id)?;
        let mut out = Map::new();
        out.insert(
            "attributes".into(),
            json!({"type": sobject, "url": format!("/services/data/v60.0/sobjects/{sobject}/{id}")}),
        );
        out.extend(record.clone());
        Some(Value::Object(out))
    }

    /// What the org relays to EventBridge after a change: CDC for Account and Product2 (the
    /// channel enriches updates with the fields ingest requires: Account `Name`, Product2
    /// `Name` and `ProductCode`), and the `OrderEvent__e` platform event a flow publishes when
    /// an Order's status or items change. No Order CDC: orders travel as the platform event.
    #[allow(clippy::too_many_arguments)]
    fn crm_emit(
        &mut self,
        config: &SandboxConfig,
        sobject: &str,
        id: &str,
        change_type: &str,
        changed: &Map<String, Value>,
        record: &Map<String, Value>,
        writer: &Writer,
    ) {
        self.crm.commit += 1;
        let now = chrono::Utc::now();
        let (detail_type, payload) = match sobject {
            "Account" | "Product2" => {
                let enriched: &[&str] = match sobject {
                    "Account" => &["Name"],
                    _ => &["Name", "ProductCode"],
                };
                let fields = if change_type == "CREATE" {
                    record
                } else {
                    changed
                };
                let mut payload = Map::new();
                payload.insert(
                    "ChangeEventHeader".into(),
                    json!({
                        "entityName": sobject,
                        "recordIds": [id],
                        "changeType": change_type,
                        "changeOrigin": writer.change_origin(),
                        "transactionKey": uuid::Uuid::new_v4().to_string(),
                        "sequenceNumber": 1,
                        "commitTimestamp": now.timestamp_millis(),
                        "commitNumber": self.crm.commit,
                        "commitUser": "005SB0000000001AAA",
                        "changedFields": fields.keys().filter(|k| *k != "Id").collect::<Vec<_>>(),
                    }),
                );
                for (k, v) in fields {
                    if k != "Id" {
                        payload.insert(k.clone(), v.clone());
                    }
                }
                for field in enriched {
                    if let Some(v) = record.get(*field) {
                        payload
                            .entry(field.to_string())
                            .or_insert_with(|| v.clone());
                    }
                }
                (format!("{sobject}ChangeEvent"), payload)
            }
            "Order" => {
                let status_changed = change_type == "CREATE" || changed.contains_key("Status");
                let items_changed = changed.contains_key("OrderItems");
                let status = record
                    .get("Status")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let action = match status {
                    "Activated" | "Cancelled" if status_changed => status,
                    "Activated" if items_changed => "Amended",
                    // Drafts and other edits do not reach the flow.
                    _ => return,
                };
                let field = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
                let items = record.get("OrderItems").cloned().unwrap_or(json!([]));
                let mut payload = Map::new();
                payload.insert("EventUuid".into(), json!(uuid::Uuid::new_v4().to_string()));
                payload.insert(
                    "CreatedDate".into(),
                    json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                );
                payload.insert("CreatedById".into(), json!("005SB0000000001AAA"));
                payload.insert("Order_Id__c".into(), json!(id));
                payload.insert("Account_Id__c".into(), field("AccountId"));
                payload.insert("Order_Number__c".into(), field("OrderNumber"));
                payload.insert("Status__c".into(), json!(status));
                payload.insert("Action__c".into(), json!(action));
                payload.insert("Effective_Date__c".into(), field("EffectiveDate"));
                payload.insert("Currency__c".into(), field("CurrencyIsoCode"));
                payload.insert(
                    "Billing_Subscription_Id__c".into(),
                    field("Billing_Subscription_Id__c"),
                );
                // Platform event fields are scalar: the items travel as JSON text.
                payload.insert("Items__c".into(), json!(items.to_string()));
                // Only a write that set these fields carries them (a person's edit does not).
                for k in ["Origin__c", "Correlation_Id__c"] {
                    if let Some(v) = changed.get(k) {
                        payload.insert(k.into(), v.clone());
                    }
                }
                ("OrderEvent__e".to_string(), payload)
            }
            _ => return,
        };
        let body = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": format!("aws.partner/salesforce.com/{}/{}", config.org_id, config.channel_id),
            "account": "000000000000",
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "payload": payload,
                "schemaId": format!("sandbox-{}", detail_type.to_lowercase()),
                "id": uuid::Uuid::new_v4().to_string(),
            },
        });
        self.emit(config, System::Crm, &detail_type, body, None);
    }
}

type ApiResult = Result<Response, CrmError>;

fn body_object(body: &Bytes) -> Result<Map<String, Value>, CrmError> {
    parse_object(body)
}

/// `POST /services/data/{v}/sobjects/{sobject}`.
pub(crate) async fn create(
    State(state): State<SharedState>,
    Path((_v, sobject)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body = body_object(&body)?;
    let writer = Writer::from_headers(&headers);
    let id = state
        .lock()
        .crm_create(&state.config, &sobject, body, &writer)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "success": true, "errors": []})),
    )
        .into_response())
}

/// `GET /services/data/{v}/sobjects/{sobject}/{id}`.
pub(crate) async fn get(
    State(state): State<SharedState>,
    Path((_v, sobject, id)): Path<(String, String, String)>,
) -> ApiResult {
    state
        .lock()
        .crm_get(&sobject, &id)
        .map(|r| Json(r).into_response())
        .ok_or_else(|| {
            CrmError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            )
        })
}

/// `PATCH /services/data/{v}/sobjects/{sobject}/{id}` — 204 No Content.
pub(crate) async fn update(
    State(state): State<SharedState>,
    Path((_v, sobject, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body = body_object(&body)?;
    let writer = Writer::from_headers(&headers);
    state
        .lock()
        .crm_update(&state.config, &sobject, &id, body, &writer)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /services/data/{v}/sobjects/{sobject}/{id}` — 204 No Content.
pub(crate) async fn delete(
    State(state): State<SharedState>,
    Path((_v, sobject, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let writer = Writer::from_headers(&headers);
    state
        .lock()
        .crm_delete(&state.config, &sobject, &id, &writer)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /services/data/{v}/sobjects/{sobject}/{field}/{value}` — upsert by external id.
pub(crate) async fn upsert(
    State(state): State<SharedState>,
    Path((_v, sobject, field, value)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body = body_object(&body)?;
    let writer = Writer::from_headers(&headers);
    let (status, answer) =
        state
            .lock()
            .crm_upsert(&state.config, &sobject, &field, &value, body, &writer)?;
    Ok((status, Json(answer)).into_response())
}

/// `GET /services/data/{v}/sobjects/{sobject}/{field}/{value}` — read by external id.
pub(crate) async fn get_by_external_id(
    State(state): State<SharedState>,
    Path((_v, sobject, field, value)): Path<(String, String, String, String)>,
) -> ApiResult {
    let inner = state.lock();
    inner
        .crm_find(&sobject, &field, &value)
        .and_then(|id| inner.crm_get(&sobject, &id))
        .map(|r| Json(r).into_response())
        .ok_or_else(|| {
            CrmError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            )
        })
}

/// Admin: a person creates a record in the CRM UI (emits the change event, no origin marker).
pub(crate) fn user_create(
    state: &SharedState,
    sobject: &str,
    fields: Map<String, Value>,
) -> Result<String, CrmError> {
    state
        .lock()
        .crm_create(&state.config, sobject, fields, &Writer::User)
}

/// Admin: a person edits a record in the CRM UI.
pub(crate) fn user_update(
    state: &SharedState,
    sobject: &str,
    id: &str,
    fields: Map<String, Value>,
) -> Result<(), CrmError> {
    state
        .lock()
        .crm_update(&state.config, sobject, id, fields, &Writer::User)
}

pub(crate) fn parse_fields(body: &[u8]) -> Result<Map<String, Value>, CrmError> {
    parse_object(body)
}
