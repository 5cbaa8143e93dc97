//! `GET /failures`: the syncs that are not done — a `SyncFailed` nothing redrove, a delivery
//! the worker gave up on, a `SyncDeferred` still waiting — filterable by projection and time;
//! `POST /failures/redrive`: the Redrive action for one trace or a selection. It runs
//! `sync_ledger::redrive`, exactly what `ledger redrive` runs, recording who (the form's `by`)
//! and why (`reason`); it needs a CSRF token this process issued.

use super::page::{self, badge, stream_link, time, trace_link, Section};
use super::scan::{scan, Flow, Window, MAX_SCANNED};
use super::{form_values, store_trouble, Shared};
use crate::cli::redrive::render as render_report;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};
use projections::correlation_view::CorrelationView;
use projections::{CorrelationId, Projection};
use std::collections::HashMap;
use sync_ledger::projector::registry::{view_name, PROJECTIONS};
use sync_ledger::redrive::{plan, redrive, Pending, RedriveRequest, Target};

/// Most traces one failures page lists (and one POST redrives).
const MAX_TRACES: usize = 50;
/// Longest `by` / `reason` accepted.
const MAX_BY: usize = 100;
const MAX_REASON: usize = 500;

/// The redrive form of one or more traces (used on the trace page too).
pub fn redrive_form(csrf: &str, correlations: &[String], label: &str) -> Markup {
    html! {
        form.redrive method="post" action="/failures/redrive" {
            input type="hidden" name="csrf" value=(csrf);
            @for c in correlations { input type="hidden" name="correlation" value=(c); }
            (who_fields())
            button type="submit" { (label) }
        }
    }
}

fn who_fields() -> Markup {
    html! {
        div.who {
            label { "Your name (recorded)" input type="text" name="by" required maxlength=(MAX_BY) autocomplete="username"; }
            label { "Reason (recorded)" input type="text" name="reason" maxlength=(MAX_REASON); }
        }
    }
}

fn pending_status(p: &Pending) -> (&'static str, String) {
    match p {
        Pending::FailedCall { last_reason, .. } => ("failed", last_reason.clone()),
        Pending::GaveUp { last_reason } => ("failed", format!("given up: {last_reason}")),
        Pending::Waiting { waiting_for } => ("deferred", format!("waiting for {waiting_for}")),
        Pending::NotRedrivable { reason } => ("failed", format!("cannot be re-run: {reason}")),
    }
}

pub async fn failures_page(
    State(console): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let now = Utc::now();
    let window = match Window::from_params(&params, now) {
        Ok(w) => w,
        Err(e) => return page::problem(StatusCode::BAD_REQUEST, "Bad filter", &e),
    };
    let projection = match params
        .get("projection")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match view_name(p) {
            Some(v) => Some(v),
            None => {
                return page::problem(
                    StatusCode::BAD_REQUEST,
                    "Bad filter",
                    &format!("projection: unknown projection {p:?}"),
                )
            }
        },
    };
    let after = params
        .get("after")
        .map(String::as_str)
        .filter(|a| !a.is_empty());
    // Traces with a failure or deferral in the window, first seen first.
    let mut traces: Vec<CorrelationId> = Vec::new();
    let end = scan(console.log.as_ref(), &window, after, |event| {
        if matches!(event.event_type.as_str(), "SyncFailed" | "SyncDeferred")
            && !traces.contains(&event.correlation_id)
        {
            traces.push(event.correlation_id);
            if traces.len() == MAX_TRACES {
                return Flow::Stop;
            }
        }
        Flow::Continue
    })
    .await;
    let end = match end {
        Ok(end) => end,
        Err(e) => return store_trouble("scanning the log", &e, e.is_transient()),
    };
    // What of each is still not done: the same plan `ledger redrive` makes.
    let mut rows: Vec<(CorrelationId, Target)> = Vec::new();
    for correlation in traces {
        match plan(console.log.as_ref(), console.views.as_ref(), &correlation).await {
            Ok((_, targets)) => rows.extend(
                targets
                    .into_iter()
                    .filter(|t| projection.is_none_or(|p| t.projection == p))
                    .map(|t| (correlation, t)),
            ),
            Err(e) => return store_trouble("planning a trace's unfinished syncs", &e, false),
        }
    }
    let csrf = console.csrf.issue(now);
    let value = |k: &str| params.get(k).cloned().unwrap_or_default();
    let more = end.resume_after.as_ref().map(|key| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for k in ["projection", "since", "until"] {
            q.append_pair(k, &value(k));
        }
        q.append_pair("after", key);
        format!("/failures?{}", q.finish())
    });
    page::page(
        StatusCode::OK,
        "Failures",
        Some(Section::Failures),
        html! {
            h1 { "Unfinished syncs" }
            form.filters method="get" action="/failures" {
                label { "Projection"
                    select name="projection" {
                        option value="" { "all" }
                        @for (_, view) in PROJECTIONS.iter().filter(|(_, v)| *v != CorrelationView::NAME) {
                            @if projection == Some(*view) { option value=(view) selected { (view) } }
                            @else { option value=(view) { (view) } }
                        }
                    }
                }
                label { "Since (date, time, or 24h / 7d)" input type="text" name="since" value=(value("since")) placeholder="7d"; }
                label { "Until" input type="text" name="until" value=(value("until")) placeholder="now"; }
                button.secondary type="submit" { "Filter" }
            }
            p.muted {
                "Looked at " (end.scanned) " event(s) recorded since " (time(&window.since))
                @if let Some(u) = window.until { " until " (time(&u)) }
                "."
                @if let Some(more) = &more { " " a href=(more) { "Look further (at most " (MAX_SCANNED) " events a page)" } }
            }
            @if let Err(why) = &console.redrive {
                p.problem role="alert" { "Redrive is unavailable: " (why) }
            }
            @if rows.is_empty() {
                p.notice { "Nothing unfinished in this window: every failed or deferred sync was redriven or resolved." }
            } @else {
                form.redrive method="post" action="/failures/redrive" {
                    input type="hidden" name="csrf" value=(csrf);
                    (who_fields())
                    table.failures {
                        thead { tr { th { "select" } th { "trace" } th { "event" } th { "projection" } th { "status" } th { "since" } th { "action" } } }
                        tbody {
                            @for (correlation, t) in &rows {
                                @let (status, why) = pending_status(&t.pending);
                                tr data-correlation=(correlation) {
                                    td data-label="select" { input type="checkbox" name="correlation" value=(correlation) aria-label=(format!("select trace {correlation}")); }
                                    td data-label="trace" { (trace_link(&correlation.to_string())) }
                                    td data-label="event" { (t.cause.event_type) " " (stream_link(t.cause.stream_id.as_str(), Some(t.cause.version))) }
                                    td data-label="projection" { (t.projection) " " code { (t.what()) } }
                                    td data-label="status" { (badge(status)) " " span.reason { (why) } }
                                    td data-label="since" { (time(&t.cause.recorded_at)) }
                                    td data-label="action" { button type="submit" name="only" value=(correlation) { "Redrive" } }
                                }
                            }
                        }
                    }
                    p { button type="submit" { "Redrive selected" } }
                }
            }
        },
    )
}

