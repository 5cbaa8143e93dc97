//! Zuora-shaped event notification callouts (a callout template with a JSON body built from
//! merge fields, see tests/fixtures/README.md) mapped to Billing catalogue events. Signature
//! checking is not done here (see `signature`); this module only reads an authenticated body.
//!
//! Body: `eventId` and `eventType` (required), `eventTime`, `tenantId`, `correlationId`, and
//! one object named for the entity: `account`, `subscription`, `product`, `productRatePlan`
//! or `productRatePlanCharge`, with Zuora REST field names. Unknown `eventType`s are recorded
//! as-is as `Unmapped.Zuora.<eventType>`.

use super::fields::{timestamp, Obj};
use super::{correlation_or_new, entity_stream, source_event_id, Mapped, Rejection};
use chrono::{DateTime, Utc};
use projections::catalogue::{
    BillingAccount, BillingPriceChanged, BillingProductChanged, BillingRatePlanChanged,
    BillingSubscription, Extra, SubscriptionRatePlan,
};
use projections::{CorrelationId, DomainEvent, NewEvent, Source, StreamId};
use serde_json::Value;

/// Whether a JSON value looks like a Zuora callout body.
pub fn looks_like(value: &Value) -> bool {
    value.get("eventType").is_some() && value.get("eventId").is_some()
}

struct Context<'a> {
    event_id: &'a str,
    correlation_id: CorrelationId,
    occurred_at: DateTime<Utc>,
    /// The callout's own fields (`eventType`, `tenantId`, ...), kept in each payload's extra.
    callout: Extra,
}

impl Context<'_> {
    fn event(
        &self,
        stream: StreamId,
        key_suffix: Option<&str>,
        domain: &DomainEvent,
    ) -> Result<NewEvent, Rejection> {
        let key = match key_suffix {
            Some(s) => format!("{}:{s}", self.event_id),
            None => self.event_id.to_string(),
        };
        Ok(NewEvent::from_domain(
            stream,
            Source::Billing,
            source_event_id(key, "eventId")?,
            self.correlation_id,
            None,
            self.occurred_at,
            domain,
        ))
    }

    fn extra(&self, object: &Obj<'_>, modelled: &[&str]) -> Extra {
        let mut extra = object.extra(modelled);
        extra.insert("callout".to_string(), Value::Object(self.callout.clone()));
        extra
    }
}

const OBJECTS: &[&str] = &[
    "account",
    "subscription",
    "product",
    "productRatePlan",
    "productRatePlanCharge",
];

/// Map one callout body. `header_correlation` is the `X-Correlation-Id` request header, which
/// wins over a `correlationId` in the body.
pub fn map_callout(body: &Value, header_correlation: Option<&str>, now: DateTime<Utc>) -> Mapped {
    map_notification(body, None, header_correlation, now)
}

