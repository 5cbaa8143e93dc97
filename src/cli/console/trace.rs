//! `GET /trace/{correlation id}`: one trace as a timeline, grouped the way a person reads it:
//! each inbound event, the decisions it led to (deferred, echo suppressed), the external calls
//! (one group per call step: attempts, how long after its cause, final outcome) and the
//! outcome events of each call; every event's raw envelope in a `<details>`; links to every
//! entity and stream touched; the unfinished syncs with a Redrive button.

use super::failures::redrive_form;
use super::page::{
    self, badge, entity_link, entity_of, pretty, status_class, stream_link, time, time_text,
};
use super::{store_trouble, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use projections::{CorrelationId, EventId, RecordedEvent};
use std::collections::HashMap;
use sync_ledger::audit::{build_chain, Node};
use sync_ledger::redrive::plan;

/// Children of one event, as the timeline groups them.
enum Group<'a> {
    /// Every outcome of one external call (its step), in recorded order.
    Call {
        step: &'a str,
        outcomes: Vec<&'a Node>,
    },
    /// An event that is not a call's outcome: a decision (deferral, echo), a redrive, ...
    Event(&'a Node),
}

fn groups(children: &[Node]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for child in children {
        match child.call.as_deref() {
            Some(step) => {
                let existing = out.iter_mut().find_map(|g| match g {
                    Group::Call { step: s, outcomes } if *s == step => Some(outcomes),
                    _ => None,
                });
                match existing {
                    Some(outcomes) => outcomes.push(child),
                    None => out.push(Group::Call {
                        step,
                        outcomes: vec![child],
                    }),
                }
            }
            None => out.push(Group::Event(child)),
        }
    }
    out
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `+12 ms` / `+1.3 s` from `from` to `to`.
fn after(from: &str, to: &str) -> Option<String> {
    let ms = (parse_time(to)? - parse_time(from)?).num_milliseconds();
    Some(if ms.abs() < 1000 {
        format!("+{ms} ms")
    } else {
        format!("+{:.1} s", ms as f64 / 1000.0)
    })
}

struct Render<'a> {
    raw: HashMap<EventId, &'a RecordedEvent>,
}

impl Render<'_> {
    fn event(&self, kind: &str, node: &Node, parent_at: Option<&str>) -> Markup {
        let class = status_class(&node.status);
        html! {
            li class=(format!("step {kind} {class}")) data-event-type=(node.event_type) {
                (self.head(kind, node, parent_at))
                @if !node.children.is_empty() { (self.children(node)) }
            }
        }
    }

    fn head(&self, kind: &str, node: &Node, parent_at: Option<&str>) -> Markup {
        html! {
            div.step-head {
                span.kind { (kind) }
                span.type { (node.event_type) }
                (badge(&node.status))
                (time_text(&node.recorded_at))
                @if let Some(d) = parent_at.and_then(|p| after(p, &node.recorded_at)) {
                    span.dur title="after its cause was recorded" { (d) }
                }
                (stream_link(&node.stream_id, Some(node.version)))
            }
            @if !node.detail.is_empty() { p.detail { (node.detail) } }
            @if let Some(raw) = self.raw.get(&node.event_id) {
                details {
                    summary { "raw envelope" }
                    pre { code { (pretty(raw)) } }
                }
            }
        }
    }

    fn children(&self, node: &Node) -> Markup {
        html! {
            ol.steps {
                @for group in groups(&node.children) {
                    @match group {
                        Group::Event(child) => {
                            @let kind = if child.status == "deferred" || child.status == "echo suppressed" { "decision" } else { "event" };
                            (self.event(kind, child, Some(&node.recorded_at)))
                        }
                        Group::Call { step, outcomes } => (self.call(step, &outcomes, node)),
                    }
                }
            }
        }
    }

    fn call(&self, step: &str, outcomes: &[&Node], cause: &Node) -> Markup {
        // The call's verdict is its last outcome on the cause's own stream (mirrors repeat it).
        let last = outcomes
            .iter()
            .rev()
            .find(|n| !n.status.contains("mirror"))
            .or(outcomes.last())
            .copied();
        let status = last.map(|n| n.status.as_str()).unwrap_or("recorded");
        let attempts: u64 = outcomes
            .iter()
            .filter(|n| !n.status.contains("mirror"))
            .map(|n| {
                self.raw
                    .get(&n.event_id)
                    .and_then(|e| e.payload.get("attempts"))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(1)
            })
            .sum();
        let took = last.and_then(|n| after(&cause.recorded_at, &n.recorded_at));
        html! {
            li class=(format!("step call {}", status_class(status))) data-call=(step) {
                div.step-head {
                    span.kind { "call" }
                    span.type { (step) }
                    (badge(status))
                    span.attempts { "attempts: " (attempts) }
                    @if let Some(took) = took { span.dur title="from its cause to its last outcome" { "took " (took.trim_start_matches('+')) } }
                }
                ol.steps {
                    @for outcome in outcomes { (self.event("outcome", outcome, Some(&cause.recorded_at))) }
                }
            }
        }
    }
}

