//! Salesforce events relayed to EventBridge (partner source
//! `aws.partner/salesforce.com/<orgId>/<channelId>`): Change Data Capture events for Account,
//! Order and Product2, and the `OrderEvent__e` platform event. The EventBridge `detail` holds
//! `payload` (the event's fields), `schemaId` and `id` (the event UUID); this module turns
//! that into catalogue events and must not invent values a source did not send.
//!
//! Decisions (see tests/fixtures/README.md):
//! - Idempotency key: the Salesforce event UUID (`payload.EventUuid`, else `detail.id`), else
//!   `<org>/<channel>/replay/<detail.replayId>`, else the EventBridge `id`. A relay restart
//!   re-sends an event under a new EventBridge id but the same UUID, so the UUID comes first.
//! - CDC updates carry only changed fields. `Name` (Account, Product2), `ProductCode`,
//!   `AccountId` and `Status` (Order) are required: configure them as enriched fields of the
//!   relay's channel. Missing, the record is rejected naming the field.
//! - Well-formed events this build does not model (other `detail-type`s, CDC DELETE of an
//!   order/product, GAP_* and UNDELETE-less types) are recorded as-is with the event type
//!   `Unmapped.Salesforce.<detail-type>[.<changeType>]`: unknown types are kept, not dropped.

use super::eventbridge::Envelope;
use super::fields::{join, timestamp, Obj};
use super::{correlation_or_new, entity_stream, source_event_id, Mapped, Rejection};
use chrono::{DateTime, Utc};
use projections::catalogue::{
    CrmAccountDeleted, CrmAccountUpserted, CrmOrder, CrmProductChanged, OrderItem,
};
use projections::{CorrelationId, DomainEvent, NewEvent, Source, StreamId};
use serde_json::{json, Value};

/// The API client id our own CRM writes carry (`Sforce-Call-Options: client=sync-ledger`);
/// Salesforce echoes it in `ChangeEventHeader.changeOrigin`, which is how echoes are spotted.
pub const OUR_CLIENT_ID: &str = "sync-ledger";

const PAYLOAD: &str = "detail.payload";
const HEADER: &str = "detail.payload.ChangeEventHeader";

/// What every event mapped from one Salesforce event shares.
struct Context {
    key: String,
    correlation_id: CorrelationId,
    occurred_at: DateTime<Utc>,
    origin: Option<String>,
}

impl Context {
    fn event(
        &self,
        stream: StreamId,
        key_suffix: Option<&str>,
        event: &DomainEvent,
    ) -> Result<NewEvent, Rejection> {
        let key = match key_suffix {
            Some(suffix) => format!("{}:{suffix}", self.key),
            None => self.key.clone(),
        };
        Ok(NewEvent::from_domain(
            stream,
            Source::Crm,
            source_event_id(key, "detail.id")?,
            self.correlation_id,
            None,
            self.occurred_at,
            event,
        ))
    }
}

pub fn map(envelope: &Envelope<'_>, org_and_channel: &str, now: DateTime<Utc>) -> Mapped {
    let detail = Obj::at(envelope.detail, "detail")?;
    let payload_value = detail
        .get("payload")
        .ok_or_else(|| Rejection::missing(PAYLOAD))?;
    let payload = Obj::at(payload_value, PAYLOAD)?;
    let header = match payload.get("ChangeEventHeader") {
        Some(h) => Some(Obj::at(h, HEADER)?),
        None => None,
    };

    let occurred_at = match (
        header.and_then(|h| h.get("commitTimestamp")),
        payload.get("CreatedDate"),
    ) {
        (Some(ts), _) => timestamp(ts, &join(HEADER, "commitTimestamp"))?,
        (None, Some(ts)) => timestamp(ts, &join(PAYLOAD, "CreatedDate"))?,
        (None, None) => envelope.time.unwrap_or(now),
    };
    let change_origin = match header {
        Some(h) => h.str_opt("changeOrigin")?,
        None => None,
    };
    let origin = match payload.str_opt("Origin__c")? {
        Some(o) => Some(o.to_string()),
        None => change_origin
            .filter(|o| o.contains(&format!("client={OUR_CLIENT_ID}")))
            .map(|_| OUR_CLIENT_ID.to_string()),
    };
    let ctx = Context {
        key: event_key(envelope, &detail, &payload, org_and_channel)?,
        correlation_id: correlation_or_new(payload.str_opt("Correlation_Id__c")?),
        occurred_at,
        origin,
    };

    match (envelope.detail_type, header) {
        ("OrderEvent__e", _) => order_platform_event(&ctx, &payload).map(|e| vec![e]),
        ("AccountChangeEvent", Some(h)) => {
            change_event(&ctx, envelope, &payload, &h, "account", now)
        }
        ("OrderChangeEvent", Some(h)) => change_event(&ctx, envelope, &payload, &h, "order", now),
        ("Product2ChangeEvent", Some(h)) => {
            change_event(&ctx, envelope, &payload, &h, "product", now)
        }
        (cdc, None) if cdc.ends_with("ChangeEvent") => Err(Rejection::missing(HEADER)),
        (_, _) => unmapped(&ctx, envelope, None, None, now).map(|e| vec![e]),
    }
}