/// `map_callout` for a callout that carried a `Zuora-Notification-Id` header: that id is the
/// source event id. Zuora retries a notification with a new `Zuora-Request-Id` and a body
/// rendered again, but the same notification id, so each retry is recorded once.
pub fn map_notification(
    body: &Value,
    notification_id: Option<&str>,
    header_correlation: Option<&str>,
    now: DateTime<Utc>,
) -> Mapped {
    let root = Obj::at(body, "")?;
    let event_type = root.str_req("eventType")?;
    let occurred_at = match root.get("eventTime") {
        Some(t) => timestamp(t, "eventTime")?,
        None => now,
    };
    let carried = match header_correlation {
        Some(h) => Some(h),
        None => root.str_opt("correlationId")?,
    };
    let event_id = match notification_id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => root.str_req("eventId")?,
    };
    let ctx = Context {
        event_id,
        correlation_id: correlation_or_new(carried),
        occurred_at,
        callout: root.extra(OBJECTS),
    };
    let object = |name: &'static str| -> Result<Obj<'_>, Rejection> {
        Obj::at(
            root.get(name).ok_or_else(|| Rejection::missing(name))?,
            name,
        )
    };
    match event_type {
        "AccountCreated" | "AccountUpdated" => {
            let a = object("account")?;
            let id = a.str_req("id")?;
            let account = BillingAccount {
                account_id: id.to_string(),
                account_number: a.str_opt("accountNumber")?.map(str::to_string),
                name: a.str_req("name")?.to_string(),
                crm_id: a.str_opt("crmId")?.map(str::to_string),
                currency: a.str_opt("currency")?.map(str::to_string),
                status: a.str_opt("status")?.map(str::to_string),
                origin: a.str_opt("Origin__c")?.map(str::to_string),
                extra: ctx.extra(
                    &a,
                    &[
                        "id",
                        "accountNumber",
                        "name",
                        "crmId",
                        "currency",
                        "status",
                        "Origin__c",
                    ],
                ),
            };
            let domain = if event_type == "AccountCreated" {
                DomainEvent::BillingAccountCreated(account)
            } else {
                DomainEvent::BillingAccountUpdated(account)
            };
            let stream = entity_stream(Source::Billing, "account", id, "account.id")?;
            Ok(vec![ctx.event(stream, None, &domain)?])
        }
        "SubscriptionCreated" | "SubscriptionAmended" | "SubscriptionCancelled" => {
            let s = object("subscription")?;
            // Zuora gives every subscription version a new `id`; the number is the stable
            // identity, so the stream is keyed by it.
            let number = s.str_req("subscriptionNumber")?;
            let subscription = BillingSubscription {
                subscription_id: s.str_req("id")?.to_string(),
                subscription_number: Some(number.to_string()),
                account_id: s.str_req("accountId")?.to_string(),
                status: s.str_req("status")?.to_string(),
                term_start_date: s.str_opt("termStartDate")?.map(str::to_string),
                crm_order_id: s.str_opt("CrmOrderId__c")?.map(str::to_string),
                rate_plans: rate_plans(&s)?,
                origin: s.str_opt("Origin__c")?.map(str::to_string),
                extra: ctx.extra(
                    &s,
                    &[
                        "id",
                        "subscriptionNumber",
                        "accountId",
                        "status",
                        "termStartDate",
                        "CrmOrderId__c",
                        "ratePlans",
                        "Origin__c",
                    ],
                ),
            };
            let domain = match event_type {
                "SubscriptionCreated" => DomainEvent::BillingSubscriptionCreated(subscription),
                "SubscriptionAmended" => DomainEvent::BillingSubscriptionAmended(subscription),
                _ => DomainEvent::BillingSubscriptionCancelled(subscription),
            };
            let stream = entity_stream(
                Source::Billing,
                "subscription",
                number,
                "subscription.subscriptionNumber",
            )?;
            Ok(vec![ctx.event(stream, None, &domain)?])
        }
        "ProductCreated" | "ProductUpdated" => {
            let p = object("product")?;
            let id = p.str_req("id")?;
            let domain = DomainEvent::BillingProductChanged(BillingProductChanged {
                product_id: id.to_string(),
                sku: p.str_req("sku")?.to_string(),
                name: p.str_req("name")?.to_string(),
                effective_end_date: p.str_opt("effectiveEndDate")?.map(str::to_string),
                extra: ctx.extra(&p, &["id", "sku", "name", "effectiveEndDate"]),
            });
            let stream = entity_stream(Source::Billing, "product", id, "product.id")?;
            Ok(vec![ctx.event(stream, None, &domain)?])
        }
        "ProductRatePlanCreated" | "ProductRatePlanUpdated" => {
            let r = object("productRatePlan")?;
            let id = r.str_req("id")?;
            let domain = DomainEvent::BillingRatePlanChanged(BillingRatePlanChanged {
                rate_plan_id: id.to_string(),
                product_id: r.str_req("productId")?.to_string(),
                name: r.str_req("name")?.to_string(),
                extra: ctx.extra(&r, &["id", "productId", "name"]),
            });
            let stream = entity_stream(Source::Billing, "rateplan", id, "productRatePlan.id")?;
            Ok(vec![ctx.event(stream, None, &domain)?])
        }
        "ProductRatePlanChargeCreated" | "ProductRatePlanChargeUpdated" => {
            price_changes(&ctx, &object("productRatePlanCharge")?)
        }
        other => {
            let domain = DomainEvent::Unknown {
                event_type: format!("Unmapped.Zuora.{other}"),
                payload: body.clone(),
            };
            let stream = StreamId::parse(format!("billing-unmapped-{}", now.format("%Y-%m-%d")))
                .expect("a fixed prefix and a date form a valid stream id");
            Ok(vec![ctx.event(stream, None, &domain)?])
        }
    }
}

