//! `GET /stream/{stream id}[?from=N]`: one stream's events in version order, a page at a time,
//! each with its trace and raw envelope.

use super::page::{self, entity_link, entity_of, pretty, seg, time, trace_link};
use super::{store_trouble, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use projections::StreamId;
use std::collections::HashMap;

/// Events shown per page.
const PAGE: usize = 100;

pub async fn stream_page(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let stream = match StreamId::parse(&id) {
        Ok(stream) => stream,
        Err(e) => {
            return page::problem(
                StatusCode::BAD_REQUEST,
                "Bad stream id",
                &format!("stream id: {e}"),
            )
        }
    };
    let from = match params.get("from").map(|f| f.parse::<u64>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            return page::problem(
                StatusCode::BAD_REQUEST,
                "Bad page",
                "from: must be a version number, 1 or more",
            )
        }
    };
    let mut events = match console.log.read_stream(&stream, from).await {
        Ok(events) => events,
        Err(e) => return store_trouble("reading the stream", &e, e.is_transient()),
    };
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let next = events.last().map(|e| e.version + 1);
    page::page(
        StatusCode::OK,
        &format!("Stream {stream}"),
        None,
        html! {
            h1 { "Stream " code { (stream.as_str()) } }
            @if let Some((side, kind, eid)) = entity_of(stream.as_str()) {
                p { "Events of " (entity_link(&side, &kind, &eid)) "." }
            }
            @if events.is_empty() { p.muted { "No events from version " (from) "." } }
            @else {
                table.events {
                    thead { tr { th { "v" } th { "recorded" } th { "event" } th { "trace" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td data-label="version" { (e.version) }
                                td data-label="recorded" { (time(&e.recorded_at)) }
                                td data-label="event" {
                                    (e.event_type)
                                    details { summary { "raw envelope" } pre { code { (pretty(e)) } } }
                                }
                                td data-label="trace" { (trace_link(&e.correlation_id.to_string())) }
                            }
                        }
                    }
                }
            }
            @if let (true, Some(next)) = (more, next) {
                p { a href=(format!("/stream/{}?from={next}", seg(stream.as_str()))) { "Later events" } }
            }
        },
    )
}