fn event_key(
    envelope: &Envelope<'_>,
    detail: &Obj<'_>,
    payload: &Obj<'_>,
    org_and_channel: &str,
) -> Result<String, Rejection> {
    if let Some(uuid) = payload.str_opt("EventUuid")? {
        return Ok(uuid.to_string());
    }
    if let Some(id) = detail.str_opt("id")? {
        return Ok(id.to_string());
    }
    match detail.get("replayId") {
        Some(Value::String(r)) => return Ok(format!("{org_and_channel}/replay/{r}")),
        Some(Value::Number(r)) => return Ok(format!("{org_and_channel}/replay/{r}")),
        _ => {}
    }
    Ok(format!("eventbridge:{}", envelope.id))
}

/// One CDC event; it may name several records (Salesforce merges identical changes made in
/// one transaction), each becoming its own ledger event on its own stream.
fn change_event(
    ctx: &Context,
    envelope: &Envelope<'_>,
    payload: &Obj<'_>,
    header: &Obj<'_>,
    entity: &str,
    now: DateTime<Utc>,
) -> Mapped {
    let change_type = header.str_req("changeType")?;
    let ids_path = join(HEADER, "recordIds");
    let ids: Vec<&str> = header
        .array_opt("recordIds")?
        .ok_or_else(|| Rejection::missing(&ids_path))?
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| Rejection::new(&ids_path, "must be an array of record id strings"))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(Rejection::new(&ids_path, "names no record"));
    }
    if let Some(wild) = ids.iter().find(|id| id.ends_with('*')) {
        return Err(Rejection::new(
            &ids_path,
            format!("wildcard record id {wild:?} (a field type conversion) cannot be mapped to one entity"),
        ));
    }
    let many = ids.len() > 1;
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        let suffix = many.then_some(id);
        let stream = entity_stream(Source::Crm, entity, id, &ids_path)?;
        let domain = match (entity, change_type) {
            ("account", "CREATE" | "UPDATE" | "UNDELETE") => {
                Some(DomainEvent::CrmAccountUpserted(CrmAccountUpserted {
                    account_id: id.to_string(),
                    name: enriched(payload, "Name")?.to_string(),
                    billing_account_id: payload
                        .str_opt("Billing_Account_Id__c")?
                        .map(str::to_string),
                    currency: payload.str_opt("CurrencyIsoCode")?.map(str::to_string),
                    origin: ctx.origin.clone(),
                    extra: payload.extra(&["Name", "Billing_Account_Id__c", "CurrencyIsoCode"]),
                }))
            }
            ("account", "DELETE") => Some(DomainEvent::CrmAccountDeleted(CrmAccountDeleted {
                account_id: id.to_string(),
                extra: payload.extra(&[]),
            })),
            ("order", "CREATE" | "UPDATE" | "UNDELETE") => {
                Some(order_change(ctx, payload, header, id, change_type)?)
            }
            ("product", "CREATE" | "UPDATE" | "UNDELETE") => {
                Some(DomainEvent::CrmProductChanged(CrmProductChanged {
                    product_id: id.to_string(),
                    product_code: enriched(payload, "ProductCode")?.to_string(),
                    name: enriched(payload, "Name")?.to_string(),
                    active: payload.bool_opt("IsActive")?.unwrap_or(true),
                    origin: ctx.origin.clone(),
                    extra: payload.extra(&["ProductCode", "Name", "IsActive"]),
                }))
            }
            // DELETE of orders/products and GAP_* notifications are well-formed but carry
            // nothing this build can fold; keep them on the entity's stream as-is.
            _ => None,
        };
        events.push(match domain {
            Some(domain) => ctx.event(stream, suffix, &domain)?,
            None => unmapped(ctx, envelope, Some((stream, change_type)), suffix, now)?,
        });
    }
    Ok(events)
}

