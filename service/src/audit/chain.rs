//! The causal tree of one correlation id: each event hangs under the event its
//! `causation_id` names (roots are the inbound events, or events whose cause is outside the
//! trace), siblings in recorded order. Pure: built from the events given, nothing read.

use projections::catalogue::DomainEvent;
use projections::envelope::format_timestamp;
use projections::{CorrelationId, EventId, RecordedEvent, Source};
use serde::Serialize;
use std::collections::HashMap;

/// One event of a chain, with what it means for the sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub event_id: EventId,
    pub event_type: String,
    pub stream_id: String,
    pub version: u64,
    pub source: Source,
    /// `inbound`, `synced`, `failed`, `deferred`, `echo suppressed`, `rejected`, ...
    pub status: String,
    /// The external call an outcome reports (the decision's step, e.g. `billing-create-account`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// A one-line description: the values or ids involved, or the reason.
    pub detail: String,
    pub occurred_at: String,
    pub recorded_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
    pub children: Vec<Node>,
}

/// The tree of one correlation id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    pub correlation_id: CorrelationId,
    pub events: usize,
    pub first_recorded_at: String,
    pub last_recorded_at: String,
    pub roots: Vec<Node>,
}

/// Builds the tree of `events` (all of one correlation id, any order).
pub fn build_chain(correlation_id: CorrelationId, mut events: Vec<RecordedEvent>) -> Chain {
    events.sort_by_key(RecordedEvent::global_order_key);
    let present: HashMap<EventId, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id, i))
        .collect();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        // A parent recorded later than its child cannot happen in one ledger, but a cause that
        // is missing or points at itself must not lose the event: it becomes a root.
        let parent = event
            .causation_id
            .and_then(|c| present.get(&c).copied())
            .filter(|&p| p != i);
        children.entry(parent).or_default().push(i);
    }
    let mut placed = vec![false; events.len()];
    let mut roots = grow(None, &events, &children, &mut placed);
    // Events caught in a causation cycle are unreachable from any root: show them as roots.
    for i in 0..events.len() {
        if !placed[i] {
            placed[i] = true;
            let mut node = node_of(&events[i]);
            node.children = grow(Some(i), &events, &children, &mut placed);
            roots.push(node);
        }
    }
    Chain {
        correlation_id,
        events: events.len(),
        first_recorded_at: events
            .first()
            .map(|e| format_timestamp(&e.recorded_at))
            .unwrap_or_default(),
        last_recorded_at: events
            .last()
            .map(|e| format_timestamp(&e.recorded_at))
            .unwrap_or_default(),
        roots,
    }
}

fn grow(
    parent: Option<usize>,
    events: &[RecordedEvent],
    children: &HashMap<Option<usize>, Vec<usize>>,
    placed: &mut [bool],
) -> Vec<Node> {
    let mut out = Vec::new();
    for &i in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
        if placed[i] {
            continue;
        }
        placed[i] = true;
        let mut node = node_of(&events[i]);
        node.children = grow(Some(i), events, children, placed);
        out.push(node);
    }
    out
}

fn node_of(event: &RecordedEvent) -> Node {
    let (status, detail) = describe(event);
    Node {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        stream_id: event.stream_id.to_string(),
        version: event.version,
        source: event.source,
        status,
        call: call_step(event),
        detail,
        occurred_at: format_timestamp(&event.occurred_at),
        recorded_at: format_timestamp(&event.recorded_at),
        causation_id: event.causation_id,
        children: Vec::new(),
    }
}

/// Outcomes are deduplicated by `"<cause id>:<step>[:mirror|:failed]"`: the step names the
/// call the decision made.
fn call_step(event: &RecordedEvent) -> Option<String> {
    if event.source != Source::System
        || event.causation_id.is_none()
        // Decisions recorded without a call: a deferral, a suppressed echo, a redrive request.
        || matches!(
            event.event_type.as_str(),
            "RedriveRequested" | "SyncDeferred" | "EchoSuppressed"
        )
    {
        return None;
    }
    let (_, step) = event.source_event_id.as_str().split_once(':')?;
    // A redrive's failure carries its run id after the step (`<step>:failed:redrive:<run>`).
    let step = step.split(":failed:redrive:").next().unwrap_or(step);
    let step = step
        .trim_end_matches(":mirror")
        .trim_end_matches(":failed")
        .to_string();
    (!step.is_empty()).then_some(step)
}

fn ids(crm: &Option<String>, billing: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(id) = crm {
        parts.push(format!("crm {id}"));
    }
    if let Some(id) = billing {
        parts.push(format!("billing {id}"));
    }
    parts.join(" <-> ")
}

fn describe(event: &RecordedEvent) -> (String, String) {
    let inbound = matches!(event.source, Source::Crm | Source::Billing);
    let domain = match event.decode() {
        Ok(domain) => domain,
        Err(e) => return ("unreadable".to_string(), e.to_string()),
    };
    let (status, detail) = match &domain {
        DomainEvent::AccountSynced(o)
        | DomainEvent::OrderSynced(o)
        | DomainEvent::ProductSynced(o) => (
            if o.mirror {
                "synced (mirror)"
            } else {
                "synced"
            },
            format!(
                "{} {} {}",
                o.direction,
                o.action,
                ids(&o.crm_id, &o.billing_id)
            ),
        ),
        DomainEvent::SyncFailed(f) => (
            "failed",
            format!(
                "{} after {} attempts: {}",
                f.projection, f.attempts, f.reason
            ),
        ),
        DomainEvent::SyncDeferred(d) => (
            "deferred",
            format!("{} waits for {}: {}", d.projection, d.waiting_for, d.reason),
        ),
        DomainEvent::EchoSuppressed(e) => {
            ("echo suppressed", format!("{}: {}", e.projection, e.reason))
        }
        DomainEvent::IngestRejected(r) => (
            "rejected",
            match &r.field {
                Some(field) => format!("{}: {field}: {}", r.channel, r.reason),
                None => format!("{}: {}", r.channel, r.reason),
            },
        ),
        DomainEvent::TokenRotated(t) => (
            "rotated",
            format!(
                "{} token -> {} v{} ({})",
                t.service, t.parameter_name, t.parameter_version, t.fingerprint
            ),
        ),
        DomainEvent::RedriveRequested(r) => (
            "redrive",
            format!(
                "{} {} re-run by {}{}",
                r.projection,
                r.step.as_deref().unwrap_or("sync"),
                r.requested_by,
                r.reason
                    .as_deref()
                    .map(|why| format!(": {why}"))
                    .unwrap_or_default()
            ),
        ),
        DomainEvent::TokenRotationFailed(t) => {
            ("failed", format!("{} token: {}", t.service, t.reason))
        }
        _ if inbound => ("inbound", inbound_detail(&event.payload)),
        _ => ("recorded", String::new()),
    };
    (status.to_string(), detail)
}

/// The fields a person recognises an inbound record by (the payload stays in `--json` via
/// `ledger events`; the chain shows a summary).
fn inbound_detail(payload: &serde_json::Value) -> String {
    [
        "name",
        "status",
        "sku",
        "account_id",
        "order_id",
        "subscription_number",
        "product_id",
    ]
    .iter()
    .filter_map(|field| {
        payload
            .get(*field)
            .and_then(serde_json::Value::as_str)
            .map(|v| format!("{field}={v}"))
    })
    .take(3)
    .collect::<Vec<_>>()
    .join(" ")
}
