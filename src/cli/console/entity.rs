//! `GET /entity/{crm|billing}/{id}`: one CRM or Billing record as the correlation view knows
//! it: its current links, the history of each link change (what made it, in which trace),
//! and every trace that touched it. The item holds the latest link changes only (older
//! pages stay in the view and the stream); the traces are read through every spilled page.

use super::page::{self, entity_link, seg, stream_link, time, trace_link};
use super::search::link_item;
use super::{store_trouble, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use projections::correlation_view::HISTORY_PAGE;
use projections::Side;

pub async fn entity_page(
    State(console): State<Shared>,
    Path((side, id)): Path<(String, String)>,
) -> Response {
    let side = match side.as_str() {
        "crm" => Side::Crm,
        "billing" => Side::Billing,
        other => {
            return page::problem(
                StatusCode::BAD_REQUEST,
                "Bad entity address",
                &format!("side: must be crm or billing, not {other:?}"),
            )
        }
    };
    let item = match link_item(console.views.as_ref(), side, &id).await {
        Ok(Some(item)) => item,
        Ok(None) => {
            return page::problem(
                StatusCode::NOT_FOUND,
                "Unknown record",
                &format!(
                    "the correlation view knows no {} record {id}",
                    side.as_str()
                ),
            )
        }
        Err(e) => return store_trouble("reading the correlation view", &e, e.is_transient()),
    };
    // The item keeps only the latest traces; older ones are in its spilled pages.
    let traces = match sync_ledger::audit::traces_of(console.views.as_ref(), side, &id, &item).await
    {
        Ok(traces) => traces,
        Err(e) => {
            let transient =
                matches!(&e, sync_ledger::audit::AuditError::View(v) if v.is_transient());
            return store_trouble("reading the correlation view's traces", &e, transient);
        }
    };
    let earlier_changes = item.history_pages * HISTORY_PAGE as u64;
    let kind = item.entity.clone().unwrap_or_else(|| "record".to_string());
    let stream = format!("{}-{}-{}", side.as_str(), kind, id);
    page::page(
        StatusCode::OK,
        &format!("{} {kind} {id}", side.as_str()),
        None,
        html! {
            h1 { (side.as_str()) " " (kind) " " code { (id) } }
            section.card {
                dl.facts {
                    dt { "system" } dd { @if side == Side::Crm { "CRM (Salesforce)" } @else { "Billing (Zuora)" } }
                    dt { "stream" } dd { (stream_link(&stream, None)) }
                    dt { "audit" } dd { a href=(format!("/audit/{}", seg(&id))) { "JSON" } }
                }
            }
            h2 { "Links" }
            @if item.links.is_empty() { p.muted { "Not linked to any " (side.other().as_str()) " record." } }
            @else {
                table.links {
                    thead { tr { th { "linked to" } th { "since" } th { "made by" } th { "trace" } } }
                    tbody {
                        @for link in &item.links {
                            tr {
                                td data-label="linked to" { (entity_link(link.counterpart_side.as_str(), &kind, &link.counterpart_id)) }
                                td data-label="since" { (time(&link.since)) }
                                td data-label="made by" { (link.made_by_type) }
                                td data-label="trace" { (trace_link(&link.correlation_id.to_string())) }
                            }
                        }
                    }
                }
            }
            h2 { "Link history" }
            @if earlier_changes > 0 {
                p.muted.earlier {
                    "Latest " (item.history.len()) " changes; " (earlier_changes)
                    " earlier ones are in the stream " (stream_link(&stream, None)) "."
                }
            }
            @if item.history.is_empty() { p.muted { "No link changes recorded." } }
            @else {
                table.history {
                    thead { tr { th { "when" } th { "change" } th { "counterpart" } th { "event" } th { "trace" } } }
                    tbody {
                        @for change in &item.history {
                            tr {
                                td data-label="when" { (time(&change.at)) }
                                td data-label="change" { (format!("{:?}", change.change).to_lowercase()) }
                                td data-label="counterpart" {
                                    @if let Some(c) = &change.counterpart_id { (entity_link(side.other().as_str(), &kind, c)) }
                                    @if let Some(p) = &change.previous { " (was " (p) ")" }
                                }
                                td data-label="event" { (change.event_type) }
                                td data-label="trace" { (trace_link(&change.correlation_id.to_string())) }
                            }
                        }
                    }
                }
            }
            h2 { "Traces that touched it (" (traces.len()) ")" }
            ol.links.traces {
                @for c in &traces { li { (trace_link(&c.to_string())) } }
            }
        },
    )
}