/// A field a CDC update only carries when the channel enriches it.
fn enriched<'a>(payload: &Obj<'a>, key: &str) -> Result<&'a str, Rejection> {
    payload.str_opt(key)?.ok_or_else(|| {
        Rejection::new(
            payload.path(key),
            "is required but missing (configure it as an enriched field of the relay channel)",
        )
    })
}

fn order_change(
    ctx: &Context,
    payload: &Obj<'_>,
    header: &Obj<'_>,
    id: &str,
    change_type: &str,
) -> Result<DomainEvent, Rejection> {
    let status = enriched(payload, "Status")?;
    let status_changed = change_type == "CREATE"
        || header
            .array_opt("changedFields")?
            .is_some_and(|f| f.iter().any(|v| v.as_str() == Some("Status")));
    let order = CrmOrder {
        order_id: id.to_string(),
        account_id: enriched(payload, "AccountId")?.to_string(),
        order_number: payload.str_opt("OrderNumber")?.map(str::to_string),
        status: status.to_string(),
        effective_date: payload.str_opt("EffectiveDate")?.map(str::to_string),
        currency: payload.str_opt("CurrencyIsoCode")?.map(str::to_string),
        items: Vec::new(),
        origin: ctx.origin.clone(),
        extra: payload.extra(&[
            "AccountId",
            "OrderNumber",
            "Status",
            "EffectiveDate",
            "CurrencyIsoCode",
        ]),
    };
    Ok(match status {
        "Activated" if status_changed => DomainEvent::CrmOrderActivated(order),
        "Cancelled" => DomainEvent::CrmOrderCancelled(order),
        _ => DomainEvent::CrmOrderAmended(order),
    })
}

/// `OrderEvent__e`: our platform event for order lifecycle, published by a Salesforce flow.
/// Fields: `Order_Id__c`, `Account_Id__c`, `Status__c` (required); `Action__c`
/// (`Activated|Amended|Cancelled`, defaults from `Status__c`), `Order_Number__c`,
/// `Effective_Date__c`, `Currency__c`, `Items__c` (JSON array of `{ProductCode, Quantity,
/// UnitPrice}`, as text since platform events have no nested fields), `Correlation_Id__c`,
/// `Origin__c`.
fn order_platform_event(ctx: &Context, payload: &Obj<'_>) -> Result<NewEvent, Rejection> {
    let order_id = payload.str_req("Order_Id__c")?;
    let status = payload.str_req("Status__c")?;
    let action = match payload.str_opt("Action__c")? {
        Some(a @ ("Activated" | "Amended" | "Cancelled")) => a,
        Some(other) => {
            return Err(Rejection::new(
                payload.path("Action__c"),
                format!("must be one of Activated, Amended, Cancelled, got {other:?}"),
            ))
        }
        None => match status {
            "Activated" | "Cancelled" => status,
            _ => {
                return Err(Rejection::new(
                    payload.path("Action__c"),
                    "is required when Status__c is neither Activated nor Cancelled",
                ))
            }
        },
    };
    let order = CrmOrder {
        order_id: order_id.to_string(),
        account_id: payload.str_req("Account_Id__c")?.to_string(),
        order_number: payload.str_opt("Order_Number__c")?.map(str::to_string),
        status: status.to_string(),
        effective_date: payload.str_opt("Effective_Date__c")?.map(str::to_string),
        currency: payload.str_opt("Currency__c")?.map(str::to_string),
        items: order_items(payload)?,
        origin: ctx.origin.clone(),
        extra: payload.extra(&[
            "Order_Id__c",
            "Account_Id__c",
            "Order_Number__c",
            "Status__c",
            "Action__c",
            "Effective_Date__c",
            "Currency__c",
            "Items__c",
            "Origin__c",
        ]),
    };
    let domain = match action {
        "Activated" => DomainEvent::CrmOrderActivated(order),
        "Cancelled" => DomainEvent::CrmOrderCancelled(order),
        _ => DomainEvent::CrmOrderAmended(order),
    };
    let stream = entity_stream(Source::Crm, "order", order_id, &payload.path("Order_Id__c"))?;
    ctx.event(stream, None, &domain)
}

