//! The audit report as a person reads it: a header per correlation id, then one table row
//! per event with the causal tree drawn in the event column. Pure string building.

use super::chain::{Chain, Node};
use super::query::{AuditReport, Resolved};

/// The whole report as text.
pub fn render_text(report: &AuditReport) -> String {
    let mut out = String::new();
    if let Resolved::EntityId { matches } = &report.resolved {
        for m in matches {
            let linked = if m.linked_to.is_empty() {
                "not linked".to_string()
            } else {
                format!(
                    "linked to {} {}",
                    m.side.other().as_str(),
                    m.linked_to.join(", ")
                )
            };
            out.push_str(&format!(
                "{} {} {} ({linked}): {} correlation id(s)\n",
                m.side.as_str(),
                m.entity.as_deref().unwrap_or("record"),
                m.id,
                m.correlation_ids.len()
            ));
        }
        out.push('\n');
    }
    for (i, chain) in report.chains.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&render_chain(chain));
    }
    out
}

struct Row {
    time: String,
    event: String,
    stream: String,
    status: String,
    detail: String,
}

/// One correlation id: header line and the tree as a table.
pub fn render_chain(chain: &Chain) -> String {
    let mut rows = Vec::new();
    for (i, root) in chain.roots.iter().enumerate() {
        flatten(root, "", i + 1 == chain.roots.len(), true, &mut rows);
    }
    let day = chain.first_recorded_at.get(..10).unwrap_or("");
    let mut out = format!(
        "correlation {}: {} events, {day} {} .. {} UTC\n",
        chain.correlation_id,
        chain.events,
        clock(&chain.first_recorded_at),
        clock(&chain.last_recorded_at)
    );
    let header = Row {
        time: "TIME".into(),
        event: "EVENT".into(),
        stream: "STREAM VERSION".into(),
        status: "STATUS".into(),
        detail: "DETAIL".into(),
    };
    let width = |f: fn(&Row) -> &String| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (wt, we, ws, wst) = (
        width(|r| &r.time),
        width(|r| &r.event),
        width(|r| &r.stream),
        width(|r| &r.status),
    );
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line = format!(
            "  {:<wt$}  {:<we$}  {:<ws$}  {:<wst$}  {}",
            row.time, row.event, row.stream, row.status, row.detail
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn flatten(node: &Node, indent: &str, last: bool, root: bool, rows: &mut Vec<Row>) {
    let branch = if root {
        ""
    } else if last {
        "└─ "
    } else {
        "├─ "
    };
    let detail = match &node.call {
        Some(call) if !node.detail.is_empty() => format!("call {call}: {}", node.detail),
        Some(call) => format!("call {call}"),
        None => node.detail.clone(),
    };
    rows.push(Row {
        time: clock(&node.recorded_at),
        event: format!("{indent}{branch}{}", node.event_type),
        stream: format!("{} v{}", node.stream_id, node.version),
        status: node.status.clone(),
        detail,
    });
    let child_indent = if root {
        indent.to_string()
    } else if last {
        format!("{indent}   ")
    } else {
        format!("{indent}│  ")
    };
    for (i, child) in node.children.iter().enumerate() {
        flatten(
            child,
            &child_indent,
            i + 1 == node.children.len(),
            false,
            rows,
        );
    }
}

/// `HH:MM:SS.mmm` of an RFC 3339 timestamp as `format_timestamp` writes it.
fn clock(timestamp: &str) -> String {
    timestamp.get(11..23).unwrap_or(timestamp).to_string()
}
