//! CRM client in the Salesforce REST shape: upserts by external id (Account by
//! `Billing_Account_Id__c`, Product2 by `Billing_Product_Id__c`, PricebookEntry by
//! `Billing_Price_Key__c`), Order updates, and one composite call for product + price.
//! Wire shapes only, no sync decisions. Shapes: Salesforce REST API Developer Guide
//! ("Insert or Update (Upsert) a Record Using an External ID": 201 created / 200 updated with
//! `{id, success, errors, created}`; "Composite"; "Status Codes and Error Responses").

mod query;

use super::billing::segment;
use super::error::{require, ConnectorError};
use super::http::{ApiRequest, ApiResponse, ApiTransport, ClientConfig};
use super::token::TokenSource;
use super::ORIGIN_MARKER;
use projections::CorrelationId;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const DEFAULT_API_VERSION: &str = "v60.0";
/// External id field on Account holding the Billing account id.
pub const ACCOUNT_EXTERNAL_ID: &str = "Billing_Account_Id__c";
/// External id field on Product2 holding the Billing product id.
pub const PRODUCT_EXTERNAL_ID: &str = "Billing_Product_Id__c";
/// External id field on PricebookEntry: `<Billing rate plan id>:<currency>` (the key the
/// product sync derives, see `projections::commands::CrmCommand::UpsertPricebookEntry`).
pub const PRICE_EXTERNAL_ID: &str = "Billing_Price_Key__c";
/// Custom field on Order holding the Billing subscription id.
pub const ORDER_SUBSCRIPTION_FIELD: &str = "Billing_Subscription_Id__c";
/// Custom field carrying our origin marker on every record we write.
pub const ORIGIN_FIELD: &str = "Origin__c";
/// Custom field carrying the correlation id of the write, so the change event it causes (our
/// echo) stays on the same trace.
pub const CORRELATION_FIELD: &str = "Correlation_Id__c";
/// Salesforce puts the `client=` part of this header into CDC `changeOrigin`, so our own
/// writes are recognisable in the change events they cause.
pub const CALL_OPTIONS_HEADER: &str = "Sforce-Call-Options";
const CALL_OPTIONS: &str = "client=sync-ledger";

/// The Account body we send on an upsert (`None` leaves a field untouched): the wire shape,
/// not the domain's `projections::account_sync::AccountFields`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CrmAccountBody {
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "CurrencyIsoCode", skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Result of an upsert: the record id and whether it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub id: String,
    pub created: bool,
}

/// Order fields we write.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OrderUpdate {
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(
        rename = "Billing_Subscription_Id__c",
        skip_serializing_if = "Option::is_none"
    )]
    pub billing_subscription_id: Option<String>,
}

/// A Product2 keyed by the Billing product id.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFields {
    pub billing_product_id: String,
    pub name: String,
    pub product_code: String,
    pub active: bool,
}

/// A PricebookEntry keyed by `Billing_Price_Key__c` (`<rate plan id>:<currency>`), pointing at the
/// product through its external id so it needs no Salesforce id up front.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceFields {
    pub billing_price_id: String,
    pub billing_product_id: String,
    pub pricebook_id: String,
    pub currency: String,
    pub unit_price: f64,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductWithPrice {
    pub product: Upserted,
    pub price: Upserted,
}

/// The CRM (Salesforce-shaped) API client.
pub struct CrmClient {
    transport: ApiTransport,
    api_version: String,
}

impl CrmClient {
    /// The CRM API usage reported on the latest answer (none before the first call).
    pub fn api_usage(&self) -> Option<super::limits::ApiUsage> {
        self.transport.api_usage()
    }

    pub fn new(config: ClientConfig, tokens: Arc<dyn TokenSource>) -> Result<Self, ConnectorError> {
        Ok(Self {
            transport: ApiTransport::new(config, tokens, salesforce_errors)?,
            api_version: DEFAULT_API_VERSION.to_string(),
        })
    }