fn order_items(payload: &Obj<'_>) -> Result<Vec<OrderItem>, Rejection> {
    let path = payload.path("Items__c");
    let parsed;
    let items = match payload.get("Items__c") {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| Rejection::new(&path, format!("is not a JSON array: {e}")))?;
            &parsed
        }
        Some(other) => other,
    };
    let Value::Array(items) = items else {
        return Err(Rejection::new(&path, "must be a JSON array of order items"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            let o = Obj::at(item, &item_path)?;
            Ok(OrderItem {
                product_code: o.str_req("ProductCode")?.to_string(),
                quantity: o.f64_req("Quantity")?,
                unit_price: o.f64_opt("UnitPrice")?,
                extra: o.extra(&["ProductCode", "Quantity", "UnitPrice"]),
            })
        })
        .collect()
}

/// A well-formed Salesforce event this build does not model, kept verbatim.
fn unmapped(
    ctx: &Context,
    envelope: &Envelope<'_>,
    entity: Option<(StreamId, &str)>,
    key_suffix: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewEvent, Rejection> {
    let (stream, event_type) = match entity {
        Some((stream, change_type)) => (
            stream,
            format!("Unmapped.Salesforce.{}.{change_type}", envelope.detail_type),
        ),
        None => (
            StreamId::parse(format!("crm-unmapped-{}", now.format("%Y-%m-%d")))
                .expect("a fixed prefix and a date form a valid stream id"),
            format!("Unmapped.Salesforce.{}", envelope.detail_type),
        ),
    };
    let payload = json!({
        "detail_type": envelope.detail_type,
        "event_source": envelope.source,
        "eventbridge_id": envelope.id,
        "detail": envelope.detail,
    });
    let domain = DomainEvent::Unknown {
        event_type,
        payload,
    };
    ctx.event(stream, key_suffix, &domain)
}

#[cfg(test)]
mod tests {
    use super::super::eventbridge::map_event;
    use super::*;

    fn relay(detail_type: &str, payload: Value) -> Value {
        json!({
            "version": "0", "id": "eb-1", "detail-type": detail_type,
            "source": "aws.partner/salesforce.com/00Dxx0000000001/0YLxx0000000001",
            "account": "123456789012", "time": "2026-11-26T10:00:00Z", "region": "us-east-1",
            "resources": [],
            "detail": {"payload": payload, "schemaId": "s1", "id": "uuid-1"}
        })
    }

    fn cdc(entity: &str, change_type: &str, ids: &[&str], fields: Value) -> Value {
        let mut payload = fields;
        payload["ChangeEventHeader"] = json!({
            "entityName": entity, "recordIds": ids, "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/62.0;client=sync-ledger",
            "transactionKey": "t1", "sequenceNumber": 1, "commitTimestamp": 1_795_687_200_000_i64,
            "commitUser": "005xx", "changedFields": ["Status"]
        });
        relay(&format!("{entity}ChangeEvent"), payload)
    }

    #[test]
    fn account_create_maps_to_upserted_with_our_echo_marker_and_extras() {
        let ev = cdc(
            "Account",
            "CREATE",
            &["001A"],
            json!({"Name": "Acme", "Industry": "Retail"}),
        );
        let out = map_event(&ev, Utc::now()).unwrap();
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.event_type, "CrmAccountUpserted");
        assert_eq!(e.stream_id.as_str(), "crm-account-001A");
        assert_eq!(e.source_event_id.as_str(), "uuid-1");
        assert_eq!(e.payload["origin"], "sync-ledger");
        assert_eq!(e.payload["Industry"], "Retail");
        assert_eq!(e.occurred_at.timestamp_millis(), 1_795_687_200_000);
    }

    #[test]
    fn a_change_naming_two_records_becomes_two_events_with_distinct_keys() {
        let ev = cdc("Account", "DELETE", &["001A", "001B"], json!({}));
        let out = map_event(&ev, Utc::now()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].source_event_id.as_str(), "uuid-1:001B");
        assert_eq!(out[1].event_type, "CrmAccountDeleted");
    }

    #[test]
    fn an_update_without_the_enriched_name_is_rejected_naming_it() {
        let ev = cdc("Account", "UPDATE", &["001A"], json!({"Phone": "1"}));
        let r = map_event(&ev, Utc::now()).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("detail.payload.Name"));
    }

    #[test]
    fn order_activation_by_cdc_and_by_platform_event() {
        let ev = cdc(
            "Order",
            "UPDATE",
            &["801A"],
            json!({"Status": "Activated", "AccountId": "001A"}),
        );
        assert_eq!(
            map_event(&ev, Utc::now()).unwrap()[0].event_type,
            "CrmOrderActivated"
        );

        let pe = relay(
            "OrderEvent__e",
            json!({
                "Order_Id__c": "801A", "Account_Id__c": "001A", "Status__c": "Activated",
                "Items__c": "[{\"ProductCode\":\"GOLD\",\"Quantity\":2,\"UnitPrice\":\"9.5\"}]",
                "EventUuid": "pe-uuid", "CreatedDate": "2026-11-26T09:00:00.000Z",
                "Correlation_Id__c": "run-42"
            }),
        );
        let e = &map_event(&pe, Utc::now()).unwrap()[0];
        assert_eq!(e.event_type, "CrmOrderActivated");
        assert_eq!(e.source_event_id.as_str(), "pe-uuid");
        assert_eq!(e.payload["items"][0]["unit_price"], 9.5);
        assert_eq!(
            e.correlation_id,
            CorrelationId::from_source_text("run-42").unwrap()
        );
    }

    #[test]
    fn a_bad_order_item_names_its_index() {
        let pe = relay(
            "OrderEvent__e",
            json!({
                "Order_Id__c": "801A", "Account_Id__c": "001A", "Status__c": "Activated",
                "Items__c": [{"ProductCode": "GOLD"}]
            }),
        );
        let r = map_event(&pe, Utc::now()).unwrap_err();
        assert_eq!(
            r.field.as_deref(),
            Some("detail.payload.Items__c[0].Quantity")
        );
    }

    #[test]
    fn unknown_platform_events_are_kept_as_unmapped() {
        let ev = relay("Carbon_Comparison__e", json!({"Car_Type__c": "Mid-size"}));
        let e = &map_event(&ev, Utc::now()).unwrap()[0];
        assert_eq!(e.event_type, "Unmapped.Salesforce.Carbon_Comparison__e");
        assert!(e.stream_id.as_str().starts_with("crm-unmapped-"));
        assert_eq!(e.payload["detail"]["payload"]["Car_Type__c"], "Mid-size");
    }

    #[test]
    fn without_a_salesforce_uuid_the_eventbridge_id_is_the_key() {
        let mut ev = relay(
            "OrderEvent__e",
            json!({
            "Order_Id__c": "801A", "Account_Id__c": "001A", "Status__c": "Cancelled"}),
        );
        ev["detail"].as_object_mut().unwrap().remove("id");
        let e = &map_event(&ev, Utc::now()).unwrap()[0];
        assert_eq!(e.source_event_id.as_str(), "eventbridge:eb-1");
        assert_eq!(e.event_type, "CrmOrderCancelled");
    }
}
