//! Product sync, Billing catalog -> CRM: a Billing product becomes a CRM Product2 (upsert by
//! `Billing_Product_Id__c`), a rate plan's prices become one PricebookEntry per currency
//! (upsert by `<rate plan id>:<currency>`, referencing the product by its Billing id).
//! Pure fold + decisions; the product mapping lands in the correlation view via ProductSynced.
//!
//! Items: `billing-product#<id>` folds a product stream; `billing-rateplan#<id>` folds a rate
//! plan stream and the streams of its charges (every price event names its rate plan). The
//! outcomes of a rate plan's prices are recorded on the rate plan's stream, not the charge's.

use crate::catalogue::{
    BillingPriceChanged, BillingProductChanged, BillingRatePlanChanged, DomainEvent, Extra,
    SyncOutcome,
};
use crate::commands::{
    undecodable, Call, Cause, Command, CommandMeta, CrmCommand, Notes, OutcomeKind, PendingOutcome,
};
use crate::envelope::RecordedEvent;
use crate::ids::StreamId;
use crate::projection::{entity, entity_stream, Decision, EntityStream, Projection, Side};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const PROJECTION: &str = "product";
const BILLING_TO_CRM: &str = "billing->crm";

/// A Billing product as last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSnapshot {
    pub sku: String,
    pub name: String,
    pub effective_end_date: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    pub last_seen: Option<ProductSnapshot>,
    /// The CRM Product2 id, once synced.
    pub crm_product: Option<String>,
}

/// What a PricebookEntry was last written with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryWritten {
    pub billing_product_id: String,
    pub unit_price: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RatePlanView {
    pub product: Option<String>,
    pub name: Option<String>,
    /// Prices by charge, then currency.
    pub charges: BTreeMap<String, BTreeMap<String, f64>>,
    /// PricebookEntry per currency as last written.
    pub entries: BTreeMap<String, EntryWritten>,
    /// CRM PricebookEntry id per currency.
    pub crm_entries: BTreeMap<String, String>,
}