    /// Upsert an Account by `Billing_Account_Id__c`
    /// (`PATCH /services/data/vXX.X/sobjects/Account/Billing_Account_Id__c/<id>`).
    pub async fn upsert_account(
        &self,
        billing_account_id: &str,
        fields: &CrmAccountBody,
        correlation_id: CorrelationId,
    ) -> Result<Upserted, ConnectorError> {
        self.upsert(
            "upsert_account",
            "Account",
            ACCOUNT_EXTERNAL_ID,
            billing_account_id,
            fields,
            correlation_id,
        )
        .await
    }

    /// Write fields onto an existing Account by its Salesforce id (e.g. to link it:
    /// `Billing_Account_Id__c`).
    pub async fn update_account(
        &self,
        account_id: &str,
        fields: &CrmAccountBody,
        billing_account_id: Option<&str>,
        correlation_id: CorrelationId,
    ) -> Result<(), ConnectorError> {
        let mut body = marked(fields, correlation_id);
        if let Some(id) = billing_account_id {
            body.insert(ACCOUNT_EXTERNAL_ID.into(), json!(id));
        }
        self.update(
            "update_account",
            "Account",
            account_id,
            body,
            correlation_id,
        )
        .await
    }

    pub async fn update_order(
        &self,
        order_id: &str,
        update: &OrderUpdate,
        correlation_id: CorrelationId,
    ) -> Result<(), ConnectorError> {
        self.update(
            "update_order",
            "Order",
            order_id,
            marked(update, correlation_id),
            correlation_id,
        )
        .await
    }

