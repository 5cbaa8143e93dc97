//! Billing client in the Zuora v1 REST shape: accounts, subscriptions (create, amend,
//! cancel) and the product catalog. Every mutating call carries the caller's
//! `Idempotency-Key` (creates, and the PUTs too: a retry of a timed-out amend must not amend
//! twice); every object we write carries our origin marker. It maps wire shapes only — no
//! sync decisions. Shapes: Zuora v1 API reference (developer.zuora.com/v1-api-reference:
//! "Create an account", "Update an account", "Create a subscription", "Update a
//! subscription", "Cancel a subscription", "Retrieve a subscription", "List all products",
//! "Retrieve a product"; guide "Idempotent requests").

mod query;

use super::error::{require, ConnectorError};
use super::http::{ApiRequest, ApiResponse, ApiTransport, ClientConfig, IdempotencyKey};
use super::token::TokenSource;
use super::ORIGIN_MARKER;
use chrono::NaiveDate;
use projections::CorrelationId;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Zuora custom field carrying our origin marker on accounts and subscriptions.
pub const ORIGIN_FIELD: &str = "Origin__c";
/// Zuora custom field on a subscription naming the CRM order it was created from.
pub const CRM_ORDER_FIELD: &str = "CrmOrderId__c";

/// A new Billing account (`POST /v1/accounts`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    pub name: String,
    /// ISO 4217, e.g. `USD`.
    pub currency: String,
    /// The CRM account id this account is linked to (`crmId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    pub bill_cycle_day: u8,
    pub auto_pay: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_to_contact: Option<Contact>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Changes to an account (`PUT /v1/accounts/{key}`); `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreatedAccount {
    pub account_id: String,
    pub account_number: String,
}

/// The parts of `GET /v1/accounts/{key}` sync needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSummary {
    pub account_id: String,
    pub account_number: String,
    pub name: String,
    pub crm_id: Option<String>,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub origin: Option<String>,
}

/// One rate plan to subscribe to, with optional per-charge quantities.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RatePlanSelection {
    pub product_rate_plan_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub charge_overrides: Vec<ChargeOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeOverride {
    pub product_rate_plan_charge_id: String,
    pub quantity: f64,
}

/// A new subscription (`POST /v1/subscriptions`, evergreen).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub account_key: String,
    pub contract_effective_date: NaiveDate,
    pub rate_plans: Vec<RatePlanSelection>,
    /// The CRM order this subscription realises (`CrmOrderId__c`).
    pub crm_order_id: Option<String>,
    /// ISO 4217 (`currency`, Multiple Currencies); `None`: the account's currency.
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreatedSubscription {
    pub subscription_id: String,
    pub subscription_number: String,
}

/// An amendment (`PUT /v1/subscriptions/{key}`): rate plans added and removed.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionAmendment {
    pub contract_effective_date: NaiveDate,
    pub add: Vec<RatePlanSelection>,
    /// Subscription rate plan ids to remove.
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancellationPolicy {
    EndOfCurrentTerm,
    EndOfLastInvoicePeriod,
    SpecificDate(NaiveDate),
}

/// The parts of `GET /v1/subscriptions/{key}` sync needs: enough to tell whether an amend
/// or a cancel already happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSummary {
    pub status: String,
    pub rate_plans: Vec<SubscribedPlan>,
}

/// One rate plan on a subscription: its own id (what an amendment removes), the catalog
/// rate plan it was made from, and the quantity of each charge.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribedPlan {
    pub id: String,
    pub product_rate_plan_id: String,
    pub quantities: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelledSubscription {
    pub subscription_id: String,
    pub cancelled_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogProduct {
    pub id: String,
    #[serde(default)]
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub effective_end_date: Option<String>,
    #[serde(default)]
    pub product_rate_plans: Vec<CatalogRatePlan>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRatePlan {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub product_rate_plan_charges: Vec<CatalogCharge>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogCharge {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub pricing: Vec<CatalogPrice>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CatalogPrice {
    pub currency: String,
    #[serde(default)]
    pub price: Option<f64>,
}

/// The Billing (Zuora-shaped) API client.
pub struct BillingClient {
    transport: ApiTransport,
}

impl BillingClient {
    /// The Billing API usage reported on the latest answer (none before the first call).
    pub fn api_usage(&self) -> Option<super::limits::ApiUsage> {
        self.transport.api_usage()
    }

    pub fn new(config: ClientConfig, tokens: Arc<dyn TokenSource>) -> Result<Self, ConnectorError> {
        Ok(Self {
            transport: ApiTransport::new(config, tokens, zuora_reasons)?,
        })
    }

    pub async fn create_account(
        &self,
        account: &NewAccount,
        key: &IdempotencyKey,
        correlation_id: CorrelationId,
    ) -> Result<CreatedAccount, ConnectorError> {
        const OP: &str = "create_account";
        require(OP, "name", &account.name)?;
        require(OP, "currency", &account.currency)?;
        let mut body = to_object(account);
        body.insert(ORIGIN_FIELD.into(), json!(ORIGIN_MARKER));
        let body = Value::Object(body);
        let response = self
            .send(
                OP,
                Method::POST,
                "v1/accounts".into(),
                Some(&body),
                Some(key),
                correlation_id,
            )
            .await?;
        Ok(CreatedAccount {
            account_id: self.field(OP, &response, "accountId")?,
            account_number: self.field(OP, &response, "accountNumber")?,
        })
    }

    pub async fn update_account(
        &self,
        account_key: &str,
        update: &AccountUpdate,
        key: &IdempotencyKey,
        correlation_id: CorrelationId,
    ) -> Result<(), ConnectorError> {
        const OP: &str = "update_account";
        require(OP, "account_key", account_key)?;
        let mut body = to_object(update);
        body.insert(ORIGIN_FIELD.into(), json!(ORIGIN_MARKER));
        let body = Value::Object(body);
        let path = format!("v1/accounts/{}", segment(account_key));
        self.send(
            OP,
            Method::PUT,
            path,
            Some(&body),
            Some(key),
            correlation_id,
        )
        .await?;
        Ok(())
    }

    /// `None` when the account does not exist.
    pub async fn get_account(
        &self,
        account_key: &str,
        correlation_id: CorrelationId,
    ) -> Result<Option<AccountSummary>, ConnectorError> {
        const OP: &str = "get_account";
        require(OP, "account_key", account_key)?;
        let path = format!("v1/accounts/{}", segment(account_key));
        let response = match self
            .send(OP, Method::GET, path, None, None, correlation_id)
            .await
        {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let info = &response.body["basicInfo"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        Ok(Some(AccountSummary {
            account_id: text(&info["id"])
                .ok_or_else(|| self.decode(OP, &response, "basicInfo.id"))?,
            account_number: text(&info["accountNumber"]).unwrap_or_default(),
            name: text(&info["name"]).unwrap_or_default(),
            crm_id: text(&info["crmId"]),
            currency: text(&response.body["billingAndPayment"]["currency"]),
            status: text(&info["status"]),
            origin: text(&info[ORIGIN_FIELD]),
        }))
    }

    pub async fn create_subscription(
        &self,
        subscription: &NewSubscription,
        key: &IdempotencyKey,
        correlation_id: CorrelationId,
    ) -> Result<CreatedSubscription, ConnectorError> {
        const OP: &str = "create_subscription";
        require(OP, "account_key", &subscription.account_key)?;
        if subscription.rate_plans.is_empty() {
            return Err(ConnectorError::InvalidRequest {
                operation: OP,
                field: "rate_plans",
                reason: "a subscription needs at least one rate plan".into(),
            });
        }
        let mut body = json!({
            "accountKey": subscription.account_key,
            "contractEffectiveDate": subscription.contract_effective_date,
            "termType": "EVERGREEN",
            "subscribeToRatePlans": subscription.rate_plans,
            ORIGIN_FIELD: ORIGIN_MARKER,
        });
        if let Some(order) = &subscription.crm_order_id {
            body[CRM_ORDER_FIELD] = json!(order);
        }
        if let Some(currency) = &subscription.currency {
            body["currency"] = json!(currency);
        }
        let response = self
            .send(
                OP,
                Method::POST,
                "v1/subscriptions".into(),
                Some(&body),
                Some(key),
                correlation_id,
            )
            .await?;
        Ok(CreatedSubscription {
            subscription_id: self.field(OP, &response, "subscriptionId")?,
            subscription_number: self.field(OP, &response, "subscriptionNumber")?,
        })
    }

    /// Returns the subscription id after the amendment.
    pub async fn amend_subscription(
        &self,
        subscription_key: &str,
        amendment: &SubscriptionAmendment,
        key: &IdempotencyKey,
        correlation_id: CorrelationId,
    ) -> Result<String, ConnectorError> {
        const OP: &str = "amend_subscription";
        require(OP, "subscription_key", subscription_key)?;
        let date = amendment.contract_effective_date;
        let add: Vec<Value> = amendment
            .add
            .iter()
            .map(|plan| {
                let mut v = json!(plan);
                v["contractEffectiveDate"] = json!(date);
                v
            })
            .collect();
        let remove: Vec<Value> = amendment
            .remove
            .iter()
            .map(|id| json!({"ratePlanId": id, "contractEffectiveDate": date}))
            .collect();
        let body = json!({"add": add, "remove": remove, ORIGIN_FIELD: ORIGIN_MARKER});
        let path = format!("v1/subscriptions/{}", segment(subscription_key));
        let response = self
            .send(
                OP,
                Method::PUT,
                path,
                Some(&body),
                Some(key),
                correlation_id,
            )
            .await?;
        self.field(OP, &response, "subscriptionId")
    }

    pub async fn cancel_subscription(
        &self,
        subscription_key: &str,
        policy: CancellationPolicy,
        key: &IdempotencyKey,
        correlation_id: CorrelationId,
    ) -> Result<CancelledSubscription, ConnectorError> {
        const OP: &str = "cancel_subscription";
        require(OP, "subscription_key", subscription_key)?;
        let body = match policy {
            CancellationPolicy::EndOfCurrentTerm => {
                json!({"cancellationPolicy": "EndOfCurrentTerm"})
            }
            CancellationPolicy::EndOfLastInvoicePeriod => {
                json!({"cancellationPolicy": "EndOfLastInvoicePeriod"})
            }
            CancellationPolicy::SpecificDate(date) => json!({
                "cancellationPolicy": "SpecificDate",
                "cancellationEffectiveDate": date,
            }),
        };
        let path = format!("v1/subscriptions/{}/cancel", segment(subscription_key));
        let response = self
            .send(
                OP,
                Method::PUT,
                path,
                Some(&body),
                Some(key),
                correlation_id,
            )
            .await?;
        Ok(CancelledSubscription {
            subscription_id: self.field(OP, &response, "subscriptionId")?,
            cancelled_date: response.body["cancelledDate"].as_str().map(str::to_string),
        })
    }

    /// A subscription's status and current rate plans (`GET /v1/subscriptions/{key}`): what
    /// an amendment that replaces the lines removes, and whether it is already done.
    pub async fn get_subscription(
        &self,
        subscription_key: &str,
        correlation_id: CorrelationId,
    ) -> Result<SubscriptionSummary, ConnectorError> {
        const OP: &str = "get_subscription";
        require(OP, "subscription_key", subscription_key)?;
        let path = format!("v1/subscriptions/{}", segment(subscription_key));
        let response = self
            .send(OP, Method::GET, path, None, None, correlation_id)
            .await?;
        let plans = response.body["ratePlans"]
            .as_array()
            .ok_or_else(|| self.decode(OP, &response, "missing field ratePlans"))?;
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| self.decode(OP, &response, &format!("{what} is missing")))
        };
        let rate_plans = plans
            .iter()
            .map(|p| {
                let quantities = p["ratePlanCharges"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let charge = text(
                            &c["productRatePlanChargeId"],
                            "ratePlanCharges[].productRatePlanChargeId",
                        )?;
                        Ok((charge, c["quantity"].as_f64().unwrap_or(1.0)))
                    })
                    .collect::<Result<_, ConnectorError>>()?;
                Ok(SubscribedPlan {
                    id: text(&p["id"], "ratePlans[].id")?,
                    product_rate_plan_id: text(
                        &p["productRatePlanId"],
                        "ratePlans[].productRatePlanId",
                    )?,
                    quantities,
                })
            })
            .collect::<Result<_, ConnectorError>>()?;
        Ok(SubscriptionSummary {
            status: text(&response.body["status"], "status")?,
            rate_plans,
        })
    }

    /// One catalog product by id or SKU (`GET /v1/catalog/products/{product-key}`); `None`
    /// when there is none.
    pub async fn get_product(
        &self,
        product_key: &str,
        correlation_id: CorrelationId,
    ) -> Result<Option<CatalogProduct>, ConnectorError> {
        const OP: &str = "get_product";
        require(OP, "product_key", product_key)?;
        let path = format!("v1/catalog/products/{}", segment(product_key));
        let response = match self
            .send(OP, Method::GET, path, None, None, correlation_id)
            .await
        {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_value(response.body.clone())
            .map(Some)
            .map_err(|e| self.decode(OP, &response, &format!("product: {e}")))
    }

    /// The whole product catalog, following `nextPage` links.
    pub async fn list_products(
        &self,
        correlation_id: CorrelationId,
    ) -> Result<Vec<CatalogProduct>, ConnectorError> {
        const OP: &str = "list_products";
        let mut products = Vec::new();
        let mut page = 1u32;
        loop {
            let response = self
                .transport
                .send(ApiRequest {
                    operation: OP,
                    method: Method::GET,
                    path: "v1/catalog/products".into(),
                    query: vec![("page", page.to_string()), ("pageSize", "40".into())],
                    body: None,
                    idempotency_key: None,
                    headers: vec![],
                    correlation_id,
                })
                .await?;
            let response = self.check_success(OP, response)?;
            let batch: Vec<CatalogProduct> =
                serde_json::from_value(response.body["products"].clone())
                    .map_err(|e| self.decode(OP, &response, &format!("products: {e}")))?;
            products.extend(batch);
            if response.body["nextPage"].as_str().is_none_or(str::is_empty) {
                return Ok(products);
            }
            page += 1;
        }
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<&Value>,
        idempotency_key: Option<&IdempotencyKey>,
        correlation_id: CorrelationId,
    ) -> Result<ApiResponse, ConnectorError> {
        let response = self
            .transport
            .send(ApiRequest {
                operation,
                method,
                path,
                query: vec![],
                body,
                idempotency_key,
                headers: vec![],
                correlation_id,
            })
            .await?;
        self.check_success(operation, response)
    }

    /// Zuora may answer HTTP 200 with `success: false`; that is an error like any other.
    fn check_success(
        &self,
        operation: &'static str,
        response: ApiResponse,
    ) -> Result<ApiResponse, ConnectorError> {
        if response.body["success"] == json!(false) {
            let (code, message) = zuora_reasons(&response.body);
            return Err(ConnectorError::Api {
                service: self.transport.service().to_string(),
                operation,
                status: response.status,
                code,
                message,
                attempts: response.attempts,
                retry_after: None,
            });
        }
        Ok(response)
    }

    fn field(
        &self,
        operation: &'static str,
        response: &ApiResponse,
        name: &str,
    ) -> Result<String, ConnectorError> {
        response.body[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.decode(operation, response, &format!("missing field {name}")))
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

fn to_object<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// A path segment with `/`, `?`, `#` and friends escaped.
pub(crate) fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn is_not_found(error: &ConnectorError) -> bool {
    match error {
        ConnectorError::Api { status: 404, .. } => true,
        // Zuora category 40: "not found / invalid value" (e.g. 50000040).
        ConnectorError::Api {
            code: Some(code), ..
        } => code.ends_with("40"),
        _ => false,
    }
}

/// Zuora error bodies: `{"success": false, "reasons": [{"code": 50000040, "message": ".."}]}`
/// or a gateway's `{"message": ".."}`.
fn zuora_reasons(body: &Value) -> (Option<String>, String) {
    let first = &body["reasons"][0];
    let code = match &first["code"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let message = first["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .unwrap_or("no message")
        .to_string();
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::read_error_body;

    #[test]
    fn zuora_error_bodies_yield_code_and_message() {
        let (code, message) = read_error_body(
            r#"{"success":false,"reasons":[{"code":50000040,"message":"Cannot find entity"}]}"#,
            zuora_reasons,
        );
        assert_eq!(code.as_deref(), Some("50000040"));
        assert_eq!(message, "Cannot find entity");
        assert_eq!(read_error_body("oops", zuora_reasons).1, "oops");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("A-1/../x y"), "A-1%2F..%2Fx%20y");
    }
}