/// Every entity a trace touched: its streams' entities and the ids its outcomes name.
fn entities(events: &[RecordedEvent]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut add = |side: &str, kind: &str, id: &str| {
        if !out.iter().any(|(s, _, i)| s == side && i == id) {
            out.push((side.to_string(), kind.to_string(), id.to_string()));
        }
    };
    // Streams name their entity's kind exactly; payload ids come second.
    for event in events {
        if let Some((side, kind, id)) = entity_of(event.stream_id.as_str()) {
            add(&side, &kind, &id);
        }
    }
    for event in events {
        // An inbound record's account (a CRM order's account, a subscription's account).
        if let (Some((side, kind, _)), Some(account)) = (
            entity_of(event.stream_id.as_str()),
            event.payload.get("account_id").and_then(|v| v.as_str()),
        ) {
            if kind != "account" {
                add(&side, "account", account);
            }
        }
        let kind = event
            .payload
            .get("projection")
            .and_then(|p| p.as_str())
            .unwrap_or("record");
        for (side, field) in [("crm", "crm_id"), ("billing", "billing_id")] {
            if let Some(id) = event.payload.get(field).and_then(|v| v.as_str()) {
                add(side, kind, id);
            }
        }
    }
    out
}

pub async fn trace_page(State(console): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(correlation) = CorrelationId::parse(id.trim()) else {
        // Not a correlation id: let the search resolve it (an entity id, a name).
        let q: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        return Redirect::to(&format!("/search?q={q}")).into_response();
    };
    let events = match console.log.by_correlation(&correlation).await {
        Ok(events) => events,
        Err(e) => return store_trouble("reading the trace", &e, e.is_transient()),
    };
    if events.is_empty() {
        return page::problem(
            StatusCode::NOT_FOUND,
            "Unknown trace",
            &format!("unknown correlation id {correlation}: no event in the ledger carries it"),
        );
    }
    let pending = match plan(console.log.as_ref(), console.views.as_ref(), &correlation).await {
        Ok((_, targets)) => targets,
        Err(e) => return store_trouble("planning the trace's unfinished syncs", &e, false),
    };
    let chain = build_chain(correlation, events.clone());
    let render = Render {
        raw: events.iter().map(|e| (e.event_id, e)).collect(),
    };
    let mut streams: Vec<&str> = Vec::new();
    for e in &events {
        if !streams.contains(&e.stream_id.as_str()) {
            streams.push(e.stream_id.as_str());
        }
    }
    let touched = entities(&events);
    let first = events.iter().map(|e| e.recorded_at).min();
    let last = events.iter().map(|e| e.recorded_at).max();
    let csrf = console.csrf.issue(Utc::now());
    page::page(
        StatusCode::OK,
        &format!("Trace {correlation}"),
        None,
        html! {
            h1 { "Trace " code { (correlation) } }
            section.card {
                dl.facts {
                    dt { "events" } dd { (chain.events) }
                    @if let (Some(first), Some(last)) = (first, last) {
                        dt { "recorded" } dd { (time(&first)) " … " (time(&last)) }
                    }
                    dt { "unfinished syncs" }
                    dd {
                        @if pending.is_empty() { span.badge.ok { "none" } }
                        @else { span.badge.fail { (pending.len()) " pending" } }
                    }
                }
                @if !pending.is_empty() {
                    ul {
                        @for t in &pending {
                            li { (t.cause.event_type) " " (stream_link(t.cause.stream_id.as_str(), Some(t.cause.version))) " — " (t.projection) " " (t.what()) }
                        }
                    }
                    (redrive_form(&csrf, &[correlation.to_string()], "Redrive this trace"))
                }
            }
            h2 { "Timeline" }
            ol.timeline {
                @for root in &chain.roots {
                    @let kind = if root.status == "inbound" { "inbound" } else { "event" };
                    (render.event(kind, root, None))
                }
            }
            h2 { "Touched" }
            section.card {
                h3 { "Entities" }
                ul.links.entities {
                    @for (side, kind, id) in &touched { li { (entity_link(side, kind, id)) } }
                }
                h3 { "Streams" }
                ul.links.streams {
                    @for s in &streams { li { (stream_link(s, None)) } }
                }
            }
        },
    )
}