fn refused(status: StatusCode, message: &str) -> Response {
    page::problem(status, "Redrive refused", message)
}

/// Checks a free-text field: trimmed, bounded, no control characters.
fn text_field(
    field: &str,
    value: Option<&String>,
    max: usize,
    required: bool,
) -> Result<Option<String>, String> {
    let value = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    match value {
        None if required => Err(format!(
            "{field}: is required (who asks for the redrive is recorded)"
        )),
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(format!("{field}: longer than {max} characters")),
        Some(v) if v.chars().any(char::is_control) => {
            Err(format!("{field}: must not contain control characters"))
        }
        Some(v) => Ok(Some(v)),
    }
}

pub async fn redrive_action(State(console): State<Shared>, body: String) -> Response {
    let one = |k: &str| form_values(&body, k).into_iter().next();
    let csrf = one("csrf").unwrap_or_default();
    if !console.csrf.verify(&csrf, Utc::now()) {
        return refused(
            StatusCode::FORBIDDEN,
            "csrf: missing or not issued by this console (it may have restarted): reload the page and submit again",
        );
    }
    let by = match text_field("by", one("by").as_ref(), MAX_BY, true) {
        Ok(by) => by.unwrap_or_default(),
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let reason = match text_field("reason", one("reason").as_ref(), MAX_REASON, false) {
        Ok(reason) => reason,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    // A row's own button sends `only`; "Redrive selected" sends the ticked boxes.
    let raw = match one("only") {
        Some(only) => vec![only],
        None => form_values(&body, "correlation"),
    };
    if raw.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "correlation: select at least one trace",
        );
    }
    if raw.len() > MAX_TRACES {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!("correlation: at most {MAX_TRACES} traces at once"),
        );
    }
    let mut correlations = Vec::new();
    for r in &raw {
        match CorrelationId::parse(r.trim()) {
            Ok(c) if !correlations.contains(&c) => correlations.push(c),
            Ok(_) => {}
            Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("correlation: {r:?}: {e}")),
        }
    }
    let effects = match &console.redrive {
        Ok(effects) => effects.clone(),
        Err(why) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("redrive is not configured: {why}"),
            )
        }
    };
    let mut results: Vec<(CorrelationId, Result<String, String>, bool)> = Vec::new();
    for correlation in correlations {
        let request = RedriveRequest {
            correlation,
            requested_by: by.clone(),
            reason: reason.clone(),
            dry_run: false,
            projection: None,
        };
        match redrive(
            console.log.clone(),
            console.views.clone(),
            effects.clone(),
            &request,
        )
        .await
        {
            Ok(report) => {
                let failed = report.has_failures();
                results.push((correlation, Ok(render_report(&report)), failed));
            }
            Err(e) => results.push((correlation, Err(e.to_string()), true)),
        }
    }
    let any_failed = results.iter().any(|(_, _, failed)| *failed);
    page::page(
        StatusCode::OK,
        "Redrive",
        Some(Section::Failures),
        html! {
            h1 { "Redrive" }
            p { "Requested by " strong { (by) } @if let Some(r) = &reason { ": " (r) } }
            @if any_failed { p.problem role="alert" { "Some syncs failed again; each failure is recorded in its trace." } }
            @else { p.notice { "Every re-run finished." } }
            @for (correlation, outcome, failed) in &results {
                section.card.redriven data-failed=(failed) {
                    h2 { "Trace " (trace_link(&correlation.to_string())) }
                    @match outcome {
                        Ok(text) => pre { (text) },
                        Err(e) => p.problem { (e) },
                    }
                }
            }
            p { a href="/failures" { "Back to failures" } }
        },
    )
}