fn rate_plans(s: &Obj<'_>) -> Result<Vec<SubscriptionRatePlan>, Rejection> {
    let Some(items) = s.array_opt("ratePlans")? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("subscription.ratePlans[{i}]");
            let o = Obj::at(item, &path)?;
            Ok(SubscriptionRatePlan {
                product_rate_plan_id: o.str_req("productRatePlanId")?.to_string(),
                quantity: o.f64_opt("quantity")?,
                extra: o.extra(&["productRatePlanId", "quantity"]),
            })
        })
        .collect()
}

/// A charge carries one price per currency (`pricing[]`); each becomes its own event on the
/// charge's stream, keyed `<eventId>:<currency>` when there are several.
fn price_changes(ctx: &Context<'_>, c: &Obj<'_>) -> Mapped {
    let charge_id = c.str_req("id")?;
    let rate_plan_id = c.str_req("productRatePlanId")?;
    let pricing = c
        .array_opt("pricing")?
        .ok_or_else(|| Rejection::missing("productRatePlanCharge.pricing"))?;
    if pricing.is_empty() {
        return Err(Rejection::new(
            "productRatePlanCharge.pricing",
            "has no price",
        ));
    }
    let stream = entity_stream(
        Source::Billing,
        "charge",
        charge_id,
        "productRatePlanCharge.id",
    )?;
    let many = pricing.len() > 1;
    pricing
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("productRatePlanCharge.pricing[{i}]");
            let p = Obj::at(entry, &path)?;
            let currency = p.str_req("currency")?;
            let mut extra = ctx.extra(c, &["id", "productRatePlanId", "pricing"]);
            extra.extend(p.extra(&["currency", "price"]));
            let domain = DomainEvent::BillingPriceChanged(BillingPriceChanged {
                rate_plan_id: rate_plan_id.to_string(),
                charge_id: charge_id.to_string(),
                currency: currency.to_string(),
                price: p.f64_req("price")?,
                extra,
            });
            ctx.event(stream.clone(), many.then_some(currency), &domain)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscription_created_is_keyed_by_event_id_and_streamed_by_number() {
        let body = json!({
            "eventId": "evt-1", "eventType": "SubscriptionCreated",
            "eventTime": "2026-11-26T10:00:00Z", "tenantId": "9",
            "subscription": {"id": "8a1", "subscriptionNumber": "A-S0001", "accountId": "8a0",
                "status": "Active", "CrmOrderId__c": "801A",
                "ratePlans": [{"productRatePlanId": "rp1", "quantity": 2}], "autoRenew": true}
        });
        let e = &map_callout(&body, Some("trace-7"), Utc::now()).unwrap()[0];
        assert_eq!(e.event_type, "BillingSubscriptionCreated");
        assert_eq!(e.stream_id.as_str(), "billing-subscription-A-S0001");
        assert_eq!(e.source_event_id.as_str(), "evt-1");
        assert_eq!(e.payload["crm_order_id"], "801A");
        assert_eq!(e.payload["autoRenew"], true);
        assert_eq!(e.payload["callout"]["tenantId"], "9");
        assert_eq!(
            e.correlation_id,
            CorrelationId::from_source_text("trace-7").unwrap()
        );
    }

    #[test]
    fn a_missing_account_name_is_named() {
        let body = json!({"eventId": "e", "eventType": "AccountCreated", "account": {"id": "8a0"}});
        let r = map_callout(&body, None, Utc::now()).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("account.name"));
    }

    #[test]
    fn multi_currency_charges_become_one_event_per_currency() {
        let body = json!({"eventId": "e", "eventType": "ProductRatePlanChargeUpdated",
            "productRatePlanCharge": {"id": "c1", "productRatePlanId": "rp1",
                "pricing": [{"currency": "USD", "price": 10}, {"currency": "EUR", "price": "9.5"}]}});
        let out = map_callout(&body, None, Utc::now()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].source_event_id.as_str(), "e:EUR");
        assert_eq!(out[1].payload["price"], 9.5);
    }

    #[test]
    fn unknown_event_types_are_kept_verbatim() {
        let body = json!({"eventId": "e", "eventType": "PaymentProcessed", "payment": {"id": "p"}});
        let e = &map_callout(&body, None, Utc::now()).unwrap()[0];
        assert_eq!(e.event_type, "Unmapped.Zuora.PaymentProcessed");
        assert_eq!(e.payload, body);
    }
}
