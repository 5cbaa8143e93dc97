//! The event catalogue: every event type the ledger knows, with its typed payload.
//! Shapes follow the sources (Salesforce Account/Order/Product2, Zuora accounts,
//! subscriptions and catalog) reduced to what sync needs; every payload keeps the fields it
//! does not model in `extra`, so nothing a source sent is ever dropped.

pub use crate::reconcile_events::{
    AccountObserved, DriftDetected, ReconciliationCompleted, ReconciliationStarted,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("payload of {event_type}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

pub type Extra = Map<String, Value>;

// ---------------------------------------------------------------- CRM (Salesforce shape)

/// A CRM Account was created or changed (CDC `AccountChangeEvent` CREATE/UPDATE, or a
/// platform event carrying the account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmAccountUpserted {
    /// Salesforce record Id (18 chars), e.g. `001Dn00000ABCdeIAH`.
    pub account_id: String,
    pub name: String,
    /// `Billing_Account_Id__c`: the Billing account this CRM account is linked to, if any.
    #[serde(default)]
    pub billing_account_id: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// Who wrote this change: `Some("sync-ledger")` when it is our own write coming back.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmAccountDeleted {
    pub account_id: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Product code shared by both systems (Salesforce `ProductCode`, Zuora product `SKU`).
    pub product_code: String,
    pub quantity: f64,
    #[serde(default)]
    pub unit_price: Option<f64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A CRM Order was activated, amended or cancelled (`OrderEvent__e` or Order CDC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmOrder {
    pub order_id: String,
    pub account_id: String,
    #[serde(default)]
    pub order_number: Option<String>,
    /// `Activated`, `Draft`, `Cancelled`, ...
    pub status: String,
    #[serde(default)]
    pub effective_date: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub items: Vec<OrderItem>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmProductChanged {
    pub product_id: String,
    pub product_code: String,
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- Billing (Zuora shape)

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingAccount {
    /// Zuora account id (32 hex chars).
    pub account_id: String,
    #[serde(default)]
    pub account_number: Option<String>,
    pub name: String,
    /// `CrmId`: the CRM account id stored on the Billing account, if linked.
    #[serde(default)]
    pub crm_id: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRatePlan {
    pub product_rate_plan_id: String,
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingSubscription {
    pub subscription_id: String,
    #[serde(default)]
    pub subscription_number: Option<String>,
    pub account_id: String,
    /// `Active`, `Cancelled`, `Suspended`, ...
    pub status: String,
    #[serde(default)]
    pub term_start_date: Option<String>,
    /// The CRM order this subscription was created from, if it carries one.
    #[serde(default)]
    pub crm_order_id: Option<String>,
    #[serde(default)]
    pub rate_plans: Vec<SubscriptionRatePlan>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingProductChanged {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub effective_end_date: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingRatePlanChanged {
    pub rate_plan_id: String,
    pub product_id: String,
    pub name: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingPriceChanged {
    pub rate_plan_id: String,
    pub charge_id: String,
    pub currency: String,
    pub price: f64,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------- system

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRotated {
    pub service: String,
    pub parameter_name: String,
    pub parameter_version: i64,
    /// Short salted hash identifying the token without revealing it.
    pub fingerprint: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRotationFailed {
    pub service: String,
    pub reason: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An operator re-ran a failed or deferred sync on purpose (`ledger redrive`): who asked,
/// why, and which sync of which event. Recorded before the calls, so the audit shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveRequested {
    /// `account`, `order`, `product`.
    pub projection: String,
    /// The event whose sync is re-run.
    pub cause_event_id: String,
    /// The call step re-run (`billing-create-account`, ...), when it is one call.
    #[serde(default)]
    pub step: Option<String>,
    pub requested_by: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An inbound record that could not be understood. The raw body is kept (size-capped) so
/// nothing is lost; the remainder lives in the on-failure destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRejected {
    /// Which entry point saw it: `sqs`, `eventbridge`, `billing-callout`, `cli`.
    pub channel: String,
    /// The field that was wrong, when one can be named.
    #[serde(default)]
    pub field: Option<String>,
    pub reason: String,
    pub raw: String,
    pub raw_len: usize,
    pub raw_truncated: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Outcome of a sync: what was done to which external object because of which event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// `account`, `order`, `product`.
    pub projection: String,
    /// `crm->billing` or `billing->crm`.
    pub direction: String,
    /// `created`, `updated`, `cancelled`, `linked`, ...
    pub action: String,
    #[serde(default)]
    pub crm_id: Option<String>,
    #[serde(default)]
    pub billing_id: Option<String>,
    /// The values written to the target object, so the target's view recognises the echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Value>,
    /// True on the copy recorded on the target object's stream (the original is on the
    /// cause's stream): the target's views learn the link from their own stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncFailed {
    pub projection: String,
    pub reason: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncDeferred {
    pub projection: String,
    pub reason: String,
    /// What the sync waits for, e.g. `account-link:crm:001...`.
    pub waiting_for: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoSuppressed {
    pub projection: String,
    pub reason: String,
    #[serde(flatten)]
    pub extra: Extra,
}

macro_rules! catalogue {
    ($($variant:ident($payload:ty) = $name:literal,)*) => {
        /// Every event type the ledger knows by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant,)* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(&self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(EventType::$variant),)* _ => None }
            }
        }

        /// A decoded event. `Unknown` keeps types this build does not know, verbatim.
        #[derive(Debug, Clone, PartialEq)]
        pub enum DomainEvent {
            $($variant($payload),)*
            Unknown { event_type: String, payload: Value },
        }

        impl DomainEvent {
            pub fn event_type(&self) -> &str {
                match self {
                    $(DomainEvent::$variant(_) => $name,)*
                    DomainEvent::Unknown { event_type, .. } => event_type,
                }
            }

            pub fn payload_json(&self) -> Value {
                match self {
                    $(DomainEvent::$variant(p) => serde_json::to_value(p)
                        .expect("catalogue payloads serialize to JSON"),)*
                    DomainEvent::Unknown { payload, .. } => payload.clone(),
                }
            }

            pub fn decode(event_type: &str, payload: Value) -> Result<Self, DecodeError> {
                match EventType::parse(event_type) {
                    $(Some(EventType::$variant) => decode_as(event_type, payload).map(DomainEvent::$variant),)*
                    None => Ok(DomainEvent::Unknown { event_type: event_type.to_string(), payload }),
                }
            }

            /// `decode` from a borrowed payload: a typed payload deserializes straight from
            /// the JSON tree, without the deep copy `decode` needs (folds decode every event
            /// once per projection).
            pub fn decode_ref(event_type: &str, payload: &Value) -> Result<Self, DecodeError> {
                match EventType::parse(event_type) {
                    $(Some(EventType::$variant) => decode_ref_as(event_type, payload).map(DomainEvent::$variant),)*
                    None => Ok(DomainEvent::Unknown { event_type: event_type.to_string(), payload: payload.clone() }),
                }
            }
        }
    };
}

catalogue! {
    CrmAccountUpserted(CrmAccountUpserted) = "CrmAccountUpserted",
    CrmAccountDeleted(CrmAccountDeleted) = "CrmAccountDeleted",
    CrmOrderActivated(CrmOrder) = "CrmOrderActivated",
    CrmOrderAmended(CrmOrder) = "CrmOrderAmended",
    CrmOrderCancelled(CrmOrder) = "CrmOrderCancelled",
    CrmProductChanged(CrmProductChanged) = "CrmProductChanged",
    BillingAccountCreated(BillingAccount) = "BillingAccountCreated",
    BillingAccountUpdated(BillingAccount) = "BillingAccountUpdated",
    BillingSubscriptionCreated(BillingSubscription) = "BillingSubscriptionCreated",
    BillingSubscriptionAmended(BillingSubscription) = "BillingSubscriptionAmended",
    BillingSubscriptionCancelled(BillingSubscription) = "BillingSubscriptionCancelled",
    BillingProductChanged(BillingProductChanged) = "BillingProductChanged",
    BillingRatePlanChanged(BillingRatePlanChanged) = "BillingRatePlanChanged",
    BillingPriceChanged(BillingPriceChanged) = "BillingPriceChanged",
    TokenRotated(TokenRotated) = "TokenRotated",
    TokenRotationFailed(TokenRotationFailed) = "TokenRotationFailed",
    RedriveRequested(RedriveRequested) = "RedriveRequested",
    IngestRejected(IngestRejected) = "IngestRejected",
    AccountSynced(SyncOutcome) = "AccountSynced",
    OrderSynced(SyncOutcome) = "OrderSynced",
    ProductSynced(SyncOutcome) = "ProductSynced",
    SyncFailed(SyncFailed) = "SyncFailed",
    SyncDeferred(SyncDeferred) = "SyncDeferred",
    EchoSuppressed(EchoSuppressed) = "EchoSuppressed",
    CrmAccountObserved(AccountObserved) = "CrmAccountObserved",
    BillingAccountObserved(AccountObserved) = "BillingAccountObserved",
    ReconciliationStarted(ReconciliationStarted) = "ReconciliationStarted",
    DriftDetected(DriftDetected) = "DriftDetected",
    ReconciliationCompleted(ReconciliationCompleted) = "ReconciliationCompleted",
}

fn decode_as<T: DeserializeOwned>(event_type: &str, payload: Value) -> Result<T, DecodeError> {
    serde_json::from_value(payload).map_err(|e| DecodeError {
        event_type: event_type.to_string(),
        reason: e.to_string(),
    })
}

fn decode_ref_as<T: DeserializeOwned>(event_type: &str, payload: &Value) -> Result<T, DecodeError> {
    T::deserialize(payload).map_err(|e| DecodeError {
        event_type: event_type.to_string(),
        reason: e.to_string(),
    })
}

impl EventType {
    /// Events that come from outside (CRM, Billing) as opposed to the ledger's own outcome
    /// and audit events.
    pub fn is_inbound(&self) -> bool {
        self.as_str().starts_with("Crm") || self.as_str().starts_with("Billing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_known_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn unknown_fields_are_kept_on_re_encode() {
        let payload = json!({"account_id": "001", "name": "Acme", "Industry": "Retail"});
        let event = DomainEvent::decode("CrmAccountUpserted", payload.clone()).unwrap();
        assert_eq!(event.payload_json()["Industry"], json!("Retail"));
    }

    #[test]
    fn a_bad_payload_names_the_field() {
        let err = DomainEvent::decode("CrmAccountUpserted", json!({"name": "Acme"})).unwrap_err();
        assert!(err.reason.contains("account_id"), "{err}");
    }
}
