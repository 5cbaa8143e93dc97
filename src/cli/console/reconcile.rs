//! `GET /reconcile`: reconciliation runs and the drift each found, read from the
//! `system-reconcile-<run id>` streams (`ReconciliationStarted`, `DriftDetected`,
//! `ReconciliationCompleted`) by stream prefix, so the page shows runs as soon as
//! `ledger reconcile` records them; until then it says no run exists.

use super::page::{self, pretty, stream_link, time, trace_link, Section};
use super::scan::{scan, Flow, Window};
use super::{store_trouble, Shared};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::html;
use projections::RecordedEvent;
use std::collections::HashMap;

/// The stream prefix of reconciliation runs.
pub const RUN_STREAM_PREFIX: &str = "system-reconcile-";
/// Most runs one page lists, and drift rows kept per run.
const MAX_RUNS: usize = 20;
const MAX_DRIFT_ROWS: usize = 100;

/// One run as its events tell it.
struct Run {
    stream: String,
    correlation: String,
    started: Option<DateTime<Utc>>,
    completed: Option<RecordedEvent>,
    drift_count: usize,
    drift: Vec<RecordedEvent>,
}

pub async fn reconcile_page(
    State(console): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let window = match Window::from_params(&params, Utc::now()) {
        Ok(w) => w,
        Err(e) => return page::problem(StatusCode::BAD_REQUEST, "Bad filter", &e),
    };
    let mut runs: Vec<Run> = Vec::new();
    let end = scan(console.log.as_ref(), &window, None, |event| {
        let stream = event.stream_id.as_str();
        if !stream.starts_with(RUN_STREAM_PREFIX) {
            return Flow::Continue;
        }
        let index = match runs.iter().position(|r| r.stream == stream) {
            Some(i) => i,
            None if runs.len() == MAX_RUNS => return Flow::Stop,
            None => {
                runs.push(Run {
                    stream: stream.to_string(),
                    correlation: event.correlation_id.to_string(),
                    started: None,
                    completed: None,
                    drift_count: 0,
                    drift: Vec::new(),
                });
                runs.len() - 1
            }
        };
        let run = &mut runs[index];
        match event.event_type.as_str() {
            "ReconciliationStarted" => run.started = Some(event.recorded_at),
            "ReconciliationCompleted" => run.completed = Some(event.clone()),
            "DriftDetected" => {
                run.drift_count += 1;
                if run.drift.len() < MAX_DRIFT_ROWS {
                    run.drift.push(event.clone());
                }
            }
            _ => {}
        }
        Flow::Continue
    })
    .await;
    if let Err(e) = end {
        return store_trouble("scanning the log", &e, e.is_transient());
    }
    page::page(
        StatusCode::OK,
        "Reconciliation",
        Some(Section::Reconcile),
        html! {
            h1 { "Reconciliation runs" }
            p.muted { "Runs recorded since " (time(&window.since)) " on " code { (RUN_STREAM_PREFIX) "<run id>" } " streams." }
            @if runs.is_empty() {
                p.notice.no-runs { "No reconciliation run exists in this window. Runs appear here once `ledger reconcile` records them." }
            }
            @for run in runs.iter().rev() {
                section.card.run {
                    h2 { (stream_link(&run.stream, None)) }
                    dl.facts {
                        dt { "trace" } dd { (trace_link(&run.correlation)) }
                        dt { "started" } dd { @match run.started { Some(t) => (time(&t)), None => "—" } }
                        dt { "completed" } dd { @match &run.completed { Some(e) => (time(&e.recorded_at)), None => span.badge.wait { "not completed" } } }
                        dt { "drift found" } dd { (run.drift_count) }
                    }
                    @if let Some(done) = &run.completed {
                        details { summary { "completion summary" } pre { code { (pretty(&done.payload)) } } }
                    }
                    @if !run.drift.is_empty() {
                        table.drift {
                            thead { tr { th { "recorded" } th { "drift" } } }
                            tbody {
                                @for d in &run.drift {
                                    tr {
                                        td data-label="recorded" { (time(&d.recorded_at)) }
                                        td data-label="drift" { pre { code { (pretty(&d.payload)) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