    /// `GET /sobjects/<type>/<id>`; `None` when it does not exist.
    pub async fn get_record(
        &self,
        sobject: &str,
        id: &str,
        correlation_id: CorrelationId,
    ) -> Result<Option<Map<String, Value>>, ConnectorError> {
        const OP: &str = "get_record";
        require(OP, "id", id)?;
        let path = format!("{}/{}", self.sobjects(sobject), segment(id));
        match self.send(OP, Method::GET, path, None, correlation_id).await {
            Ok(response) => match response.body {
                Value::Object(map) => Ok(Some(map)),
                _ => Err(self.decode(OP, &response, "record is not a JSON object")),
            },
            Err(ConnectorError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn upsert_product(
        &self,
        product: &ProductFields,
        correlation_id: CorrelationId,
    ) -> Result<Upserted, ConnectorError> {
        self.upsert_raw(
            "upsert_product",
            "Product2",
            PRODUCT_EXTERNAL_ID,
            &product.billing_product_id,
            product_body(product, correlation_id),
            correlation_id,
        )
        .await
    }

    pub async fn upsert_price(
        &self,
        price: &PriceFields,
        correlation_id: CorrelationId,
    ) -> Result<Upserted, ConnectorError> {
        self.upsert_raw(
            "upsert_price",
            "PricebookEntry",
            PRICE_EXTERNAL_ID,
            &price.billing_price_id,
            price_body(price, correlation_id),
            correlation_id,
        )
        .await
    }

    /// Product2 and its PricebookEntry in one `composite` call (all or none), instead of two.
    pub async fn upsert_product_with_price(
        &self,
        product: &ProductFields,
        price: &PriceFields,
        correlation_id: CorrelationId,
    ) -> Result<ProductWithPrice, ConnectorError> {
        const OP: &str = "upsert_product_with_price";
        require(OP, "billing_product_id", &product.billing_product_id)?;
        require(OP, "billing_price_id", &price.billing_price_id)?;
        let base = format!("/services/data/{}/sobjects", self.api_version);
        let body = json!({
            "allOrNone": true,
            "compositeRequest": [
                {
                    "method": "PATCH",
                    "url": format!("{base}/Product2/{PRODUCT_EXTERNAL_ID}/{}", segment(&product.billing_product_id)),
                    "referenceId": "product",
                    "body": product_body(product, correlation_id),
                },
                {
                    "method": "PATCH",
                    "url": format!("{base}/PricebookEntry/{PRICE_EXTERNAL_ID}/{}", segment(&price.billing_price_id)),
                    "referenceId": "price",
                    "body": price_body(price, correlation_id),
                },
            ],
        });
        let path = format!("services/data/{}/composite", self.api_version);
        let response = self
            .send(OP, Method::POST, path, Some(&body), correlation_id)
            .await?;
        let parts = response.body["compositeResponse"]
            .as_array()
            .ok_or_else(|| self.decode(OP, &response, "missing compositeResponse"))?;
        let status_of = |part: &Value| part["httpStatusCode"].as_u64().unwrap_or(0) as u16;
        // With allOrNone every part fails once one does; report the one that caused it.
        let failed = parts
            .iter()
            .filter(|p| !(200..300).contains(&status_of(p)))
            .min_by_key(|p| {
                salesforce_errors(&p["body"]).0.as_deref() == Some("PROCESSING_HALTED")
            });
        if let Some(part) = failed {
            let status = status_of(part);
            {
                let (code, message) = salesforce_errors(&part["body"]);
                return Err(ConnectorError::Api {
                    service: self.transport.service().to_string(),
                    operation: OP,
                    status,
                    code,
                    message: format!("{}: {message}", part["referenceId"].as_str().unwrap_or("?")),
                    attempts: response.attempts,
                    retry_after: None,
                });
            }
        }
        let mut product_result = None;
        let mut price_result = None;
        for part in parts {
            let upserted = upserted(status_of(part), &part["body"])
                .ok_or_else(|| self.decode(OP, &response, "composite part without id"))?;
            match part["referenceId"].as_str() {
                Some("product") => product_result = Some(upserted),
                Some("price") => price_result = Some(upserted),
                _ => {}
            }
        }
        match (product_result, price_result) {
            (Some(product), Some(price)) => Ok(ProductWithPrice { product, price }),
            _ => Err(self.decode(OP, &response, "composite answer lacks a part")),
        }
    }

    /// Upserts up to [`COLLECTION_LIMIT`] records of one sObject type by one external id
    /// field in one sObject Collections call (`PATCH
    /// /services/data/vXX.X/composite/sobjects/{sobject}/{field}`, `allOrNone: false`): one
    /// API call for all of them. Answers one result per record, in request order; a record
    /// Salesforce rejects is an `Err` naming its error code and fields, the others stand.
    /// Upserts by external id are idempotent, so a retried collection creates nothing twice.
    pub async fn upsert_collection(
        &self,
        records: &[CollectionRecord],
        correlation_id: CorrelationId,
    ) -> Result<Vec<Result<Upserted, RecordError>>, ConnectorError> {
        const OP: &str = "upsert_collection";
        let Some(first) = records.first() else {
            return Ok(vec![]);
        };
        if records.len() > COLLECTION_LIMIT {
            return Err(ConnectorError::InvalidRequest {
                operation: OP,
                field: "records",
                reason: format!(
                    "{} records; at most {COLLECTION_LIMIT} a call",
                    records.len()
                ),
            });
        }
        let (sobject, field) = (first.sobject, first.external_id_field);
        if let Some(other) = records
            .iter()
            .find(|r| (r.sobject, r.external_id_field) != (sobject, field))
        {
            return Err(ConnectorError::InvalidRequest {
                operation: OP,
                field: "records",
                reason: format!(
                    "one collection holds one sObject type and external id: {sobject}/{field}, not {}/{}",
                    other.sobject, other.external_id_field
                ),
            });
        }
        let mut wire = Vec::with_capacity(records.len());
        for record in records {
            require(OP, "external id", &record.external_id)?;
            let mut body = Map::new();
            body.insert("attributes".into(), json!({ "type": sobject }));
            body.insert(field.into(), json!(record.external_id));
            body.extend(record.body.clone());
            wire.push(Value::Object(body));
        }
        let body = json!({ "allOrNone": false, "records": wire });
        let path = format!(
            "services/data/{}/composite/sobjects/{sobject}/{field}",
            self.api_version
        );
        let response = self
            .send(OP, Method::PATCH, path, Some(&body), correlation_id)
            .await?;
        let results = response
            .body
            .as_array()
            .filter(|r| r.len() == records.len())
            .ok_or_else(|| self.decode(OP, &response, "not one result per record"))?;
        Ok(results.iter().map(record_result).collect())
    }

    async fn upsert<T: Serialize>(
        &self,
        operation: &'static str,
        sobject: &str,
        field: &str,
        value: &str,
        fields: &T,
        correlation_id: CorrelationId,
    ) -> Result<Upserted, ConnectorError> {
        self.upsert_raw(
            operation,
            sobject,
            field,
            value,
            marked(fields, correlation_id),
            correlation_id,
        )
        .await
    }

    async fn upsert_raw(
        &self,
        operation: &'static str,
        sobject: &str,
        field: &str,
        value: &str,
        body: Map<String, Value>,
        correlation_id: CorrelationId,
    ) -> Result<Upserted, ConnectorError> {
        require(operation, "external id", value)?;
        let path = format!("{}/{field}/{}", self.sobjects(sobject), segment(value));
        let body = Value::Object(body);
        let response = self
            .send(operation, Method::PATCH, path, Some(&body), correlation_id)
            .await?;
        upserted(response.status, &response.body)
            .ok_or_else(|| self.decode(operation, &response, "upsert answer without id"))
    }

    async fn update(
        &self,
        operation: &'static str,
        sobject: &str,
        id: &str,
        body: Map<String, Value>,
        correlation_id: CorrelationId,
    ) -> Result<(), ConnectorError> {
        require(operation, "id", id)?;
        let path = format!("{}/{}", self.sobjects(sobject), segment(id));
        let body = Value::Object(body);
        self.send(operation, Method::PATCH, path, Some(&body), correlation_id)
            .await?;
        Ok(())
    }

    fn sobjects(&self, sobject: &str) -> String {
        format!("services/data/{}/sobjects/{sobject}", self.api_version)
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<&Value>,
        correlation_id: CorrelationId,
    ) -> Result<ApiResponse, ConnectorError> {
        self.transport
            .send(ApiRequest {
                operation,
                method,
                path,
                query: vec![],
                body,
                idempotency_key: None,
                headers: vec![(CALL_OPTIONS_HEADER, CALL_OPTIONS)],
                correlation_id,
            })
            .await
    }

    fn decode(
        &self,
        operation: &'static str,
        response: &ApiResponse,
        reason: &str,
    ) -> ConnectorError {
        ConnectorError::Decode {
            service: self.transport.service().to_string(),
            operation,
            status: response.status,
            reason: reason.to_string(),
        }
    }
}

/// Records one sObject Collections call may carry (Salesforce's documented limit).
pub const COLLECTION_LIMIT: usize = 200;

/// One record of a collection upsert: its type, external id and fields (marked with our
/// origin and its own correlation id, so each record's change event stays on its trace).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRecord {
    pub sobject: &'static str,
    pub external_id_field: &'static str,
    pub external_id: String,
    pub body: Map<String, Value>,
}

impl CollectionRecord {
    /// An Account upsert by `Billing_Account_Id__c`.
    pub fn account(
        billing_account_id: &str,
        fields: &CrmAccountBody,
        correlation_id: CorrelationId,
    ) -> Self {
        Self {
            sobject: "Account",
            external_id_field: ACCOUNT_EXTERNAL_ID,
            external_id: billing_account_id.to_string(),
            body: marked(fields, correlation_id),
        }
    }

    /// A Product2 upsert by `Billing_Product_Id__c`.
    pub fn product(product: &ProductFields, correlation_id: CorrelationId) -> Self {
        Self {
            sobject: "Product2",
            external_id_field: PRODUCT_EXTERNAL_ID,
            external_id: product.billing_product_id.clone(),
            body: product_body(product, correlation_id),
        }
    }

    /// A PricebookEntry upsert by `Billing_Price_Key__c` (its product by external id).
    pub fn price(price: &PriceFields, correlation_id: CorrelationId) -> Self {
        Self {
            sobject: "PricebookEntry",
            external_id_field: PRICE_EXTERNAL_ID,
            external_id: price.billing_price_id.clone(),
            body: price_body(price, correlation_id),
        }
    }
}

/// Why Salesforce rejected one record of a collection: `errors[0]` of its UpsertResult.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}{}", fields_note(.fields))]
pub struct RecordError {
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

fn fields_note(fields: &[String]) -> String {
    if fields.is_empty() {
        String::new()
    } else {
        format!(" (fields: {})", fields.join(", "))
    }
}

/// One UpsertResult: `{"id", "success", "errors": [{"statusCode", "message", "fields"}],
/// "created"}`.
fn record_result(result: &Value) -> Result<Upserted, RecordError> {
    if result["success"].as_bool() == Some(true) {
        if let Some(id) = result["id"].as_str() {
            return Ok(Upserted {
                id: id.to_string(),
                created: result["created"].as_bool().unwrap_or(false),
            });
        }
    }
    let error = &result["errors"][0];
    Err(RecordError {
        code: error["statusCode"]
            .as_str()
            .unwrap_or("UNKNOWN_EXCEPTION")
            .to_string(),
        message: error["message"]
            .as_str()
            .unwrap_or("the record was not saved and no error was given")
            .to_string(),
        fields: error["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The fields plus our origin marker and the correlation id.
fn marked<T: Serialize>(fields: &T, correlation_id: CorrelationId) -> Map<String, Value> {
    let mut body = match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    mark(&mut body, correlation_id);
    body
}

fn mark(body: &mut Map<String, Value>, correlation_id: CorrelationId) {
    body.insert(ORIGIN_FIELD.into(), json!(ORIGIN_MARKER));
    body.insert(CORRELATION_FIELD.into(), json!(correlation_id.to_string()));
}

fn product_body(product: &ProductFields, correlation_id: CorrelationId) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("Name".into(), json!(product.name));
    body.insert("ProductCode".into(), json!(product.product_code));
    body.insert("IsActive".into(), json!(product.active));
    mark(&mut body, correlation_id);
    body
}

fn price_body(price: &PriceFields, correlation_id: CorrelationId) -> Map<String, Value> {
    let mut body = Map::new();
    // Parent by external id: Salesforce resolves the relationship, no Product2Id needed.
    body.insert(
        "Product2".into(),
        json!({ PRODUCT_EXTERNAL_ID: price.billing_product_id }),
    );
    body.insert("Pricebook2Id".into(), json!(price.pricebook_id));
    body.insert("CurrencyIsoCode".into(), json!(price.currency));
    body.insert("UnitPrice".into(), json!(price.unit_price));
    body.insert("IsActive".into(), json!(price.active));
    mark(&mut body, correlation_id);
    body
}

/// 201 = created; 200 (API 46.0+, with a body) or 204 = updated.
fn upserted(status: u16, body: &Value) -> Option<Upserted> {
    let id = body["id"].as_str()?.to_string();
    let created = body["created"].as_bool().unwrap_or(status == 201);
    Some(Upserted { id, created })
}

/// Salesforce errors: `[{"message": "..", "errorCode": "INVALID_FIELD", "fields": [..]}]`.
fn salesforce_errors(body: &Value) -> (Option<String>, String) {
    let first = if body.is_array() { &body[0] } else { body };
    let code = first["errorCode"].as_str().map(str::to_string);
    let mut message = first["message"]
        .as_str()
        .unwrap_or("no message")
        .to_string();
    if let Some(fields) = first["fields"].as_array().filter(|f| !f.is_empty()) {
        let names: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
        message = format!("{message} (fields: {})", names.join(", "));
    }
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_errors_name_code_and_fields() {
        let (code, message) = crate::connectors::http::read_error_body(
            r#"[{"message":"No such column","errorCode":"INVALID_FIELD","fields":["Foo__c"]}]"#,
            salesforce_errors,
        );
        assert_eq!(code.as_deref(), Some("INVALID_FIELD"));
        assert!(message.contains("Foo__c"), "{message}");
    }

    #[test]
    fn upsert_answers_tell_created_from_updated() {
        let created = upserted(
            201,
            &json!({"id": "001x", "success": true, "created": true}),
        );
        assert_eq!(
            created,
            Some(Upserted {
                id: "001x".into(),
                created: true
            })
        );
        let updated = upserted(
            200,
            &json!({"id": "001x", "success": true, "created": false}),
        );
        assert!(!updated.unwrap().created);
    }
}
