//! The page shell every console page shares (navigation, stylesheet, the one small script),
//! and the little pieces pages have in common: times, outcome colours, links to entities and
//! streams. maud escapes every interpolated value, so ledger content (untrusted: payloads come
//! from external systems) is always text, never markup.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use projections::projection::EntityStream;
use projections::StreamId;

/// The stylesheet, served at `/console.css`.
pub const STYLESHEET: &str = include_str!("console.css");
/// The only script: shows each time in the browser's local zone on hover.
pub const SCRIPT: &str = include_str!("console.js");

/// Sent with every page: nothing but this server's own stylesheet and script may load, no
/// framing, no sniffing.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Search,
    Failures,
    Reconcile,
}

/// A whole HTML page with `status`.
pub fn page(status: StatusCode, title: &str, section: Option<Section>, body: Markup) -> Response {
    let nav = [
        (Section::Search, "/", "Search"),
        (Section::Failures, "/failures", "Failures"),
        (Section::Reconcile, "/reconcile", "Reconciliation"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sync Ledger console" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Sync Ledger" }
                    nav aria-label="Console" {
                        @for (s, href, label) in nav {
                            @if Some(s) == section {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page that only says what went wrong (bad input, unknown id, store trouble).
pub fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        None,
        html! {
            h1 { (title) }
            p.problem role="alert" { (message) }
            p { a href="/" { "Back to search" } }
        },
    )
}

/// A time in UTC; the script puts the local time in its title.
pub fn time(at: &DateTime<Utc>) -> Markup {
    let iso = projections::envelope::format_timestamp(at);
    html! {
        time datetime=(iso) title=(format!("{} UTC", at.format("%Y-%m-%d %H:%M:%S%.3f"))) {
            (at.format("%Y-%m-%d %H:%M:%S%.3f")) " UTC"
        }
    }
}

/// A time given as the RFC 3339 text the audit chain carries.
pub fn time_text(rfc3339: &str) -> Markup {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(at) => time(&at.with_timezone(&Utc)),
        Err(_) => html! { (rfc3339) },
    }
}

/// The CSS class of an outcome status (`synced`, `deferred`, `echo suppressed`, `failed`, ...).
pub fn status_class(status: &str) -> &'static str {
    match status {
        s if s.starts_with("synced") => "ok",
        "deferred" => "wait",
        "echo suppressed" => "echo",
        "failed" | "rejected" | "unreadable" => "fail",
        "redrive" => "redrive",
        "inbound" => "inbound",
        _ => "other",
    }
}

/// A status as a coloured badge (the word is always there: colour is never the only signal).
pub fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge {}", status_class(status))) { (status) } }
}

/// Percent-encodes one path segment.
pub fn seg(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Link to a stream's page.
pub fn stream_link(stream: &str, version: Option<u64>) -> Markup {
    html! {
        a.stream href=(format!("/stream/{}", seg(stream))) {
            (stream) @if let Some(v) = version { " v" (v) }
        }
    }
}

/// The entity a stream belongs to (`crm`, `account`, id), if it is an entity stream.
pub fn entity_of(stream: &str) -> Option<(String, String, String)> {
    let stream = StreamId::parse(stream).ok()?;
    let parsed = EntityStream::parse(&stream)?;
    Some((
        parsed.side.as_str().to_string(),
        parsed.entity.to_string(),
        parsed.id.to_string(),
    ))
}

/// Link to an entity's page.
pub fn entity_link(side: &str, label: &str, id: &str) -> Markup {
    html! {
        a.entity href=(format!("/entity/{}/{}", seg(side), seg(id))) { (side) " " (label) " " (id) }
    }
}

/// Link to a trace's page.
pub fn trace_link(correlation: &str) -> Markup {
    html! { a.trace href=(format!("/trace/{}", seg(correlation))) { (correlation) } }
}

/// Pretty JSON, escaped by the caller's `html!`.
pub fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("(not serialisable: {e})"))
}