impl RatePlanView {
    /// A rate plan's list price in a currency: the sum of its charges' prices (a plan with a
    /// setup fee and a recurring charge is offered in CRM as one pricebook entry).
    fn list_prices(&self) -> BTreeMap<String, f64> {
        let mut prices = BTreeMap::new();
        for by_currency in self.charges.values() {
            for (currency, price) in by_currency {
                *prices.entry(currency.clone()).or_insert(0.0) += price;
            }
        }
        prices
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProductSyncView {
    #[default]
    Empty,
    Product(ProductView),
    RatePlan(RatePlanView),
}

/// Product sync over Billing products, rate plans and charges.
pub struct ProductSync;

fn rate_plan_of(event: &RecordedEvent) -> Option<&str> {
    event.payload.get("rate_plan_id").and_then(Value::as_str)
}

impl Projection for ProductSync {
    type State = ProductSyncView;
    const NAME: &'static str = "product-sync";

    fn key(event: &RecordedEvent) -> Option<String> {
        let stream = EntityStream::parse(&event.stream_id)?;
        match (stream.side, stream.entity) {
            (Side::Billing, entity::PRODUCT) => Some(format!("billing-product#{}", stream.id)),
            (Side::Billing, entity::RATE_PLAN) => Some(format!("billing-rateplan#{}", stream.id)),
            (Side::Billing, entity::CHARGE) => {
                rate_plan_of(event).map(|r| format!("billing-rateplan#{r}"))
            }
            _ => None,
        }
    }

    fn evolve(view: &mut ProductSyncView, event: &RecordedEvent) {
        let Some(stream) = EntityStream::parse(&event.stream_id) else {
            return;
        };
        let Ok(domain) = event.decode() else { return };
        if stream.entity == entity::PRODUCT {
            if !matches!(view, ProductSyncView::Product(_)) {
                *view = ProductSyncView::Product(ProductView::default());
            }
            let ProductSyncView::Product(product) = view else {
                return;
            };
            match &domain {
                DomainEvent::BillingProductChanged(p) => product.last_seen = Some(snapshot(p)),
                DomainEvent::ProductSynced(o) => product.crm_product = o.crm_id.clone(),
                _ => {}
            }
            return;
        }
        if !matches!(view, ProductSyncView::RatePlan(_)) {
            *view = ProductSyncView::RatePlan(RatePlanView::default());
        }
        let ProductSyncView::RatePlan(plan) = view else {
            return;
        };
        match &domain {
            DomainEvent::BillingRatePlanChanged(BillingRatePlanChanged {
                product_id,
                name,
                ..
            }) => {
                plan.product = Some(product_id.clone());
                plan.name = Some(name.clone());
            }
            DomainEvent::BillingPriceChanged(BillingPriceChanged {
                charge_id,
                currency,
                price,
                ..
            }) => {
                plan.charges
                    .entry(charge_id.clone())
                    .or_default()
                    .insert(currency.clone(), *price);
            }
            DomainEvent::ProductSynced(o) => {
                let written: Option<EntryWritten> = o
                    .written
                    .clone()
                    .and_then(|w| serde_json::from_value(w).ok());
                if let (Some(currency), Some(written)) = (currency_of(o), written) {
                    plan.entries.insert(currency.clone(), written);
                    if let Some(crm) = &o.crm_id {
                        plan.crm_entries.insert(currency, crm.clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn decide(view: &ProductSyncView, event: &RecordedEvent, now: DateTime<Utc>) -> Decision {
        let Some(stream) = EntityStream::parse(&event.stream_id) else {
            return Decision::none();
        };
        let cause = Cause::of(event);
        let domain = match event.decode() {
            Ok(domain) => domain,
            Err(e) => {
                let mut failed = undecodable(PROJECTION, &cause, now, e.to_string());
                if stream.entity == entity::CHARGE {
                    // A charge stream routes by rate plan: keep the route on the failure.
                    if let Some(plan) = event.payload.get("rate_plan_id") {
                        failed.payload["rate_plan_id"] = plan.clone();
                    }
                }
                return Decision::outcome(failed);
            }
        };
        match &domain {
            DomainEvent::BillingProductChanged(p) => {
                let last = match view {
                    ProductSyncView::Product(v) => v.last_seen.as_ref(),
                    _ => None,
                };
                decide_product(last, p, &cause, now)
            }
            DomainEvent::BillingRatePlanChanged(_) | DomainEvent::BillingPriceChanged(_) => {
                let mut plan = match view {
                    ProductSyncView::RatePlan(p) => p.clone(),
                    _ => RatePlanView::default(),
                };
                let home = match &domain {
                    DomainEvent::BillingPriceChanged(p) => p.rate_plan_id.clone(),
                    _ => stream.id.to_string(),
                };
                // Decide on the plan as it is with this event folded in.
                let mut folded = ProductSyncView::RatePlan(plan.clone());
                ProductSync::evolve(&mut folded, event);
                if let ProductSyncView::RatePlan(p) = folded {
                    plan = p;
                }
                decide_rate_plan(&plan, &home, &cause, now)
            }
            _ => Decision::none(),
        }
    }
}

fn snapshot(p: &BillingProductChanged) -> ProductSnapshot {
    ProductSnapshot {
        sku: p.sku.clone(),
        name: p.name.clone(),
        effective_end_date: p.effective_end_date.clone(),
    }
}

fn currency_of(outcome: &SyncOutcome) -> Option<String> {
    outcome
        .extra
        .get("currency")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn decide_product(
    last: Option<&ProductSnapshot>,
    product: &BillingProductChanged,
    cause: &Cause,
    now: DateTime<Utc>,
) -> Decision {
    let current = snapshot(product);
    if last == Some(&current) {
        return Decision::none();
    }
    // A product is sold until its effective end date (Zuora `effectiveEndDate`, YYYY-MM-DD).
    let active = match &product.effective_end_date {
        None => true,
        Some(end) => match NaiveDate::parse_from_str(end, "%Y-%m-%d") {
            Ok(end) => end > now.date_naive(),
            Err(_) => {
                return Decision::outcome(Notes::new(PROJECTION, cause, now).failed(
                    "invalid",
                    format!("effective_end_date: not a YYYY-MM-DD date (got {end:?})"),
                ))
            }
        },
    };
    Decision::command(Command {
        meta: CommandMeta::new(cause, "crm-upsert-product"),
        call: Call::Crm(CrmCommand::UpsertProduct {
            billing_product_id: product.product_id.clone(),
            product_code: product.sku.clone(),
            name: product.name.clone(),
            active,
        }),
        on_success: PendingOutcome {
            kind: OutcomeKind::ProductSynced,
            projection: PROJECTION.into(),
            direction: BILLING_TO_CRM.into(),
            action_created: "created".into(),
            action_existing: "updated".into(),
            crm_id: None,
            billing_id: Some(product.product_id.clone()),
            target_side: Side::Crm,
            target_entity: Some(entity::PRODUCT.into()),
            written: json!({"product_code": product.sku, "name": product.name, "active": active}),
            extra: Extra::new(),
            stream: cause.stream_id.clone(),
        },
    })
}

fn decide_rate_plan(
    plan: &RatePlanView,
    rate_plan_id: &str,
    cause: &Cause,
    now: DateTime<Utc>,
) -> Decision {
    let Some(home) = entity_stream(Side::Billing, entity::RATE_PLAN, rate_plan_id) else {
        return Decision::none();
    };
    let prices = plan.list_prices();
    let Some(product) = &plan.product else {
        if prices.is_empty() {
            return Decision::none();
        }
        return Notes::new(PROJECTION, cause, now).on(home).deferred(
            "the price's rate plan (and so its product) is not known yet",
            format!("rateplan:{rate_plan_id}"),
        );
    };
    let mut decision = Decision::none();
    for (currency, unit_price) in prices {
        let wanted = EntryWritten {
            billing_product_id: product.clone(),
            unit_price,
        };
        if plan.entries.get(&currency) == Some(&wanted) {
            continue;
        }
        decision
            .commands
            .push(upsert_entry(cause, &home, rate_plan_id, &currency, &wanted));
    }
    decision
}

fn upsert_entry(
    cause: &Cause,
    home: &StreamId,
    rate_plan_id: &str,
    currency: &str,
    wanted: &EntryWritten,
) -> Command {
    let mut extra = Extra::new();
    extra.insert("currency".into(), Value::String(currency.to_string()));
    Command {
        meta: CommandMeta::new(cause, &format!("crm-upsert-pricebook-entry:{currency}")),
        call: Call::Crm(CrmCommand::UpsertPricebookEntry {
            external_id: format!("{rate_plan_id}:{currency}"),
            billing_rate_plan_id: rate_plan_id.to_string(),
            billing_product_id: wanted.billing_product_id.clone(),
            currency: currency.to_string(),
            unit_price: wanted.unit_price,
            active: true,
        }),
        on_success: PendingOutcome {
            kind: OutcomeKind::ProductSynced,
            projection: PROJECTION.into(),
            direction: BILLING_TO_CRM.into(),
            action_created: "created".into(),
            action_existing: "updated".into(),
            crm_id: None,
            billing_id: Some(rate_plan_id.to_string()),
            target_side: Side::Crm,
            target_entity: Some(entity::PRICEBOOK_ENTRY.into()),
            written: serde_json::to_value(wanted).expect("entry serializes"),
            extra,
            stream: home.clone(),
        },
    }
}
