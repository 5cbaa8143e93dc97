//! `GET /` and `GET /search?q=`: one box for a correlation id, a CRM or Billing id, or an
//! account name. A correlation id goes straight to its trace; an entity id lists the entity
//! with every trace that touched it (the correlation view resolves it, as `ledger audit`
//! does); a name lists the accounts whose last known name contains it.

use super::page::{self, entity_link, time, trace_link, Section};
use super::{store_trouble, Shared};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use projections::account_sync::AccountView;
use projections::correlation_view::{link_key, CorrelationView, LinkItem, TRACES_PAGE};
use projections::{Projection, Side};
use std::collections::HashMap;
use sync_ledger::audit::AuditId;
use sync_ledger::views::{ViewError, ViewKey, ViewStore};

/// Most accounts a name search lists.
const MAX_NAME_MATCHES: usize = 25;
/// Most traces listed per entity in the results (the entity page lists them all).
const TRACES_PER_ENTITY: usize = 10;

fn form(q: &str) -> Markup {
    html! {
        form.search method="get" action="/search" role="search" {
            label for="q" class="muted" { "Correlation id, CRM id, Billing id or account name" }
            input #q type="search" name="q" value=(q) required
                placeholder="e.g. 001Dn00000ABC or Acme";
            button type="submit" { "Search" }
        }
    }
}

/// One entity found: its correlation view item.
pub struct Found {
    pub side: Side,
    pub id: String,
    pub item: LinkItem,
    /// The account name, when the account view knows it.
    pub name: Option<String>,
}

/// The correlation view item of `id` on `side`.
pub async fn link_item(
    views: &dyn ViewStore,
    side: Side,
    id: &str,
) -> Result<Option<LinkItem>, ViewError> {
    let Ok(key) = ViewKey::new(CorrelationView::NAME, &link_key(side, id)) else {
        return Ok(None);
    };
    Ok(views
        .get(&key)
        .await?
        .and_then(|item| serde_json::from_value(item.state).ok()))
}

/// Accounts whose last seen name contains `needle` (case-insensitive), at most
/// `MAX_NAME_MATCHES`. It lists the account view: fine for an operator's query, and the
/// reason the limit exists.
async fn by_name(
    views: &dyn ViewStore,
    needle: &str,
) -> Result<Vec<(Side, String, String)>, ViewError> {
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    for item in views
        .list(projections::account_sync::AccountSync::NAME)
        .await?
    {
        let Ok(view) = serde_json::from_value::<AccountView>(item.state) else {
            continue;
        };
        let Some(name) = view.last_seen.map(|f| f.name) else {
            continue;
        };
        if !name.to_lowercase().contains(&needle) {
            continue;
        }
        let Some((side, id)) = item.key.key().split_once('#') else {
            continue;
        };
        let side = match side {
            "crm" => Side::Crm,
            "billing" => Side::Billing,
            _ => continue,
        };
        found.push((side, id.to_string(), name));
        if found.len() == MAX_NAME_MATCHES {
            break;
        }
    }
    Ok(found)
}

pub async fn search_page(
    State(console): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = params
        .get("q")
        .map(|q| q.trim())
        .unwrap_or_default()
        .to_string();
    if q.is_empty() {
        return page::page(
            StatusCode::OK,
            "Search",
            Some(Section::Search),
            html! {
                h1 { "Search the ledger" }
                (form(""))
                p.muted { "A correlation id opens its trace; a CRM or Billing id opens every trace that touched the record; a name finds accounts." }
            },
        );
    }
    let id = match AuditId::parse(&q) {
        Ok(id) => id,
        Err(e) => {
            return results(
                StatusCode::BAD_REQUEST,
                &q,
                html! { p.problem role="alert" { "q: " (e.to_string()) } },
            )
        }
    };
    let entity = match id {
        AuditId::Correlation(correlation) => {
            return match console.log.by_correlation(&correlation).await {
                Ok(events) if !events.is_empty() => {
                    Redirect::to(&format!("/trace/{correlation}")).into_response()
                }
                Ok(_) => results(
                    StatusCode::NOT_FOUND,
                    &q,
                    html! { p.problem role="alert" { "unknown correlation id " (correlation) ": no event in the ledger carries it" } },
                ),
                Err(e) => store_trouble("reading the trace", &e, e.is_transient()),
            };
        }
        AuditId::Entity(entity) => entity,
    };
    let mut found: Vec<Found> = Vec::new();
    for side in [Side::Crm, Side::Billing] {
        match link_item(console.views.as_ref(), side, &entity).await {
            Ok(Some(item)) => found.push(Found {
                side,
                id: entity.clone(),
                item,
                name: None,
            }),
            Ok(None) => {}
            Err(e) => return store_trouble("reading the correlation view", &e, e.is_transient()),
        }
    }
    let named = match by_name(console.views.as_ref(), &entity).await {
        Ok(named) => named,
        Err(e) => return store_trouble("reading the account view", &e, e.is_transient()),
    };
    for (side, id, name) in named {
        if let Some(existing) = found.iter_mut().find(|f| f.side == side && f.id == id) {
            existing.name = Some(name);
            continue;
        }
        match link_item(console.views.as_ref(), side, &id).await {
            Ok(item) => found.push(Found {
                side,
                id,
                item: item.unwrap_or_default(),
                name: Some(name),
            }),
            Err(e) => return store_trouble("reading the correlation view", &e, e.is_transient()),
        }
    }
    if found.is_empty() {
        return results(
            StatusCode::NOT_FOUND,
            &q,
            html! { p.problem role="alert" { "Nothing in the ledger carries " code { (q) } ": it is not a correlation id, a CRM or Billing id the correlation view knows, or part of an account name." } },
        );
    }
    results(
        StatusCode::OK,
        &q,
        html! {
            p.muted { (found.len()) " record(s) match." }
            @for f in &found { (found_card(f)) }
        },
    )
}

fn found_card(f: &Found) -> Markup {
    let kind = f.item.entity.as_deref().unwrap_or("account");
    // The item holds the latest traces; full pages of older ones count toward the total
    // (an id repeated across pages counts twice: the entity page reads and dedupes them).
    let traces = &f.item.correlation_ids;
    let total_traces = f.item.trace_pages as usize * TRACES_PAGE + traces.len();
    html! {
        section.card.result {
            h2 { (entity_link(f.side.as_str(), kind, &f.id)) }
            dl.facts {
                @if let Some(name) = &f.name { dt { "name" } dd { (name) } }
                dt { "linked to" }
                dd {
                    @if f.item.links.is_empty() { span.muted { "not linked" } }
                    @for link in &f.item.links {
                        (entity_link(link.counterpart_side.as_str(), kind, &link.counterpart_id))
                        " since " (time(&link.since)) " "
                    }
                }
                dt { "traces" }
                dd {
                    (total_traces)
                    @if total_traces > TRACES_PER_ENTITY { " (latest " (traces.len().min(TRACES_PER_ENTITY)) " shown; all on the entity page)" }
                }
            }
            ul.links.traces {
                @for c in traces.iter().rev().take(TRACES_PER_ENTITY) {
                    li { (trace_link(&c.to_string())) }
                }
            }
        }
    }
}

fn results(status: StatusCode, q: &str, body: Markup) -> Response {
    page::page(
        status,
        &format!("Search: {q}"),
        Some(Section::Search),
        html! {
            h1 { "Search" }
            (form(q))
            (body)
        },
    )
}
